//! Sums and means over axes (`shaders/reduce.wgsl`), and `sum_to`, which reduces a broadcast
//! result back to an input's shape (the backward of broadcasting).

use super::elementwise::rank4;
use crate::autograd::Var;
use crate::gpu::{grid, groups, Gpu, Kernel};
use crate::tensor::{DType, Tensor};
use anyhow::{bail, Result};

const SRC: &str = include_str!("../../shaders/reduce.wgsl");
const SUM_TO: Kernel = Kernel {
    name: "reduce",
    source: SRC,
    entry: "sum_to",
};
const SUM_TO_SMALL: Kernel = Kernel {
    name: "reduce",
    source: SRC,
    entry: "sum_to_small",
};
const EXPAND: Kernel = Kernel {
    name: "reduce",
    source: SRC,
    entry: "expand",
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Params {
    n_out: u32,
    n_red: u32,
    k: f32,
    chunks: u32,
    o: [u32; 4],
    i: [u32; 4],
    r: [u32; 4],
    chunk: u32,
    pad: [u32; 3],
}

/// Sums of at most this many terms use one thread per output.
const SMALL_COUNT: usize = 64;
/// From this many outputs on, one thread per output fills the GPU whatever the count (used
/// when the last dimension is kept, so that adjacent threads read adjacent inputs).
const MANY_OUTPUTS: usize = 32768;
/// The fewest elements one workgroup sums when a reduction is split into chunks.
const MIN_CHUNK: usize = 4096;
/// Split reductions aim at about this many workgroups in all: thousands fill a GPU's
/// multiprocessors; a CPU adapter (lavapipe) runs a few workgroups per core, and more only
/// add per-workgroup overhead.
const TARGET_GROUPS: usize = 8192;
const TARGET_GROUPS_CPU: usize = 64;

/// How to split `rows` reductions of `count` elements each into contiguous chunks, one
/// workgroup per chunk: (elements per chunk, chunks per row). One chunk per row unless the
/// rows are too few to fill the adapter and long enough to share.
pub(crate) fn split(gpu: &Gpu, count: usize, rows: usize) -> (usize, usize) {
    split_from(gpu, count, rows, MIN_CHUNK)
}

/// [`split`] with chunks of at least `min_chunk` elements.
pub(crate) fn split_from(gpu: &Gpu, count: usize, rows: usize, min_chunk: usize) -> (usize, usize) {
    let target = if gpu.cpu_threads().is_some() {
        TARGET_GROUPS_CPU
    } else {
        TARGET_GROUPS
    };
    let chunks = count.div_ceil(min_chunk).min(target / rows.max(1)).max(1);
    let chunk = count.div_ceil(chunks).max(1);
    (chunk, count.div_ceil(chunk).max(1))
}

fn params(small: &[usize], big: &[usize], k: f32) -> Result<Params> {
    if small.len() > big.len() {
        bail!("cannot reduce shape {big:?} to {small:?}");
    }
    let (o, i) = (rank4(small)?, rank4(big)?);
    let mut r = [1u32; 4];
    for d in 0..4 {
        if o[d] == 1 {
            r[d] = i[d] as u32;
        } else if o[d] != i[d] {
            bail!("cannot reduce shape {big:?} to {small:?}");
        }
    }
    Ok(Params {
        n_out: o.iter().product::<usize>() as u32,
        n_red: r.iter().product(),
        k,
        chunks: 1,
        o: o.map(|v| v as u32),
        i: i.map(|v| v as u32),
        r,
        chunk: 0,
        pad: [0; 3],
    })
}

/// k · (x summed over the dimensions where `shape` has size 1), with `shape` broadcastable
/// to x's shape. Few terms per output (or very many outputs): one thread per output; few
/// outputs with long sums: partial sums over chunks, then a second reduction of those.
pub fn sum_to_scaled(x: &Tensor, shape: &[usize], k: f32) -> Result<Tensor> {
    if x.shape() == shape && k == 1.0 {
        return Ok(x.clone());
    }
    let mut p = params(shape, x.shape(), k)?;
    let (n_out, count) = (p.n_out as usize, p.n_red as usize);
    let gpu = x.gpu();
    if count <= SMALL_COUNT || (n_out >= MANY_OUTPUTS && p.o[3] > 1) {
        let y = Tensor::empty(gpu, shape, DType::F32)?;
        gpu.dispatch(
            &SUM_TO_SMALL,
            bytemuck::bytes_of(&p),
            &[x.buf()],
            &[y.buf()],
            grid(n_out),
        )?;
        return Ok(y);
    }
    let (chunk, chunks) = split(gpu, count, n_out);
    p.chunk = chunk as u32;
    p.chunks = chunks as u32;
    if chunks > 1 {
        p.k = 1.0;
    }
    let part = Tensor::empty(gpu, &[n_out, chunks], DType::F32)?;
    gpu.dispatch(
        &SUM_TO,
        bytemuck::bytes_of(&p),
        &[x.buf()],
        &[part.buf()],
        groups(n_out * chunks),
    )?;
    if chunks == 1 {
        return part.reshape(shape);
    }
    sum_to_scaled(&part, &[n_out, 1], k)?.reshape(shape)
}

pub fn sum_to(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    sum_to_scaled(x, shape, 1.0)
}

/// k · g broadcast from its shape to `shape` (the backward of `sum_to`).
pub fn expand_scaled(g: &Tensor, shape: &[usize], k: f32) -> Result<Tensor> {
    let mut p = params(g.shape(), shape, k)?;
    let y = Tensor::empty(g.gpu(), shape, DType::F32)?;
    p.n_red = y.numel() as u32;
    g.gpu().dispatch(
        &EXPAND,
        bytemuck::bytes_of(&p),
        &[g.buf()],
        &[y.buf()],
        grid(y.numel()),
    )?;
    Ok(y)
}

/// The shape after reducing `axes` (keepdim) and the number of elements each output sums.
fn reduced_shape(shape: &[usize], axes: &[usize]) -> Result<(Vec<usize>, usize)> {
    let mut out = shape.to_vec();
    let mut count = 1;
    for &a in axes {
        if a >= shape.len() {
            bail!("axis {a} out of range for shape {shape:?}");
        }
        count *= shape[a];
        out[a] = 1;
    }
    Ok((out, count))
}

fn reduce(x: &Var, axes: &[usize], keepdim: bool, mean: bool) -> Result<Var> {
    let (kept, count) = reduced_shape(x.shape(), axes)?;
    let k = if mean { 1.0 / count as f32 } else { 1.0 };
    let y = sum_to_scaled(x.value(), &kept, k)?;
    let shape: Vec<usize> = if keepdim {
        kept.clone()
    } else {
        x.shape()
            .iter()
            .enumerate()
            .filter(|(i, _)| !axes.contains(i))
            .map(|(_, &d)| d)
            .collect()
    };
    let y = y.reshape(&shape)?;
    let in_shape = x.shape().to_vec();
    Ok(Var::from_op(
        if mean { "mean" } else { "sum" },
        y,
        &[x],
        Box::new(move |gy| {
            Ok(vec![Some(expand_scaled(
                &gy.reshape(&kept)?,
                &in_shape,
                k,
            )?)])
        }),
    ))
}

/// Sum over `axes`.
pub fn sum(x: &Var, axes: &[usize], keepdim: bool) -> Result<Var> {
    reduce(x, axes, keepdim, false)
}

/// Mean over `axes`.
pub fn mean(x: &Var, axes: &[usize], keepdim: bool) -> Result<Var> {
    reduce(x, axes, keepdim, true)
}
