//! 2-D convolution (`shaders/conv2d.wgsl`) with PyTorch semantics: x [N, Cin, H, W], weights
//! [Cout, Cin/groups, KH, KW], optional bias [Cout], zero padding, stride, dilation, groups.
//!
//! This module holds the API, the shared geometry and launch parameters; one file per kernel
//! family: `gemm` (implicit GEMMs tiled in workgroup memory), `direct` (grouped convs and
//! narrow dense passes), `window` (windowed dense 3×3), `depthwise` (stride-1 depthwise
//! columns, strips, tiles), and for CPU drivers `cpu` and `depthwise_cpu` (register-blocked,
//! no workgroup memory) and the 8-lane subgroup kernels (`subgroup`, `subgroup_w`,
//! `subgroup_rows`, `winograd_rows`, `pointwise_subgroup`, `depthwise_subgroup`). `choice`
//! picks the kernels per device and shape in one place.
//! `examples/conv_bench.rs` times them. NVIDIA H200 through Vulkan, batch 32, ms per call
//! before (the direct kernels as they were) / after, same session:
//!
//! | Cin→Cout, HW, kernel, stride  | forward        | grad_x         | grad_w         |
//! |-------------------------------|----------------|----------------|----------------|
//! | 16→16, 224, 3×3, 1            | 1.85/0.75 2.5x | 1.61/0.84 1.9x | 4.97/1.58 3.1x |
//! | 16→32, 224, 3×3, 2            | 0.95/0.35 2.7x | 1.53/0.72 2.1x | 2.30/0.81 2.8x |
//! | 32→32, 112, 3×3, 1            | 2.04/0.64 3.2x | 1.48/0.70 2.1x | 3.95/1.00 4.0x |
//! | 64→64, 56, 3×3, 1             | 1.83/0.59 3.1x | 1.44/0.67 2.2x | 3.66/0.80 4.6x |
//! | 64→64, 56, 1×1, 1             | 0.42/0.11 3.7x | 0.24/0.12 2.0x | 0.53/0.14 3.9x |
//! | 3→16, 224, 3×3, 1 (stem)      | 0.42/0.23 1.8x | 0.78/0.59 1.3x | 4.00/0.44 9.1x |
//! | 2→2, 224, 7×7, 1              | 0.63/0.36 1.7x | 0.90/0.39 2.3x | 2.58/0.51 5.1x |
//! | 16 depthwise, 224, 5×5        | 0.79 (same)    | 3.29/1.20 2.7x | 3.81/1.11 3.4x |
//! | 16 depthwise, 224, 7×7 dil. 3 | 1.31 (same)    | 5.96/2.10 2.8x | 5.28/2.00 2.6x |
//!
//! The dense 3×3 layers reach 10–12.5 TFLOP/s in forward and grad_x (about a sixth of FP32
//! peak) and 4.7–9 TFLOP/s in grad_w. On lavapipe (N = 4, 56×56, old/new in one run,
//! noisy: 2 cores shared), forward / grad_x / grad_w: 3×3 32→32 1.5–2.0x / 1.8–1.9x /
//! 3.6–4.0x, 16→16 1.1–1.6x / 1.3–1.4x / 3.0–3.2x, 32→64 stride 2 1.9–2.4x / 2.5–2.6x /
//! 4.2x, 1×1 2.1–3.1x / 1.4–1.8x / 1.8–2.1x; only the 2→2 7×7 convolution is slower there
//! in forward and grad_x (0.36x / 0.6x: a tile gains a CPU nothing with 2 channels) while
//! 1.7x / 2.3x faster on the GPU.
//!
//! The depthwise rows above are the direct kernels. The tiled depthwise kernels that replaced
//! them have been timed on lavapipe only (direct/tiled, N = 4 at 56×56 and N = 16 at 8×8,
//! one run, 2 shared cores): forward 0.96x (5×5), 0.81x (7×7 dil. 3), 0.53x (7×7 dil. 3 on
//! 8×8); grad_x 2.5x, 2.3x, 1.0x; grad_w 2.0x, 2.1x, 3.8x. On a CPU the direct forward's
//! gathers hit the cache anyway; on a GPU the tile turns 25-49 global loads per output into
//! workgroup-memory reads.

