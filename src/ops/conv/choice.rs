//! Which kernels run each pass of a convolution, per device and shape, in one place: the
//! defaults measured on GPUs and on a CPU driver, and the other kernels that fit as
//! autotuning candidates.

use super::depthwise::Depthwise;
use super::depthwise_cpu::DwVariant;
use super::window::WindowConv;
use super::{
    cpu, depthwise_subgroup, pointwise_subgroup, rows_s2, subgroup, subgroup_rows, subgroup_w,
    winograd_rows, Conv2dParams, ConvAlgo, Geometry,
};
use crate::tensor::Tensor;
use anyhow::{bail, Result};

/// grad_w's GEMM needs at least this many rows Cout and columns Cin·KH·KW under
/// ConvAlgo::Auto, where its tile is mostly idle otherwise. On the H200 the direct kernels ran
/// the 2→2 7×7 layer in 0.51 ms against 0.96 ms and the 3→16 3×3 stem (27 columns) in the
/// same 0.44 ms; from 16→16 3×3 (1.6 against 2.1 ms) on the GEMM wins.
const GRAD_W_GEMM_MIN: (usize, usize) = (8, 32);
/// ... and more than this many weights: on the H100 (run 3) the direct kernel took 0.28 ms
/// against the GEMM's 0.57 for the LSK squeeze 32→16 1×1 on 64 maps of 112×112 (512
/// weights), the GEMM 0.19 against 0.28 for 64→32 on 56×56 (2048).
const GRAD_W_GEMM_MIN_WEIGHTS: usize = 512;
/// Dense stride-1 3×3 convolutions with at most this many channels each way run on the
/// windowed kernels under ConvAlgo::Auto: on the H100 (run 3) forward, grad_x and grad_w of
/// 16→16 on 64 maps of 224×224 took 1.14, 1.14 and 1.95 ms against the GEMM's 1.42, 1.59
/// and 3.21 (2.9 against 3.1 and 1.2 against 1.3 for 32→32 on 112×112, so wider layers keep
/// the GEMM).
const WINDOW_MAX_CHANNELS: usize = 16;
/// Dense 3×3 passes of fewer FLOPs run the compact subgroup variants on a CPU driver (see
/// `cpu_defaults`).
const COMPACT_FLOP: usize = 50_000_000;

/// The kernels that run one pass of a convolution.
#[derive(Clone, Copy, Debug)]
pub(super) enum Path {
    Direct,
    Gemm,
    /// grad_w's GEMM with fewer or more split-K workgroups than the device's default.
    GemmSplit(Spread),
    /// The tiled depthwise kernels, one output per thread.
    Depthwise(Depthwise),
    /// The depthwise strip kernels: 4 outputs (forward, grad_x) or 4 taps (grad_w) per
    /// thread.
    DepthwiseStrip(Depthwise),
    /// The depthwise column kernels: 4 outputs or taps down a column per thread, read
    /// straight from memory.
    DepthwiseColumns(Depthwise),
    Window(WindowConv),
    /// The CPU-class register-blocked kernels (`cpu`) for forward or grad_x.
    Cpu(cpu::Variant),
    /// The CPU-class register-blocked grad_w (and grad_b).
    CpuW(cpu::WVariant),
    /// The CPU-class depthwise kernels (`depthwise_cpu`), any pass.
    DepthwiseCpu(DwVariant),
    /// The dense 3×3 kernels that share loads across an 8-lane subgroup (`subgroup`).
    Subgroup(subgroup::FwdVariant),
    /// The dense 3×3 grad_w that shares loads across an 8-lane subgroup (`subgroup_w`).
    SubgroupW(subgroup_w::WVariant),
    /// The dense stride-1 3×3 kernels with a map's row per subgroup (`subgroup_rows`),
    /// forward and grad_x.
    Rows(subgroup_rows::RowsVariant),
    /// Their grad_w.
    RowsW(subgroup_rows::RowsWVariant),
    /// The dense stride-2 3×3 forward and grad_x with a map's row per subgroup (`rows_s2`).
    RowsS2(rows_s2::S2Variant),
    /// Its grad_w.
    RowsS2W(rows_s2::S2WVariant),
    /// The dense stride-1 3×3 forward and grad_x by the row Winograd transform
    /// (`winograd_rows`).
    Winograd(subgroup_rows::RowsVariant),
    /// The depthwise kernels that share loads across an 8-lane subgroup
    /// (`depthwise_subgroup`), forward and grad_x.
    DepthwiseSubgroup(depthwise_subgroup::DwSgVariant),
    /// The 1×1 kernels that share weights across an 8-lane subgroup (`pointwise_subgroup`),
    /// forward and grad_x.
    PointwiseSubgroup(pointwise_subgroup::PwVariant),
    /// The 1×1 grad_w that shares loads across an 8-lane subgroup (`pointwise_subgroup`).
    PointwiseSubgroupW(pointwise_subgroup::PwWVariant),
    /// The depthwise grad_w (and grad_b) that shares loads across an 8-lane subgroup
    /// (`depthwise_subgroup`), over so many workgroups in all.
    DepthwiseSubgroupW(depthwise_subgroup::DwSgVariant, usize),
}

