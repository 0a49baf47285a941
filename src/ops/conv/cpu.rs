//! Dense convolutions for CPU-class adapters (`shaders/conv_cpu.wgsl`): register-blocked
//! kernels without workgroup memory or barriers, for drivers such as lavapipe that run a
//! workgroup on one CPU thread, vectorise across its invocations, and pay for barriers and
//! gathers. Forward and grad_x are one kernel (`conv`): each invocation sums K channels of P
//! pixels down one column, adjacent invocations take adjacent columns (contiguous loads), and
//! the weights a workgroup reads depend only on its channel block (uniform loads). grad_x
//! runs once per stride phase within one dispatch, so that every tap it visits reaches the
//! whole workgroup. grad_w gives each invocation KO output channels × T taps (bias as one
//! more tap of ones) and a column of a chunk of output rows; the WG · chunks partial sums
//! are added in a fixed order by a second kernel, so results are deterministic.
//!
//! `examples/conv_cpu_lab.rs` times every variant against `ops::conv`'s default kernels.
//! One run (lavapipe, Mesa 22.3.6, 2 shared cores, batch 32, fastest of 3; noisy: the same
//! pass moved by up to 2x between runs), best variant / default ms:
//!
//! | shape                      | forward               | grad_x                 | grad_w                  |
//! |----------------------------|-----------------------|------------------------|-------------------------|
//! | 16→16 32², 3×3             | conv k16p4 57/46 0.8x | conv k16p4 60/69 1.2x  | ko8t8 87/168 1.9x       |
//! | 32→32 16², 3×3             | conv k8p8 85/80 0.9x  | conv k8p8 82/100 1.2x  | ko16t4 112/84 0.8x      |
//! | 64→64 8², 3×3              | conv k8p8 92/68 0.7x  | conv k8p8 80/90 1.1x   | ko8t8 156/69 0.45x      |
//! | 16→32 32², 3×3 s2          | conv k8p8 54/44 0.8x  | conv k16p4 51/72 1.4x  | ko8t8 59/47 0.8x        |
//! | 32→64 16², 3×3 s2          | conv k8p8 43/35 0.8x  | conv k8p8 43/58 1.35x  | ko8t4 82/42 0.5x        |
//! | 3→16 32², 3×3 (stem)       | quad k8p1 26/22 0.9x  | conv k4p8 26/59 2.3x   | ko16t4 21/44 2.1x       |
//! | 1→16 32², 3×3 (stem)       | quad k8p1 13/21 1.7x  | conv k4p8 27/60 2.2x   | ko16t4 9.9/42 4.2x      |
//! | 1×1 C→C/2, C/2→C (6 shapes)| quad k8p2 1.05–3.4x   | quad k8p2 1.3–2.8x     | ko8t8 2.3–2.9x (0.7x 8²)|
//! | 2→2 7×7 32², 16², 8²       | 2.7x, 2.8x, 3.2x      | 4.7x, 5.3x, 2.9x       | 2.3x, 5.2x, 2.6x        |
//!
//! lavapipe (this Mesa) loads a storage buffer lane by lane in a loop, so the number of load
//! instructions per FMA decides: bigger register blocks (k8p8, k16p4, ko8t8) win, and
//! contiguity across lanes matters little.

use super::{check_gy, u, Conv2dParams, Geometry};
use crate::gpu::{groups, Kernel};
use crate::ops::SCRATCH;
use crate::tensor::{DType, Tensor};
use anyhow::{bail, Result};

/// Block sizes of forward and grad_x: `k` channels (a multiple of 4) × `p` rows per
/// invocation, `wg` invocations per workgroup. With `quad` the `quad` kernel (4 adjacent
/// pixels of each row per invocation, vec4 loads only; see [`Variant::applies`]), else the
/// general `conv` kernel (one pixel per row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    pub k: usize,
    pub p: usize,
    pub wg: usize,
    pub quad: bool,
}

/// Block sizes of `grad_w`: `ko` output channels (a multiple of 4) × `t` taps per invocation,
/// `wg` invocations per workgroup, and the number of workgroups to aim for (the N·Ho output
/// rows are split into chunks until there are about this many).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WVariant {
    pub ko: usize,
    pub t: usize,
    pub wg: usize,
    pub target: usize,
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.quad { "quad" } else { "conv" };
        write!(f, "{kind} k{}p{}w{}", self.k, self.p, self.wg)
    }
}

