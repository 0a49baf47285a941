//! BatchNorm2d with PyTorch semantics (`shaders/batchnorm.wgsl`): batch statistics over
//! (N, H, W) in training with an in-place update of the running statistics, running
//! statistics in eval, and the backward for x, gamma and beta; optionally fused with the ReLU
//! that follows it (`batch_norm_relu`: one pass and one tensor fewer in forward and backward).
//! [`BnMode::groups`] normalises several stacked batches in one pass, each with its own
//! statistics.

use super::reduce::split_from;
use crate::autograd::{grad_enabled, Var};
use crate::gpu::{grid, groups, Gpu, Kernel};
use crate::tensor::{nchw, DType, Tensor};
use anyhow::{bail, Result};
use std::sync::{Arc, LazyLock};

const SRC: &str = include_str!("../../shaders/batchnorm.wgsl");

/// How the kernels run: `lanes` values per load (1 or 4) and `wg` invocations per workgroup.
/// GPUs run the shader as written (1, 256: measured on the H100); CPU drivers (lavapipe:
/// one thread per workgroup, a storage buffer loaded lane by lane, a vec4 as fast as an f32)
/// take workgroups of 8, whose sums cost 3 barriers instead of 8, and vec4s where every plane
/// is whole vec4s. At 32×32 batch 16 (lavapipe, 2 cores) the step's BatchNorms took
/// 0.49x their time with both.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Variant {
    lanes: u32,
    wg: u32,
}

impl Variant {
    fn of(x: &Tensor, hw: usize) -> Variant {
        if x.gpu().cpu_threads().is_none() {
            return Variant { lanes: 1, wg: 256 };
        }
        Variant {
            lanes: if hw.is_multiple_of(4) { 4 } else { 1 },
            wg: 8,
        }
    }
}

/// The shader for CPU drivers with `lanes` values per load (see [`Variant`]).
fn cpu_source(lanes: u32) -> String {
    let src = SRC.replace("const WG: u32 = 256u;", "const WG: u32 = 8u;");
    if lanes == 1 {
        return src;
    }
    src.replace("alias V = f32;", "alias V = vec4<f32>;")
        .replace("alias VB = bool;", "alias VB = vec4<bool>;")
        .replace("const LANES: f32 = 1.0;", "const LANES: f32 = 4.0;")
        .replace(
            "const ONES: vec4<f32> = vec4<f32>(1.0, 0.0, 0.0, 0.0);",
            "const ONES: vec4<f32> = vec4<f32>(1.0);",
        )
}

static SRC_CPU: LazyLock<String> = LazyLock::new(|| cpu_source(1));
static SRC_CPU_VEC4: LazyLock<String> = LazyLock::new(|| cpu_source(4));

/// The kernel `entry` of variant `v`.
fn kernel(entry: &'static str, v: Variant) -> Kernel {
    let (name, source) = match (v.wg, v.lanes) {
        (256, _) => ("batchnorm", SRC),
        (_, 4) => ("batchnorm_cpu_vec4", SRC_CPU_VEC4.as_str()),
        _ => ("batchnorm_cpu", SRC_CPU.as_str()),
    };
    Kernel {
        name,
        source,
        entry,
    }
}

/// The fewest values one workgroup takes of a statistic: every kernel but `apply` (eval) runs
/// one workgroup per chunk, so the chunks of small maps (8×8 at batch 128: 8192 values per
/// channel) must be short enough to fill a GPU, and each thread still takes 4 values.
const MIN_CHUNK: usize = 1024;

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
    parts: u32,
    stride: u32,
    /// A workgroup's walk over a statistic's values, 256 at a time: its step within a plane
    /// and in the flat index (see `next` in the shader).
    dq: u32,
    di: u32,
    /// Values per load (1 or 4); n, hw, count and chunk are in units of that many.
    lanes: u32,
    /// Invocations per workgroup (see [`Variant`]).
    wg: u32,
    pad: [u32; 2],
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

