//! 1×1 convolutions sharing weights across the 8 lanes of a subgroup
//! (`shaders/pointwise_subgroup.wgsl`), for lavapipe, which loads a storage buffer lane by
//! lane: 8 adjacent pixels per load, and each lane loads one of 8 output channels' weights for
//! subgroupBroadcast to share. Forward (with bias) and grad_x (with a gradient to accumulate)
//! of the LSK module's 1×1 layers: stride 1, no padding, groups == 1. Each variant's body is
//! written out unrolled and compiled once per process (leaked, as `subgroup`'s).
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
//! Defaults (`choice`): k16p8, k8p8 where the pass writes 8 channels.

use super::{check_gy, subgroup, Conv2dParams, Geometry};
use crate::gpu::Kernel;
use crate::tensor::{DType, Tensor};
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

const TEMPLATE: &str = include_str!("../../../shaders/pointwise_subgroup.wgsl");

/// `k` output channels (a multiple of 8) × `p` runs of 8 pixels per workgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PwVariant {
    pub k: usize,
    pub p: usize,
}

impl std::fmt::Display for PwVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pwsg k{}p{}", self.k, self.p)
    }
}

/// The variants worth timing.
pub const PW_VARIANTS: &[PwVariant] = &[
    PwVariant { k: 8, p: 4 },
    PwVariant { k: 8, p: 8 },
    PwVariant { k: 16, p: 4 },
    PwVariant { k: 16, p: 8 },
    PwVariant { k: 32, p: 4 },
];

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
    let (k, p) = (v.k, v.p);
    let mut acc = String::new();
    for c in 0..k {
        for q in 0..p {
            writeln!(acc, "    var a{c}_{q} = 0.0;").unwrap();
        }
    }
    let mut body = String::new();
    for q in 0..p {
        writeln!(
            body,
            "        let x{q} = xs[sb + min(i0 + {}u, pp.hw - 1u)];",
            8 * q
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
            "        let b{c} = subgroupBroadcast(w{}, {}u);",
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
             \x20       var bv = 0.0;\n\
             \x20       if pp.extra == 1u {{ bv = ex[d]; }}"
        )
        .unwrap();
        for q in 0..p {
            writeln!(
                store,
                "        if i0 + {}u < pp.hw {{\n\
                 \x20           let o = (n * pp.cd + d) * pp.hw + i0 + {}u;\n\
                 \x20           var e = bv;\n\
                 \x20           if pp.extra == 2u {{ e = ex[o]; }}\n\
                 \x20           ys[o] = a{c}_{q} + e;\n\
                 \x20       }}",
                8 * q,
                8 * q
            )
            .unwrap();
        }
        store.push_str("    }\n");
    }
    TEMPLATE
        .replace("/*K*/", &format!("{k}u"))
        .replace("/*P*/", &format!("{p}u"))
        .replace("/*ACC*/\n", &acc)
        .replace("/*BODY*/\n", &body)
        .replace("/*STORE*/\n", &store)
}

/// The kernel of `v`, written and leaked once per process.
fn kernel(v: PwVariant) -> Result<Kernel> {
    if v.k == 0 || !v.k.is_multiple_of(8) || v.p == 0 || v.k * v.p > 256 {
        bail!("pointwise_subgroup: variant {v} needs k a multiple of 8, p >= 1, k·p <= 256");
    }
    static CACHE: OnceLock<Mutex<HashMap<PwVariant, (&'static str, &'static str)>>> =
        OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let (name, source) = *cache.entry(v).or_insert_with(|| {
        let name = format!("pointwise_subgroup_k{}p{}", v.k, v.p);
        let name: &'static str = Box::leak(name.into_boxed_str());
        let source: &'static str = Box::leak(source(v).into_boxed_str());
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

fn u(v: usize) -> u32 {
    v as u32
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
    gpu.dispatch(
        &k,
        bytemuck::bytes_of(&pr),
        &[src.buf(), w.buf(), extra.map_or(w, |e| e.0).buf()],
        &[dst.buf()],
        [u(hw.div_ceil(8 * v.p)), u(cd.div_ceil(v.k)), u(n)],
    )?;
    Ok(dst)
}

fn checked(x: &Tensor, w: &Tensor, p: Conv2dParams) -> Result<Geometry> {
    if !subgroup::supported(x.gpu()) {
        bail!("pointwise_subgroup: this device lacks subgroups of at least 8 lanes");
    }
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
