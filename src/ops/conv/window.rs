//! Dense stride-1 convolutions with 3×3 or 1×1 kernels as windowed direct kernels
//! (`shaders/conv_window.wgsl`): forward and grad_x, and grad_w of 3×3 kernels. A workgroup
//! stages a 16×32 output tile's source window, 4 channels at a time, in workgroup memory,
//! and each thread sums 16 output channels of two pixels; grad_w stages 8×16 tiles of gy and
//! x and sums over chunks of them. `conv2d` offers them to autotuning beside the implicit GEMM
//! (`ConvAlgo::Window` forces them), which on a GPU spends much of its time gathering the
//! im2col operand that these kernels read once per tile.

use super::u;
use crate::gpu::{groups, Kernel};
use crate::ops::reduce::sum_to;
use crate::ops::SCRATCH;
use crate::tensor::{DType, Tensor};
use anyhow::{bail, Result};

const SRC: &str = include_str!("../../../shaders/conv_window.wgsl");
const CONV: Kernel = Kernel {
    name: "conv_window",
    source: SRC,
    entry: "conv",
};
const GRAD_W: Kernel = Kernel {
    name: "conv_window",
    source: SRC,
    entry: "grad_w",
};
/// The shader's tile (TH × TW outputs), channels staged per step (CI) and output channels
/// per thread (CO); its workgroup arrays hold windows up to 2 taps wider than the tile.
const TH: usize = 16;
const TW: usize = 32;
const CI: usize = 4;
const CO: usize = 16;
const MAX_SPAN: usize = 3;
/// grad_w's tile (GH × GWD outputs) and the workgroups it aims at.
const GH: usize = 8;
const GWD: usize = 16;
const GRAD_W_GROUPS: usize = 2048;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Params {
    n: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    dil: u32,
    pad_y: i32,
    pad_x: i32,
    tiles_x: u32,
    tiles: u32,
    cgroups: u32,
    workgroups: u32,
    flip: u32,
    has_bias: u32,
    wcin: u32,
    cigroups: u32,
    chunk: u32,
    accumulate: u32,
    pad1: u32,
}

/// A planned convolution of x [N, Cin, H, W] by w [Cout, Cin, KH, KW] at stride 1 with
/// padding `pad` and dilation `dil` (output [N, Cout, Ho, Wo]).
#[derive(Clone, Copy, Debug)]
pub struct WindowConv {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    ho: usize,
    wo: usize,
    kh: usize,
    kw: usize,
    pad: usize,
    dil: usize,
}

impl WindowConv {
    /// The plan, or None where the window would not fit the shader's arrays (a kernel
    /// reaching more than 3 pixels along an axis).
    #[allow(clippy::too_many_arguments)]
    pub fn plan(
        n: usize,
        (cin, cout): (usize, usize),
        (h, w): (usize, usize),
        (ho, wo): (usize, usize),
        (kh, kw): (usize, usize),
        pad: usize,
        dil: usize,
    ) -> Option<WindowConv> {
        let fits = |k: usize| (k - 1) * dil < MAX_SPAN;
        (fits(kh) && fits(kw)).then_some(WindowConv {
            n,
            cin,
            h,
            w,
            cout,
            ho,
            wo,
            kh,
            kw,
            pad,
            dil,
        })
    }

    /// Parameters for `src_c` source channels on a src plane to `dst_c` channels on a dst
    /// plane, with the window's offsets (rows, columns) `pad`.
    fn params(
        &self,
        (src_c, src): (usize, (usize, usize)),
        (dst_c, dst): (usize, (usize, usize)),
        pad: (i32, i32),
    ) -> Params {
        let tiles_x = dst.1.div_ceil(TW);
        let tiles = tiles_x * dst.0.div_ceil(TH);
        let cgroups = dst_c.div_ceil(CO);
        Params {
            n: u(self.n),
            cin: u(src_c),
            h: u(src.0),
            w: u(src.1),
            cout: u(dst_c),
            oh: u(dst.0),
            ow: u(dst.1),
            kh: u(self.kh),
            kw: u(self.kw),
            dil: u(self.dil),
            pad_y: pad.0,
            pad_x: pad.1,
            tiles_x: u(tiles_x),
            tiles: u(tiles),
            cgroups: u(cgroups),
            workgroups: u(self.n * cgroups * tiles),
            wcin: u(self.cin),
            ..Default::default()
        }
    }

