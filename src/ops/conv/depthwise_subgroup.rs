//! Depthwise convolutions that share loaded values across the 8 lanes of a subgroup
//! (`shaders/depthwise_subgroup.wgsl`), for lavapipe, which loads a storage buffer lane by
//! lane: a source row's taps for 8 output columns come from ceil((8 + (KS − 1)·DIL) / 8) loads
//! and subgroup shuffles instead of KS gathers per lane, and each row loaded serves every
//! output row of the tile it reaches. Forward (with bias) and grad_x (the flipped kernel, with
//! a gradient to accumulate), and grad_w with grad_b, of the LSK
//! module's 5×5 and 7×7-dilation-3 layers (groups == Cin == Cout) and of its 7×7 squeeze (dense, 2 channels each way): stride 1, "same" padding,
//! square odd kernels. Each variant's body is written out
//! unrolled and compiled once per process (`generated`).
//!
//! `examples/conv_subgroup_lab.rs` (shapes `dw ...`) times the variants against the previous
//! CPU-driver default (the column kernels of `depthwise`). One run (lavapipe, Mesa 22.3.6, 2
//! cores shared with other builds, batch 32, fastest of 5), speed-up over that default:
//!
//! | layer (C, map)      | forward p8 | forward p16 | grad_x p8 | grad_x p16 |
//! |---------------------|------------|-------------|-----------|------------|
//! | 5×5, 16, 32²        | 2.5x       | 4.3x        | 2.4x      | 4.0x       |
//! | 5×5, 32, 16²        | 3.0x       | 4.8x        | 1.6x      | 2.8x       |
//! | 5×5, 64, 8²         | 1.9x       | 1.4x        | 6.3x      | 4.5x       |
//! | 7×7 d3, 16, 32²     | 1.5x       | 2.8x        | 2.1x      | 3.5x       |
//! | 7×7 d3, 32, 16²     | 3.4x       | 4.1x        | 4.0x      | 9.1x       |
//! | 7×7 d3, 64, 8²      | 2.7x       | 2.2x        | 1.2x      | 1.1x       |
//!
//! p2 and p4 ran at 0.6-2.4x. Defaults (`choice`): p16 on maps of 16 rows or more, p8 below.
//!
//! grad_w (depthwise only), another run, speed-up over `depthwise_cpu`'s grad_w or the column
//! kernels, p2 / p4 / p8 / p16: 5×5 32² 1.5 / 3.9 / 4.5 / 3.1x, 16² 1.6 / 2.3 / 2.5 / 3.2x,
//! 8² 1.5 / 1.6 / 2.7 / 1.7x; 7×7 d3 32² 2.0 / 1.5 / 3.4 / 3.1x, 16² 2.6 / 3.6 / 6.9 / 9.8x,
//! 8² 3.3 / 5.5 / 8.0 / 3.1x.
//!
//! A third run on a quiet machine with p32 too: the tile as tall as the map wins in every
//! pass (32²: p32 1.24-1.70x over p16 but for one 0.82x forward; 16²: p16 1.0-1.4x over p8
//! and p32; 8²: p8). Defaults (`choice`): p32, p16 or p8 by the map's height, every pass.
//!
//! With one column per lane a tile's source row took ceil((8 + reach) / 8) loads for 8
//! outputs, and the loads were most of the time (lavapipe loads a storage buffer lane by
//! lane). A lane now holds `c` adjacent columns (a vec4 or vec2 where the width allows, tiles
//! of 8·c columns, [`DwSgVariant::for_width`]): a 32-wide row is one vec4 load, and the reach
//! beyond the tile is whole V's from the neighbouring loads. Lab, batch 32, fastest of 3, one
//! run, ms, c1 → c4 (32²) or c1 → c2 (16²) at the default height: 7×7 d3 32² forward 13.8 →
//! 5.8, grad_x 14.1 → 5.2, grad_w 8.7 → 3.4; 5×5 32² 7.7 → 4.3, 7.5 → 3.7, 4.2 → 2.5; 7×7 d3
//! 16² 7.7 → 4.4, 5.8 → 4.8, 4.8 → 2.8. On 8² maps one column per lane stays (a tile of 8).
//!
//! Where one workgroup covers a whole image (p rows, one tile), its kernels are written for
//! that map ([`whole_image`]): the source rows and kernel columns that lie outside it are
//! left out as the kernel is written, where lavapipe would run them under a mask. 64→64 8²
//! 7×7 dilation 3 (18 of a tile's 26 source rows and 2 of 7 kernel columns outside), p8c1,
//! ms: forward 6.1 → 1.1, grad_x 6.0 → 1.1, grad_w 3.3 → 1.2; the LSK 32×32 batch-16 step
//! 1599, 1391 → 1516, 1311 ms (alternating).

