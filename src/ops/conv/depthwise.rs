//! Depthwise convolution at stride 1 (groups == Cin == Cout), tiled in workgroup memory
//! (`shaders/depthwise.wgsl`): forward, grad_x and grad_w of the LSK module's 5×5 and
//! 7×7-dilation-3 layers. Each pass has three kernels: one output (grad_w: one tap) per
//! thread ([`Depthwise::forward`], [`Depthwise::grad_wb`]); strips of 4 outputs (4 taps)
//! down a column per thread ([`Depthwise::forward_strip`], [`Depthwise::grad_wb_strip`]),
//! which load a quarter of the window values per product; and the same columns read straight
//! from memory with no window ([`Depthwise::forward_columns`], [`Depthwise::grad_wb_columns`]).
//! `conv2d` runs the columns under `ConvAlgo::Auto` (the fastest on the H100), the others
//! and the direct kernels of `shaders/conv2d.wgsl` as autotuning candidates;
//! `examples/conv_bench.rs` times them against each other.

use super::u;
use crate::gpu::{groups, Kernel};
use crate::ops::reduce::sum_to;
use crate::ops::SCRATCH;
use crate::tensor::{DType, Tensor};
use anyhow::Result;

const SRC: &str = include_str!("../../../shaders/depthwise.wgsl");
const CONV: Kernel = Kernel {
    name: "depthwise",
    source: SRC,
    entry: "conv",
};
const CONV_STRIP: Kernel = Kernel {
    name: "depthwise",
    source: SRC,
    entry: "conv_strip",
};
const CONV_COLUMNS: Kernel = Kernel {
    name: "depthwise",
    source: SRC,
    entry: "conv_columns",
};
const GRAD_W: Kernel = Kernel {
    name: "depthwise",
    source: SRC,
    entry: "grad_w",
};
const GRAD_W_COLUMNS: Kernel = Kernel {
    name: "depthwise",
    source: SRC,
    entry: "grad_w_columns",
};
const GRAD_W_STRIP: Kernel = Kernel {
    name: "depthwise",
    source: SRC,
    entry: "grad_w_strip",
};

/// Workgroup arrays of the shader: staged source windows, weights or gy tiles, and
/// grad_w's per-thread sums (one per thread of the 256).
const WINDOW: usize = 2560;
const AUX: usize = 1024;
const THREADS: usize = 256;
/// Outputs per tile: at most 32 wide, and 1024 in all (4 per thread).
const TILE_W: usize = 32;
/// grad_w's strip tiles are this many gy columns wide (one thread per column and tap group)
/// and at least STRIP_W_MIN_ROWS rows high.
const STRIP_W: usize = 16;
const STRIP_W_MIN_ROWS: usize = 8;
const MAX_OUTS: usize = 1024;
/// Rows of grad_w's partial sums that the bias rows' start is rounded to, enough for any
/// adapter's view alignment (at most 256 bytes).
const ALIGN_ROWS: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Params {
    planes_total: u32,
    c: u32,
    ih: u32,
    iw: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    dil: u32,
    pad_y: i32,
    pad_x: i32,
    t: Tiling,
    workgroups: u32,
    flip: u32,
    has_bias: u32,
    slices: u32,
    bias_row: u32,
    accumulate: u32,
}

/// How one kernel covers an oh × ow plane: tiles of th × tw outputs, `planes` planes per
/// workgroup when a tile is the whole plane (u32: the shader's parameters th .. tiles).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Tiling {
    th: u32,
    tw: u32,
    ah: u32,
    aw: u32,
    planes: u32,
    tiles_x: u32,
    tiles: u32,
}

impl Tiling {
    /// Tiles of th × tw outputs over an oh × ow plane, `planes` planes per workgroup, with a
    /// staged window of ah × aw; None when a value does not fit the shader's u32.
    fn new(
        (oh, ow): (usize, usize),
        (th, tw): (usize, usize),
        (ah, aw): (usize, usize),
        planes: usize,
    ) -> Option<Tiling> {
        let tiles_x = ow.div_ceil(tw);
        let u = |v: usize| u32::try_from(v).ok();
        Some(Tiling {
            th: u(th)?,
            tw: u(tw)?,
            ah: u(ah)?,
            aw: u(aw)?,
            planes: u(planes)?,
            tiles_x: u(tiles_x)?,
            tiles: u(tiles_x * oh.div_ceil(th))?,
        })
    }
}

