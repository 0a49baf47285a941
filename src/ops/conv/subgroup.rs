//! Dense 3×3 convolutions that share loaded values across the 8 lanes of a subgroup
//! (`shaders/conv_subgroup.wgsl`): an experiment for lavapipe, which loads a storage buffer
//! lane by lane (a uniform load costs as much as a gather), so that one load shared by
//! `subgroupBroadcast` / `subgroupShuffleDown` could replace 8 per-lane ones.
//!
//! Forward (padding 1, stride 1 or 2, no dilation, groups == 1) and stride-1 grad_x, K output channels ×
//! P output rows × 8 columns per workgroup of 8 invocations. WGSL's `subgroupBroadcast`
//! takes a constant lane only, so each variant's body is written out unrolled here and
//! compiled once per process (`generated`). The kernels need
//! `wgpu::Features::SUBGROUP` and subgroups of at least 8 lanes ([`supported`]).
//!
//! `examples/conv_subgroup_lab.rs` times them against `ConvAlgo::Auto`; see the results
//! there.

use super::{check_gy, u, Conv2dParams, Geometry};
use crate::gpu::{Gpu, Kernel};
use crate::tensor::{DType, Tensor};
use anyhow::{bail, Result};
use std::fmt::Write as _;

const TEMPLATE: &str = include_str!("../../../shaders/conv_subgroup.wgsl");

/// Block sizes of `forward`: `k` output channels (a multiple of 8) × `p` output rows per
/// invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FwdVariant {
    pub k: usize,
    pub p: usize,
}

impl std::fmt::Display for FwdVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sg k{}p{}", self.k, self.p)
    }
}

/// The forward variants worth timing.
pub const FWD_VARIANTS: &[FwdVariant] = &[
    FwdVariant { k: 8, p: 1 },
    FwdVariant { k: 8, p: 2 },
    FwdVariant { k: 8, p: 4 },
    FwdVariant { k: 16, p: 2 },
    FwdVariant { k: 8, p: 8 },
    FwdVariant { k: 16, p: 4 },
    FwdVariant { k: 8, p: 16 },
];

/// Whether this device can run these kernels: the SUBGROUP feature, and subgroups of at
/// least 8 lanes, so that a workgroup of 8 invocations is one subgroup.
pub fn supported(gpu: &Gpu) -> bool {
    gpu.features.contains(wgpu::Features::SUBGROUP) && gpu.info.subgroup_min_size >= 8
}

/// An error naming `what` (the kernel family) unless the device is [`supported`]: the check
/// every subgroup kernel's entry point makes.
pub(super) fn require(gpu: &Gpu, what: &str) -> Result<()> {
    if !supported(gpu) {
        bail!("{what}: this device lacks subgroups of at least 8 lanes");
    }
    Ok(())
}

/// Whether `forward` runs this convolution: dense, 3×3, padding 1, stride 1 or 2,
/// dilation 1, on a device that [`supported`].
pub fn applies(x: &Tensor, w: &Tensor, p: Conv2dParams) -> bool {
    supported(x.gpu()) && geometry(x, w, p).is_ok()
}

fn geometry(x: &Tensor, w: &Tensor, p: Conv2dParams) -> Result<Geometry> {
    let g = super::geometry(x, w, p)?;
    if p.groups != 1
        || (g.kh, g.kw) != (3, 3)
        || p.padding != 1
        || p.dilation != 1
        || !(1..=2).contains(&p.stride)
    {
        bail!(
            "conv_subgroup: only dense 3x3 convolutions with padding 1, dilation 1 and stride \
             1 or 2, got a {}x{} kernel, {p:?}",
            g.kh,
            g.kw
        );
    }
    Ok(g)
}

/// WGSL loading, for input channel `ci` (`wt` the weights, `co0` the block's first output
/// channel), the 9 weights of output channels co0 .. co0 + `k` (a multiple of 8) with one
/// load per 8 of them: w{b}_{j} holds, in lane l, tap l of channel co0 + 8b + j (j < 8);
/// w{b}_8 holds tap 8 of channel co0 + 8b + l. Channels past Cout read the last one (not
/// stored). `params` names the parameter block (its `cin` and `cout`); `transposed`: grad_x's
/// weights, (co, ci, tap) at w[ci, co, 8 − tap]. [`weight`] hands each to every lane.
pub(super) fn weight_loads(k: usize, params: &str, transposed: bool) -> String {
    let (cstride, wrow, tap_j, tap_8) = if transposed {
        (
            "9u".to_string(),
            format!("ci * {params}.cout * 9u"),
            "8u - lane",
            "0u",
        )
    } else {
        (
            format!("{params}.cin * 9u"),
            "ci * 9u".to_string(),
            "lane",
            "8u",
        )
    };
    let at = |channel: &str, eighth: bool| {
        let tap = if eighth { tap_8 } else { tap_j };
        format!("min(co0 + {channel}, {params}.cout - 1u) * {cstride} + wrow + {tap}")
    };
    format!("let wrow = {wrow};\n{}", weight_loads_at(k, at))
}

