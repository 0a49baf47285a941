//! SGD with momentum, weight decay and Nesterov, exactly as `torch.optim.SGD` (dampening 0),
//! as one fused kernel updating a parameter in place (`shaders/sgd.wgsl`).

use crate::gpu::{grid, Kernel};
use crate::tensor::{DType, Tensor};
use anyhow::{bail, Result};

const SRC: &str = include_str!("../../shaders/sgd.wgsl");
const STEP: Kernel = Kernel {
    name: "sgd",
    source: SRC,
    entry: "step",
};

#[derive(Clone, Copy, Debug)]
pub struct SgdConfig {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Params {
    n: u32,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    nesterov: u32,
    pad: [u32; 3],
}

/// One step, in place on `param` and `momentum_buf`:
/// g = grad + wd·p; buf = momentum·buf + g; p −= lr·(nesterov ? g + momentum·buf : buf).
///
/// PyTorch sets buf = g on the first step; a momentum buffer that starts as zeros
/// (`Tensor::zeros`) gives exactly that (momentum·0 + g = g), so no first-step flag is
/// needed: the caller creates each buffer zeroed and keeps it across steps.
pub fn sgd_step(
    param: &Tensor,
    grad: &Tensor,
    momentum_buf: &Tensor,
    cfg: &SgdConfig,
) -> Result<()> {
    for (what, t) in [("gradient", grad), ("momentum buffer", momentum_buf)] {
        if t.shape() != param.shape() || t.dtype() != DType::F32 {
            bail!(
                "sgd: {what} is {:?} {:?}, expected f32 {:?} like the parameter",
                t.shape(),
                t.dtype(),
                param.shape()
            );
        }
    }
    if param.dtype() != DType::F32 {
        bail!("sgd: parameter of shape {:?} is not f32", param.shape());
    }
    let p = Params {
        n: param.numel() as u32,
        lr: cfg.lr,
        momentum: cfg.momentum,
        weight_decay: cfg.weight_decay,
        nesterov: cfg.nesterov as u32,
        pad: [0; 3],
    };
    param.gpu().dispatch(
        &STEP,
        bytemuck::bytes_of(&p),
        &[grad.buf()],
        &[param.buf(), momentum_buf.buf()],
        grid(param.numel()),
    )
}