    /// y = conv(x, w) + b.
    pub fn forward(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        let y = Tensor::empty(x.gpu(), &[self.n, self.cout, self.ho, self.wo], DType::F32)?;
        let pr = Params {
            has_bias: u32::from(b.is_some()),
            ..self.params(
                (self.cin, (self.h, self.w)),
                (self.cout, (self.ho, self.wo)),
                (self.pad as i32, self.pad as i32),
            )
        };
        run(&pr, x, w, b, y)
    }

    /// gx: the convolution of gy with the transposed kernel flipped, offset by
    /// (K−1)·dil − pad; plus `acc` (of x's shape, checked by the caller) when given.
    pub fn grad_x(&self, w: &Tensor, gy: &Tensor, acc: Option<&Tensor>) -> Result<Tensor> {
        let gx = Tensor::empty(gy.gpu(), &[self.n, self.cin, self.h, self.w], DType::F32)?;
        let offset = |k: usize| ((k - 1) * self.dil) as i32 - self.pad as i32;
        let pr = Params {
            flip: 1,
            accumulate: u32::from(acc.is_some()),
            ..self.params(
                (self.cout, (self.ho, self.wo)),
                (self.cin, (self.h, self.w)),
                (offset(self.kh), offset(self.kw)),
            )
        };
        run(&pr, gy, w, acc, gx)
    }

    /// Whether [`WindowConv::grad_w`] applies: 3×3 kernels without dilation.
    pub fn has_grad_w(&self) -> bool {
        (self.kh, self.kw, self.dil) == (3, 3, 1)
    }

    /// gw [Cout, Cin, 3, 3]: each workgroup sums a chunk of (image, tile) pairs into
    /// partial sums [chunks, Cout, Cin, 3, 3], then one reduction over the chunks.
    pub fn grad_w(&self, x: &Tensor, gy: &Tensor) -> Result<Tensor> {
        if !self.has_grad_w() {
            bail!(
                "conv2d: the windowed grad_w takes 3x3 kernels without dilation, got {}x{} \
                 with dilation {}",
                self.kh,
                self.kw,
                self.dil
            );
        }
        let (tiles_x, numel) = (self.wo.div_ceil(GWD), self.cout * self.cin * 9);
        let tiles = tiles_x * self.ho.div_ceil(GH);
        let (cgroups, cigroups) = (self.cout.div_ceil(CO), self.cin.div_ceil(CI));
        let pairs = self.n * tiles;
        let wanted = GRAD_W_GROUPS
            .div_ceil(cgroups * cigroups)
            .min(SCRATCH / numel);
        let (chunk, chunks) = super::even_chunks(pairs, wanted);
        let partial = Tensor::empty(x.gpu(), &[chunks, numel], DType::F32)?;
        // The forward's geometry, with grad_w's tiles, channel groups and chunks.
        let pad = self.pad as i32;
        let pr = Params {
            tiles_x: u(tiles_x),
            tiles: u(tiles),
            cigroups: u(cigroups),
            chunk: u(chunk),
            workgroups: u(chunks * cgroups * cigroups),
            ..self.params(
                (self.cin, (self.h, self.w)),
                (self.cout, (self.ho, self.wo)),
                (pad, pad),
            )
        };
        x.gpu().dispatch(
            &GRAD_W,
            bytemuck::bytes_of(&pr),
            &[x.buf(), gy.buf()],
            &[partial.buf()],
            groups(pr.workgroups as usize),
        )?;
        sum_to(&partial, &[1, numel])?.reshape(&[self.cout, self.cin, 3, 3])
    }
}

/// One dispatch of the kernel from `src` into `dst`; `extra` is the forward's bias or
/// grad_x's gradient to add (w is bound in its place when there is none).
fn run(
    pr: &Params,
    src: &Tensor,
    w: &Tensor,
    extra: Option<&Tensor>,
    dst: Tensor,
) -> Result<Tensor> {
    src.gpu().dispatch(
        &CONV,
        bytemuck::bytes_of(pr),
        &[src.buf(), w.buf(), extra.unwrap_or(w).buf()],
        &[dst.buf()],
        groups(pr.workgroups as usize),
    )?;
    Ok(dst)
}
