//! Depthwise convolutions for CPU-class adapters (`shaders/depthwise_cpu.wgsl`): the LSK
//! module's 5×5 and 7×7-dilation-3 layers (groups == Cin == Cout, stride 1, "same" padding,
//! widths a multiple of 4) without workgroup memory or barriers. lavapipe loads a storage
//! buffer lane by lane in a loop, so these kernels load vec4s along W only, and each
//! invocation loads every source row segment it needs once into registers and uses it for
//! all its taps and output rows: `conv` computes P output rows (DIL apart) × Q quads of 4
//! pixels of one plane (forward, and grad_x with the flipped kernel); `grad_w` walks a
//! channel's (image, row group, quad block) items with KS² + 1 sums (taps and bias) per
//! invocation, and a second kernel adds the slots' partial sums in a fixed order
//! (deterministic).
//!
//! `examples/conv_cpu_lab.rs` (shapes `dw ...`) times every variant against the engine's
//! defaults (the column kernels of `depthwise`). Two runs (lavapipe, Mesa 22.3.6, 2 cores
//! shared with other work, batch 32, 16 channels at 32², 32 at 16², 64 at 8²; the same pass
//! moved by up to 1.5x between runs), best variant's speed-up per run:
//!
//! | layer           | forward               | grad_x                | grad_w                   |
//! |-----------------|-----------------------|-----------------------|--------------------------|
//! | 5×5 32²         | 0.94x, 1.06x          | 0.82x, 1.67x          | p2q2 2.8x, 1.7x (p1q4 3.6x run 2) |
//! | 5×5 16²         | 0.96x, 1.43x          | 0.67x, 1.29x          | p2q2 5.3x, 3.6x          |
//! | 5×5 8²          | 1.26x, 1.21x          | 0.66x, 1.36x          | p2q2 7.0x, 11x           |
//! | 7×7 d3 32²      | 0.53x, 0.49x          | 0.43x, 0.73x          | 1.07x, 1.10x             |
//! | 7×7 d3 16²      | 0.54x, 0.83x          | 1.01x, 0.67x          | 1.49x, 1.80x (not the same variant) |
//! | 7×7 d3 8²       | 0.60x, 0.79x          | 0.32x, 0.56x          | p4q2 2.7x, 2.1x          |
//!
//! Larger blocks (P·Q) ran slower in forward and grad_x, though they load less per FMA:
//! lavapipe runs 8 invocations per 8-lane vector, so each per-invocation float is a 256-bit
//! register, and the windows, weights and accumulators spill.

use super::{check_gy, u, Conv2dParams, Geometry};
use crate::gpu::{groups, Kernel};
use crate::tensor::{DType, Tensor};
use anyhow::{bail, Result};

/// Block sizes: `p` output rows × `q` quads (4 pixels each) per invocation of `conv` and of
/// `grad_w`, for KS × KS kernels of dilation `dil` (only the compiled ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DwVariant {
    pub ks: usize,
    pub dil: usize,
    pub p: usize,
    pub q: usize,
}

impl std::fmt::Display for DwVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "dw{}d{} p{}q{}", self.ks, self.dil, self.p, self.q)
    }
}

/// Invocations per workgroup.
const WG: usize = 8;

struct Compiled {
    v: DwVariant,
    name: &'static str,
    source: &'static str,
}

macro_rules! compiled {
    ($ks:literal, $dil:literal, $p:literal, $q:literal) => {
        Compiled {
            v: DwVariant {
                ks: $ks,
                dil: $dil,
                p: $p,
                q: $q,
            },
            name: concat!("depthwise_cpu_", $ks, "d", $dil, "p", $p, "q", $q),
            source: concat!(
                "const KS: u32 = ",
                $ks,
                "u;\nconst DIL: u32 = ",
                $dil,
                "u;\nconst P: u32 = ",
                $p,
                "u;\nconst Q: u32 = ",
                $q,
                "u;\nconst WG: u32 = 8u;\n",
                include_str!("../../../shaders/depthwise_cpu.wgsl")
            ),
        }
    };
}