/// Autotuning's other split-K sizes for grad_w: a quarter of the default target (longer
/// splits, less scratch to merge) or four times it (more parallel work for a big GPU).
#[derive(Clone, Copy, Debug)]
pub(super) enum Spread {
    Fewer,
    More,
}

impl Spread {
    pub(super) fn target(self, default: usize) -> usize {
        match self {
            Spread::Fewer => (default / 4).max(1),
            Spread::More => default * 4,
        }
    }
}

/// The kernels that can run each pass of a convolution, the default first. With autotuning
/// on ([`crate::Gpu::set_autotune`]) each pass runs the fastest of its candidates on this GPU.
#[derive(Clone, Debug)]
pub(super) struct Kernels {
    pub(super) forward: Vec<Path>,
    pub(super) grad_x: Vec<Path>,
    pub(super) w: Vec<Path>,
}

impl Kernels {
    /// The same candidates `x` for forward and grad_x, `w` for grad_w.
    fn new(x: Vec<Path>, w: Vec<Path>) -> Kernels {
        Kernels {
            forward: x.clone(),
            grad_x: x,
            w,
        }
    }
}

/// The kernels for a convolution of `x` by `w` (of sizes `g`) with `p`, chosen by `algo`; for
/// ConvAlgo::Auto by the device and the shape.
pub(super) fn paths(
    g: &Geometry,
    p: Conv2dParams,
    algo: ConvAlgo,
    x: &Tensor,
    w: &Tensor,
) -> Result<Kernels> {
    let dense = p.groups == 1;
    let one = |path: Path| Kernels::new(vec![path], vec![path]);
    match algo {
        ConvAlgo::Auto => {
            let mut ks = gpu_defaults(g, p)?;
            if let Some(threads) = x.gpu().cpu_threads() {
                cpu_defaults(g, p, x, w, threads, &mut ks);
            }
            Ok(ks)
        }
        ConvAlgo::Direct => Ok(one(Path::Direct)),
        ConvAlgo::Tiled => match depthwise(g, p) {
            Some(dw) => Ok(one(Path::Depthwise(dw))),
            None => bail!(
                "conv2d: the tiled depthwise kernels need groups == Cin == Cout, stride 1 \
                     and a kernel whose tiles fit, got {p:?} with Cin {}, Cout {} and a {}x{} \
                     kernel",
                g.cin,
                g.cout,
                g.kh,
                g.kw
            ),
        },
        ConvAlgo::Gemm if dense => Ok(one(Path::Gemm)),
        ConvAlgo::Gemm => bail!("conv2d: the GEMM kernels need groups == 1, got {p:?}"),
        ConvAlgo::Window => match window(g, p) {
            Some(wc) => Ok(Kernels::new(
                vec![Path::Window(wc)],
                vec![if wc.has_grad_w() {
                    Path::Window(wc)
                } else {
                    Path::Gemm
                }],
            )),
            None => bail!(
                "conv2d: the windowed kernels need groups == 1, stride 1 and a kernel \
                 reaching at most 3 pixels, got {p:?} with a {}x{} kernel",
                g.kh,
                g.kw
            ),
        },
    }
}