/// The largest tile whose source window (spans `span` = (KH−1)·dil + 1 by (KW−1)·dil + 1)
/// fits WINDOW, with `aux` workgroup values and `jobs` grad_w jobs per plane; None when not
/// even one output row does.
fn tiling(
    (oh, ow): (usize, usize),
    span: (usize, usize),
    planes_total: usize,
    aux: usize,
    jobs: usize,
) -> Option<Tiling> {
    let tw = ow.min(TILE_W);
    let aw = tw + span.1 - 1;
    let th = (1..=oh.min(MAX_OUTS / tw))
        .rev()
        .find(|th| (th + span.0 - 1) * aw <= WINDOW)?;
    let ah = th + span.0 - 1;
    let planes = if th == oh && tw == ow {
        (MAX_OUTS / (th * tw))
            .min(WINDOW / (ah * aw))
            .min(AUX / aux)
            .min(THREADS / jobs)
            .min(planes_total)
    } else {
        1
    };
    if planes == 0 || aux > AUX || jobs > THREADS {
        return None;
    }
    Tiling::new((oh, ow), (th, tw), (ah, aw), planes)
}

/// Tiles for the strip kernel: th / 4 thread rows of tw threads per plane, each thread 4 rows
/// `dil` apart, so th is a multiple of 4·dil; the window has dil more rows than the taps
/// reach. None when less than half the workgroup would have outputs (narrow planes, or small
/// ones whose dilated windows leave room for few planes), where one output per thread does
/// better.
fn strip_tiling(
    (oh, ow): (usize, usize),
    span: (usize, usize),
    dil: usize,
    planes_total: usize,
    kk: usize,
) -> Option<Tiling> {
    let tw = ow.min(TILE_W);
    let rows = (THREADS / tw) / dil * dil;
    let rows = rows.min(dil * oh.div_ceil(4 * dil));
    if rows == 0 {
        return None;
    }
    let th = 4 * rows;
    let (ah, aw) = (th + span.0 - 1 + dil, tw + span.1 - 1);
    let planes = if th >= oh && tw == ow {
        (THREADS / (tw * rows))
            .min(WINDOW / (ah * aw))
            .min(AUX / kk)
            .min(planes_total)
    } else {
        usize::from(ah * aw <= WINDOW && kk <= AUX)
    };
    if planes * tw * rows < THREADS / 2 {
        return None;
    }
    Tiling::new((oh, ow), (th, tw), (ah, aw), planes)
}

/// Tiles for grad_w's strip kernel: STRIP_W columns of gy by as many rows as fit (the gy tile
/// in AUX, the window with 4·quads·dil rows below the tile in WINDOW), one plane each. None
/// for planes narrower than STRIP_W, kernels of more than 16 tap groups of 4 (a thread per
/// group and column) or windows leaving fewer than STRIP_W_MIN_ROWS rows.
fn grad_w_strip_tiling(
    (oh, ow): (usize, usize),
    (kh, kw): (usize, usize),
    dil: usize,
) -> Option<Tiling> {
    let groups = kw * kh.div_ceil(4);
    if ow < STRIP_W || groups * STRIP_W > THREADS {
        return None;
    }
    let aw = STRIP_W + (kw - 1) * dil;
    let below = 4 * kh.div_ceil(4) * dil;
    let th = (WINDOW / aw).checked_sub(below)?.min(AUX / STRIP_W).min(oh);
    if th < STRIP_W_MIN_ROWS.min(oh) {
        return None;
    }
    Tiling::new((oh, ow), (th, STRIP_W), (th + below, aw), 1)
}

/// Rows of gy per workgroup of grad_w's column kernel.
const COLUMN_ROWS: usize = 64;

