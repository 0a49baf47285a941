//! Training statistics accumulated on the GPU (`shaders/metrics.wgsl`): the running loss and
//! the number of correct predictions, read back once per epoch rather than every step.

use crate::gpu::Kernel;
use crate::tensor::{DType, Tensor};
use anyhow::{bail, Result};
use std::sync::Arc;

const SRC: &str = include_str!("../../shaders/metrics.wgsl");
const COUNT_CORRECT: Kernel = Kernel {
    name: "metrics",
    source: SRC,
    entry: "count_correct",
};
const ACCUMULATE_LOSS: Kernel = Kernel {
    name: "metrics",
    source: SRC,
    entry: "accumulate_loss",
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    k: f32,
    pad: u32,
}

/// Sums of weighted loss, weighted correct predictions and weighted rows.
pub struct RunningStats {
    acc: Tensor,
}

impl RunningStats {
    pub fn new(gpu: &Arc<crate::Gpu>) -> Result<RunningStats> {
        Ok(RunningStats {
            acc: Tensor::zeros(gpu, &[3])?,
        })
    }

    /// acc += k · loss (a [1] tensor).
    pub fn add_loss(&self, loss: &Tensor, k: f32) -> Result<()> {
        let p = Params {
            rows: 1,
            cols: 1,
            k,
            pad: 0,
        };
        self.acc.gpu().dispatch(
            &ACCUMULATE_LOSS,
            bytemuck::bytes_of(&p),
            &[loss.buf()],
            &[self.acc.buf()],
            [1, 1, 1],
        )
    }

    /// acc += k · (rows of `logits` [N, C] whose argmax is the label, and N).
    pub fn add_correct(&self, logits: &Tensor, labels: &Tensor, k: f32) -> Result<()> {
        let [rows, cols] = *logits.shape() else {
            bail!("logits: expected [N, C], got {:?}", logits.shape());
        };
        if labels.dtype() != DType::U32 || labels.numel() != rows {
            bail!(
                "labels: expected {rows} u32 values, got {:?} {:?}",
                labels.dtype(),
                labels.shape()
            );
        }
        let p = Params {
            rows: rows as u32,
            cols: cols as u32,
            k,
            pad: 0,
        };
        self.acc.gpu().dispatch(
            &COUNT_CORRECT,
            bytemuck::bytes_of(&p),
            &[logits.buf(), labels.buf()],
            &[self.acc.buf()],
            [1, 1, 1],
        )
    }

    /// (Σ k·loss, Σ k·correct, Σ k·rows) so far, without resetting.
    pub fn peek(&self) -> Result<(f64, f64, f64)> {
        let v = self.acc.to_f32()?;
        Ok((v[0] as f64, v[1] as f64, v[2] as f64))
    }

    /// Sets the sums (resuming an interrupted epoch).
    pub fn restore(&self, sums: [f32; 3]) -> Result<()> {
        self.acc.write_f32(&sums)
    }

    /// (Σ k·loss, Σ k·correct, Σ k·rows), then resets to zero.
    pub fn take(&self) -> Result<(f64, f64, f64)> {
        let v = self.acc.to_f32()?;
        self.acc.gpu().zero(self.acc.buf());
        Ok((v[0] as f64, v[1] as f64, v[2] as f64))
    }
}