const COMPILED: &[Compiled] = &[
    compiled!(5, 1, 4, 2),
    compiled!(5, 1, 2, 2),
    compiled!(5, 1, 4, 1),
    compiled!(5, 1, 8, 1),
    compiled!(5, 1, 1, 2),
    compiled!(5, 1, 2, 1),
    compiled!(5, 1, 1, 1),
    compiled!(5, 1, 1, 4),
    compiled!(7, 3, 4, 2),
    compiled!(7, 3, 2, 2),
    compiled!(7, 3, 4, 1),
    compiled!(7, 3, 2, 1),
    compiled!(7, 3, 1, 1),
    compiled!(7, 3, 1, 2),
    compiled!(7, 3, 1, 4),
];

/// Every compiled variant.
pub const VARIANTS: &[DwVariant] = &[
    dv(5, 1, 4, 2),
    dv(5, 1, 2, 2),
    dv(5, 1, 4, 1),
    dv(5, 1, 8, 1),
    dv(5, 1, 1, 2),
    dv(5, 1, 2, 1),
    dv(5, 1, 1, 1),
    dv(5, 1, 1, 4),
    dv(7, 3, 4, 2),
    dv(7, 3, 2, 2),
    dv(7, 3, 4, 1),
    dv(7, 3, 2, 1),
    dv(7, 3, 1, 1),
    dv(7, 3, 1, 2),
    dv(7, 3, 1, 4),
];