/// The defaults measured on GPUs (H100, H200), with every other kernel that fits as an
/// autotuning candidate.
fn gpu_defaults(g: &Geometry, p: Conv2dParams) -> Result<Kernels> {
    let dense = p.groups == 1;
    if let Some(dw) = depthwise(g, p) {
        // On the H100 (run 3) the column kernels beat every other in every pass of the
        // model's depthwise layers: 7×7 dilation 3 on 64 maps of 16×224×224 took 1.03,
        // 1.04 and 1.44 ms (forward, grad_x, grad_w) against 1.52, 1.67 and 1.94 in
        // strips (workgroup memory), 2.54, 4.13 and 5.64 direct and 2.62, 2.66 and
        // 3.71 tiled. The others stay candidates for autotuning on other GPUs.
        let mut x = vec![
            Path::DepthwiseColumns(dw),
            Path::Direct,
            Path::Depthwise(dw),
        ];
        if dw.has_strips() {
            x.insert(1, Path::DepthwiseStrip(dw));
        }
        let mut w = vec![Path::Depthwise(dw), Path::Direct];
        if dw.has_grad_w_strips() {
            w.insert(0, Path::DepthwiseStrip(dw));
        }
        if dw.has_grad_w_columns() {
            w.insert(0, Path::DepthwiseColumns(dw));
        }
        return Ok(Kernels::new(x, w));
    }
    if !dense {
        return Ok(Kernels::new(vec![Path::Direct], vec![Path::Direct]));
    }
    let wc = window(g, p);
    let narrow = g.kh == 3
        && g.kw == 3
        && g.cin.max(g.cout) <= WINDOW_MAX_CHANNELS
        && wc.is_some_and(|wc| wc.has_grad_w());
    let gemm_w = g.cout >= GRAD_W_GEMM_MIN.0
        && g.cin * g.kh * g.kw >= GRAD_W_GEMM_MIN.1
        && g.cout * g.cin * g.kh * g.kw > GRAD_W_GEMM_MIN_WEIGHTS;
    let mut x = vec![Path::Gemm, Path::Direct];
    let mut w = if gemm_w {
        vec![Path::Gemm, Path::Direct]
    } else {
        vec![Path::Direct, Path::Gemm]
    };
    w.extend([Spread::Fewer, Spread::More].map(Path::GemmSplit));
    if let Some(wc) = wc {
        let at = if narrow { 0 } else { x.len() };
        x.insert(at, Path::Window(wc));
        if wc.has_grad_w() {
            w.insert(if narrow { 0 } else { w.len() }, Path::Window(wc));
        }
    }
    Ok(Kernels::new(x, w))
}