mod choice;
pub mod cpu;
pub mod depthwise;
pub mod depthwise_cpu;
pub mod depthwise_subgroup;
mod direct;
mod gemm;
pub mod pointwise_subgroup;
pub mod rows_s2;
pub mod subgroup;
pub mod subgroup_rows;
pub mod subgroup_w;
pub mod window;
pub mod winograd_rows;

use crate::autograd::Var;
use crate::gpu::{groups, Kernel};
use crate::ops::reduce::sum_to;
use crate::ops::SCRATCH;
use crate::tensor::{nchw, DType, Tensor};
use anyhow::{bail, Result};
use choice::{paths, Kernels, Path};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

const SRC: &str = include_str!("../../../shaders/conv2d.wgsl");

/// A size as the u32 a kernel's parameter block holds.
fn u(v: usize) -> u32 {
    v as u32
}

/// `items` split into `wanted` (at least 1, at most `items`) runs of equal length, the last
/// shorter: (items per run, runs).
fn even_chunks(items: usize, wanted: usize) -> (usize, usize) {
    let per = items.div_ceil(wanted.min(items).max(1)).max(1);
    (per, items.div_ceil(per))
}

/// gw (of `w`'s shape) from a grad_w kernel that runs `blocks` workgroups per chunk of the
/// `n` images: the images are split so that about `target` workgroups run in all (no more
/// chunks than SCRATCH holds gw's partial sums for). `run(per_chunk, chunks, out)` records the
/// kernel, writing gw itself into `out` when there is one chunk, else each chunk's partial
/// sums into its row of `out` [chunks, numel], which shaders/chunk_sum.wgsl then adds in
/// chunk order (deterministic: the order is fixed).
fn chunked_grad_w(
    w: &Tensor,
    n: usize,
    blocks: usize,
    target: usize,
    run: impl FnOnce(usize, usize, &Tensor) -> Result<()>,
) -> Result<Tensor> {
    const SUM: Kernel = Kernel {
        name: "chunk_sum",
        source: include_str!("../../../shaders/chunk_sum.wgsl"),
        entry: "sum",
    };
    let (gpu, numel) = (w.gpu(), w.numel());
    let wanted = target.div_ceil(blocks).min(SCRATCH / numel);
    let (per_chunk, chunks) = even_chunks(n, wanted);
    if chunks == 1 {
        let gw = Tensor::empty(gpu, w.shape(), DType::F32)?;
        run(per_chunk, chunks, &gw)?;
        return Ok(gw);
    }
    let partial = Tensor::empty(gpu, &[chunks, numel], DType::F32)?;
    run(per_chunk, chunks, &partial)?;
    let gw = Tensor::empty(gpu, w.shape(), DType::F32)?;
    let params = [u(numel), u(chunks), 0, 0];
    gpu.dispatch(
        &SUM,
        bytemuck::cast_slice(&params),
        &[partial.buf()],
        &[gw.buf()],
        groups(numel.div_ceil(64)),
    )?;
    Ok(gw)
}

/// Empty gw of `w`'s shape and, with `bias`, gb [Cout] for a grad_w kernel to fill.
fn grad_wb_outputs(w: &Tensor, bias: bool) -> Result<(Tensor, Option<Tensor>)> {
    let gw = Tensor::empty(w.gpu(), w.shape(), DType::F32)?;
    let gb = bias
        .then(|| Tensor::empty(w.gpu(), &w.shape()[..1], DType::F32))
        .transpose()?;
    Ok((gw, gb))
}

/// The kernel `entry` of a shader written at run time (the unrolled subgroup kernels): the
/// source `make` writes for `name` is compiled once per process, and leaked with its name so
/// that the pipeline cache can key on them (a handful of variants per process).
fn generated(name: String, entry: &'static str, make: impl FnOnce() -> String) -> Kernel {
    type Sources = HashMap<String, (&'static str, &'static str)>;
    static SOURCES: OnceLock<Mutex<Sources>> = OnceLock::new();
    let mut sources = SOURCES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let (name, source) = *sources.entry(name).or_insert_with_key(|name| {
        let source: &'static str = Box::leak(make().into_boxed_str());
        (Box::leak(name.clone().into_boxed_str()), source)
    });
    Kernel {
        name,
        source,
        entry,
    }
}

const fn kernel(entry: &'static str) -> Kernel {
    Kernel {
        name: "conv2d",
        source: SRC,
        entry,
    }
}

