//! BatchNorm2d with PyTorch semantics (`shaders/batchnorm.wgsl`): batch statistics over
//! (N, H, W) in training with an in-place update of the running statistics, running
//! statistics in eval, and the backward for x, gamma and beta.

use super::reduce::split;
use crate::autograd::{grad_enabled, Var};
use crate::gpu::{grid, groups, Gpu, GpuBuffer, Kernel};
use crate::tensor::{nchw, DType, Tensor};
use anyhow::{bail, Result};
use std::sync::Arc;

const SRC: &str = include_str!("../../shaders/batchnorm.wgsl");
const STATS: Kernel = Kernel {
    name: "batchnorm",
    source: SRC,
    entry: "stats",
};
const STATS_MERGE: Kernel = Kernel {
    name: "batchnorm",
    source: SRC,
    entry: "stats_merge",
};
const APPLY: Kernel = Kernel {
    name: "batchnorm",
    source: SRC,
    entry: "apply",
};
const RUNNING: Kernel = Kernel {
    name: "batchnorm",
    source: SRC,
    entry: "running",
};
const GRAD_SUMS: Kernel = Kernel {
    name: "batchnorm",
    source: SRC,
    entry: "grad_sums",
};
const GRAD_MERGE: Kernel = Kernel {
    name: "batchnorm",
    source: SRC,
    entry: "grad_merge",
};
const GRAD_X: Kernel = Kernel {
    name: "batchnorm",
    source: SRC,
    entry: "grad_x",
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Params {
    n: u32,
    c: u32,
    hw: u32,
    count: u32,
    eps: f32,
    momentum: f32,
    training: u32,
    chunk: u32,
    chunks: u32,
    pad: [u32; 3],
}

fn check_channel_vec(t: &Tensor, c: usize, what: &str) -> Result<()> {
    if t.shape() != [c] || t.dtype() != DType::F32 {
        bail!(
            "batch_norm: {what} must be an f32 tensor of shape [{c}], got {:?} {:?}",
            t.dtype(),
            t.shape()
        );
    }
    Ok(())
}

/// Validates the inputs; returns the parameter block (momentum, eps, mode filled in).
fn params(
    x: &Tensor,
    tensors: &[(&Tensor, &str)],
    training: bool,
    momentum: f32,
    eps: f32,
) -> Result<Params> {
    let [n, c, h, w] = nchw(x, "batch_norm input x")?;
    if x.dtype() != DType::F32 {
        bail!("batch_norm: x must be f32, got {:?}", x.dtype());
    }
    for &(t, what) in tensors {
        check_channel_vec(t, c, what)?;
    }
    let count = n * h * w;
    if training && count < 2 {
        bail!(
            "batch_norm in training needs more than one value per channel, got input of \
             shape {:?} (N*H*W = {count})",
            x.shape()
        );
    }
    let (chunk, chunks) = split(x.gpu(), count, c);
    Ok(Params {
        n: x.numel() as u32,
        c: c as u32,
        hw: (h * w) as u32,
        count: count as u32,
        eps,
        momentum,
        training: training as u32,
        chunk: chunk as u32,
        chunks: chunks as u32,
        pad: [0; 3],
    })
}

/// A per-channel reduction into `outs` (two [C] tensors): `part` writes one pair of results
/// per (channel, chunk) and `merge` combines each channel's chunks; with one chunk per channel
/// `part` writes `outs` directly.
fn per_channel(
    gpu: &Arc<Gpu>,
    p: &Params,
    part: &Kernel,
    merge: &Kernel,
    reads: &[&GpuBuffer],
    outs: [&Tensor; 2],
) -> Result<()> {
    let (c, chunks) = (p.c as usize, p.chunks as usize);
    let pb = bytemuck::bytes_of(p);
    if chunks == 1 {
        return gpu.dispatch(part, pb, reads, &[outs[0].buf(), outs[1].buf()], groups(c));
    }
    let a = Tensor::empty(gpu, &[c, chunks], DType::F32)?;
    let b = Tensor::empty(gpu, &[c, chunks], DType::F32)?;
    gpu.dispatch(part, pb, reads, &[a.buf(), b.buf()], groups(c * chunks))?;
    gpu.dispatch(
        merge,
        pb,
        &[a.buf(), b.buf()],
        &[outs[0].buf(), outs[1].buf()],
        groups(c),
    )
}

/// Normalises x. Training: with the batch mean and biased batch variance over (N, H, W),
/// and updates `running_mean`/`running_var` in place on the GPU (unbiased variance, weight
/// `momentum` on the batch). Eval: with the running statistics.
/// Returns (y, mean, var): the statistics used, as the backward needs them.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    training: bool,
    momentum: f32,
    eps: f32,
) -> Result<(Tensor, Tensor, Tensor)> {
    let p = params(
        x,
        &[
            (gamma, "gamma"),
            (beta, "beta"),
            (running_mean, "running_mean"),
            (running_var, "running_var"),
        ],
        training,
        momentum,
        eps,
    )?;
    let gpu = x.gpu();
    let c = p.c as usize;
    let (mean, var) = if training {
        let mean = Tensor::empty(gpu, &[c], DType::F32)?;
        let var = Tensor::empty(gpu, &[c], DType::F32)?;
        per_channel(gpu, &p, &STATS, &STATS_MERGE, &[x.buf()], [&mean, &var])?;
        gpu.dispatch(
            &RUNNING,
            bytemuck::bytes_of(&p),
            &[mean.buf(), var.buf()],
            &[running_mean.buf(), running_var.buf()],
            grid(c),
        )?;
        (mean, var)
    } else {
        (running_mean.clone(), running_var.clone())
    };
    let y = Tensor::empty(gpu, x.shape(), DType::F32)?;
    gpu.dispatch(
        &APPLY,
        bytemuck::bytes_of(&p),
        &[x.buf(), mean.buf(), var.buf(), gamma.buf(), beta.buf()],
        &[y.buf()],
        grid(x.numel()),
    )?;
    Ok((y, mean, var))
}

