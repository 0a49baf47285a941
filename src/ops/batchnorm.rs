//! BatchNorm2d with PyTorch semantics (`shaders/batchnorm.wgsl`): batch statistics over
//! (N, H, W) in training with an in-place update of the running statistics, running
//! statistics in eval, and the backward for x, gamma and beta; optionally fused with the ReLU
//! that follows it (`batch_norm_relu`: one pass and one tensor fewer in forward and backward).
//! [`BnMode::groups`] normalises several stacked batches in one pass, each with its own
//! statistics.

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
    relu: u32,
    groups: u32,
    nb: u32,
}

/// How a batch norm runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BnMode {
    /// Normalise with the batch statistics and update the running ones (else use the
    /// running statistics).
    pub training: bool,
    /// Weight of the batch in the running statistics' update.
    pub momentum: f32,
    pub eps: f32,
    /// Independent batches stacked along N (BBN's two branches through their shared trunk).
    /// In training each gets its own statistics, and the running statistics take them in
    /// order: exactly what `groups` calls on the separate batches would do. Eval ignores it.
    pub groups: usize,
}

impl BnMode {
    /// One batch (no stacking).
    pub fn single(training: bool, momentum: f32, eps: f32) -> BnMode {
        BnMode {
            training,
            momentum,
            eps,
            groups: 1,
        }
    }
}

/// Validates the inputs; returns the parameter block (mode and chunking filled in).
/// `channel_vecs` must be [C]; `stat_vecs` (the batch statistics) one value per statistic.
fn params(
    x: &Tensor,
    channel_vecs: &[(&Tensor, &str)],
    stat_vecs: &[(&Tensor, &str)],
    mode: BnMode,
) -> Result<Params> {
    let [n, c, h, w] = nchw(x, "batch_norm input x")?;
    if x.dtype() != DType::F32 {
        bail!("batch_norm: x must be f32, got {:?}", x.dtype());
    }
    let groups = if mode.training { mode.groups } else { 1 };
    if groups == 0 || n % groups != 0 {
        bail!(
            "batch_norm: {} stacked batches cannot split an input of shape {:?} along N",
            mode.groups,
            x.shape()
        );
    }
    let stat_len = groups * c;
    let vecs = channel_vecs.iter().map(|&(t, what)| (t, what, c));
    for (t, what, len) in vecs.chain(stat_vecs.iter().map(|&(t, what)| (t, what, stat_len))) {
        if t.shape() != [len] || t.dtype() != DType::F32 {
            bail!(
                "batch_norm: {what} must be an f32 tensor of shape [{len}], got {:?} {:?}",
                t.dtype(),
                t.shape()
            );
        }
    }
    let nb = n / groups;
    let count = nb * h * w;
    if mode.training && count < 2 {
        bail!(
            "batch_norm in training needs more than one value per channel and batch, got \
             input of shape {:?} in {groups} batch(es) ({count} values each)",
            x.shape()
        );
    }
    let (chunk, chunks) = split(x.gpu(), count, stat_len);
    Ok(Params {
        n: x.numel() as u32,
        c: c as u32,
        hw: (h * w) as u32,
        count: count as u32,
        eps: mode.eps,
        momentum: mode.momentum,
        training: mode.training as u32,
        chunk: chunk as u32,
        chunks: chunks as u32,
        relu: 0,
        groups: groups as u32,
        nb: nb as u32,
    })
}

/// The forward statistics [groups·C] (mean, var), updating `running` (mean, var) in place:
/// `stats` writes one pair per (statistic, chunk) and `stats_merge` combines each channel's
/// chunks, group after group; with one chunk and one group `stats` writes them directly.
/// Whichever writes the final values also updates the running statistics.
fn batch_stats(
    gpu: &Arc<Gpu>,
    p: &Params,
    x: &GpuBuffer,
    [rm, rv]: [&Tensor; 2],
) -> Result<(Tensor, Tensor)> {
    let (c, chunks) = (p.c as usize, p.chunks as usize);
    let stats = c * p.groups as usize;
    let pb = bytemuck::bytes_of(p);
    let mean = Tensor::empty(gpu, &[stats], DType::F32)?;
    let var = Tensor::empty(gpu, &[stats], DType::F32)?;
    let (rm, rv) = (rm.buf(), rv.buf());
    if chunks == 1 && p.groups == 1 {
        let outs = [mean.buf(), var.buf(), rm, rv];
        gpu.dispatch(&STATS, pb, &[x], &outs, groups(c))?;
        return Ok((mean, var));
    }
    let a = Tensor::empty(gpu, &[stats, chunks], DType::F32)?;
    let b = Tensor::empty(gpu, &[stats, chunks], DType::F32)?;
    let outs = [a.buf(), b.buf(), rm, rv];
    gpu.dispatch(&STATS, pb, &[x], &outs, groups(stats * chunks))?;
    gpu.dispatch(
        &STATS_MERGE,
        pb,
        &[a.buf(), b.buf()],
        &[mean.buf(), var.buf(), rm, rv],
        groups(c),
    )?;
    Ok((mean, var))
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
    let stats = [running_mean, running_var];
    forward(
        x,
        gamma,
        beta,
        stats,
        BnMode::single(training, momentum, eps),
        false,
    )
}