const FORWARD: Kernel = kernel("forward");
const FORWARD_DIRECT: Kernel = kernel("forward_direct");
const GRAD_X: Kernel = kernel("grad_x");
const GRAD_X_DIRECT: Kernel = kernel("grad_x_direct");
const GRAD_W: Kernel = kernel("grad_w");
const GRAD_W_DIRECT: Kernel = kernel("grad_w_direct");
const FORWARD_GEMM: Kernel = kernel("forward_gemm");
const GRAD_X_GEMM: Kernel = kernel("grad_x_gemm");
const GRAD_W_GEMM: Kernel = kernel("grad_w_gemm");
const GRAD_W_REDUCE: Kernel = kernel("grad_w_reduce");
const GRAD_W_REDUCE_FLAT: Kernel = kernel("grad_w_reduce_flat");

/// Channels per thread of the tiled kernels (a `vec4` accumulator).
const TILE: usize = 4;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Params {
    n: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    ho: u32,
    wo: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    dil: u32,
    groups: u32,
    cin_g: u32,
    cout_g: u32,
    tiles: u32,
    total: u32,
    has_bias: u32,
    bm: u32,
    bn: u32,
    gm: u32,
    gn: u32,
    gk: u32,
    kc: u32,
    splits: u32,
    ny: u32,
    nx: u32,
    fy: u32,
    fx: u32,
    qy0: u32,
    qx0: u32,
    ky0: u32,
    kx0: u32,
    nky: u32,
    nkx: u32,
    st: u32,
    dq: u32,
    accumulate: u32,
    wtasks: u32,
    bias_off: u32,
}

/// Stride, zero padding (both sides, both axes), dilation and groups of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams {
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
        }
    }
}

/// Which kernels run a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConvAlgo {
    /// For dense convolutions (groups == 1): the windowed kernels for stride-1 3×3 ones with
    /// at most 16 channels each way, implicit GEMM otherwise (grad_w only with Cout >= 8,
    /// Cin·KH·KW >= 32 and more than 512 weights). For stride-1 depthwise convolutions whose
    /// tiles fit (`ops::conv::depthwise`): columns of 4 outputs or taps per thread read straight
    /// from memory (grad_w in strips or one tap per thread for kernels too wide for its
    /// columns). Direct kernels otherwise. With autotuning on ([`crate::Gpu::set_autotune`]),
    /// each pass of a dense or tiled-depthwise convolution instead runs whichever of these
    /// and the other kernels (direct, GEMM, windowed; strips, tiled) was fastest on first use.
    /// On a CPU driver (lavapipe) the register-blocked kernels of [`cpu`] go first for the
    /// dense passes where they were measured faster there (`choice.rs` says which).
    #[default]
    Auto,
    /// The direct kernels (one output element, or 4 channels of one, per thread).
    Direct,
    /// The tiled implicit-GEMM kernels; only for groups == 1.
    Gemm,
    /// The windowed direct kernels (`ops::conv::window`) for forward and grad_x, and for
    /// grad_w of 3×3 kernels (GEMM for the others); only for groups == 1, stride 1 and
    /// kernels reaching at most 3 pixels.
    Window,
    /// The tiled depthwise kernels (`ops::conv::depthwise`) with one output per thread in every
    /// pass; only for stride-1 depthwise convolutions whose tiles fit.
    Tiled,
}

/// The validated sizes of one convolution.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    ho: usize,
    wo: usize,
}

/// Output length along one axis, or None when the (dilated) kernel does not fit.
fn out_len(len: usize, k: usize, p: Conv2dParams) -> Option<usize> {
    let span = p.dilation * (k - 1) + 1;
    (len + 2 * p.padding)
        .checked_sub(span)
        .map(|v| v / p.stride + 1)
}