use super::subgroup_rows::{comp, lane_sum, lane_type};
use super::{check_gy, subgroup, u, Conv2dParams, Geometry};
use crate::gpu::Kernel;
use crate::tensor::{DType, Tensor};
use anyhow::{bail, Result};
use std::fmt::Write as _;

const TEMPLATE: &str = include_str!("../../../shaders/depthwise_subgroup.wgsl");

/// `p` output rows per invocation, `c` adjacent columns per lane (1, 2 or 4; the map's
/// width a multiple of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DwSgVariant {
    pub p: usize,
    pub c: usize,
}

impl DwSgVariant {
    /// The variant of `p` rows with the most columns per lane for a map `w` wide: 4, 2 or 1,
    /// the largest that divides the row and whose tile of 8·c columns it fills.
    pub fn for_width(p: usize, w: usize) -> DwSgVariant {
        let c = [4, 2, 1]
            .into_iter()
            .find(|&c| w.is_multiple_of(c) && 8 * c <= w)
            .unwrap_or(1);
        DwSgVariant { p, c }
    }

    /// Whether it runs maps `w` wide: rows a whole number of its V's.
    pub fn fits(self, w: usize) -> bool {
        w.is_multiple_of(self.c)
    }
}

impl std::fmt::Display for DwSgVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "dwsg p{}c{}", self.p, self.c)
    }
}

/// The variants worth timing.
pub const DW_SG_VARIANTS: &[DwSgVariant] = &[
    DwSgVariant { p: 4, c: 1 },
    DwSgVariant { p: 8, c: 1 },
    DwSgVariant { p: 32, c: 1 },
    DwSgVariant { p: 8, c: 2 },
    DwSgVariant { p: 16, c: 2 },
    DwSgVariant { p: 8, c: 4 },
    DwSgVariant { p: 16, c: 4 },
    DwSgVariant { p: 32, c: 4 },
];

/// The widest reach (KS − 1)·DIL the kernels take: four loads per source row.
const MAX_REACH: usize = 24;

/// The most channels each way of a dense convolution these kernels run (the LSK module's
/// 7×7 squeeze has 2): every output channel's workgroup loads each source channel's rows.
const MAX_DENSE: usize = 4;

/// (KS, DIL) of a convolution these kernels run, or why not.
fn kernel_size(g: &Geometry, p: Conv2dParams) -> Result<(usize, usize)> {
    let ks = g.kh;
    let reach = (ks.max(1) - 1) * p.dilation;
    let depthwise = p.groups == g.cin && g.cin == g.cout;
    let dense = p.groups == 1 && g.cin.max(g.cout) <= MAX_DENSE;
    if !(depthwise || dense)
        || p.stride != 1
        || g.kw != ks
        || ks.is_multiple_of(2)
        || reach > MAX_REACH
        || 2 * p.padding != reach
    {
        bail!(
            "depthwise_subgroup: only depthwise (groups == Cin == Cout) or dense convolutions \
             of at most {MAX_DENSE} channels each way, stride 1, an odd square kernel, 'same' \
             padding and (KS-1)*dilation <= {MAX_REACH}, got Cin {}, Cout {}, a {}x{} kernel \
             and {p:?}",
            g.cin,
            g.cout,
            g.kh,
            g.kw
        );
    }
    Ok((ks, p.dilation))
}

/// Whether these kernels run this convolution on this device.
pub fn applies(x: &Tensor, w: &Tensor, p: Conv2dParams) -> bool {
    subgroup::supported(x.gpu())
        && super::geometry(x, w, p).is_ok_and(|g| kernel_size(&g, p).is_ok())
}

/// The halo a tile loads on each side of its 8·c columns for a reach of `reach` columns: the
/// reach's half rounded up to whole V's of `c` columns.
fn halo(reach: usize, c: usize) -> usize {
    (reach / 2).div_ceil(c) * c
}