/// Tiles for grad_w's column kernel: COLUMN_ROWS rows of up to STRIP_W columns of one plane.
/// None for kernels of more tap groups of 4 than a workgroup has threads per column.
fn grad_w_column_tiling((oh, ow): (usize, usize), (kh, kw): (usize, usize)) -> Option<Tiling> {
    let tw = ow.min(STRIP_W);
    if kw * kh.div_ceil(4) * tw > THREADS || kh * kw >= THREADS {
        return None;
    }
    // No window: ah = aw = 0.
    Tiling::new((oh, ow), (oh.min(COLUMN_ROWS), tw), (0, 0), 1)
}

/// How a forward or grad_x kernel covers its output: tiles, or one thread per column strip.
#[derive(Clone, Copy)]
enum Launch<'a> {
    Tiles(&'a Tiling),
    Columns,
}

/// A planned stride-1 depthwise convolution of x [N, C, H, W] by w [C, 1, KH, KW] with
/// padding `pad` and dilation `dil` (output [N, C, Ho, Wo]).
#[derive(Clone, Copy, Debug)]
pub struct Depthwise {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    kh: usize,
    kw: usize,
    pad: usize,
    dil: usize,
    fwd: Tiling,
    gx: Tiling,
    gw: Tiling,
    /// Strip tiles for forward and grad_x, where both fit.
    strips: Option<(Tiling, Tiling)>,
    /// Strip tiles for grad_w, where they fit.
    gw_strip: Option<Tiling>,
    /// Tiles for grad_w's column kernel, where they fit.
    gw_columns: Option<Tiling>,
}

impl Depthwise {
    /// Tiles for all three kernels, or None where one does not fit (a kernel too wide or too
    /// dilated for the workgroup arrays, or too many grad_w partial sums).
    #[allow(clippy::too_many_arguments)]
    pub fn plan(
        n: usize,
        c: usize,
        (h, w): (usize, usize),
        (ho, wo): (usize, usize),
        (kh, kw): (usize, usize),
        pad: usize,
        dil: usize,
    ) -> Option<Depthwise> {
        let span = ((kh - 1) * dil + 1, (kw - 1) * dil + 1);
        let kk = kh * kw;
        let fwd = tiling((ho, wo), span, n * c, kk, 1)?;
        let gx = tiling((h, w), span, n * c, kk, 1)?;
        // grad_w tiles gy like the forward tiles y (same th × tw: aux and jobs only bound
        // the planes per workgroup), staging th·tw gy values per plane, with one job per tap
        // and one for the bias.
        let gw = tiling((ho, wo), span, n * c, (fwd.th * fwd.tw) as usize, kk + 1)?;
        let fits = |t: &Tiling| {
            (c * kk).next_multiple_of(ALIGN_ROWS) + c <= SCRATCH / (n * t.tiles as usize)
        };
        if !fits(&gw) {
            return None;
        }
        let gw_strip = grad_w_strip_tiling((ho, wo), (kh, kw), dil).filter(fits);
        let gw_columns = grad_w_column_tiling((ho, wo), (kh, kw)).filter(fits);
        let strips = strip_tiling((ho, wo), span, dil, n * c, kk).zip(strip_tiling(
            (h, w),
            span,
            dil,
            n * c,
            kk,
        ));
        Some(Depthwise {
            n,
            c,
            h,
            w,
            ho,
            wo,
            kh,
            kw,
            pad,
            dil,
            fwd,
            gx,
            gw,
            strips,
            gw_strip,
            gw_columns,
        })
    }

    /// Whether forward and grad_x can run in strips ([`Depthwise::forward_strip`]).
    pub fn has_strips(&self) -> bool {
        self.strips.is_some()
    }

    /// Whether grad_w can run in columns ([`Depthwise::grad_wb_columns`]).
    pub fn has_grad_w_columns(&self) -> bool {
        self.gw_columns.is_some()
    }

    /// Whether grad_w can run in strips ([`Depthwise::grad_wb_strip`]).
    pub fn has_grad_w_strips(&self) -> bool {
        self.gw_strip.is_some()
    }