fn geometry(x: &Tensor, w: &Tensor, p: Conv2dParams) -> Result<Geometry> {
    for (t, what) in [(x, "conv2d input x"), (w, "conv2d weight w")] {
        if t.dtype() != DType::F32 {
            bail!("{what}: expected an f32 tensor, got {:?}", t.dtype());
        }
    }
    if p.stride == 0 || p.dilation == 0 || p.groups == 0 {
        bail!("conv2d: stride, dilation and groups must be at least 1, got {p:?}");
    }
    let [n, cin, h, wd] = nchw(x, "conv2d input x")?;
    let [cout, cin_g, kh, kw] = nchw(w, "conv2d weight w [Cout, Cin/groups, KH, KW]")?;
    if cin % p.groups != 0 || cout % p.groups != 0 {
        bail!(
            "conv2d: groups {} must divide the input channels of x {:?} and the output channels \
             of w {:?}",
            p.groups,
            x.shape(),
            w.shape()
        );
    }
    if cin_g != cin / p.groups {
        bail!(
            "conv2d: weight w {:?} must have Cin/groups = {}/{} = {} input channels (x is {:?})",
            w.shape(),
            cin,
            p.groups,
            cin / p.groups,
            x.shape()
        );
    }
    if kh == 0 || kw == 0 || cout == 0 {
        bail!("conv2d: weight w {:?} is empty", w.shape());
    }
    let (Some(ho), Some(wo)) = (out_len(h, kh, p), out_len(wd, kw, p)) else {
        bail!(
            "conv2d: kernel {kh}x{kw} with dilation {} does not fit input x {:?} padded by {} \
             (output size would be < 1)",
            p.dilation,
            x.shape(),
            p.padding
        );
    };
    Ok(Geometry {
        n,
        cin,
        h,
        w: wd,
        cout,
        kh,
        kw,
        ho,
        wo,
    })
}

fn params(g: &Geometry, p: Conv2dParams, tiles: usize, total: usize, has_bias: bool) -> Params {
    Params {
        n: u(g.n),
        cin: u(g.cin),
        h: u(g.h),
        w: u(g.w),
        cout: u(g.cout),
        ho: u(g.ho),
        wo: u(g.wo),
        kh: u(g.kh),
        kw: u(g.kw),
        stride: u(p.stride),
        pad: u(p.padding),
        dil: u(p.dilation),
        groups: u(p.groups),
        cin_g: u(g.cin / p.groups),
        cout_g: u(g.cout / p.groups),
        tiles: u(tiles),
        total: u(total),
        has_bias: u32::from(has_bias),
        ..Default::default()
    }
}

/// Runs one pass on the first of `paths`, or with autotuning on ([`crate::Gpu::choose`]) on
/// the fastest of them for this `key` (timing each on first use).
fn run_tuned<T>(
    gpu: &crate::Gpu,
    key: impl FnOnce() -> String,
    paths: &[Path],
    run: impl Fn(Path) -> Result<T>,
) -> Result<T> {
    let names: Vec<String> = paths.iter().map(Path::name).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let i = gpu.choose(key, &names, |i| run(paths[i]).map(drop))?;
    run(paths[i])
}

/// The autotuning key of one pass of a convolution of this shape.
fn tune_key(pass: &str, g: &Geometry, p: Conv2dParams) -> String {
    format!(
        "conv2d {pass} x [{}, {}, {}, {}] w [{}, {}, {}, {}] {p:?}",
        g.n,
        g.cin,
        g.h,
        g.w,
        g.cout,
        g.cin / p.groups,
        g.kh,
        g.kw
    )
}

/// Forward on the chosen (or tuned) kernels.
fn forward_on(
    g: &Geometry,
    p: Conv2dParams,
    ks: &Kernels,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
) -> Result<Tensor> {
    let key = || tune_key("forward", g, p);
    run_tuned(x.gpu(), key, &ks.forward, |path| {
        forward(g, p, path, x, w, b)
    })
}

/// grad_x (plus `acc`) on the chosen (or tuned) kernels.
fn grad_x_on(
    g: &Geometry,
    p: Conv2dParams,
    ks: &Kernels,
    x: &Tensor,
    w: &Tensor,
    gy: &Tensor,
    acc: Option<&Tensor>,
) -> Result<Tensor> {
    check_acc("conv2d", acc, &[g.n, g.cin, g.h, g.w])?;
    let key = || tune_key("grad_x", g, p);
    run_tuned(gy.gpu(), key, &ks.grad_x, |path| {
        grad_x(g, p, x, w, gy, path, acc)
    })
}

/// grad_w (and grad_b) on the chosen (or tuned) kernels.
fn grad_wb_on(
    g: &Geometry,
    p: Conv2dParams,
    ks: &Kernels,
    x: &Tensor,
    w: &Tensor,
    gy: &Tensor,
    bias: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let key = || tune_key(if bias { "grad_w+b" } else { "grad_w" }, g, p);
    run_tuned(gy.gpu(), key, &ks.w, |path| {
        grad_wb(g, p, x, w, gy, path, bias)
    })
}