/// The map `(h, w)` a variant's kernels are written for when one workgroup covers the whole
/// image (`p` rows and one tile of 8·c columns or more): then the rows and columns outside
/// it are known as the kernel is written, and it leaves out their loads and products, which
/// lavapipe would run under a mask (it does not jump over code all lanes skip). Measured in
/// the module doc.
fn whole_image(v: DwSgVariant, h: usize, w: usize) -> Option<(usize, usize)> {
    (v.p >= h && 8 * v.c >= w).then_some((h, w))
}

/// The unrolled WGSL of `conv`, `grad_w` and `w_reduce` for KS × KS taps at dilation `dil` on
/// variant `v`, for one map `image` when it is [`whole_image`]'s.
fn source(ks: usize, dil: usize, v: DwSgVariant, image: Option<(usize, usize)>) -> String {
    let (p, c) = (image.map_or(v.p, |(h, _)| h), v.c);
    let width = image.map(|(_, w)| w);
    let reach = (ks - 1) * dil;
    let halo = halo(reach, c);
    let loads = (8 + 2 * halo / c).div_ceil(8);
    let kk = ks * ks;
    // Lane j loads taps j, j + 8, ..; every lane takes each from its lane by a broadcast.
    let mut weights = String::new();
    for m in 0..kk.div_ceil(8) {
        writeln!(
            weights,
            "    let wl{m} = wat(c, s, min({}u + lane, {}u));",
            8 * m,
            kk - 1
        )
        .unwrap();
    }
    for t in 0..kk {
        writeln!(
            weights,
            "    let w{t} = V(subgroupBroadcast(wl{}, {}u));",
            t / 8,
            t % 8
        )
        .unwrap();
    }
    let mut acc = String::new();
    for q in 0..p {
        writeln!(acc, "    var a{q} = V(0.0);").unwrap();
    }
    let mut body = String::new();
    let mut wbody = String::new();
    for q in 0..p {
        writeln!(
            wbody,
            "        let g{q} = gyat(gbase, oy0 + {q}u, ox);
        ab += {};",
            lane_sum(&format!("g{q}"), c)
        )
        .unwrap();
    }
    for r in 0..p + reach {
        let open = match image {
            None => row_open(r, reach),
            // The row is known: those outside the image are left out.
            Some((h, _)) if (reach / 2..reach / 2 + h).contains(&r) => {
                format!("    {{\n    let row = {};\n    {{\n", r - reach / 2)
            }
            Some(_) => continue,
        };
        let taps = row_taps(ks, dil, c, halo, loads, width);
        body.push_str(&open.replace("ROWS", "dp.h"));
        body.push_str(&taps.replace("LOAD", "xat"));
        wbody.push_str(&open.replace("ROWS", "gp.h"));
        wbody.push_str(&taps.replace("LOAD", "wxat"));
        for q in 0..p {
            let Some(d) = r.checked_sub(q).filter(|d| d % dil == 0 && d / dil < ks) else {
                continue;
            };
            let ky = d / dil;
            for kx in (0..ks).filter(|&kx| tap_reaches(ks, dil, kx, width)) {
                let t = ky * ks + kx;
                writeln!(body, "        a{q} = fma(t{kx}, w{t}, a{q});").unwrap();
                if c == 1 {
                    writeln!(wbody, "        a{t} = fma(g{q}, t{kx}, a{t});").unwrap();
                } else {
                    writeln!(wbody, "        a{t} += dot(g{q}, t{kx});").unwrap();
                }
            }
        }
        body.push_str("    }\n    }\n");
        wbody.push_str("    }\n    }\n");
    }
    let mut wacc = String::from("    var ab = 0.0;\n");
    let mut wstore = String::new();
    for t in 0..=kk {
        let a = if t < kk { format!("a{t}") } else { "ab".into() };
        if t < kk {
            writeln!(wacc, "    var {a} = 0.0;").unwrap();
        }
        writeln!(
            wstore,
            "    let s{t} = subgroupAdd({a});\n    if lane == 0u {{ wout[(wid.y * gp.c + c) * {}u + {t}u] = s{t}; }}",
            kk + 1
        )
        .unwrap();
    }
    let mut store = String::new();
    for q in 0..p {
        writeln!(
            store,
            "    if oy0 + {q}u < dp.h {{\n\
             \x20       let i = (base + (oy0 + {q}u) * dp.w + ox) / {c}u;\n\
             \x20       var e = V(0.0);\n\
             \x20       if dp.extra == 1u {{ e = V(bias[c]); }}\n\
             \x20       if dp.extra == 2u {{ e = addend[i]; }}\n\
             \x20       ys[i] = a{q} + e;\n\
             \x20   }}"
        )
        .unwrap();
    }
    TEMPLATE
        .replace("/*V*/", lane_type(c))
        .replace("/*C*/", &format!("{c}u"))
        .replace("/*KK*/", &format!("{kk}u"))
        .replace("/*P*/", &format!("{p}u"))
        .replace("/*HALO*/", &format!("{halo}"))
        .replace("/*WEIGHTS*/\n", &weights)
        .replace("/*ACC*/\n", &acc)
        .replace("/*BODY*/\n", &body)
        .replace("/*STORE*/\n", &store)
        .replace("/*WACC*/\n", &wacc)
        .replace("/*WBODY*/\n", &wbody)
        .replace("/*WSTORE*/\n", &wstore)
}