impl std::fmt::Display for WVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ko{}t{}w{}g{}", self.ko, self.t, self.wg, self.target)
    }
}

/// One compiled variant: the shader with its block sizes prefixed as constants.
struct Compiled {
    k: usize,
    p: usize,
    ko: usize,
    t: usize,
    wg: usize,
    ks: usize,
    quad: bool,
    name: &'static str,
    source: &'static str,
}

macro_rules! compiled {
    ($k:literal, $p:literal, $ko:literal, $t:literal, $wg:literal) => {
        compiled!($k, $p, $ko, $t, $wg, 3, false)
    };
    ($k:literal, $p:literal, $ko:literal, $t:literal, $wg:literal, $ks:literal, $quad:literal) => {
        Compiled {
            k: $k,
            p: $p,
            ko: $ko,
            t: $t,
            wg: $wg,
            ks: $ks,
            quad: $quad,
            name: concat!(
                "conv_cpu_k",
                $k,
                "p",
                $p,
                "o",
                $ko,
                "t",
                $t,
                "w",
                $wg,
                "s",
                $ks,
                "q",
                $quad
            ),
            source: concat!(
                "const K: u32 = ",
                $k,
                "u;\nconst P: u32 = ",
                $p,
                "u;\nconst KO: u32 = ",
                $ko,
                "u;\nconst T: u32 = ",
                $t,
                "u;\nconst WG: u32 = ",
                $wg,
                "u;\nconst KS: u32 = ",
                $ks,
                "u;\n",
                include_str!("../../../shaders/conv_cpu.wgsl")
            ),
        }
    };
}

/// Every compiled variant: `conv` ones (with KO = 4, T = 1 unused) and `grad_w` ones (K = 4,
/// P = 1 unused).
const COMPILED: &[Compiled] = &[
    compiled!(8, 2, 4, 1, 8),
    compiled!(4, 4, 4, 1, 8),
    compiled!(8, 4, 4, 1, 8),
    compiled!(8, 8, 4, 1, 8),
    compiled!(16, 4, 4, 1, 8),
    compiled!(4, 8, 4, 1, 8),
    compiled!(16, 2, 4, 1, 8),
    compiled!(4, 1, 4, 4, 8),
    compiled!(4, 1, 8, 2, 8),
    compiled!(4, 1, 8, 4, 8),
    compiled!(4, 1, 8, 8, 8),
    compiled!(4, 1, 16, 4, 8),
    compiled!(4, 1, 4, 8, 8),
    compiled!(4, 1, 4, 1, 8, 3, true),
    compiled!(4, 2, 4, 1, 8, 3, true),
    compiled!(8, 1, 4, 1, 8, 3, true),
    compiled!(4, 1, 4, 1, 8, 1, true),
    compiled!(8, 1, 4, 1, 8, 1, true),
    compiled!(16, 1, 4, 1, 8, 1, true),
    compiled!(8, 2, 4, 1, 8, 1, true),
    compiled!(4, 1, 4, 1, 8, 7, true),
    compiled!(4, 2, 4, 1, 8, 7, true),
];

const fn var(k: usize, p: usize, quad: bool) -> Variant {
    Variant { k, p, wg: 8, quad }
}

/// The forward and grad_x variants: `quad` ones (compiled for 1×1, 3×3 and 7×7 kernels;
/// not every block size for every kernel size), then `conv` ones.
pub const VARIANTS: &[Variant] = &[
    var(4, 1, true),
    var(4, 2, true),
    var(8, 1, true),
    var(8, 2, true),
    var(16, 1, true),
    var(8, 2, false),
    var(4, 4, false),
    var(8, 4, false),
    var(8, 8, false),
    var(16, 4, false),
    var(4, 8, false),
    var(16, 2, false),
];

const fn wv(ko: usize, t: usize, wg: usize, target: usize) -> WVariant {
    WVariant { ko, t, wg, target }
}

/// The `grad_w` variants, the expected best first.
pub const W_VARIANTS: &[WVariant] = &[
    wv(4, 4, 8, 32),
    wv(8, 2, 8, 32),
    wv(8, 4, 8, 32),
    wv(8, 8, 8, 32),
    wv(16, 4, 8, 32),
    wv(4, 8, 8, 32),
];