/// On a CPU driver, the register-blocked kernels of `cpu` go first where they beat the GPU
/// defaults (lavapipe, 2 cores, batch 32, one run; the table is in `cpu`'s module doc):
/// - forward: the LSK module's 1×1 convs (1.05-3.4x) and its 7×7 squeeze (2.7-3.2x); the wide
///   3×3 layers keep the GEMM and windowed kernels (the new ones ran at 0.7-0.9x);
/// - grad_x: every dense layer (1.1-1.4x on wide 3×3, 1.3-5.3x on the others);
/// - grad_w: 3×3 with at most 16 channels (1.9x), the stem (2.1-4.2x), 1×1 on maps of 16×16
///   and more (2.3-2.9x; 0.7x on 8×8) and the squeeze (2.3-5.2x).
///
/// Depthwise layers (`depthwise_cpu`, lavapipe, batch 32, two runs of the lab): grad_w of
/// the 5×5 ones runs p2q2 (16 maps of 32², 32 of 16², 64 of 8²: 2.8x, 5.3x, 7.0x and 1.7x,
/// 3.6x, 11x over the column kernels) and of the 7×7 dilation-3 ones on maps of at most 8×8
/// p4q2 (2.7x, 2.1x; 1.07x/0.88x on 32², 1.5x/0.99x on 16², so those keep the columns).
/// Forward and grad_x keep the column kernels: the new ones ran at 0.4-1.4x with no block size
/// ahead in both runs.
///
/// The GPU defaults stay autotuning candidates behind them.
fn cpu_defaults(
    g: &Geometry,
    p: Conv2dParams,
    x: &Tensor,
    w: &Tensor,
    threads: usize,
    ks: &mut Kernels,
) {
    if p.groups != 1 {
        // Forward and grad_x share loads across a subgroup where the device has subgroups
        // of 8: 1.9-6.3x (5×5) and 1.1-9.1x (7×7 dilation 3) over the column kernels on the
        // model's layers (table in `depthwise_subgroup`'s doc). A tile as tall as the map
        // (up to 32 rows) loads each row's reach the fewest times: on a quiet machine p32
        // ran 1.24-1.38x faster than p16 on 32² maps, p16 1.0-1.4x faster than p8 on 16²
        // and p32 on them, p8 fastest on 8², in all three passes. A lane holds as many
        // columns as the width allows (`DwSgVariant::for_width`): 2.0-2.7x on 32² maps,
        // 1.2-1.8x on 16² (table in `depthwise_subgroup`'s doc).
        let sg = depthwise_subgroup::DwSgVariant::for_width(
            match g.h {
                32.. => 32,
                16.. => 16,
                _ => 8,
            },
            g.w,
        );
        if depthwise_subgroup::applies(x, w, p) {
            ks.forward.insert(0, Path::DepthwiseSubgroup(sg));
            ks.grad_x.insert(0, Path::DepthwiseSubgroup(sg));
        }
        let dw = |ks, dil, p, q| DwVariant { ks, dil, p, q };
        let v = if g.kh == 5 {
            Some(dw(5, 1, 2, 2))
        } else if g.h * g.w <= 64 {
            Some(dw(7, 3, 4, 2))
        } else {
            None
        };
        if let Some(v) = v.filter(|v| v.applies(x, w, p)) {
            ks.w.insert(0, Path::DepthwiseCpu(v));
        }
        // grad_w on subgroups, the same tiles: 2.5-4.5x (5×5) and 3.4-8.0x (7×7 dilation 3)
        // over the kernels above with 8 rows per tile (table in `depthwise_subgroup`'s doc),
        // and 1.1-1.7x more with the map's height.
        if depthwise_subgroup::applies(x, w, p) {
            ks.w.insert(0, Path::DepthwiseSubgroupW(sg, 4 * threads));
        }
        return;
    }
    let quad = |k, rows| cpu::Variant {
        k,
        p: rows,
        wg: 8,
        quad: true,
    };
    let conv = |k, rows| cpu::Variant {
        k,
        p: rows,
        wg: 8,
        quad: false,
    };
    // grad_w's workgroups: a few per thread, as the split-K kernels.
    let wv = |ko, t| cpu::WVariant {
        ko,
        t,
        wg: 8,
        target: 16 * threads,
    };
    let pointwise = g.kh == 1 && g.kw == 1;
    let squeeze = g.kh == 7 && g.kw == 7 && g.cin.max(g.cout) <= 4;
    let stem = g.cin <= 3;
    let three = g.kh == 3 && g.kw == 3;
    let pointwise_quad = Some(quad(8, 2)).filter(|v| pointwise && v.applies(x, w, p));
    let forward = pointwise_quad.or(squeeze.then(|| conv(4, 8)));
    let grad_x = if pointwise {
        pointwise_quad.or(Some(conv(8, 8)))
    } else if squeeze || stem {
        Some(conv(4, 8))
    } else if three {
        Some(if g.cin <= 16 { conv(16, 4) } else { conv(8, 8) })
    } else {
        None
    };
    let narrow3 = three && p.stride == 1 && g.cin.max(g.cout) <= 16;
    let grad_w = if narrow3 || (pointwise && g.ho * g.wo >= 256) {
        Some(wv(8, 8))
    } else if squeeze {
        Some(wv(4, 8))
    } else if stem {
        Some(wv(16, 4))
    } else {
        None
    };
    for (list, v) in [(&mut ks.forward, forward), (&mut ks.grad_x, grad_x)] {
        if let Some(v) = v {
            list.insert(0, Path::Cpu(v));
        }
    }
    if let Some(v) = grad_w {
        ks.w.insert(0, Path::CpuW(v));
    }
    // 1×1 forward and grad_x sharing weights across a subgroup: 1.8-7.1x (k16p8) over the
    // kernels above on the LSK module's 1×1 layers, k8p8 (2.6-5.2x) where 8 channels come
    // out (table in `pointwise_subgroup`'s doc); four pixels per lane where the plane
    // allows, the runs shortened to keep the sums as many.
    if pointwise_subgroup::applies(x, w, p) {
        let c = pointwise_subgroup::pixels_per_lane(g.h * g.w);
        let pw = |out: usize| pointwise_subgroup::PwVariant {
            k: if out <= 8 { 8 } else { 16 },
            p: if c == 4 { 2 } else { 8 },
            c,
        };
        ks.forward.insert(0, Path::PointwiseSubgroup(pw(g.cout)));
        ks.grad_x.insert(0, Path::PointwiseSubgroup(pw(g.cin)));
        // grad_w: ko16ci8 at 1.9-6.8x, ko8ci8 (2.9x) where Cout is 8.
        ks.w.insert(
            0,
            Path::PointwiseSubgroupW(pointwise_subgroup::PwWVariant {
                ko: if g.cout <= 8 { 8 } else { 16 },
                ci: 8,
                c,
                target: 4 * threads,
            }),
        );
    }
    // Few-channel dense "same" convolutions (the LSK squeeze, 2→2 7×7) on the depthwise
    // subgroup kernels: 7.3-16x over the kernels above (lavapipe, batch 32, fastest of 5, one
    // run of the lab: p16 11.2x/16.2x at 32², 11.5x/12.1x at 16², p8 7.3x/7.4x at 8²), and
    // grad_w p8 8.4x, 13.9x, 14.0x.
    if depthwise_subgroup::applies(x, w, p) {
        let v = depthwise_subgroup::DwSgVariant::for_width(if g.h >= 16 { 16 } else { 8 }, g.w);
        ks.forward.insert(0, Path::DepthwiseSubgroup(v));
        ks.grad_x.insert(0, Path::DepthwiseSubgroup(v));
        let v8 = depthwise_subgroup::DwSgVariant::for_width(8, g.w);
        ks.w.insert(0, Path::DepthwiseSubgroupW(v8, 4 * threads));
    }
    // Dense 3×3 forward and stride-1 grad_x sharing loads across a subgroup where the
    // device has subgroups of 8: 4.7-8.5x (forward) and 8.3-10.5x (grad_x) over the kernels
    // above on the model's 3×3 layers (lavapipe, batch 32, one run of
    // examples/conv_subgroup_lab.rs; table in `subgroup`'s doc).
    // On a quiet machine (three runs of the lab, fastest of 5-7) k8p16 ran 1.15-1.26x faster
    // than k8p8 on maps of 16 and 32 rows in 7 of 8 comparisons, and 0.6x on 8×8.
    // LLVM compiles each of these unrolled kernels on its first use (lavapipe caches it on
    // disk for later runs): with a cold cache, the first call of sgw ko8ci8 took 15 s, rows-w
    // ko8ci8 14 s, rows k8p16 6-7 s, against 0.3-1.5 s for the compact variants below (one
    // run of examples/conv_subgroup_lab.rs). A pass of under COMPACT_FLOP (the CPU schedule's
    // 16×16 batch-8 layers: 19 MFLOP, about 1 ms) would repay those seconds only after
    // thousands of steps, so it runs the compact variants; larger passes the fastest.
    let compact = 2 * g.n * g.cout * g.cin * 9 * g.ho * g.wo < COMPACT_FLOP;
    let k = |k, rows| subgroup::FwdVariant { k, p: rows };
    let sg = match (p.stride, g.h) {
        _ if compact => k(8, 4),
        (1, 16..) => k(8, 16),
        (1, _) => k(8, 8),
        _ => k(16, 4),
    };
    if subgroup::applies(x, w, p) {
        ks.forward.insert(0, Path::Subgroup(sg));
    }
    if subgroup::grad_x_applies(x, w, p) {
        ks.grad_x.insert(0, Path::Subgroup(sg));
    }
    // grad_w of the same layers: 4.6-12.5x (ko8ci8) and 7.6-8.5x (ko16ci2 at stride 2) over
    // the kernels above (table in `subgroup_w`'s doc).
    let (ko, ci) = match p.stride {
        _ if compact => (4, 4),
        1 => (8, 8),
        _ => (16, 2),
    };
    if subgroup_w::applies(x, w, p) {
        ks.w.insert(
            0,
            Path::SubgroupW(subgroup_w::WVariant {
                ko,
                ci,
                target: 4 * threads,
            }),
        );
    }
    // Stride 1 on maps a multiple of 8 columns wide: a row's tile per subgroup, one load per
    // tile's row (lavapipe, batch 32, one run of examples/conv_subgroup_lab.rs, fastest of 8,
    // over the kernels above): forward 1.2x (32→32 16²), 1.6x (16→16 32²), 1.1x (64→64 8²);
    // grad_x 1.2x, 2.4x, 1.2x; grad_w 2.5x, 3.0x, 1.4x (ko8ci8, the best of the four there);
    // on 16→16 64² (two tiles a row; fastest of 4) 1.6x, 1.5x, 2.5x. k8p16
    // was fastest or within 5% of it on maps of 16 and 32 rows, k8p8 on 8×8. grad_x at
    // stride 2 (gy spread onto x's grid): in the 32×32 batch-16 plain step's profile the two
    // layers took 57 and 43 ms on the register-blocked kernel, 6-7 ms each on these.
    // A workgroup takes as many subgroup rows as the map has, up to 16 (4 when compact).
    let rows = subgroup_rows::RowsVariant {
        k: 8,
        p: subgroup_rows::subgroup_rows(g.h, g.w)
            .next_power_of_two()
            .clamp(2, if compact { 4 } else { 16 }),
    };
    if subgroup_rows::applies(x, w, p) {
        ks.forward.insert(0, Path::Rows(rows));
        // ko16ci4 over ko8ci8 (batch 32, CPU ms medians side by side, two runs of
        // examples/conv_rows_ab.rs): 16→16 32² 10.1, 10.0 against 10.4, 10.9; 32→32 16²
        // 10.5, 10.4 against 11.1 (one run); 64→64 8² 11.5, 13.5 against 11.8, 14.5 (fewer
        // x rows to shift into taps per gy row loaded).
        let (ko, ci) = if compact { (4, 4) } else { (16, 4) };
        let wv = subgroup_rows::RowsWVariant {
            ko,
            ci,
            target: 4 * threads,
        };
        ks.w.insert(0, Path::RowsW(wv));
    }
    if subgroup_rows::grad_x_applies(x, w, p) {
        ks.grad_x.insert(0, Path::Rows(rows));
    }
    // Forward and grad_x by the row Winograd transform on maps 4, 8, 16 or a multiple of 32
    // wide, past the compact passes (its kernels take 0.5-3 s to compile). Over the kernels
    // above (lavapipe, batch 32, CPU time side by side, fastest of 9-15 rounds,
    // examples/conv_rows_ab.rs): forward 1.4x (16→16 32², k16p4), 1.2x (32→32 16²), 1.3x
    // (64→64 8², k16p2); grad_x 1.5x, 1.9x, 1.3x; in the plain 32×32 batch-16 step's profile
    // the dense 3×3 forward and grad_x took 257-277 ms against 387. k16p8 was faster on some
    // maps, slower on others, and compiles in about 10 s: the block stays at 4 rows. On maps
    // of 1 or 2 subgroup rows (8×8 and smaller) a workgroup takes whole images, 4 subgroup
    // rows of them: 64→64 8² forward, CPU ms medians of 11 rounds in two runs, 9.1, 9.6 with
    // one image (k16p2) and 8.5, 8.7 with two (k16p4), against 12.4, 12.6 for session 11's
    // kernel (k16p2: halo rows loaded, weights from the buffer).
    let wino = subgroup_rows::RowsVariant {
        k: 16,
        p: match winograd_rows::subgroup_rows(g.h, g.w) {
            ..=2 => 4,
            rows => rows.next_power_of_two().clamp(2, 4),
        },
    };
    if !compact && winograd_rows::applies(x, w, p) {
        ks.forward.insert(0, Path::Winograd(wino));
    }
    if !compact && winograd_rows::grad_x_applies(x, w, p) {
        ks.grad_x.insert(0, Path::Winograd(wino));
    }
    // Stride 2 on maps 16 or 32 wide: a row of x per subgroup, one load; forward 1.9x,
    // grad_w 1.7x, grad_x about 1.8x over the kernels above in the plain step's profile
    // (`rows_s2`'s doc).
    if rows_s2::applies(x, w, p) {
        let (k, (ko, ci)) = if compact { (8, (4, 4)) } else { (16, (16, 4)) };
        ks.forward
            .insert(0, Path::RowsS2(rows_s2::S2Variant { k, p: 4 }));
        ks.grad_x
            .insert(0, Path::RowsS2(rows_s2::grad_x_variant(g.w)));
        let target = 4 * threads;
        ks.w.insert(0, Path::RowsS2W(rows_s2::S2WVariant { ko, ci, target }));
    }
}

