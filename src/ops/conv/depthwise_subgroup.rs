//! Depthwise convolutions that share loaded values across the 8 lanes of a subgroup
//! (`shaders/depthwise_subgroup.wgsl`), for lavapipe, which loads a storage buffer lane by
//! lane: a source row's taps for 8 output columns come from ceil((8 + (KS − 1)·DIL) / 8) loads
//! and subgroup shuffles instead of KS gathers per lane, and each row loaded serves every
//! output row of the tile it reaches. Forward (with bias) and grad_x (the flipped kernel, with
//! a gradient to accumulate) of the LSK module's 5×5 and 7×7-dilation-3 layers (groups == Cin
//! == Cout) and of its 7×7 squeeze (dense, 2 channels each way): stride 1, "same" padding,
//! square odd kernels. Each variant's body is written out
//! unrolled and compiled once per process (leaked, as `subgroup`'s).
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

use super::{check_gy, subgroup, Conv2dParams, Geometry};
use crate::gpu::Kernel;
use crate::tensor::{DType, Tensor};
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

const TEMPLATE: &str = include_str!("../../../shaders/depthwise_subgroup.wgsl");

/// `p` output rows per invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DwSgVariant {
    pub p: usize,
}

impl std::fmt::Display for DwSgVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "dwsg p{}", self.p)
    }
}

/// The variants worth timing.
pub const DW_SG_VARIANTS: &[DwSgVariant] = &[
    DwSgVariant { p: 2 },
    DwSgVariant { p: 4 },
    DwSgVariant { p: 8 },
    DwSgVariant { p: 16 },
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
        || ks % 2 == 0
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

/// The unrolled WGSL of `conv` for KS × KS taps at dilation `dil`, `p` output rows.
fn source(ks: usize, dil: usize, p: usize) -> String {
    let reach = (ks - 1) * dil;
    let loads = (8 + reach).div_ceil(8);
    let mut weights = String::new();
    for t in 0..ks * ks {
        writeln!(weights, "    let w{t} = wat(c, s, {t}u);").unwrap();
    }
    let mut acc = String::new();
    for q in 0..p {
        writeln!(acc, "    var a{q} = 0.0;").unwrap();
    }
    let mut body = String::new();
    for r in 0..p + reach {
        writeln!(
            body,
            "    {{\n    let row = i32(oy0) - {} + {r};\n    if row >= 0 && row < i32(dp.h) {{",
            reach / 2
        )
        .unwrap();
        for j in 0..loads {
            writeln!(body, "        let v{j} = xat(base, row, col0 + {});", 8 * j).unwrap();
        }
        // Tap kx of lane l is the row's value l + kx·DIL: lane l + o % 8 of load o / 8, or
        // for the last lanes lane l + o % 8 − 8 of the next load.
        for kx in 0..ks {
            let o = kx * dil;
            let (j, s) = (o / 8, o % 8);
            if s == 0 {
                writeln!(body, "        let t{kx} = v{j};").unwrap();
            } else {
                writeln!(
                    body,
                    "        let t{kx} = select(subgroupShuffleDown(v{j}, {s}u), \
                     subgroupShuffleUp(v{}, {}u), lane >= {}u);",
                    j + 1,
                    8 - s,
                    8 - s
                )
                .unwrap();
            }
        }
        for q in 0..p {
            let Some(d) = r.checked_sub(q).filter(|d| d % dil == 0 && d / dil < ks) else {
                continue;
            };
            let ky = d / dil;
            for kx in 0..ks {
                writeln!(body, "        a{q} = fma(t{kx}, w{}, a{q});", ky * ks + kx).unwrap();
            }
        }
        body.push_str("    }\n    }\n");
    }
    let mut store = String::new();
    for q in 0..p {
        writeln!(
            store,
            "    if oy0 + {q}u < dp.h {{\n\
             \x20       let i = base + (oy0 + {q}u) * dp.w + ox;\n\
             \x20       var e = 0.0;\n\
             \x20       if dp.extra == 1u {{ e = ex[c]; }}\n\
             \x20       if dp.extra == 2u {{ e = ex[i]; }}\n\
             \x20       ys[i] = a{q} + e;\n\
             \x20   }}"
        )
        .unwrap();
    }
    TEMPLATE
        .replace("/*KK*/", &format!("{}u", ks * ks))
        .replace("/*P*/", &format!("{p}u"))
        .replace("/*PAD*/", &format!("{}", reach / 2))
        .replace("/*WEIGHTS*/\n", &weights)
        .replace("/*ACC*/\n", &acc)
        .replace("/*BODY*/\n", &body)
        .replace("/*STORE*/\n", &store)
}

/// The kernel for KS × KS taps at dilation `dil` on variant `v`, written and leaked once per
/// process.
fn kernel(ks: usize, dil: usize, v: DwSgVariant) -> Result<Kernel> {
    if v.p == 0 || v.p > 16 {
        bail!("depthwise_subgroup: variant {v} needs 1 <= p <= 16");
    }
    static CACHE: OnceLock<Mutex<HashMap<(usize, usize, usize), (&'static str, &'static str)>>> =
        OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let (name, source) = *cache.entry((ks, dil, v.p)).or_insert_with(|| {
        let name = format!("depthwise_subgroup_{ks}d{dil}p{}", v.p);
        let name: &'static str = Box::leak(name.into_boxed_str());
        let source: &'static str = Box::leak(source(ks, dil, v.p).into_boxed_str());
        (name, source)
    });
    Ok(Kernel {
        name,
        source,
        entry: "conv",
    })
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

fn u(v: usize) -> u32 {
    v as u32
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
    let k = kernel(ks, dil, v)?;
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
    let tiles_x = g.w.div_ceil(8);
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
    gpu.dispatch(
        &k,
        bytemuck::bytes_of(&pr),
        &[src.buf(), w.buf(), extra.map_or(w, |e| e.0).buf()],
        &[dst.buf()],
        [u(tiles_x * g.h.div_ceil(v.p)), u(d_ch), u(g.n)],
    )?;
    Ok(dst)
}

fn checked(x: &Tensor, w: &Tensor, p: Conv2dParams) -> Result<Geometry> {
    if !subgroup::supported(x.gpu()) {
        bail!("depthwise_subgroup: this device lacks subgroups of at least 8 lanes");
    }
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