    fn params(&self, t: &Tiling, src: (usize, usize), dst: (usize, usize)) -> Params {
        Params {
            planes_total: u(self.n * self.c),
            c: u(self.c),
            ih: u(src.0),
            iw: u(src.1),
            oh: u(dst.0),
            ow: u(dst.1),
            kh: u(self.kh),
            kw: u(self.kw),
            dil: u(self.dil),
            pad_y: self.pad as i32,
            pad_x: self.pad as i32,
            t: *t,
            workgroups: u((self.n * self.c).div_ceil(t.planes as usize) * t.tiles as usize),
            ..Default::default()
        }
    }

    /// y = depthwise_conv(x, w) + b, one output per thread.
    pub fn forward(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        self.run_forward(&CONV, Launch::Tiles(&self.fwd), x, w, b)
    }

    /// y = depthwise_conv(x, w) + b in strips of 4 outputs per thread; the one-output kernel
    /// where strips do not fit.
    pub fn forward_strip(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        match &self.strips {
            Some((t, _)) => self.run_forward(&CONV_STRIP, Launch::Tiles(t), x, w, b),
            None => self.forward(x, w, b),
        }
    }

    /// y = depthwise_conv(x, w) + b with 4 outputs down a column per thread read straight
    /// from memory (no tiles: no workgroup memory, no barrier).
    pub fn forward_columns(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        self.run_forward(&CONV_COLUMNS, Launch::Columns, x, w, b)
    }

    /// [`Depthwise::grad_x`] with 4 outputs down a column per thread read straight from
    /// memory.
    pub fn grad_x_columns(&self, w: &Tensor, gy: &Tensor, acc: Option<&Tensor>) -> Result<Tensor> {
        self.run_grad_x(&CONV_COLUMNS, Launch::Columns, w, gy, acc)
    }

    /// The parameters of a forward or grad_x launch from `src` to `dst` planes: tiled, or
    /// conv_columns' one thread per 4 output rows of a column (per plane, `dil` row groups
    /// for every 4·dil rows).
    fn launch(&self, l: Launch, src: (usize, usize), dst: (usize, usize)) -> Params {
        match l {
            Launch::Tiles(t) => self.params(t, src, dst),
            Launch::Columns => {
                let threads = self.n * self.c * self.dil * dst.0.div_ceil(4 * self.dil) * dst.1;
                // conv_columns reads no tile fields.
                Params {
                    workgroups: threads.div_ceil(THREADS) as u32,
                    ..self.params(&self.fwd, src, dst)
                }
            }
        }
    }

    /// grad_x's source row (column) of tap 0 for output row 0: (K−1)·dil − pad.
    fn grad_x_offset(&self, k: usize) -> i32 {
        ((k - 1) * self.dil) as i32 - self.pad as i32
    }

    fn run_forward(
        &self,
        kernel: &'static Kernel,
        l: Launch,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
    ) -> Result<Tensor> {
        let y = Tensor::empty(x.gpu(), &[self.n, self.c, self.ho, self.wo], DType::F32)?;
        let pr = Params {
            has_bias: u32::from(b.is_some()),
            ..self.launch(l, (self.h, self.w), (self.ho, self.wo))
        };
        x.gpu().dispatch(
            kernel,
            bytemuck::bytes_of(&pr),
            &[x.buf(), w.buf(), b.unwrap_or(w).buf()],
            &[y.buf()],
            groups(pr.workgroups as usize),
        )?;
        Ok(y)
    }

    /// gx: the correlation of gy with the flipped kernel, offset by (K−1)·dil − pad; plus
    /// `acc` (of x's shape, checked by the caller) when given, in the same pass. One output
    /// per thread.
    pub fn grad_x(&self, w: &Tensor, gy: &Tensor, acc: Option<&Tensor>) -> Result<Tensor> {
        self.run_grad_x(&CONV, Launch::Tiles(&self.gx), w, gy, acc)
    }

