//! 1×1 convolutions sharing weights across the 8 lanes of a subgroup
//! (`shaders/pointwise_subgroup.wgsl`), for lavapipe, which loads a storage buffer lane by
//! lane: 8 adjacent pixels per load, and each lane loads one of 8 output channels' weights for
//! subgroupBroadcast to share. Forward (with bias), grad_x (with a gradient to accumulate) and
//! grad_w (partial sums per chunk of images, added in a fixed order: deterministic) of the LSK
//! module's 1×1 layers: stride 1, no padding, groups == 1. Each variant's body is
//! written out unrolled and compiled once per process (`generated`).
//!
//! `examples/conv_subgroup_lab.rs` (shapes `1x1 ...`) times the variants against the previous
//! CPU-driver default (`cpu`'s quad kernel). One run (lavapipe, Mesa 22.3.6, 2 cores shared
//! with other builds, batch 32, fastest of 5), speed-up over that default, forward / grad_x:
//!
//! | layer       | k8p4      | k8p8      | k16p4     | k16p8     | k32p4     |
//! |-------------|-----------|-----------|-----------|-----------|-----------|
//! | 16→8 32²    | 2.1 / 4.1 | 2.6 / 5.2 | 1.4 / 5.3 | 1.8 / 5.9 | 0.5 / 3.2 |
//! | 8→16 32²    | 2.9 / 3.3 | 3.4 / 4.1 | 3.6 / 2.4 | 4.2 / 2.7 | 2.2 / 0.9 |
//! | 32→16 16²   | 4.4 / 2.5 | 5.4 / 3.0 | 5.9 / 3.2 | 7.1 / 3.6 | 3.9 / 3.6 |
//! | 16→32 16²   | 2.4 / 2.6 | 2.9 / 3.1 | 3.2 / 3.7 | 3.5 / 2.8 | 3.7 / 2.3 |
//! | 64→32 8²    | 3.1 / 2.4 | 4.2 / 2.8 | 4.9 / 3.1 | 5.8 / 3.9 | 6.0 / 2.7 |
//! | 32→64 8²    | 2.5 / 2.7 | 2.3 / 3.2 | 3.5 / 3.9 | 3.9 / 4.5 | 4.2 / 4.6 |
//!
//! grad_w, speed-up over `cpu`'s register-blocked grad_w and the split-K GEMM (same run):
//!
//! | layer       | ko4ci4 | ko8ci4 | ko8ci8 | ko16ci8 |
//! |-------------|--------|--------|--------|---------|
//! | 16→8 32²    | 1.5x   | 1.4x   | 2.9x   | 1.9x    |
//! | 8→16 32²    | 1.6x   | 2.4x   | 3.2x   | 3.8x    |
//! | 32→16 16²   | 2.4x   | 3.6x   | 5.0x   | 6.4x    |
//! | 16→32 16²   | 2.5x   | 3.5x   | 4.9x   | 6.1x    |
//! | 64→32 8²    | 2.7x   | 3.9x   | 5.2x   | 6.8x    |
//! | 32→64 8²    | 2.1x   | 2.9x   | 4.2x   | 5.2x    |
//!
//! Defaults (`choice`): k16p8, k8p8 where the pass writes 8 channels; grad_w ko16ci8, ko8ci8
//! where Cout is 8.
//!
//! Those load one pixel per lane. Where the plane is a multiple of 4 pixels (every LSK map),
//! a lane now loads 4 adjacent ones as a vec4 (`c` 4; lavapipe loads a vec4 for about the
//! price of an f32), with runs of 2 instead of 8 to keep the sums per lane as many: in the
//! LSK 32×32 batch-16 step's profile, side by side (two pairs), the 1×1 forward and grad_x
//! 342, 288 → 129, 116 ms (k16) and 66, 66 → 34, 29 (k8), grad_w 139, 119 → 54, 60 (ko16ci8)
//! and 45, 31 → 19, 18 (ko8ci8). The lab's single calls were too noisy that hour to rank
//! the vec4 variants among themselves.