fn forward(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    [running_mean, running_var]: [&Tensor; 2],
    mode: BnMode,
    relu: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let mut p = params(
        x,
        &[
            (gamma, "gamma"),
            (beta, "beta"),
            (running_mean, "running_mean"),
            (running_var, "running_var"),
        ],
        &[],
        mode,
    )?;
    p.relu = u32::from(relu);
    let gpu = x.gpu();
    let (mean, var) = if mode.training {
        batch_stats(gpu, &p, x.buf(), [running_mean, running_var])?
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
    backward(
        x,
        gamma,
        [mean, var],
        gy,
        None,
        BnMode::single(training, 0.0, eps),
    )
}

/// grad_sums (per statistic and chunk), grad_merge (ggamma, gbeta and the coefficients of
/// dx), grad_x; `y` is the fused ReLU's output, whose zeros cut gy.
fn backward(
    x: &Tensor,
    gamma: &Tensor,
    [mean, var]: [&Tensor; 2],
    gy: &Tensor,
    y: Option<&Tensor>,
    mode: BnMode,
) -> Result<(Tensor, Tensor, Tensor)> {
    let mut p = params(
        x,
        &[(gamma, "gamma")],
        &[(mean, "mean"), (var, "var")],
        mode,
    )?;
    for (t, what) in [(Some(gy), "grad_y"), (y, "the ReLU output y")] {
        if let Some(t) = t.filter(|t| t.shape() != x.shape()) {
            bail!(
                "batch_norm backward: {what} of shape {:?} for x of shape {:?}",
                t.shape(),
                x.shape()
            );
        }
    }
    p.relu = u32::from(y.is_some());
    let y = y.unwrap_or(gy);
    let (gpu, pb) = (x.gpu(), bytemuck::bytes_of(&p));
    let (c, chunks) = (p.c as usize, p.chunks as usize);
    let stats = c * p.groups as usize;
    let part_g = Tensor::empty(gpu, &[stats, chunks], DType::F32)?;
    let part_b = Tensor::empty(gpu, &[stats, chunks], DType::F32)?;
    gpu.dispatch(
        &GRAD_SUMS,
        pb,
        &[x.buf(), mean.buf(), var.buf(), gy.buf(), y.buf()],
        &[part_g.buf(), part_b.buf()],
        groups(stats * chunks),
    )?;
    let ggamma = Tensor::empty(gpu, &[c], DType::F32)?;
    let gbeta = Tensor::empty(gpu, &[c], DType::F32)?;
    let coef = Tensor::empty(gpu, &[stats, 4], DType::F32)?;
    gpu.dispatch(
        &GRAD_MERGE,
        pb,
        &[
            part_g.buf(),
            part_b.buf(),
            mean.buf(),
            var.buf(),
            gamma.buf(),
        ],
        &[ggamma.buf(), gbeta.buf(), coef.buf()],
        groups(c),
    )?;
    let gx = Tensor::empty(gpu, x.shape(), DType::F32)?;
    gpu.dispatch(
        &GRAD_X,
        pb,
        &[coef.buf(), x.buf(), gy.buf(), y.buf()],
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
    let stats = [running_mean, running_var];
    batch_norm_with(
        x,
        gamma,
        beta,
        stats,
        BnMode::single(training, momentum, eps),
        false,
    )
}

/// [`batch_norm`] with `running` = [running_mean, running_var] and stacked batches (see
/// [`BnMode`]); with `relu`, relu(batch_norm(x)) as one op: the forward's output is all its
/// backward keeps besides x, so the normalised values before the ReLU never take memory.
pub fn batch_norm_with(
    x: &Var,
    gamma: &Var,
    beta: &Var,
    running: [&Tensor; 2],
    mode: BnMode,
    relu: bool,
) -> Result<Var> {
    let (y, mean, var) = forward(x.value(), gamma.value(), beta.value(), running, mode, relu)?;
    // Eval normalises with the running buffers, which a later training step updates in
    // place: a recorded backward keeps a snapshot of the values this forward used.
    let (mean, var) = if mode.training || !grad_enabled() {
        (mean, var)
    } else {
        (mean.duplicate()?, var.duplicate()?)
    };
    let (tx, tg) = (x.value().clone(), gamma.value().clone());
    let ty = relu.then(|| y.clone());
    Ok(Var::from_op(
        if relu {
            "batch_norm_relu"
        } else {
            "batch_norm"
        },
        y,
        &[x, gamma, beta],
        Box::new(move |gy| {
            let (gx, gg, gb) = backward(&tx, &tg, [&mean, &var], gy, ty.as_ref(), mode)?;
            Ok(vec![Some(gx), Some(gg), Some(gb)])
        }),
    ))
}