fn kernel(found: Option<&'static Compiled>, entry: &'static str, what: &str) -> Result<Kernel> {
    match found {
        Some(c) => Ok(Kernel {
            name: c.name,
            source: c.source,
            entry,
        }),
        None => {
            bail!("conv_cpu: no compiled {what} variant; see conv_cpu::VARIANTS and W_VARIANTS")
        }
    }
}

impl Variant {
    fn kernel(&self) -> Result<Kernel> {
        let found = COMPILED.iter().find(|c| {
            (c.k, c.p, c.wg, c.quad) == (self.k, self.p, self.wg, false) && (c.ko, c.t) == (4, 1)
        });
        kernel(found, "conv", &self.to_string())
    }

    /// The `quad` kernel and the weight packer for KS × KS kernels.
    fn quad_kernels(&self, ks: usize) -> Result<(Kernel, Kernel)> {
        let found = COMPILED
            .iter()
            .find(|c| (c.k, c.p, c.wg, c.ks, c.quad) == (self.k, self.p, self.wg, ks, true));
        let what = format!("{self} for {ks}x{ks} kernels");
        Ok((
            kernel(found, "quad", &what)?,
            kernel(found, "wt_pack", &what)?,
        ))
    }

    /// Whether this variant runs a convolution of x by w with `p`: any dense one for `conv`
    /// variants; for `quad` ones stride 1, dilation 1, square kernels of a compiled size
    /// with padding (size − 1) / 2 (output size = input size), and an input width that is a
    /// multiple of 4.
    pub fn applies(&self, x: &Tensor, w: &Tensor, p: Conv2dParams) -> bool {
        let Ok(g) = geometry(x, w, p) else {
            return false;
        };
        !self.quad || (quad_fits(&g, p) && self.quad_kernels(g.kh).is_ok())
    }
}

fn quad_fits(g: &Geometry, p: Conv2dParams) -> bool {
    g.kh == g.kw
        && p.stride == 1
        && p.dilation == 1
        && 2 * p.padding + 1 == g.kh
        && g.w.is_multiple_of(4)
}

impl WVariant {
    fn kernels(&self) -> Result<(Kernel, Kernel)> {
        let found = COMPILED.iter().find(|c| {
            (c.ko, c.t, c.wg, c.quad) == (self.ko, self.t, self.wg, false) && (c.k, c.p) == (4, 1)
        });
        let what = self.to_string();
        Ok((
            kernel(found, "grad_w", &what)?,
            kernel(found, "grad_w_reduce", &what)?,
        ))
    }
}