/// The tiled depthwise kernels' plan for a stride-1 depthwise convolution, where they fit.
fn depthwise(g: &Geometry, p: Conv2dParams) -> Option<Depthwise> {
    if p.groups != g.cin || g.cin != g.cout || p.stride != 1 {
        return None;
    }
    Depthwise::plan(
        g.n,
        g.cin,
        (g.h, g.w),
        (g.ho, g.wo),
        (g.kh, g.kw),
        p.padding,
        p.dilation,
    )
}

/// The windowed kernels' plan for a dense stride-1 convolution, where they apply.
fn window(g: &Geometry, p: Conv2dParams) -> Option<WindowConv> {
    if p.groups != 1 || p.stride != 1 {
        return None;
    }
    WindowConv::plan(
        g.n,
        (g.cin, g.cout),
        (g.h, g.w),
        (g.ho, g.wo),
        (g.kh, g.kw),
        p.padding,
        p.dilation,
    )
}

impl Path {
    /// The name autotuning reports and checkpoints keep.
    pub(super) fn name(&self) -> String {
        match self {
            Path::Direct => "direct".into(),
            Path::Gemm => "gemm".into(),
            Path::GemmSplit(Spread::Fewer) => "gemm-splits-fewer".into(),
            Path::GemmSplit(Spread::More) => "gemm-splits-more".into(),
            Path::Depthwise(_) => "depthwise-tiled".into(),
            Path::DepthwiseStrip(_) => "depthwise-strip".into(),
            Path::DepthwiseColumns(_) => "depthwise-columns".into(),
            Path::Window(_) => "window".into(),
            Path::Cpu(v) => format!("cpu-{v}"),
            Path::CpuW(v) => format!("cpu-{v}"),
            Path::DepthwiseCpu(v) => format!("cpu-{v}"),
            Path::Subgroup(v) => format!("subgroup-k{}p{}", v.k, v.p),
            Path::SubgroupW(v) => format!("subgroup-w-ko{}ci{}", v.ko, v.ci),
            Path::Rows(v) => format!("subgroup-rows-k{}p{}", v.k, v.p),
            Path::RowsW(v) => format!("subgroup-rows-w-ko{}ci{}", v.ko, v.ci),
            Path::RowsS2(v) => format!("rows-s2-k{}p{}", v.k, v.p),
            Path::RowsS2W(v) => format!("rows-s2-w-ko{}ci{}", v.ko, v.ci),
            Path::Winograd(v) => format!("winograd-rows-k{}p{}", v.k, v.p),
            Path::DepthwiseSubgroup(v) => format!("subgroup-dw-p{}c{}", v.p, v.c),
            Path::PointwiseSubgroup(v) => format!("subgroup-1x1-k{}p{}c{}", v.k, v.p, v.c),
            Path::PointwiseSubgroupW(v) => {
                format!("subgroup-1x1-w-ko{}ci{}c{}", v.ko, v.ci, v.c)
            }
            Path::DepthwiseSubgroupW(v, _) => format!("subgroup-dw-w-p{}c{}", v.p, v.c),
        }
    }
}