/// y = conv2d(x, w) + b.
pub fn conv2d_forward(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: Conv2dParams,
) -> Result<Tensor> {
    conv2d_forward_with(x, w, b, p, ConvAlgo::Auto)
}

/// [`conv2d_forward`] on the kernels chosen by `algo`.
pub fn conv2d_forward_with(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: Conv2dParams,
    algo: ConvAlgo,
) -> Result<Tensor> {
    let (g, ks) = prepare(x, w, p, algo)?;
    forward_on(&g, p, &ks, x, w, b)
}

/// The validated sizes of a convolution and the kernels that can run its passes.
fn prepare(x: &Tensor, w: &Tensor, p: Conv2dParams, algo: ConvAlgo) -> Result<(Geometry, Kernels)> {
    let g = geometry(x, w, p)?;
    Ok((g, paths(&g, p, algo, x, w)?))
}

fn forward(
    g: &Geometry,
    p: Conv2dParams,
    path: Path,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
) -> Result<Tensor> {
    check_bias("conv2d", b, g.cout)?;
    match path {
        Path::Depthwise(dw) => dw.forward(x, w, b),
        Path::DepthwiseStrip(dw) => dw.forward_strip(x, w, b),
        Path::DepthwiseColumns(dw) => dw.forward_columns(x, w, b),
        Path::Window(wc) => wc.forward(x, w, b),
        Path::Cpu(v) => cpu::forward(x, w, b, p, v),
        Path::DepthwiseCpu(v) => depthwise_cpu::forward(x, w, b, p, v),
        Path::Subgroup(v) => subgroup::forward(x, w, b, p, v),
        Path::Rows(v) => subgroup_rows::forward(x, w, b, p, v),
        Path::RowsS2(v) => rows_s2::forward(x, w, b, p, v),
        Path::Winograd(v) => winograd_rows::forward(x, w, b, p, v),
        Path::DepthwiseSubgroup(v) => depthwise_subgroup::forward(x, w, b, p, v),
        Path::PointwiseSubgroup(v) => pointwise_subgroup::forward(x, w, b, p, v),
        Path::Gemm | Path::GemmSplit(_) => gemm::forward(g, p, x, w, b),
        Path::Direct
        | Path::CpuW(_)
        | Path::SubgroupW(_)
        | Path::RowsW(_)
        | Path::RowsS2W(_)
        | Path::PointwiseSubgroupW(_)
        | Path::DepthwiseSubgroupW(..) => direct::forward(g, p, x, w, b),
    }
}

/// Checks the optional bias of a convolution with `cout` output channels (`who` names the
/// caller in the error).
fn check_bias(who: &str, b: Option<&Tensor>, cout: usize) -> Result<()> {
    match b {
        Some(b) if b.dtype() != DType::F32 || b.shape() != [cout] => bail!(
            "{who} bias b: expected an f32 tensor of shape [{cout}] (Cout of w), got {:?} {:?}",
            b.dtype(),
            b.shape()
        ),
        _ => Ok(()),
    }
}

/// Checks the gradient that a grad_x kernel adds in its store: an f32 tensor of x's shape.
fn check_acc(who: &str, acc: Option<&Tensor>, x_shape: &[usize]) -> Result<()> {
    match acc {
        Some(a) if a.dtype() != DType::F32 || a.shape() != x_shape => bail!(
            "{who} grad_x: the gradient to accumulate must be an f32 tensor of x's shape {x_shape:?}, \
             got {:?} {:?}",
            a.dtype(),
            a.shape()
        ),
        _ => Ok(()),
    }
}

fn check_gy(g: &Geometry, gy: &Tensor) -> Result<()> {
    let want = [g.n, g.cout, g.ho, g.wo];
    if gy.dtype() != DType::F32 || gy.shape() != want {
        bail!(
            "conv2d output gradient gy: expected an f32 tensor of shape {want:?}, got {:?} {:?}",
            gy.dtype(),
            gy.shape()
        );
    }
    Ok(())
}

