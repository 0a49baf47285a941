//! The direct kernels (`shaders/conv2d.wgsl`): grouped convolutions, and dense ones where
//! the GEMM's tile would be mostly idle; 4 channels per thread (`*` entries) or one
//! (`*_direct`), grad_w in chunks of N·Ho·Wo added by [`super::reduce_splits`].

use super::gemm::split_target;
use super::{
    params, reduce_splits, Conv2dParams, Geometry, Params, FORWARD, FORWARD_DIRECT, GRAD_W,
    GRAD_W_DIRECT, GRAD_X, GRAD_X_DIRECT, TILE,
};
use crate::gpu::{grid, groups, Kernel, WG};
use crate::ops::SCRATCH;
use crate::tensor::{DType, Tensor};
use anyhow::Result;

/// Direct grad_w kernels (grouped, depthwise): workgroups to aim for on a GPU and the least
/// N·Ho·Wo values per workgroup.
const DIRECT_GROUPS: usize = 4096;
const DIRECT_CHUNK: usize = 4096;

/// The tiled kernel with 4 channels per thread when a group has at least 4 channels along
/// the dimension a thread owns, else the direct one; and the number of tiles per group.
fn pick(
    per_group: usize,
    tiled: &'static Kernel,
    direct: &'static Kernel,
) -> (&'static Kernel, usize) {
    if per_group >= TILE {
        (tiled, per_group.div_ceil(TILE))
    } else {
        (direct, per_group)
    }
}

/// y = conv2d(x, w) + b, one output (or 4 channels of one) per thread.
pub(super) fn forward(
    g: &Geometry,
    p: Conv2dParams,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
) -> Result<Tensor> {
    let y = Tensor::empty(x.gpu(), &[g.n, g.cout, g.ho, g.wo], DType::F32)?;
    let reads = [x.buf(), w.buf(), b.unwrap_or(w).buf()];
    let (k, tiles) = pick(g.cout / p.groups, &FORWARD, &FORWARD_DIRECT);
    let total = g.n * p.groups * tiles * g.ho * g.wo;
    let pr = params(g, p, tiles, total, b.is_some());
    x.gpu()
        .dispatch(k, bytemuck::bytes_of(&pr), &reads, &[y.buf()], grid(total))?;
    Ok(y)
}

/// gx (plus `acc`), one input element (or 4 channels of one) per thread.
pub(super) fn grad_x(
    g: &Geometry,
    p: Conv2dParams,
    w: &Tensor,
    gy: &Tensor,
    acc: Option<&Tensor>,
) -> Result<Tensor> {
    let gx = Tensor::empty(gy.gpu(), &[g.n, g.cin, g.h, g.w], DType::F32)?;
    let reads = [gy.buf(), w.buf(), acc.unwrap_or(w).buf()];
    let accumulate = u32::from(acc.is_some());
    let (k, tiles) = pick(g.cin / p.groups, &GRAD_X, &GRAD_X_DIRECT);
    let total = g.n * p.groups * tiles * g.h * g.w;
    let pr = Params {
        accumulate,
        ..params(g, p, tiles, total, false)
    };
    gy.gpu()
        .dispatch(k, bytemuck::bytes_of(&pr), &reads, &[gx.buf()], grid(total))?;
    Ok(gx)
}

/// The direct grad_w kernels: one workgroup per (weight task, chunk of N·Ho·Wo), and with
/// `bias` one per (bias task, chunk) summing gy alone; several chunks go through a scratch
/// and grad_w_reduce, so that no workgroup walks all of N·Ho·Wo. gw and gb are views of one
/// buffer, gb from the first offset past gw that a view can start at.
pub(super) fn grad_wb(
    g: &Geometry,
    p: Conv2dParams,
    x: &Tensor,
    gy: &Tensor,
    bias: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let shape = [g.cout, g.cin / p.groups, g.kh, g.kw];
    let wlen: usize = shape.iter().product();
    let (k, tiles) = pick(g.cout / p.groups, &GRAD_W, &GRAD_W_DIRECT);
    let wtasks = p.groups * tiles * shape[1..].iter().product::<usize>();
    let tasks = wtasks + if bias { p.groups * tiles } else { 0 };
    let (bias_off, slab) = if bias {
        let off = gy.gpu().view_start(wlen);
        (off, off + g.cout)
    } else {
        (wlen, wlen)
    };
    let out = Tensor::empty(gy.gpu(), &[slab], DType::F32)?;
    let len = g.n * g.ho * g.wo;
    let splits = split_target(gy.gpu(), DIRECT_GROUPS)
        .div_ceil(tasks)
        .min(len.div_ceil(DIRECT_CHUNK))
        .min(SCRATCH / slab)
        .max(1);
    let kc = len.div_ceil(splits).next_multiple_of(WG as usize);
    let splits = len.div_ceil(kc);
    let partial = if splits > 1 {
        Tensor::empty(gy.gpu(), &[splits, slab], DType::F32)?
    } else {
        out.clone()
    };
    let pr = Params {
        kc: kc as u32,
        splits: splits as u32,
        wtasks: wtasks as u32,
        bias_off: bias_off as u32,
        ..params(g, p, tiles, tasks, bias)
    };
    gy.gpu().dispatch(
        k,
        bytemuck::bytes_of(&pr),
        &[gy.buf(), x.buf()],
        &[partial.buf()],
        groups(tasks * splits),
    )?;
    if splits > 1 {
        let pr = Params {
            splits: splits as u32,
            ..params(g, p, 0, slab, false)
        };
        reduce_splits(&pr, &partial, [&out, &out])?;
    }
    let gb = bias.then(|| out.view(bias_off, &[g.cout])).transpose()?;
    Ok((out.view(0, &shape)?, gb))
}