/// The loads of [`weight_loads`] at any layout: `at(channel, eighth)` is the WGSL index in
/// `wt` of the block's channel `channel` (an offset from the block's first, e.g. `3u` or
/// `0u + lane`): of its tap `lane` (the first eight loads), or with `eighth` of its tap 8.
pub(super) fn weight_loads_at(k: usize, at: impl Fn(&str, bool) -> String) -> String {
    let mut s = String::new();
    for b in 0..k / 8 {
        for j in 0..8 {
            let i = at(&format!("{}u", 8 * b + j), false);
            writeln!(s, "let w{b}_{j} = wt[{i}];").unwrap();
        }
        let i = at(&format!("{}u + lane", 8 * b), true);
        writeln!(s, "let w{b}_8 = wt[{i}];").unwrap();
    }
    s
}

/// The WGSL expression of tap `tap` of output channel co0 + `o`, in every lane, from
/// [`weight_loads`]' values.
pub(super) fn weight(o: usize, tap: usize) -> String {
    let (b, j) = (o / 8, o % 8);
    if tap == 8 {
        format!("subgroupBroadcast(w{b}_8, {j}u)")
    } else {
        format!("subgroupBroadcast(w{b}_{j}, {tap}u)")
    }
}

/// The unrolled WGSL of `forward` for `v` at stride `s`, for grad_x (stride 1) with
/// `transposed`.
fn forward_source(v: FwdVariant, s: usize, transposed: bool) -> String {
    let (k, p) = (v.k, v.p);
    let rows = (p - 1) * s + 3;
    let mut acc = String::new();
    for c in 0..k {
        for q in 0..p {
            writeln!(acc, "    var a{c}_{q} = 0.0;").unwrap();
        }
    }
    let mut body = weight_loads(k, "fp", transposed);
    for r in 0..rows {
        writeln!(body, "        {{").unwrap();
        writeln!(body, "        let row = iy0 + {r};").unwrap();
        if s == 1 {
            body.push_str(
                "        let v = xat(base, row, i32(ox) - 1);\n\
                 \x20       let h = xat(base, row, i32(ox0 + 7u + lane));\n\
                 \x20       let h0 = subgroupBroadcast(h, 0u);\n\
                 \x20       let t0 = v;\n\
                 \x20       let t1 = select(subgroupShuffleDown(v, 1u), h0, lane == 7u);\n\
                 \x20       let t2 = select(select(subgroupShuffleDown(v, 2u), h0, lane == 6u), \
                 subgroupBroadcast(h, 1u), lane == 7u);\n",
            );
        } else {
            body.push_str(
                "        let c = i32(ox * 2u) - 1;\n\
                 \x20       let t0 = xat(base, row, c);\n\
                 \x20       let t1 = xat(base, row, c + 1);\n\
                 \x20       let t2 = xat(base, row, c + 2);\n",
            );
        }
        for q in 0..p {
            let Some(ky) = r.checked_sub(q * s).filter(|&ky| ky < 3) else {
                continue;
            };
            for c in 0..k {
                for kx in 0..3 {
                    let wv = weight(c, ky * 3 + kx);
                    writeln!(body, "        a{c}_{q} = fma(t{kx}, {wv}, a{c}_{q});").unwrap();
                }
            }
        }
        writeln!(body, "        }}").unwrap();
    }
    let mut store = String::new();
    for c in 0..k {
        writeln!(
            store,
            "    if co0 + {c}u < fp.cout {{\n\
             \x20       let co = co0 + {c}u;\n\
             \x20       var bv = 0.0;\n\
             \x20       if fp.extra == 1u {{ bv = ex[co]; }}"
        )
        .unwrap();
        for q in 0..p {
            writeln!(
                store,
                "        if oy0 + {q}u < fp.ho {{\n\
                 \x20           let i = ((n * fp.cout + co) * fp.ho + oy0 + {q}u) * fp.wo + ox;\n\
                 \x20           var e = bv;\n\
                 \x20           if fp.extra == 2u {{ e = ex[i]; }}\n\
                 \x20           ys[i] = a{c}_{q} + e;\n\
                 \x20       }}"
            )
            .unwrap();
        }
        store.push_str("    }\n");
    }
    TEMPLATE
        .replace("/*P*/", &format!("{p}u"))
        .replace("/*K*/", &format!("{k}u"))
        .replace("/*S*/", &format!("{s}u"))
        .replace("/*ACC*/\n", &acc)
        .replace("/*BODY*/\n", &body)
        .replace("/*STORE*/\n", &store)
}