use super::subgroup_rows::{lane_sum, lane_type};
use super::{check_gy, subgroup, u, Conv2dParams, Geometry};
use crate::gpu::{groups, Kernel};
use crate::ops::SCRATCH;
use crate::tensor::{DType, Tensor};
use anyhow::{bail, Result};
use std::fmt::Write as _;

const TEMPLATE: &str = include_str!("../../../shaders/pointwise_subgroup.wgsl");

/// `k` output channels (a multiple of 8) × `p` runs of 8·c pixels per workgroup, `c` (1 or 4)
/// adjacent pixels per lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PwVariant {
    pub k: usize,
    pub p: usize,
    pub c: usize,
}

impl std::fmt::Display for PwVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pwsg k{}p{}c{}", self.k, self.p, self.c)
    }
}

/// The variants worth timing.
pub const PW_VARIANTS: &[PwVariant] = &[
    PwVariant { k: 8, p: 8, c: 1 },
    PwVariant { k: 16, p: 8, c: 1 },
    PwVariant { k: 8, p: 2, c: 4 },
    PwVariant { k: 8, p: 4, c: 4 },
    PwVariant { k: 16, p: 2, c: 4 },
    PwVariant { k: 16, p: 4, c: 4 },
    PwVariant { k: 32, p: 2, c: 4 },
];

/// The most pixels per lane that divide a plane of `hw` pixels: 4 or 1.
pub fn pixels_per_lane(hw: usize) -> usize {
    if hw.is_multiple_of(4) {
        4
    } else {
        1
    }
}

/// An error unless `c` pixels per lane (1 or 4) divide a plane of `hw` pixels.
fn check_pixels(what: &str, c: usize, hw: usize) -> Result<()> {
    if ![1, 4].contains(&c) || !hw.is_multiple_of(c) {
        bail!(
            "pointwise_subgroup: {what} holds {c} pixels per lane, which must be 1 or 4 and \
             divide the plane's {hw} pixels"
        );
    }
    Ok(())
}

fn geometry(x: &Tensor, w: &Tensor, p: Conv2dParams) -> Result<Geometry> {
    let g = super::geometry(x, w, p)?;
    if (g.kh, g.kw) != (1, 1) || p.groups != 1 || p.stride != 1 || p.padding != 0 {
        bail!(
            "pointwise_subgroup: only dense 1x1 convolutions with stride 1 and no padding, got \
             a {}x{} kernel and {p:?}",
            g.kh,
            g.kw
        );
    }
    Ok(g)
}

/// Whether these kernels run this convolution on this device.
pub fn applies(x: &Tensor, w: &Tensor, p: Conv2dParams) -> bool {
    subgroup::supported(x.gpu()) && geometry(x, w, p).is_ok()
}

/// The unrolled WGSL of `conv` for `v`.
fn source(v: PwVariant) -> String {
    let (k, p, lanec) = (v.k, v.p, v.c);
    let mut acc = String::new();
    for c in 0..k {
        for q in 0..p {
            writeln!(acc, "    var a{c}_{q} = V(0.0);").unwrap();
        }
    }
    let mut body = String::new();
    for q in 0..p {
        writeln!(
            body,
            "        let x{q} = xs[(sb + min(i0 + {}u, pp.hw - {lanec}u)) / {lanec}u];",
            8 * lanec * q
        )
        .unwrap();
    }
    for b in 0..k / 8 {
        writeln!(
            body,
            "        let w{b} = wt[min(d0 + {}u + lane, pp.cd - 1u) * pp.dstride + s * pp.sstride];",
            8 * b
        )
        .unwrap();
    }
    for c in 0..k {
        writeln!(
            body,
            "        let b{c} = V(subgroupBroadcast(w{}, {}u));",
            c / 8,
            c % 8
        )
        .unwrap();
        for q in 0..p {
            writeln!(body, "        a{c}_{q} = fma(x{q}, b{c}, a{c}_{q});").unwrap();
        }
    }
    let mut store = String::new();
    for c in 0..k {
        writeln!(
            store,
            "    if d0 + {c}u < pp.cd {{\n\
             \x20       let d = d0 + {c}u;\n\
             \x20       var bv = V(0.0);\n\
             \x20       if pp.extra == 1u {{ bv = V(bias[d]); }}"
        )
        .unwrap();
        for q in 0..p {
            writeln!(
                store,
                "        if i0 + {}u < pp.hw {{\n\
                 \x20           let o = ((n * pp.cd + d) * pp.hw + i0 + {}u) / {lanec}u;\n\
                 \x20           var e = bv;\n\
                 \x20           if pp.extra == 2u {{ e = addend[o]; }}\n\
                 \x20           ys[o] = a{c}_{q} + e;\n\
                 \x20       }}",
                8 * lanec * q,
                8 * lanec * q
            )
            .unwrap();
        }
        store.push_str("    }\n");
    }
    TEMPLATE
        .replace("/*V*/", lane_type(lanec))
        .replace("/*C*/", &format!("{lanec}u"))
        .replace("/*K*/", &format!("{k}u"))
        .replace("/*P*/", &format!("{p}u"))
        .replace("/*ACC*/\n", &acc)
        .replace("/*BODY*/\n", &body)
        .replace("/*STORE*/\n", &store)
        .replace("/*WACC*/\n", "")
        .replace("/*WBODY*/\n", "")
        .replace("/*WSTORE*/\n", "")
        .replace("/*KO*/", "1u")
        .replace("/*CI*/", "1u")
}