/// The opening of source row `r` of a tile (relative to its first output row): the row, and
/// a branch (the same for the whole subgroup) that skips rows outside the image (ROWS: the
/// uniform holding the height).
fn row_open(r: usize, reach: usize) -> String {
    format!(
        "    {{\n    let row = i32(oy0) - {} + {r};\n    if row >= 0 && row < i32(ROWS) {{\n",
        reach / 2
    )
}

/// Whether kernel column `kx` reaches into the map for some output column: always, but on a
/// map of known width `w` ([`whole_image`]) only where its offset is under `w`.
fn tap_reaches(ks: usize, dil: usize, kx: usize, w: Option<usize>) -> bool {
    let offset = (kx * dil).abs_diff((ks - 1) * dil / 2);
    w.is_none_or(|w| offset < w)
}

/// The row's `loads` loads (by the function LOAD) and its KS taps t0.. for each lane. The
/// loads hold the tile's V's from `halo` columns left of it on: V m (lane m % 8 of load
/// m / 8) holds columns m·c − halo .. of the tile. Column j of lane l's tap kx is the tile's
/// column l·c + j + kx·DIL − PAD, so component (j + o) % c of V l + (j + o) / c, o = halo −
/// PAD + kx·DIL: shifted V `s{q}` is V l + q for every lane, from lane l + q % 8 of load
/// q / 8, or for the last lanes from lane l + q % 8 − 8 of the next load. On a map of known
/// width `w` (one tile) the loads wholly outside it are zeros and the taps that never reach
/// it are left out.
fn row_taps(
    ks: usize,
    dil: usize,
    c: usize,
    halo: usize,
    loads: usize,
    w: Option<usize>,
) -> String {
    let mut out = String::new();
    for j in 0..loads {
        let (first, end) = (8 * c * j, 8 * c * (j + 1));
        if w.is_some_and(|w| end <= halo || first >= w + halo) {
            writeln!(out, "        let v{j} = V(0.0);").unwrap();
        } else {
            writeln!(out, "        let v{j} = LOAD(base, row, col0 + {first});").unwrap();
        }
    }
    let pad = (ks - 1) * dil / 2;
    let offset = |kx: usize| halo - pad + kx * dil;
    let mut shifted = std::collections::BTreeSet::new();
    for kx in (0..ks).filter(|&kx| tap_reaches(ks, dil, kx, w)) {
        for j in 0..c {
            shifted.insert((j + offset(kx)) / c);
        }
    }
    for q in shifted {
        let (j, s) = (q / 8, q % 8);
        if s == 0 {
            writeln!(out, "        let s{q} = v{j};").unwrap();
        } else {
            writeln!(
                out,
                "        let s{q} = select(subgroupShuffleDown(v{j}, {s}u), \
                 subgroupShuffleUp(v{}, {}u), lane >= {}u);",
                j + 1,
                8 - s,
                8 - s
            )
            .unwrap();
        }
    }
    for kx in (0..ks).filter(|&kx| tap_reaches(ks, dil, kx, w)) {
        let cols: Vec<String> = (0..c)
            .map(|j| {
                let m = j + offset(kx);
                comp(&format!("s{}", m / c), m % c, c)
            })
            .collect();
        if c == 1 {
            writeln!(out, "        let t{kx} = {};", cols[0]).unwrap();
        } else {
            writeln!(out, "        let t{kx} = V({});", cols.join(", ")).unwrap();
        }
    }
    out
}