/// gx, plus `acc` when given (a gradient of x from its other consumers, summed in the
/// kernels' last store instead of by one more pass over both).
#[allow(clippy::too_many_arguments)]
fn grad_x(
    g: &Geometry,
    p: Conv2dParams,
    x: &Tensor,
    w: &Tensor,
    gy: &Tensor,
    path: Path,
    acc: Option<&Tensor>,
) -> Result<Tensor> {
    match path {
        Path::Depthwise(dw) => dw.grad_x(w, gy, acc),
        Path::DepthwiseStrip(dw) => dw.grad_x_strip(w, gy, acc),
        Path::DepthwiseColumns(dw) => dw.grad_x_columns(w, gy, acc),
        Path::Window(wc) => wc.grad_x(w, gy, acc),
        Path::Cpu(v) => cpu::grad_x(x, w, gy, acc, p, v),
        Path::DepthwiseCpu(v) => depthwise_cpu::grad_x(x, w, gy, acc, p, v),
        Path::Subgroup(v) => subgroup::grad_x(x, w, gy, acc, p, v),
        Path::Rows(v) => subgroup_rows::grad_x(x, w, gy, acc, p, v),
        Path::RowsS2(v) => rows_s2::grad_x(x, w, gy, acc, p, v),
        Path::Winograd(v) => winograd_rows::grad_x(x, w, gy, acc, p, v),
        Path::DepthwiseSubgroup(v) => depthwise_subgroup::grad_x(x, w, gy, acc, p, v),
        Path::PointwiseSubgroup(v) => pointwise_subgroup::grad_x(x, w, gy, acc, p, v),
        Path::Gemm | Path::GemmSplit(_) => gemm::grad_x(g, p, w, gy, acc),
        Path::Direct
        | Path::CpuW(_)
        | Path::SubgroupW(_)
        | Path::RowsW(_)
        | Path::RowsS2W(_)
        | Path::PointwiseSubgroupW(_)
        | Path::DepthwiseSubgroupW(..) => direct::grad_x(g, p, w, gy, acc),
    }
}

/// gw, and with `bias` gb: from the same kernels where they can (the GEMM's extra column of
/// ones, the direct kernels' and the depthwise tiles' sums of gy), else by a separate sum of
/// gy.
fn grad_wb(
    g: &Geometry,
    p: Conv2dParams,
    x: &Tensor,
    w: &Tensor,
    gy: &Tensor,
    path: Path,
    bias: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    match path {
        Path::Depthwise(dw) => dw.grad_wb(x, gy, bias),
        Path::DepthwiseStrip(dw) => dw.grad_wb_strip(x, gy, bias),
        Path::DepthwiseColumns(dw) => dw.grad_wb_columns(x, gy, bias),
        Path::Window(wc) => Ok((wc.grad_w(x, gy)?, bias.then(|| grad_b(g, gy)).transpose()?)),
        Path::Gemm => gemm::grad_wb(g, p, x, gy, bias, None),
        Path::GemmSplit(spread) => gemm::grad_wb(g, p, x, gy, bias, Some(spread)),
        Path::Direct
        | Path::Cpu(_)
        | Path::Subgroup(_)
        | Path::Rows(_)
        | Path::RowsS2(_)
        | Path::Winograd(_)
        | Path::DepthwiseSubgroup(_)
        | Path::PointwiseSubgroup(_) => direct::grad_wb(g, p, x, gy, bias),
        Path::CpuW(v) => cpu::grad_w(x, w, gy, bias, p, v),
        Path::DepthwiseSubgroupW(v, target) => {
            depthwise_subgroup::grad_wb(x, w, gy, bias, p, v, target)
        }
        Path::PointwiseSubgroupW(v) => pointwise_subgroup::grad_wb(x, w, gy, bias, p, v),
        Path::SubgroupW(v) => Ok((
            subgroup_w::grad_w(x, w, gy, p, v)?,
            bias.then(|| grad_b(g, gy)).transpose()?,
        )),
        Path::RowsW(v) => Ok((
            subgroup_rows::grad_w(x, w, gy, p, v)?,
            bias.then(|| grad_b(g, gy)).transpose()?,
        )),
        Path::RowsS2W(v) => Ok((
            rows_s2::grad_w(x, w, gy, p, v)?,
            bias.then(|| grad_b(g, gy)).transpose()?,
        )),
        Path::DepthwiseCpu(v) => depthwise_cpu::grad_wb(x, w, gy, bias, p, v),
    }
}