impl Params {
    fn variant(&self) -> Variant {
        Variant {
            lanes: self.lanes,
            wg: self.wg,
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
    let v = Variant::of(x, h * w);
    let (l, wg) = (v.lanes as usize, v.wg as usize);
    let (hw, count) = ((h * w / l).max(1), count / l);
    let (chunk, chunks) = split_from(x.gpu(), count, stat_len, MIN_CHUNK / l);
    Ok(Params {
        parts: (stat_len * chunks) as u32,
        stride: x.gpu().view_start(stat_len) as u32,
        dq: (wg % hw) as u32,
        di: ((wg / hw) * c * hw + wg % hw) as u32,
        lanes: v.lanes,
        wg: v.wg,
        pad: [0; 2],
        n: (x.numel() / l) as u32,
        c: c as u32,
        hw: hw as u32,
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

/// Views of the two halves ([len] each) of a buffer made by [`stat_pair`].
fn halves(pair: &Tensor, stride: u32, len: usize) -> Result<(Tensor, Tensor)> {
    Ok((pair.view(0, &[len])?, pair.view(stride as usize, &[len])?))
}

/// A buffer for two per-statistic vectors (means and variances, or ggamma and gbeta).
fn stat_pair(gpu: &Arc<Gpu>, p: &Params) -> Result<Tensor> {
    Tensor::empty(gpu, &[2 * p.stride as usize], DType::F32)
}

/// `mean` and `var` copied into one [`stat_pair`] buffer, as the backward kernels read them.
fn pack_stats(p: &Params, [mean, var]: [&Tensor; 2]) -> Result<Tensor> {
    let gpu = mean.gpu();
    let pair = stat_pair(gpu, p)?;
    let bytes = 4 * mean.numel() as u64;
    gpu.copy(mean.buf(), 0, pair.buf(), 0, bytes);
    gpu.copy(var.buf(), 0, pair.buf(), 4 * u64::from(p.stride), bytes);
    Ok(pair)
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
    let mode = BnMode::single(training, momentum, eps);
    match forward(x, gamma, beta, stats, mode, false)? {
        (y, Some(stat)) => {
            let c = gamma.numel();
            let (mean, var) = halves(&stat, x.gpu().view_start(c) as u32, c)?;
            Ok((y, mean, var))
        }
        (y, None) => Ok((y, running_mean.clone(), running_var.clone())),
    }
}

/// (y, statistics): in training the batch's [means | variances] over groups·C statistics
/// (a [`stat_pair`] buffer); in eval none (the running statistics are used).
fn forward(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    [running_mean, running_var]: [&Tensor; 2],
    mode: BnMode,
    relu: bool,
) -> Result<(Tensor, Option<Tensor>)> {
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
    if mode.training {
        for (t, what) in [(x, "x"), (gamma, "gamma"), (beta, "beta")] {
            for (r, name) in [(running_mean, "running_mean"), (running_var, "running_var")] {
                if r.shares_memory(t) {
                    bail!(
                        "batch_norm: {name} is updated in place, so it cannot share a GPU \
                         buffer with {what}"
                    );
                }
            }
        }
    }
    let (gpu, pb) = (x.gpu(), bytemuck::bytes_of(&p));
    let y = Tensor::empty(gpu, x.shape(), DType::F32)?;
    if !mode.training {
        gpu.dispatch(
            &kernel("apply", p.variant()),
            pb,
            &[
                x.buf(),
                running_mean.buf(),
                running_var.buf(),
                gamma.buf(),
                beta.buf(),
            ],
            &[y.buf()],
            grid(p.n as usize),
        )?;
        return Ok((y, None));
    }
    let part = Tensor::empty(gpu, &[2 * p.parts as usize], DType::F32)?;
    let workgroups = groups(p.parts as usize);
    gpu.dispatch(
        &kernel("stats", p.variant()),
        pb,
        &[x.buf()],
        &[part.buf()],
        workgroups,
    )?;
    let stat = stat_pair(gpu, &p)?;
    gpu.dispatch(
        &kernel("normalize", p.variant()),
        pb,
        &[x.buf(), part.buf(), gamma.buf(), beta.buf()],
        &[y.buf(), stat.buf(), running_mean.buf(), running_var.buf()],
        workgroups,
    )?;
    Ok((y, Some(stat)))
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
    let mode = BnMode::single(training, 0.0, eps);
    let p = params(
        x,
        &[(gamma, "gamma")],
        &[(mean, "mean"), (var, "var")],
        mode,
    )?;
    backward(
        x,
        [gamma, gamma],
        &pack_stats(&p, [mean, var])?,
        gy,
        false,
        mode,
    )
}

/// grad_sums (per statistic and chunk), then grad_x (dx, ggamma and gbeta from them); `stat`
/// is the forward's [means | variances]; with `relu`, gy passes only where the fused ReLU's
/// output was positive, found from x, gamma and beta (beta's values matter only then).
fn backward(
    x: &Tensor,
    [gamma, beta]: [&Tensor; 2],
    stat: &Tensor,
    gy: &Tensor,
    relu: bool,
    mode: BnMode,
) -> Result<(Tensor, Tensor, Tensor)> {
    let mut p = params(x, &[(gamma, "gamma")], &[], mode)?;
    if stat.numel() != 2 * p.stride as usize {
        bail!(
            "batch_norm backward: statistics of shape {:?} for x of shape {:?}",
            stat.shape(),
            x.shape()
        );
    }
    if gy.shape() != x.shape() {
        bail!(
            "batch_norm backward: grad_y of shape {:?} for x of shape {:?}",
            gy.shape(),
            x.shape()
        );
    }
    if beta.numel() != gamma.numel() {
        bail!(
            "batch_norm backward: beta of shape {:?} for gamma of shape {:?}",
            beta.shape(),
            gamma.shape()
        );
    }
    p.relu = u32::from(relu);
    let (gpu, pb) = (x.gpu(), bytemuck::bytes_of(&p));
    let workgroups = groups(p.parts as usize);
    let part = Tensor::empty(gpu, &[2 * p.parts as usize], DType::F32)?;
    gpu.dispatch(
        &kernel("grad_sums", p.variant()),
        pb,
        &[x.buf(), stat.buf(), gy.buf(), gamma.buf(), beta.buf()],
        &[part.buf()],
        workgroups,
    )?;
    let gx = Tensor::empty(gpu, x.shape(), DType::F32)?;
    let gparams = stat_pair(gpu, &p)?;
    gpu.dispatch(
        &kernel("grad_x", p.variant()),
        pb,
        &[
            part.buf(),
            stat.buf(),
            gamma.buf(),
            x.buf(),
            gy.buf(),
            beta.buf(),
        ],
        &[gx.buf(), gparams.buf()],
        workgroups,
    )?;
    let (ggamma, gbeta) = halves(&gparams, p.stride, p.c as usize)?;
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
/// [`BnMode`]); with `relu`, relu(batch_norm(x)) as one op: its backward keeps x, gamma and
/// beta and finds where the ReLU cut from them, so the normalised values before the ReLU never
/// take memory.
pub fn batch_norm_with(
    x: &Var,
    gamma: &Var,
    beta: &Var,
    running: [&Tensor; 2],
    mode: BnMode,
    relu: bool,
) -> Result<Var> {
    let (y, stat) = forward(x.value(), gamma.value(), beta.value(), running, mode, relu)?;
    let stat = match stat {
        Some(stat) => stat,
        // Eval normalises with the running buffers, which a later training step updates in
        // place: a recorded backward keeps a copy of the values this forward used.
        None if grad_enabled() => {
            let p = params(x.value(), &[], &[], mode)?;
            pack_stats(&p, running)?
        }
        None => return Ok(Var::constant(y)),
    };
    let (tx, tg, tb) = (
        x.value().clone(),
        gamma.value().clone(),
        beta.value().clone(),
    );
    Ok(Var::from_op(
        if relu {
            "batch_norm_relu"
        } else {
            "batch_norm"
        },
        y,
        &[x, gamma, beta],
        Box::new(move |gy| {
            let (gx, gg, gb) = backward(&tx, [&tg, &tb], &stat, gy, relu, mode)?;
            Ok(vec![Some(gx), Some(gg), Some(gb)])
        }),
    ))
}