/// The kernel for KS × KS taps at dilation `dil` on variant `v`.
fn kernel(ks: usize, dil: usize, v: DwSgVariant, g: &Geometry) -> Result<Kernel> {
    kernel_entry(ks, dil, v, g, "conv")
}

/// The kernel `entry` (conv, grad_w, w_reduce) for KS × KS taps at dilation `dil` on variant
/// `v`, written for `g`'s map where one workgroup covers it ([`whole_image`]).
fn kernel_entry(
    ks: usize,
    dil: usize,
    v: DwSgVariant,
    g: &Geometry,
    entry: &'static str,
) -> Result<Kernel> {
    if v.p == 0 || v.p > 32 || ![1, 2, 4].contains(&v.c) {
        bail!("depthwise_subgroup: variant {v} needs 1 <= p <= 32 and c 1, 2 or 4");
    }
    let image = whole_image(v, g.h, g.w);
    let name = match image {
        None => format!("depthwise_subgroup_{ks}d{dil}p{}c{}", v.p, v.c),
        Some((h, w)) => format!("depthwise_subgroup_{ks}d{dil}c{}_{h}x{w}", v.c),
    };
    Ok(super::generated(name, entry, || source(ks, dil, v, image)))
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct DP {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    tiles_x: u32,
    flip: u32,
    extra: u32,
    d: u32,
    sg: u32,
    dsrc: u32,
    wsd: u32,
    wss: u32,
}

/// One dispatch: dst = src ⋆ w + extra; for grad_x (`transposed`) src = gy and the kernel
/// is flipped and, when dense, transposed.
fn run(
    g: &Geometry,
    p: Conv2dParams,
    v: DwSgVariant,
    src: &Tensor,
    w: &Tensor,
    transposed: bool,
    extra: Option<(&Tensor, u32)>,
) -> Result<Tensor> {
    let (ks, dil) = kernel_size(g, p)?;
    check_fits(g, v)?;
    let k = kernel(ks, dil, v, g)?;
    let kk = ks * ks;
    let (s_ch, d_ch) = if transposed {
        (g.cout, g.cin)
    } else {
        (g.cin, g.cout)
    };
    // (sources per output, source step per output, weight strides per output and source).
    let (sg, dsrc, wsd, wss) = match (p.groups == 1, transposed) {
        (false, _) => (1, 1, kk, 0),
        (true, false) => (g.cin, 0, g.cin * kk, kk),
        (true, true) => (g.cout, 0, kk, g.cin * kk),
    };
    let gpu = src.gpu();
    let dst = Tensor::empty(gpu, &[g.n, d_ch, g.h, g.w], DType::F32)?;
    let tiles_x = g.w.div_ceil(8 * v.c);
    let pr = DP {
        n: u(g.n),
        c: u(s_ch),
        h: u(g.h),
        w: u(g.w),
        tiles_x: u(tiles_x),
        flip: u32::from(transposed),
        extra: extra.map_or(0, |e| e.1),
        d: u(d_ch),
        sg: u(sg),
        dsrc: u(dsrc),
        wsd: u(wsd),
        wss: u(wss),
    };
    let bias = extra.filter(|e| e.1 == 1).map_or(w, |e| e.0);
    let addend = extra.filter(|e| e.1 == 2).map_or(src, |e| e.0);
    gpu.dispatch(
        &k,
        bytemuck::bytes_of(&pr),
        &[src.buf(), w.buf(), bias.buf(), addend.buf()],
        &[dst.buf()],
        [u(tiles_x * g.h.div_ceil(v.p)), u(d_ch), u(g.n)],
    )?;
    Ok(dst)
}

/// An error unless variant `v` runs maps as wide as `g`'s.
fn check_fits(g: &Geometry, v: DwSgVariant) -> Result<()> {
    if !v.fits(g.w) {
        bail!(
            "depthwise_subgroup: variant {v} holds {} columns per lane, which do not divide the \
             map's width {}",
            v.c,
            g.w
        );
    }
    Ok(())
}

fn checked(x: &Tensor, w: &Tensor, p: Conv2dParams) -> Result<Geometry> {
    subgroup::require(x.gpu(), "depthwise_subgroup")?;
    let g = super::geometry(x, w, p)?;
    kernel_size(&g, p)?;
    Ok(g)
}

/// y = conv2d(x, w) + b for a depthwise convolution these kernels run (see [`applies`]).
pub fn forward(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: Conv2dParams,
    v: DwSgVariant,
) -> Result<Tensor> {
    let g = checked(x, w, p)?;
    super::check_bias("depthwise_subgroup", b, g.cout)?;
    run(&g, p, v, x, w, false, b.map(|b| (b, 1)))
}

/// gx of y = conv2d(x, w) + b given gy, plus `acc` (of x's shape) when given; `x` gives the
/// input's shape only.
pub fn grad_x(
    x: &Tensor,
    w: &Tensor,
    gy: &Tensor,
    acc: Option<&Tensor>,
    p: Conv2dParams,
    v: DwSgVariant,
) -> Result<Tensor> {
    let g = checked(x, w, p)?;
    check_gy(&g, gy)?;
    super::check_acc("depthwise_subgroup", acc, x.shape())?;
    run(&g, p, v, gy, w, true, acc.map(|a| (a, 2)))
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct GP {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    tiles_x: u32,
    tiles: u32,
    per_chunk: u32,
    chunks: u32,
    has_bias: u32,
    cx: u32,
    cy: u32,
    cin_g: u32,
}

/// (gw, gb) of y = conv2d(x, w) + b given gy for a convolution these kernels run (see
/// [`applies`]), gb with `bias`. Each (output, source) channel pair's (image, tile) items are
/// split into chunks so that `target` workgroups run in all; their partial sums are added in
/// chunk order (deterministic).
pub fn grad_wb(
    x: &Tensor,
    w: &Tensor,
    gy: &Tensor,
    bias: bool,
    p: Conv2dParams,
    v: DwSgVariant,
    target: usize,
) -> Result<(Tensor, Option<Tensor>)> {
    let g = checked(x, w, p)?;
    check_gy(&g, gy)?;
    // (pairs, x channels, gy channels, sources per output).
    let (pairs, cx, cy, cin_g) = if p.groups == 1 {
        (g.cout * g.cin, g.cin, g.cout, g.cin)
    } else {
        (g.cin, g.cin, g.cin, 1)
    };
    let (ks, dil) = kernel_size(&g, p)?;
    check_fits(&g, v)?;
    let k_sum = kernel_entry(ks, dil, v, &g, "grad_w")?;
    let k_reduce = kernel_entry(ks, dil, v, &g, "w_reduce")?;
    let tiles_x = g.w.div_ceil(8 * v.c);
    let tiles = tiles_x * g.h.div_ceil(v.p);
    let items = g.n * tiles;
    let (per_chunk, chunks) = super::even_chunks(items, target.div_ceil(pairs));
    let numel = pairs * (ks * ks + 1);
    let pr = GP {
        n: u(g.n),
        c: u(pairs),
        h: u(g.h),
        w: u(g.w),
        tiles_x: u(tiles_x),
        tiles: u(tiles),
        per_chunk: u(per_chunk),
        chunks: u(chunks),
        has_bias: u32::from(bias),
        cx: u(cx),
        cy: u(cy),
        cin_g: u(cin_g),
    };
    let gpu = x.gpu();
    let part = Tensor::empty(gpu, &[chunks, numel], DType::F32)?;
    gpu.dispatch(
        &k_sum,
        bytemuck::bytes_of(&pr),
        &[x.buf(), gy.buf()],
        &[part.buf()],
        [u(pairs), u(chunks), 1],
    )?;
    let (gw, gb) = super::grad_wb_outputs(w, bias)?;
    gpu.dispatch(
        &k_reduce,
        bytemuck::bytes_of(&pr),
        &[part.buf()],
        &[gw.buf(), gb.as_ref().unwrap_or(&gw).buf()],
        [u(numel.div_ceil(64)), 1, 1],
    )?;
    Ok((gw, gb))
}