/// Sums the `pr.splits` partial results of a split grad_w (`pr.total` each) into `out` (gw,
/// and gb for the GEMM's bias column): a tree per 16 outputs on a GPU, where long chains of
/// dependent loads stall; one thread per output on a CPU driver, where barriers cost most.
fn reduce_splits(pr: &Params, partial: &Tensor, out: [&Tensor; 2]) -> Result<()> {
    let gpu = partial.gpu();
    let total = pr.total as usize;
    let (kernel, launch) = match gpu.cpu_threads() {
        Some(_) => (&GRAD_W_REDUCE_FLAT, groups(total.div_ceil(64))),
        None => (&GRAD_W_REDUCE, groups(total.div_ceil(16))),
    };
    gpu.dispatch(
        kernel,
        bytemuck::bytes_of(pr),
        &[partial.buf()],
        &[out[0].buf(), out[1].buf()],
        launch,
    )
}

fn grad_b(g: &Geometry, gy: &Tensor) -> Result<Tensor> {
    sum_to(gy, &[1, g.cout, 1, 1])?.reshape(&[g.cout])
}

/// Gradients (gx, gw, gb) of y = conv2d(x, w) + b given gy = d loss / d y; gb only when the
/// convolution has a bias.
pub fn conv2d_backward(
    x: &Tensor,
    w: &Tensor,
    has_bias: bool,
    gy: &Tensor,
    p: Conv2dParams,
) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    conv2d_backward_with(x, w, has_bias, gy, p, ConvAlgo::Auto)
}

/// [`conv2d_backward`] on the kernels chosen by `algo`.
pub fn conv2d_backward_with(
    x: &Tensor,
    w: &Tensor,
    has_bias: bool,
    gy: &Tensor,
    p: Conv2dParams,
    algo: ConvAlgo,
) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    let (g, ks) = prepare(x, w, p, algo)?;
    check_gy(&g, gy)?;
    let (gw, gb) = grad_wb_on(&g, p, &ks, x, w, gy, has_bias)?;
    Ok((grad_x_on(&g, p, &ks, x, w, gy, None)?, gw, gb))
}

/// grad_x alone of y = conv2d(x, w) + b, plus `acc` (of x's shape) when given, on the
/// kernels chosen by `algo` (x gives the shape).
pub fn conv2d_grad_x_with(
    x: &Tensor,
    w: &Tensor,
    gy: &Tensor,
    acc: Option<&Tensor>,
    p: Conv2dParams,
    algo: ConvAlgo,
) -> Result<Tensor> {
    let (g, ks) = prepare(x, w, p, algo)?;
    check_gy(&g, gy)?;
    grad_x_on(&g, p, &ks, x, w, gy, acc)
}

/// grad_w alone of y = conv2d(x, w) + b, on the kernels chosen by `algo`.
pub fn conv2d_grad_w_with(
    x: &Tensor,
    w: &Tensor,
    gy: &Tensor,
    p: Conv2dParams,
    algo: ConvAlgo,
) -> Result<Tensor> {
    let (g, ks) = prepare(x, w, p, algo)?;
    check_gy(&g, gy)?;
    Ok(grad_wb_on(&g, p, &ks, x, w, gy, false)?.0)
}

/// Autograd convolution; the backward computes only the gradients its parents need (no gx
/// for an input image), and sums x's gradient from other consumers into gx.
pub fn conv2d(x: &Var, w: &Var, b: Option<&Var>, p: Conv2dParams) -> Result<Var> {
    let (g, ks) = prepare(x.value(), w.value(), p, ConvAlgo::Auto)?;
    let y = forward_on(&g, p, &ks, x.value(), w.value(), b.map(Var::value))?;
    let (tx, tw) = (x.value().clone(), w.value().clone());
    let (need_x, need_w) = (x.requires_grad(), w.requires_grad());
    let need_b = b.map(Var::requires_grad);
    let mut parents = vec![x, w];
    parents.extend(b);
    Ok(Var::from_op_accumulating(
        "conv2d",
        y,
        &parents,
        Box::new(move |gy, acc| {
            check_gy(&g, gy)?;
            // x's gradient from its other consumers (the shortcut, the LSK product) is added
            // in grad_x's store.
            let gx = need_x
                .then(|| grad_x_on(&g, p, &ks, &tx, &tw, gy, acc[0].take().as_ref()))
                .transpose()?;
            let want_b = need_b == Some(true);
            let (gw, gb) = if need_w {
                let (gw, gb) = grad_wb_on(&g, p, &ks, &tx, &tw, gy, want_b)?;
                (Some(gw), gb)
            } else {
                (None, want_b.then(|| grad_b(&g, gy)).transpose()?)
            };
            let mut out = vec![gx, gw];
            if need_b.is_some() {
                out.push(gb);
            }
            Ok(out)
        }),
    ))
}
