//! The implicit-GEMM kernels of dense convolutions (`shaders/conv2d.wgsl`, `*_gemm`): forward
//! and grad_x (one GEMM per stride phase) tiled in workgroup memory, grad_w split along K
//! into partial sums that [`super::reduce_splits`] adds.

use super::choice::Spread;
use super::{
    params, reduce_splits, u, Conv2dParams, Geometry, Params, FORWARD_GEMM, GRAD_W_GEMM,
    GRAD_X_GEMM,
};
use crate::gpu::groups;
use crate::ops::SCRATCH;
use crate::tensor::{DType, Tensor};
use anyhow::Result;

/// Outputs per GEMM workgroup: 256 threads with a 4×4 block each (BM · BN).
const TILE_AREA: usize = 4096;
/// K values staged per step by the GEMM kernels (BK in the shader).
const BK: usize = 8;
/// grad_w split-K on a GPU: aim for this many workgroups (several waves on a large GPU), with
/// at least MIN_CHUNK values of K each and at most SCRATCH partial sums in all.
const TARGET_GROUPS: usize = 2048;
/// ... and on a CPU driver this many per thread: it runs a workgroup on one thread, so more
/// splits only add partial sums for grad_w_reduce to merge. (lavapipe, 16×16 LSK step at
/// batch 4: grad_w_reduce took 401 of 1615 ms of GPU time with GPU-sized splits.)
const CPU_GROUPS_PER_THREAD: usize = 4;
const MIN_CHUNK: usize = 256;

/// Split-K workgroups to aim for on this device: `gpu_groups` on a GPU, a few per thread on a
/// CPU driver.
pub(super) fn split_target(gpu: &crate::Gpu, gpu_groups: usize) -> usize {
    gpu.cpu_threads()
        .map_or(gpu_groups, |t| CPU_GROUPS_PER_THREAD * t)
}

/// Forward and grad_x GEMM tile (BM, BN) for N = `len` channels: BN = 16, 32 or 64 with
/// BM = TILE_AREA / BN, so that 16- and 32-channel layers waste no tile columns; fewer than 16
/// channels get BN = len rounded up to 4 and BM = 256 (the shader idles the threads past BN).
fn tile_shape(len: usize) -> (usize, usize) {
    let bn = if len < 16 {
        len.next_multiple_of(4)
    } else {
        len.next_power_of_two().min(64)
    };
    ((TILE_AREA / bn).min(256), bn)
}

/// Parameters of a GEMM kernel with an M×N output, reduction length K and a BM×BN tile.
fn gemm_params(
    g: &Geometry,
    p: Conv2dParams,
    (gm, gn, gk): (usize, usize, usize),
    (bm, bn): (usize, usize),
    total: usize,
    has_bias: bool,
) -> Params {
    Params {
        bm: u(bm),
        bn: u(bn),
        gm: u(gm),
        gn: u(gn),
        gk: u(gk),
        ..params(g, p, 0, total, has_bias)
    }
}

/// y = conv2d(x, w) + b as one GEMM.
pub(super) fn forward(
    g: &Geometry,
    p: Conv2dParams,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
) -> Result<Tensor> {
    let y = Tensor::empty(x.gpu(), &[g.n, g.cout, g.ho, g.wo], DType::F32)?;
    let reads = [x.buf(), w.buf(), b.unwrap_or(w).buf()];
    let (gm, gn, gk) = (g.n * g.ho * g.wo, g.cout, g.cin * g.kh * g.kw);
    let (bm, bn) = tile_shape(gn);
    let total = gm.div_ceil(bm) * gn.div_ceil(bn);
    let pr = gemm_params(g, p, (gm, gn, gk), (bm, bn), total, b.is_some());
    let k = &FORWARD_GEMM;
    x.gpu().dispatch(
        k,
        bytemuck::bytes_of(&pr),
        &reads,
        &[y.buf()],
        groups(total),
    )?;
    Ok(y)
}