    /// [`Depthwise::grad_x`] in strips of 4 outputs per thread, where they fit.
    pub fn grad_x_strip(&self, w: &Tensor, gy: &Tensor, acc: Option<&Tensor>) -> Result<Tensor> {
        match &self.strips {
            Some((_, t)) => self.run_grad_x(&CONV_STRIP, Launch::Tiles(t), w, gy, acc),
            None => self.grad_x(w, gy, acc),
        }
    }

    fn run_grad_x(
        &self,
        kernel: &'static Kernel,
        l: Launch,
        w: &Tensor,
        gy: &Tensor,
        acc: Option<&Tensor>,
    ) -> Result<Tensor> {
        let gx = Tensor::empty(gy.gpu(), &[self.n, self.c, self.h, self.w], DType::F32)?;
        let pr = Params {
            flip: 1,
            accumulate: u32::from(acc.is_some()),
            pad_y: self.grad_x_offset(self.kh),
            pad_x: self.grad_x_offset(self.kw),
            ..self.launch(l, (self.ho, self.wo), (self.h, self.w))
        };
        gy.gpu().dispatch(
            kernel,
            bytemuck::bytes_of(&pr),
            &[gy.buf(), w.buf(), acc.unwrap_or(w).buf()],
            &[gx.buf()],
            groups(pr.workgroups as usize),
        )?;
        Ok(gx)
    }

    /// gw [C, 1, KH, KW], and with `bias` gb [C]: per-tile partial sums of gy·x (and of gy),
    /// then one sum over N and tiles of them all. The bias rows start at the first row past
    /// the taps' that a view can start at, so gw and gb are views of that one sum. One
    /// workgroup thread per tap (and row slice) of a tile.
    pub fn grad_wb(&self, x: &Tensor, gy: &Tensor, bias: bool) -> Result<(Tensor, Option<Tensor>)> {
        self.run_grad_wb(&GRAD_W, &self.gw, x, gy, bias)
    }

    /// [`Depthwise::grad_wb`] in strips of 4 taps per thread, where they fit.
    pub fn grad_wb_strip(
        &self,
        x: &Tensor,
        gy: &Tensor,
        bias: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        match &self.gw_strip {
            Some(t) => self.run_grad_wb(&GRAD_W_STRIP, t, x, gy, bias),
            None => self.grad_wb(x, gy, bias),
        }
    }

    /// [`Depthwise::grad_wb`] in columns of 4 taps per thread read straight from memory,
    /// where they fit (else in strips, or one tap per thread).
    pub fn grad_wb_columns(
        &self,
        x: &Tensor,
        gy: &Tensor,
        bias: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        match &self.gw_columns {
            Some(t) => self.run_grad_wb(&GRAD_W_COLUMNS, t, x, gy, bias),
            None => self.grad_wb_strip(x, gy, bias),
        }
    }

    fn run_grad_wb(
        &self,
        kernel: &'static Kernel,
        t: &Tiling,
        x: &Tensor,
        gy: &Tensor,
        bias: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (kk, splits) = (self.kh * self.kw, self.n * t.tiles as usize);
        let bias_row = x.gpu().view_start(self.c * kk);
        let rows = if bias { bias_row + self.c } else { self.c * kk };
        let partial = Tensor::empty(x.gpu(), &[rows, splits], DType::F32)?;
        let jobs = t.planes as usize * (kk + usize::from(bias));
        let pr = Params {
            slices: (THREADS / jobs).min(t.th as usize) as u32,
            has_bias: u32::from(bias),
            bias_row: bias_row as u32,
            ..self.params(t, (self.h, self.w), (self.ho, self.wo))
        };
        x.gpu().dispatch(
            kernel,
            bytemuck::bytes_of(&pr),
            &[x.buf(), gy.buf()],
            &[partial.buf()],
            groups(pr.workgroups as usize),
        )?;
        let sums = sum_to(&partial, &[rows, 1])?;
        let gw = sums.view(0, &[self.c, 1, self.kh, self.kw])?;
        let gb = bias.then(|| sums.view(bias_row, &[self.c])).transpose()?;
        Ok((gw, gb))
    }
}
