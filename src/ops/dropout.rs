//! Inverted dropout, PyTorch's `F.dropout(x, p, training)` (`shaders/dropout.wgsl`): VGG's
//! classifier drops half its hidden units in training. The mask is a hash of the call's seed
//! and each element's index, recomputed by the backward instead of stored; callers derive the
//! seed from the training step, so a run replays exactly.

use crate::autograd::Var;
use crate::gpu::{grid, Kernel};
use crate::tensor::{DType, Tensor};
use anyhow::{anyhow, bail, Result};

const APPLY: Kernel = Kernel {
    name: "dropout",
    source: include_str!("../../shaders/dropout.wgsl"),
    entry: "apply",
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Params {
    n: u32,
    seed_lo: u32,
    seed_hi: u32,
    threshold: u32,
    scale: f32,
    pad: [u32; 3],
}

/// The hash threshold of drop probability `p` (elements whose 24-bit hash is below it are
/// dropped): round(p·2^24), so p is honoured to 2^-24. Refuses p outside [0, 1].
pub fn threshold(p: f32) -> Result<u32> {
    if !(0.0..=1.0).contains(&p) {
        bail!("dropout: the drop probability must be in [0, 1], got {p}");
    }
    Ok((p as f64 * (1u64 << 24) as f64).round() as u32)
}

/// The factor kept elements are scaled by, 1 / (1 − p) (0 when everything is dropped, as
/// PyTorch's p = 1 gives zeros).
pub fn keep_scale(p: f32) -> f32 {
    if p < 1.0 {
        1.0 / (1.0 - p)
    } else {
        0.0
    }
}

/// x·m / (1 − p) with the mask m of `seed`: the forward on x and, on gy, the backward.
pub fn dropout_apply(x: &Tensor, p: f32, seed: u64) -> Result<Tensor> {
    if x.dtype() != DType::F32 {
        bail!(
            "dropout: expected an f32 tensor, got {:?} {:?}",
            x.dtype(),
            x.shape()
        );
    }
    let n = u32::try_from(x.numel())
        .map_err(|_| anyhow!("dropout: {} elements are too many for one call", x.numel()))?;
    let params = Params {
        n,
        seed_lo: seed as u32,
        seed_hi: (seed >> 32) as u32,
        threshold: threshold(p)?,
        scale: keep_scale(p),
        ..Default::default()
    };
    let y = Tensor::empty(x.gpu(), x.shape(), DType::F32)?;
    x.gpu().dispatch(
        &APPLY,
        bytemuck::bytes_of(&params),
        &[x.buf()],
        &[y.buf()],
        grid(x.numel()),
    )?;
    Ok(y)
}

/// Dropout of any-shaped x with drop probability p: in training each element is zeroed with
/// probability p (mask from `seed`) and the others scaled by 1 / (1 − p); in eval, or with
/// p = 0, x itself.
pub fn dropout(x: &Var, p: f32, seed: u64, training: bool) -> Result<Var> {
    threshold(p)?;
    if !training || p == 0.0 {
        return Ok(x.clone());
    }
    let y = dropout_apply(x.value(), p, seed)?;
    Ok(Var::from_op(
        "dropout",
        y,
        &[x],
        Box::new(move |gy| Ok(vec![Some(dropout_apply(gy, p, seed)?)])),
    ))
}