/// gx (plus `acc`) as one GEMM per stride phase, each over only the taps that reach its
/// pixels.
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
    let ((bm, bn), div) = (tile_shape(g.cin), gcd(p.stride, p.dilation));
    for py in phases(g.h, g.kh, p) {
        for px in phases(g.w, g.kw, p) {
            let (gm, gn, gk) = (g.n * py.n * px.n, g.cin, g.cout * py.taps * px.taps);
            let total = gm.div_ceil(bm) * gn.div_ceil(bn);
            let pr = Params {
                ny: u(py.n),
                nx: u(px.n),
                fy: u(py.f),
                fx: u(px.f),
                qy0: py.q0 as i32 as u32,
                qx0: px.q0 as i32 as u32,
                ky0: u(py.k0),
                kx0: u(px.k0),
                nky: u(py.taps),
                nkx: u(px.taps),
                st: u(p.stride / div),
                dq: u(p.dilation / div),
                accumulate,
                ..gemm_params(g, p, (gm, gn, gk), (bm, bn), total, false)
            };
            gy.gpu().dispatch(
                &GRAD_X_GEMM,
                bytemuck::bytes_of(&pr),
                &reads,
                &[gx.buf()],
                groups(total),
            )?;
        }
    }
    Ok(gx)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// One stride phase of grad_x along an axis: the input indices f + stride·i (n of them), which
/// only the taps k0 + st·a (taps of them, st = stride / gcd(stride, dilation)) reach, from
/// output index q0 + i − a·dilation / gcd.
struct Phase {
    f: usize,
    n: usize,
    k0: usize,
    taps: usize,
    q0: i64,
}

fn phases(len: usize, k: usize, p: Conv2dParams) -> Vec<Phase> {
    let (s, d) = (p.stride, p.dilation);
    let st = s / gcd(s, d);
    (0..s.min(len))
        .map(|f| {
            let reach = |t: usize| (f + p.padding) as i64 - (t * d) as i64;
            let first = (0..k).find(|&t| reach(t).rem_euclid(s as i64) == 0);
            Phase {
                f,
                n: (len - f).div_ceil(s),
                k0: first.unwrap_or(0),
                taps: first.map_or(0, |k0| (k - k0).div_ceil(st)),
                q0: first.map_or(0, |k0| reach(k0) / s as i64),
            }
        })
        .collect()
}

/// The implicit-GEMM grad_w (split-K into about the device's target of workgroups, or a
/// `spread` of it, then grad_w_reduce),
/// with the bias as one more column.
pub(super) fn grad_wb(
    g: &Geometry,
    p: Conv2dParams,
    x: &Tensor,
    gy: &Tensor,
    bias: bool,
    spread: Option<Spread>,
) -> Result<(Tensor, Option<Tensor>)> {
    let default = split_target(x.gpu(), TARGET_GROUPS);
    let target = spread.map_or(default, |s| s.target(default));
    let gw = Tensor::empty(gy.gpu(), &[g.cout, g.cin, g.kh, g.kw], DType::F32)?;
    let gb = bias
        .then(|| Tensor::empty(gy.gpu(), &[g.cout], DType::F32))
        .transpose()?;
    let (gm, gn, gk) = (g.cout, g.cin * g.kh * g.kw, g.n * g.ho * g.wo);
    // Columns of B: Cin·KH·KW, and the bias gradient's column of ones.
    let cols = gn + usize::from(bias);
    // BN: the columns split evenly into tiles of at most TILE_AREA / BM (the shader lets the
    // threads past BM·BN / 16 only load), so that e.g. 144 columns are not padded to 256.
    let bm = gm.next_power_of_two().clamp(16, 64);
    let bn = cols
        .div_ceil(cols.div_ceil(TILE_AREA / bm))
        .next_multiple_of(4);
    let tiles = gm.div_ceil(bm) * cols.div_ceil(bn);
    let splits = target
        .div_ceil(tiles)
        .min(gk.div_ceil(MIN_CHUNK))
        .min(SCRATCH / (gm * cols))
        .max(1);
    let kc = gk.div_ceil(splits).next_multiple_of(BK);
    let splits = gk.div_ceil(kc);
    let partial = Tensor::empty(gy.gpu(), &[splits, gm * cols], DType::F32)?;
    let total = splits * tiles;
    let pr = Params {
        kc: kc as u32,
        ..gemm_params(g, p, (gm, gn, gk), (bm, bn), total, bias)
    };
    gy.gpu().dispatch(
        &GRAD_W_GEMM,
        bytemuck::bytes_of(&pr),
        &[gy.buf(), x.buf()],
        &[partial.buf()],
        groups(total),
    )?;
    let pr = Params {
        splits: splits as u32,
        gn: gn as u32,
        ..params(g, p, 0, gm * cols, bias)
    };
    reduce_splits(&pr, &partial, [&gw, gb.as_ref().unwrap_or(&gw)])?;
    Ok((gw, gb))
}