/// The unrolled WGSL of `grad_w` for `v`.
fn w_source(v: PwWVariant) -> String {
    let (ko, ci, lanec) = (v.ko, v.ci, v.c);
    let mut acc = String::new();
    let mut body = String::new();
    let mut store = String::new();
    for c in 0..ci {
        writeln!(
            body,
            "            let x{c} = select(V(0.0), wx[(n * wp.cin + min(s0 + {c}u, wp.cin - 1u)) * wp.hw / {lanec}u + at], live);"
        )
        .unwrap();
    }
    for k in 0..ko {
        writeln!(
            body,
            "            let g{k} = select(V(0.0), wgy[(n * wp.cout + min(d0 + {k}u, wp.cout - 1u)) * wp.hw / {lanec}u + at], live);\n\
             \x20           ab{k} += {};",
            lane_sum(&format!("g{k}"), lanec)
        )
        .unwrap();
        writeln!(acc, "    var ab{k} = 0.0;").unwrap();
        writeln!(
            store,
            "    let tb{k} = subgroupAdd(ab{k});\n\
             \x20   if lane == 0u && wid.x == 0u && wp.has_bias == 1u && d0 + {k}u < wp.cout {{\n\
             \x20       gout[wid.z * wp.numel + wp.cout * wp.cin + d0 + {k}u] = tb{k};\n\
             \x20   }}"
        )
        .unwrap();
        for c in 0..ci {
            writeln!(acc, "    var a{k}_{c} = 0.0;").unwrap();
            match lanec {
                1 => writeln!(body, "            a{k}_{c} = fma(g{k}, x{c}, a{k}_{c});"),
                _ => writeln!(body, "            a{k}_{c} += dot(g{k}, x{c});"),
            }
            .unwrap();
            writeln!(
                store,
                "    let t{k}_{c} = subgroupAdd(a{k}_{c});\n\
                 \x20   if lane == 0u && d0 + {k}u < wp.cout && s0 + {c}u < wp.cin {{\n\
                 \x20       gout[wid.z * wp.numel + (d0 + {k}u) * wp.cin + s0 + {c}u] = t{k}_{c};\n\
                 \x20   }}"
            )
            .unwrap();
        }
    }
    TEMPLATE
        .replace("/*V*/", lane_type(lanec))
        .replace("/*C*/", &format!("{lanec}u"))
        .replace("/*K*/", "8u")
        .replace("/*P*/", "1u")
        .replace("/*KO*/", &format!("{ko}u"))
        .replace("/*CI*/", &format!("{ci}u"))
        .replace("/*WACC*/\n", &acc)
        .replace("/*WBODY*/\n", &body)
        .replace("/*WSTORE*/\n", &store)
        .replace("/*ACC*/\n", "")
        .replace("/*BODY*/\n", "")
        .replace("/*STORE*/\n", "")
}