// The shader's parameter blocks (see there).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct ConvP {
    n: u32,
    r: u32,
    sh: u32,
    sw: u32,
    c: u32,
    dh: u32,
    dw: u32,
    kh: u32,
    kw: u32,
    dil: u32,
    cstride: u32,
    rstride: u32,
    src_step: u32,
    dst_step: u32,
    sign: i32,
    c0: i32,
    div: i32,
    phases_x: u32,
    tiles_x: u32,
    has_bias: u32,
    accumulate: u32,
    pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct QuadP {
    n: u32,
    r: u32,
    h: u32,
    w4: u32,
    c: u32,
    c_pad: u32,
    rows: u32,
    items: u32,
    has_bias: u32,
    accumulate: u32,
    flip: u32,
    pad0: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct GradWP {
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
    taps: u32,
    taps_ext: u32,
    tblocks: u32,
    rows: u32,
    segs: u32,
    slots: u32,
    has_bias: u32,
    pad0: u32,
}

/// The validated sizes of a dense convolution (these kernels run no groups).
fn geometry(x: &Tensor, w: &Tensor, p: Conv2dParams) -> Result<Geometry> {
    if p.groups != 1 {
        bail!("conv_cpu: only dense convolutions (groups == 1), got {p:?}");
    }
    super::geometry(x, w, p)
}

/// One dispatch of `conv` over `phases_x`² phases of a dst grid, `c` channels in blocks of
/// `v.k`.
fn run_conv(
    v: Variant,
    pr: ConvP,
    g_n: usize,
    src: &Tensor,
    w: &Tensor,
    extra: Option<&Tensor>,
    dst: &Tensor,
) -> Result<()> {
    let k = v.kernel()?;
    let step = pr.dst_step as usize;
    let ny = (pr.dh as usize).div_ceil(step);
    let nx = (pr.dw as usize).div_ceil(step);
    let tiles_x = nx.div_ceil(v.wg);
    let pr = ConvP {
        tiles_x: u(tiles_x),
        ..pr
    };
    let phases = (pr.phases_x * pr.phases_x) as usize;
    let wg = [
        u(tiles_x * ny.div_ceil(v.p)),
        u((pr.c as usize).div_ceil(v.k)),
        u(g_n * phases),
    ];
    src.gpu().dispatch(
        &k,
        bytemuck::bytes_of(&pr),
        &[src.buf(), w.buf(), extra.unwrap_or(w).buf()],
        &[dst.buf()],
        wg,
    )
}

/// The `quad` kernel from `src` [N, r, H, W] to `dst` [N, c, H, W] through w packed for it
/// (transposed and flipped with `flip`), adding `extra` (bias or gx_in by `pr`).
#[allow(clippy::too_many_arguments)]
fn run_quad(
    v: Variant,
    g: &Geometry,
    pr: QuadP,
    src: &Tensor,
    w: &Tensor,
    extra: Option<&Tensor>,
    dst: &Tensor,
) -> Result<()> {
    let (k_quad, k_pack) = v.quad_kernels(g.kh)?;
    let (h, w4) = (pr.h as usize, pr.w4 as usize);
    let items = h.div_ceil(v.p) * w4;
    let c_pad = (pr.c as usize).next_multiple_of(v.k);
    let pr = QuadP {
        c_pad: u(c_pad),
        items: u(items),
        ..pr
    };
    let gpu = src.gpu();
    let packed_len = pr.r as usize * g.kh * g.kw * c_pad;
    let packed = Tensor::empty(gpu, &[packed_len], DType::F32)?;
    gpu.dispatch(
        &k_pack,
        bytemuck::bytes_of(&pr),
        &[w.buf()],
        &[packed.buf()],
        groups(packed_len.div_ceil(v.wg)),
    )?;
    gpu.dispatch(
        &k_quad,
        bytemuck::bytes_of(&pr),
        &[src.buf(), packed.buf(), extra.unwrap_or(w).buf()],
        &[dst.buf()],
        [u(items.div_ceil(v.wg)), u(c_pad / v.k), u(g.n)],
    )
}

fn check_quad(v: Variant, g: &Geometry, p: Conv2dParams) -> Result<()> {
    if !quad_fits(g, p) {
        bail!(
            "conv_cpu variant {v}: needs stride 1, dilation 1, a square kernel with padding \
             (size - 1) / 2 and an input width that is a multiple of 4; got {}x{} kernel, {p:?}, \
             width {}",
            g.kh,
            g.kw,
            g.w
        );
    }
    Ok(())
}

/// y = conv2d(x, w) + b (dense, any stride, padding and dilation).
pub fn forward(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: Conv2dParams,
    v: Variant,
) -> Result<Tensor> {
    let g = geometry(x, w, p)?;
    super::check_bias("conv_cpu", b, g.cout)?;
    let y = Tensor::empty(x.gpu(), &[g.n, g.cout, g.ho, g.wo], DType::F32)?;
    if v.quad {
        check_quad(v, &g, p)?;
        let pr = QuadP {
            n: u(g.n),
            r: u(g.cin),
            h: u(g.h),
            w4: u(g.w / 4),
            c: u(g.cout),
            has_bias: u32::from(b.is_some()),
            ..Default::default()
        };
        run_quad(v, &g, pr, x, w, b, &y)?;
        return Ok(y);
    }
    let kk = g.kh * g.kw;
    let pr = ConvP {
        n: u(g.n),
        r: u(g.cin),
        sh: u(g.h),
        sw: u(g.w),
        c: u(g.cout),
        dh: u(g.ho),
        dw: u(g.wo),
        kh: u(g.kh),
        kw: u(g.kw),
        dil: u(p.dilation),
        cstride: u(g.cin * kk),
        rstride: u(kk),
        src_step: u(p.stride),
        dst_step: 1,
        sign: 1,
        c0: -(p.padding as i32),
        div: 1,
        phases_x: 1,
        has_bias: u32::from(b.is_some()),
        ..Default::default()
    };
    run_conv(v, pr, g.n, x, w, b, &y)?;
    Ok(y)
}

/// gx of y = conv2d(x, w) + b given gy, plus `acc` (of x's shape) when given. `x` gives the
/// input's shape only.
pub fn grad_x(
    x: &Tensor,
    w: &Tensor,
    gy: &Tensor,
    acc: Option<&Tensor>,
    p: Conv2dParams,
    v: Variant,
) -> Result<Tensor> {
    let g = geometry(x, w, p)?;
    check_gy(&g, gy)?;
    super::check_acc("conv_cpu", acc, x.shape())?;
    let gx = Tensor::empty(gy.gpu(), x.shape(), DType::F32)?;
    if v.quad {
        check_quad(v, &g, p)?;
        let pr = QuadP {
            n: u(g.n),
            r: u(g.cout),
            h: u(g.h),
            w4: u(g.w / 4),
            c: u(g.cin),
            accumulate: u32::from(acc.is_some()),
            flip: 1,
            ..Default::default()
        };
        run_quad(v, &g, pr, gy, w, acc, &gx)?;
        return Ok(gx);
    }
    let kk = g.kh * g.kw;
    let pr = ConvP {
        n: u(g.n),
        r: u(g.cout),
        sh: u(g.ho),
        sw: u(g.wo),
        c: u(g.cin),
        dh: u(g.h),
        dw: u(g.w),
        kh: u(g.kh),
        kw: u(g.kw),
        dil: u(p.dilation),
        cstride: u(kk),
        rstride: u(g.cin * kk),
        src_step: 1,
        dst_step: u(p.stride),
        sign: -1,
        c0: p.padding as i32,
        div: p.stride as i32,
        phases_x: u(p.stride),
        accumulate: u32::from(acc.is_some()),
        ..Default::default()
    };
    run_conv(v, pr, g.n, gy, w, acc, &gx)?;
    Ok(gx)
}

/// gw [Cout, Cin, KH, KW] of y = conv2d(x, w) + b given gy, and with `bias` gb [Cout].
pub fn grad_w(
    x: &Tensor,
    w: &Tensor,
    gy: &Tensor,
    bias: bool,
    p: Conv2dParams,
    v: WVariant,
) -> Result<(Tensor, Option<Tensor>)> {
    let g = geometry(x, w, p)?;
    check_gy(&g, gy)?;
    let (k_sum, k_reduce) = v.kernels()?;
    let taps = g.cin * g.kh * g.kw;
    let taps_ext = taps + usize::from(bias);
    let tblocks = taps_ext.div_ceil(v.t);
    let blocks = g.cout.div_ceil(v.ko) * tblocks;
    let total_rows = g.n * g.ho;
    let numel = g.cout * taps_ext;
    if v.wg * numel > SCRATCH {
        bail!(
            "conv_cpu grad_w: {} weights x {} invocations is more partial sums than the scratch \
             holds ({SCRATCH})",
            numel,
            v.wg
        );
    }
    let wanted = v.target.div_ceil(blocks).min(SCRATCH / (v.wg * numel));
    let (rows, chunks) = super::even_chunks(total_rows, wanted);
    let slots = chunks * v.wg;
    let gpu = gy.gpu();
    let partial = Tensor::empty(gpu, &[slots, numel], DType::F32)?;
    let pr = GradWP {
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
        taps: u(taps),
        taps_ext: u(taps_ext),
        tblocks: u(tblocks),
        rows: u(rows),
        segs: u(g.wo.div_ceil(v.wg)),
        slots: u(slots),
        has_bias: u32::from(bias),
        pad0: 0,
    };
    gpu.dispatch(
        &k_sum,
        bytemuck::bytes_of(&pr),
        &[gy.buf(), x.buf()],
        &[partial.buf()],
        [u(blocks), u(chunks), 1],
    )?;
    let (gw, gb) = super::grad_wb_outputs(w, bias)?;
    gpu.dispatch(
        &k_reduce,
        bytemuck::bytes_of(&pr),
        &[partial.buf()],
        &[gw.buf(), gb.as_ref().unwrap_or(&gw).buf()],
        groups(numel.div_ceil(v.wg)),
    )?;
    Ok((gw, gb))
}