const fn dv(ks: usize, dil: usize, p: usize, q: usize) -> DwVariant {
    DwVariant { ks, dil, p, q }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct DwP {
    planes: u32,
    c: u32,
    h: u32,
    w4: u32,
    groups: u32,
    qblocks: u32,
    items: u32,
    flip: u32,
    has_bias: u32,
    accumulate: u32,
    slots: u32,
    per_c: u32,
}

impl DwVariant {
    fn kernel(&self, entry: &'static str) -> Result<Kernel> {
        match COMPILED.iter().find(|c| c.v == *self) {
            Some(c) => Ok(Kernel {
                name: c.name,
                source: c.source,
                entry,
            }),
            None => bail!("depthwise_cpu: no compiled variant {self}; see depthwise_cpu::VARIANTS"),
        }
    }

    /// Whether this variant runs the convolution of x by w with `p`: depthwise (groups ==
    /// Cin == Cout), a KS × KS kernel of this variant's size and dilation, stride 1, padding
    /// (KS − 1)·dil / 2, an input width that is a multiple of 4, and a compiled variant.
    pub fn applies(&self, x: &Tensor, w: &Tensor, p: Conv2dParams) -> bool {
        self.check(x, w, p).is_ok()
    }

    fn check(&self, x: &Tensor, w: &Tensor, p: Conv2dParams) -> Result<Geometry> {
        let g = super::geometry(x, w, p)?;
        self.kernel("conv")?;
        let fits = p.groups == g.cin
            && g.cin == g.cout
            && (g.kh, g.kw) == (self.ks, self.ks)
            && p.dilation == self.dil
            && p.stride == 1
            && 2 * p.padding == (self.ks - 1) * self.dil
            && g.w.is_multiple_of(4);
        if !fits {
            bail!(
                "depthwise_cpu variant {self}: needs groups == Cin == Cout, a {0}x{0} kernel of \
                 dilation {1}, stride 1, padding {2} and an input width that is a multiple of 4; \
                 got x {3:?}, w {4:?}, {p:?}",
                self.ks,
                self.dil,
                (self.ks - 1) * self.dil / 2,
                x.shape(),
                w.shape()
            );
        }
        Ok(g)
    }

    /// The parameters of a pass over planes of g's size: row groups and quad blocks.
    fn params(&self, g: &Geometry) -> DwP {
        let groups = self.dil * g.h.div_ceil(self.p * self.dil);
        let qblocks = (g.w / 4).div_ceil(self.q);
        DwP {
            planes: u(g.n * g.cin),
            c: u(g.cin),
            h: u(g.h),
            w4: u(g.w / 4),
            groups: u(groups),
            qblocks: u(qblocks),
            items: u(g.n * g.cin * groups * qblocks),
            ..Default::default()
        }
    }

    fn run_conv(
        &self,
        pr: DwP,
        src: &Tensor,
        w: &Tensor,
        extra: Option<&Tensor>,
        shape: &[usize],
    ) -> Result<Tensor> {
        let gpu = src.gpu();
        let dst = Tensor::empty(gpu, shape, DType::F32)?;
        gpu.dispatch(
            &self.kernel("conv")?,
            bytemuck::bytes_of(&pr),
            &[src.buf(), w.buf(), extra.unwrap_or(w).buf()],
            &[dst.buf()],
            groups((pr.items as usize).div_ceil(WG)),
        )?;
        Ok(dst)
    }
}

/// y = depthwise_conv(x, w) + b.
pub fn forward(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: Conv2dParams,
    v: DwVariant,
) -> Result<Tensor> {
    let g = v.check(x, w, p)?;
    super::check_bias("depthwise_cpu", b, g.cout)?;
    let pr = DwP {
        has_bias: u32::from(b.is_some()),
        ..v.params(&g)
    };
    v.run_conv(pr, x, w, b, x.shape())
}

/// gx of y = depthwise_conv(x, w) + b given gy, plus `acc` (of x's shape) when given. `x`
/// gives the input's shape only.
pub fn grad_x(
    x: &Tensor,
    w: &Tensor,
    gy: &Tensor,
    acc: Option<&Tensor>,
    p: Conv2dParams,
    v: DwVariant,
) -> Result<Tensor> {
    let g = v.check(x, w, p)?;
    check_gy(&g, gy)?;
    super::check_acc("depthwise_cpu", acc, x.shape())?;
    let pr = DwP {
        flip: 1,
        accumulate: u32::from(acc.is_some()),
        ..v.params(&g)
    };
    v.run_conv(pr, gy, w, acc, x.shape())
}

/// Invocations of grad_w to aim for (C · slots): a few workgroups per CPU thread.
const GRAD_W_INVOCATIONS: usize = 512;

/// gw [C, 1, KS, KS] of y = depthwise_conv(x, w) + b given gy, and with `bias` gb [C].
pub fn grad_wb(
    x: &Tensor,
    w: &Tensor,
    gy: &Tensor,
    bias: bool,
    p: Conv2dParams,
    v: DwVariant,
) -> Result<(Tensor, Option<Tensor>)> {
    let g = v.check(x, w, p)?;
    check_gy(&g, gy)?;
    let base = v.params(&g);
    let per_c = g.n * (base.groups * base.qblocks) as usize;
    let slots = GRAD_W_INVOCATIONS.div_ceil(g.cin).clamp(1, per_c);
    let kk1 = v.ks * v.ks + 1;
    let pr = DwP {
        items: u(g.cin * slots),
        slots: u(slots),
        per_c: u(per_c),
        has_bias: u32::from(bias),
        ..base
    };
    let gpu = gy.gpu();
    let partial = Tensor::empty(gpu, &[g.cin * slots * kk1], DType::F32)?;
    gpu.dispatch(
        &v.kernel("grad_w")?,
        bytemuck::bytes_of(&pr),
        &[gy.buf(), x.buf()],
        &[partial.buf()],
        groups((g.cin * slots).div_ceil(WG)),
    )?;
    let (gw, gb) = super::grad_wb_outputs(w, bias)?;
    gpu.dispatch(
        &v.kernel("grad_w_reduce")?,
        bytemuck::bytes_of(&pr),
        &[partial.buf()],
        &[gw.buf(), gb.as_ref().unwrap_or(&gw).buf()],
        groups((g.cin * kk1).div_ceil(WG)),
    )?;
    Ok((gw, gb))
}