/// The kernel of `forward` for `v` at stride `s` (`transposed`: grad_x).
fn forward_kernel(v: FwdVariant, s: usize, transposed: bool) -> Result<Kernel> {
    if v.k == 0 || !v.k.is_multiple_of(8) || v.p == 0 || v.p > 16 {
        bail!("conv_subgroup: variant {v} needs k a multiple of 8 and 1 <= p <= 16");
    }
    let name = format!(
        "conv_subgroup_k{}p{}s{s}t{}",
        v.k,
        v.p,
        u8::from(transposed)
    );
    Ok(super::generated(name, "forward", || {
        forward_source(v, s, transposed)
    }))
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct FwdP {
    n: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    ho: u32,
    wo: u32,
    tiles_x: u32,
    extra: u32,
    pad: [u32; 3],
}

/// y = conv2d(x, w) + b for a dense 3×3 convolution with padding 1, stride 1 or 2 (see
/// [`applies`]), on variant `v`.
pub fn forward(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: Conv2dParams,
    v: FwdVariant,
) -> Result<Tensor> {
    let gpu = x.gpu();
    require(gpu, "conv_subgroup")?;
    let g = geometry(x, w, p)?;
    super::check_bias("conv_subgroup", b, g.cout)?;
    let y = Tensor::empty(gpu, &[g.n, g.cout, g.ho, g.wo], DType::F32)?;
    let dims = [g.cin, g.h, g.w, g.cout, g.ho, g.wo];
    run(v, p.stride, false, g.n, dims, x, w, b.map(|b| (b, 1)), &y)?;
    Ok(y)
}

/// One dispatch: src [n, cin, h, w] to dst [n, cout, ho, wo] (`dims`), with `extra` and its
/// mode (1 bias, 2 added at the output's index).
#[allow(clippy::too_many_arguments)]
fn run(
    v: FwdVariant,
    stride: usize,
    transposed: bool,
    n: usize,
    [cin, h, w, cout, ho, wo]: [usize; 6],
    src: &Tensor,
    wt: &Tensor,
    extra: Option<(&Tensor, u32)>,
    dst: &Tensor,
) -> Result<()> {
    let k = forward_kernel(v, stride, transposed)?;
    let tiles_x = wo.div_ceil(8);
    let pr = FwdP {
        n: u(n),
        cin: u(cin),
        h: u(h),
        w: u(w),
        cout: u(cout),
        ho: u(ho),
        wo: u(wo),
        tiles_x: u(tiles_x),
        extra: extra.map_or(0, |e| e.1),
        ..Default::default()
    };
    src.gpu().dispatch(
        &k,
        bytemuck::bytes_of(&pr),
        &[src.buf(), wt.buf(), extra.map_or(wt, |e| e.0).buf()],
        &[dst.buf()],
        [u(tiles_x * ho.div_ceil(v.p)), u(cout.div_ceil(v.k)), u(n)],
    )
}

/// Whether `grad_x` runs this convolution: as [`applies`], and stride 1.
pub fn grad_x_applies(x: &Tensor, w: &Tensor, p: Conv2dParams) -> bool {
    p.stride == 1 && applies(x, w, p)
}

/// gx of y = conv2d(x, w) + b given gy, plus `acc` (of x's shape) when given, for a dense
/// 3×3 convolution with padding 1 and stride 1 (see [`grad_x_applies`]), as the forward
/// correlation of gy with the transposed, flipped kernel on variant `v`. `x` gives the
/// input's shape only.
pub fn grad_x(
    x: &Tensor,
    w: &Tensor,
    gy: &Tensor,
    acc: Option<&Tensor>,
    p: Conv2dParams,
    v: FwdVariant,
) -> Result<Tensor> {
    let gpu = x.gpu();
    require(gpu, "conv_subgroup")?;
    let g = geometry(x, w, p)?;
    if p.stride != 1 {
        bail!("conv_subgroup grad_x: only stride 1, got {p:?}");
    }
    check_gy(&g, gy)?;
    super::check_acc("conv_subgroup", acc, x.shape())?;
    let gx = Tensor::empty(gpu, x.shape(), DType::F32)?;
    let dims = [g.cout, g.ho, g.wo, g.cin, g.h, g.w];
    run(v, 1, true, g.n, dims, gy, w, acc.map(|a| (a, 2)), &gx)?;
    Ok(gx)
}