/// Gradients (gx, ggamma, gbeta) of y = batch_norm(x) given gy, with `mean`/`var` the
/// statistics the forward used. Training also differentiates through the batch statistics.
pub fn batch_norm_backward(
    x: &Tensor,
    gamma: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    gy: &Tensor,
    training: bool,
    eps: f32,
) -> Result<(Tensor, Tensor, Tensor)> {
    let p = params(
        x,
        &[(gamma, "gamma"), (mean, "mean"), (var, "var")],
        training,
        0.0,
        eps,
    )?;
    if gy.shape() != x.shape() {
        bail!(
            "batch_norm backward: grad_y of shape {:?} for x of shape {:?}",
            gy.shape(),
            x.shape()
        );
    }
    let gpu = x.gpu();
    let c = p.c as usize;
    let ggamma = Tensor::empty(gpu, &[c], DType::F32)?;
    let gbeta = Tensor::empty(gpu, &[c], DType::F32)?;
    let gx = Tensor::empty(gpu, x.shape(), DType::F32)?;
    per_channel(
        gpu,
        &p,
        &GRAD_SUMS,
        &GRAD_MERGE,
        &[x.buf(), mean.buf(), var.buf(), gy.buf()],
        [&ggamma, &gbeta],
    )?;
    gpu.dispatch(
        &GRAD_X,
        bytemuck::bytes_of(&p),
        &[
            x.buf(),
            mean.buf(),
            var.buf(),
            gy.buf(),
            gamma.buf(),
            ggamma.buf(),
            gbeta.buf(),
        ],
        &[gx.buf()],
        grid(x.numel()),
    )?;
    Ok((gx, ggamma, gbeta))
}

/// BatchNorm2d on a [N, C, H, W] input with per-channel `gamma`/`beta` ([C]); see
/// [`batch_norm_forward`] for the modes and the running-statistics update.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm(
    x: &Var,
    gamma: &Var,
    beta: &Var,
    running_mean: &Tensor,
    running_var: &Tensor,
    training: bool,
    momentum: f32,
    eps: f32,
) -> Result<Var> {
    let (y, mean, var) = batch_norm_forward(
        x.value(),
        gamma.value(),
        beta.value(),
        running_mean,
        running_var,
        training,
        momentum,
        eps,
    )?;
    // Eval normalises with the running buffers, which a later training step updates in
    // place: a recorded backward keeps a snapshot of the values this forward used.
    let (mean, var) = if training || !grad_enabled() {
        (mean, var)
    } else {
        (mean.duplicate()?, var.duplicate()?)
    };
    let (tx, tg) = (x.value().clone(), gamma.value().clone());
    Ok(Var::from_op(
        "batch_norm",
        y,
        &[x, gamma, beta],
        Box::new(move |gy| {
            let (gx, gg, gb) = batch_norm_backward(&tx, &tg, &mean, &var, gy, training, eps)?;
            Ok(vec![Some(gx), Some(gg), Some(gb)])
        }),
    ))
}