/// Block sizes of `grad_w`: `ko` output × `ci` source channels per workgroup, `c` (1 or 4)
/// adjacent pixels per lane, `target` workgroups in all (more chunks of images when the
/// blocks are fewer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PwWVariant {
    pub ko: usize,
    pub ci: usize,
    pub c: usize,
    pub target: usize,
}

impl std::fmt::Display for PwWVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pwsgw ko{}ci{}c{}", self.ko, self.ci, self.c)
    }
}

/// The grad_w variants worth timing (`target` 8: four workgroups per thread on 2 cores).
pub const PW_W_VARIANTS: &[PwWVariant] = &[
    PwWVariant {
        ko: 8,
        ci: 8,
        c: 1,
        target: 8,
    },
    PwWVariant {
        ko: 16,
        ci: 8,
        c: 1,
        target: 8,
    },
    PwWVariant {
        ko: 8,
        ci: 8,
        c: 4,
        target: 8,
    },
    PwWVariant {
        ko: 16,
        ci: 8,
        c: 4,
        target: 8,
    },
    PwWVariant {
        ko: 16,
        ci: 16,
        c: 4,
        target: 8,
    },
];

/// The kernels (`grad_w`, `reduce`) of `v`.
fn w_kernels(v: PwWVariant) -> Result<(Kernel, Kernel)> {
    if v.ko == 0 || v.ci == 0 || v.ko * v.ci > 256 {
        bail!("pointwise_subgroup grad_w: variant {v} needs 1 <= ko·ci <= 256");
    }
    let name = format!("pointwise_subgroup_w_ko{}ci{}c{}", v.ko, v.ci, v.c);
    let k = |entry| super::generated(name.clone(), entry, || w_source(v));
    Ok((k("grad_w"), k("reduce")))
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct WP {
    n: u32,
    cin: u32,
    cout: u32,
    hw: u32,
    per_chunk: u32,
    chunks: u32,
    numel: u32,
    has_bias: u32,
}

/// gw [Cout, Cin, 1, 1] of y = conv2d(x, w) + b given gy, and with `bias` gb [Cout], for a 1×1
/// convolution these kernels run (see [`applies`]).
pub fn grad_wb(
    x: &Tensor,
    w: &Tensor,
    gy: &Tensor,
    bias: bool,
    p: Conv2dParams,
    v: PwWVariant,
) -> Result<(Tensor, Option<Tensor>)> {
    let g = checked(x, w, p)?;
    check_gy(&g, gy)?;
    check_pixels(&v.to_string(), v.c, g.h * g.w)?;
    let (k_sum, k_reduce) = w_kernels(v)?;
    let numel = g.cout * g.cin + if bias { g.cout } else { 0 };
    let blocks = g.cout.div_ceil(v.ko) * g.cin.div_ceil(v.ci);
    let wanted = v.target.div_ceil(blocks).min(SCRATCH / numel.max(1));
    let (per_chunk, chunks) = super::even_chunks(g.n, wanted);
    let pr = WP {
        n: u(g.n),
        cin: u(g.cin),
        cout: u(g.cout),
        hw: u(g.h * g.w),
        per_chunk: u(per_chunk),
        chunks: u(chunks),
        numel: u(numel),
        has_bias: u32::from(bias),
    };
    let gpu = x.gpu();
    let (gw, gb) = super::grad_wb_outputs(w, bias)?;
    let launch = [u(g.cin.div_ceil(v.ci)), u(g.cout.div_ceil(v.ko)), u(chunks)];
    // One chunk without a bias writes gw itself.
    let direct = chunks == 1 && !bias;
    let sums = if direct {
        gw.clone()
    } else {
        Tensor::empty(gpu, &[chunks, numel], DType::F32)?
    };
    gpu.dispatch(
        &k_sum,
        bytemuck::bytes_of(&pr),
        &[x.buf(), gy.buf()],
        &[sums.buf()],
        launch,
    )?;
    if !direct {
        gpu.dispatch(
            &k_reduce,
            bytemuck::bytes_of(&pr),
            &[sums.buf()],
            &[gw.buf(), gb.as_ref().unwrap_or(&gw).buf()],
            groups(numel.div_ceil(64)),
        )?;
    }
    Ok((gw, gb))
}

/// The kernel of `v`.
fn kernel(v: PwVariant) -> Result<Kernel> {
    if v.k == 0 || !v.k.is_multiple_of(8) || v.p == 0 || v.k * v.p > 256 {
        bail!("pointwise_subgroup: variant {v} needs k a multiple of 8, p >= 1, k·p <= 256");
    }
    let name = format!("pointwise_subgroup_k{}p{}c{}", v.k, v.p, v.c);
    Ok(super::generated(name, "conv", || source(v)))
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct PP {
    n: u32,
    cs: u32,
    cd: u32,
    hw: u32,
    dstride: u32,
    sstride: u32,
    extra: u32,
    pad0: u32,
}

/// One dispatch: dst [n, cd, hw] = w(d, s) · src [n, cs, hw] + extra, with w(d, s) at
/// w[d · dstride + s · sstride].
#[allow(clippy::too_many_arguments)]
fn run(
    v: PwVariant,
    n: usize,
    (cs, cd, hw): (usize, usize, usize),
    (dstride, sstride): (usize, usize),
    src: &Tensor,
    w: &Tensor,
    extra: Option<(&Tensor, u32)>,
    dst_shape: &[usize],
) -> Result<Tensor> {
    check_pixels(&v.to_string(), v.c, hw)?;
    let k = kernel(v)?;
    let gpu = src.gpu();
    let dst = Tensor::empty(gpu, dst_shape, DType::F32)?;
    let pr = PP {
        n: u(n),
        cs: u(cs),
        cd: u(cd),
        hw: u(hw),
        dstride: u(dstride),
        sstride: u(sstride),
        extra: extra.map_or(0, |e| e.1),
        pad0: 0,
    };
    let bias = extra.filter(|e| e.1 == 1).map_or(w, |e| e.0);
    let addend = extra.filter(|e| e.1 == 2).map_or(src, |e| e.0);
    gpu.dispatch(
        &k,
        bytemuck::bytes_of(&pr),
        &[src.buf(), w.buf(), bias.buf(), addend.buf()],
        &[dst.buf()],
        [u(hw.div_ceil(8 * v.c * v.p)), u(cd.div_ceil(v.k)), u(n)],
    )?;
    Ok(dst)
}

fn checked(x: &Tensor, w: &Tensor, p: Conv2dParams) -> Result<Geometry> {
    subgroup::require(x.gpu(), "pointwise_subgroup")?;
    geometry(x, w, p)
}

/// y = conv2d(x, w) + b for a 1×1 convolution these kernels run (see [`applies`]).
pub fn forward(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: Conv2dParams,
    v: PwVariant,
) -> Result<Tensor> {
    let g = checked(x, w, p)?;
    super::check_bias("pointwise_subgroup", b, g.cout)?;
    let shape = [g.n, g.cout, g.h, g.w];
    let dims = (g.cin, g.cout, g.h * g.w);
    run(v, g.n, dims, (g.cin, 1), x, w, b.map(|b| (b, 1)), &shape)
}

/// gx of y = conv2d(x, w) + b given gy, plus `acc` (of x's shape) when given; `x` gives the
/// input's shape only.
pub fn grad_x(
    x: &Tensor,
    w: &Tensor,
    gy: &Tensor,
    acc: Option<&Tensor>,
    p: Conv2dParams,
    v: PwVariant,
) -> Result<Tensor> {
    let g = checked(x, w, p)?;
    check_gy(&g, gy)?;
    super::check_acc("pointwise_subgroup", acc, x.shape())?;
    let dims = (g.cout, g.cin, g.h * g.w);
    run(
        v,
        g.n,
        dims,
        (1, g.cin),
        gy,
        w,
        acc.map(|a| (a, 2)),
        x.shape(),
    )
}
