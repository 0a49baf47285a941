//! Channel plumbing along dim 1 (`shaders/channels.wgsl`): concatenation and slicing of
//! [N, C, H, W] or [N, C] tensors, and the ResNet option-A shortcut.

use crate::autograd::Var;
use crate::gpu::{grid, Kernel};
use crate::tensor::{DType, Tensor};
use anyhow::{bail, Result};

const SRC: &str = include_str!("../../shaders/channels.wgsl");
const COPY_BLOCK: Kernel = Kernel {
    name: "channels",
    source: SRC,
    entry: "copy_block",
};
const SHORTCUT_FORWARD: Kernel = Kernel {
    name: "channels",
    source: SRC,
    entry: "shortcut_forward",
};
const SHORTCUT_BACKWARD: Kernel = Kernel {
    name: "channels",
    source: SRC,
    entry: "shortcut_backward",
};
const SHORTCUT_FORWARD_S2V4: Kernel = Kernel {
    name: "channels",
    source: SRC,
    entry: "shortcut_forward_s2v4",
};
const SHORTCUT_BACKWARD_S2V4: Kernel = Kernel {
    name: "channels",
    source: SRC,
    entry: "shortcut_backward_s2v4",
};

/// Whether the shortcut of an [N, C, H, W] input runs four values per invocation: on CPU
/// drivers (see `shortcut_forward_s2v4` in the shader; 2 of the plain 32×32 batch-16 step's
/// dispatches took 14.6 ms as one value per invocation), at stride 2 on maps a multiple of 8
/// wide. GPUs keep one value per invocation, as measured on the H100.
fn shortcut_vec4(x_shape: &[usize], stride: usize, gpu: &crate::Gpu) -> bool {
    stride == 2 && x_shape[3].is_multiple_of(8) && gpu.cpu_threads().is_some()
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Params {
    n: u32,
    block: u32,
    src_stride: u32,
    src_off: u32,
    dst_stride: u32,
    dst_off: u32,
    stride: u32,
    pad: u32,
    c: u32,
    h: u32,
    w: u32,
    co: u32,
    ho: u32,
    wo: u32,
    pad0: u32,
    pad1: u32,
}

/// (N, C, elements per channel) of a rank-2 [N, C] or rank-4 [N, C, H, W] f32 tensor.
fn split(t: &Tensor, what: &str) -> Result<(usize, usize, usize)> {
    if t.dtype() != DType::F32 {
        bail!("{what}: expected an f32 tensor, got {:?}", t.dtype());
    }
    match *t.shape() {
        [n, c] => Ok((n, c, 1)),
        [n, c, h, w] => Ok((n, c, h * w)),
        ref s => bail!("{what}: expected a [N, C] or [N, C, H, W] tensor, got shape {s:?}"),
    }
}

/// The shape of `t` with `c` channels.
fn with_channels(t: &Tensor, c: usize) -> Vec<usize> {
    let mut s = t.shape().to_vec();
    s[1] = c;
    s
}

/// Copies channels [src_c0, src_c0 + len) of every sample of `src` (`src_c` channels) to
/// channels [dst_c0, dst_c0 + len) of `dst` (`dst_c` channels); `s` elements per channel.
#[allow(clippy::too_many_arguments)]
fn copy_channels(
    src: &Tensor,
    src_c: usize,
    src_c0: usize,
    dst: &Tensor,
    dst_c: usize,
    dst_c0: usize,
    len: usize,
    n: usize,
    s: usize,
) -> Result<()> {
    let p = Params {
        n: (n * len * s) as u32,
        block: (len * s) as u32,
        src_stride: (src_c * s) as u32,
        src_off: (src_c0 * s) as u32,
        dst_stride: (dst_c * s) as u32,
        dst_off: (dst_c0 * s) as u32,
        ..Default::default()
    };
    src.gpu().dispatch(
        &COPY_BLOCK,
        bytemuck::bytes_of(&p),
        &[src.buf()],
        &[dst.buf()],
        grid(n * len * s),
    )
}

/// Concatenation along dim 1; every input has the same rank (2 or 4) and the same sizes
/// outside dim 1.
pub fn concat_channels_forward(xs: &[&Tensor]) -> Result<Tensor> {
    let Some(first) = xs.first() else {
        bail!("concat_channels: no inputs");
    };
    let (n, _, s) = split(first, "concat_channels input 0")?;
    let mut total = 0;
    for (i, x) in xs.iter().enumerate() {
        let (_, c, _) = split(x, &format!("concat_channels input {i}"))?;
        if with_channels(x, 0) != with_channels(first, 0) {
            bail!(
                "concat_channels: input {i} has shape {:?}, which differs from input 0 {:?} \
                 outside dim 1",
                x.shape(),
                first.shape()
            );
        }
        total += c;
    }
    let y = Tensor::empty(first.gpu(), &with_channels(first, total), DType::F32)?;
    let mut off = 0;
    for x in xs {
        let c = x.shape()[1];
        copy_channels(x, c, 0, &y, total, off, c, n, s)?;
        off += c;
    }
    Ok(y)
}

/// Channels [start, start + len) of x.
pub fn slice_channels_forward(x: &Tensor, start: usize, len: usize) -> Result<Tensor> {
    let (n, c, s) = split(x, "slice_channels input")?;
    if len == 0 || start + len > c {
        bail!(
            "slice_channels: channels {start}..{} out of range (or empty) for shape {:?}",
            start + len,
            x.shape()
        );
    }
    let y = Tensor::empty(x.gpu(), &with_channels(x, len), DType::F32)?;
    copy_channels(x, c, start, &y, len, 0, len, n, s)?;
    Ok(y)
}

/// The gradient of slice_channels: gy placed at channels [start, ..) of zeros of `x_shape`.
pub fn slice_channels_backward(gy: &Tensor, x_shape: &[usize], start: usize) -> Result<Tensor> {
    let (n, len, s) = split(gy, "slice_channels grad_y")?;
    let mut expect = x_shape.to_vec();
    if expect.len() != gy.shape().len() || start + len > x_shape[1] {
        bail!(
            "slice_channels backward: grad_y of shape {:?} at channel {start} does not fit \
             input shape {x_shape:?}",
            gy.shape()
        );
    }
    expect[1] = len;
    if expect != gy.shape() {
        bail!(
            "slice_channels backward: grad_y of shape {:?} does not match input shape \
             {x_shape:?} outside dim 1",
            gy.shape()
        );
    }
    let gx = Tensor::zeros(gy.gpu(), x_shape)?;
    copy_channels(gy, len, 0, &gx, x_shape[1], start, len, n, s)?;
    Ok(gx)
}

fn shortcut_params(x_shape: &[usize], stride: usize, pad_ch: usize) -> Result<Params> {
    let &[n, c, h, w] = x_shape else {
        bail!("shortcut_a: expected an [N, C, H, W] input, got shape {x_shape:?}");
    };
    if stride == 0 {
        bail!("shortcut_a: stride must be at least 1");
    }
    let (co, ho, wo) = (c + 2 * pad_ch, h.div_ceil(stride), w.div_ceil(stride));
    Ok(Params {
        n: (n * co * ho * wo) as u32,
        stride: stride as u32,
        pad: pad_ch as u32,
        c: c as u32,
        h: h as u32,
        w: w as u32,
        co: co as u32,
        ho: ho as u32,
        wo: wo as u32,
        ..Default::default()
    })
}

/// x[:, :, ::stride, ::stride] with `pad_ch` zero channels before and after:
/// [N, C, H, W] -> [N, C + 2·pad_ch, ceil(H/stride), ceil(W/stride)].
pub fn shortcut_a_forward(x: &Tensor, stride: usize, pad_ch: usize) -> Result<Tensor> {
    if x.dtype() != DType::F32 {
        bail!("shortcut_a: expected an f32 input, got {:?}", x.dtype());
    }
    let p = shortcut_params(x.shape(), stride, pad_ch)?;
    let shape = [x.dim(0), p.co as usize, p.ho as usize, p.wo as usize];
    let y = Tensor::empty(x.gpu(), &shape, DType::F32)?;
    let (kernel, per) = match shortcut_vec4(x.shape(), stride, x.gpu()) {
        true => (&SHORTCUT_FORWARD_S2V4, 4),
        false => (&SHORTCUT_FORWARD, 1),
    };
    let p = Params {
        n: (y.numel() / per) as u32,
        ..p
    };
    x.gpu().dispatch(
        kernel,
        bytemuck::bytes_of(&p),
        &[x.buf()],
        &[y.buf()],
        grid(y.numel() / per),
    )?;
    Ok(y)
}

/// The gradient of shortcut_a for an input of `x_shape`: gy's middle channels scattered back
/// onto the stride grid, zero elsewhere.
pub fn shortcut_a_backward(
    gy: &Tensor,
    x_shape: &[usize],
    stride: usize,
    pad_ch: usize,
) -> Result<Tensor> {
    let mut p = shortcut_params(x_shape, stride, pad_ch)?;
    let out = [x_shape[0], p.co as usize, p.ho as usize, p.wo as usize];
    if gy.shape() != out {
        bail!(
            "shortcut_a backward: expected grad_y of shape {out:?}, got {:?}",
            gy.shape()
        );
    }
    let gx = Tensor::empty(gy.gpu(), x_shape, DType::F32)?;
    let (kernel, per) = match shortcut_vec4(x_shape, stride, gy.gpu()) {
        true => (&SHORTCUT_BACKWARD_S2V4, 4),
        false => (&SHORTCUT_BACKWARD, 1),
    };
    p.n = (gx.numel() / per) as u32;
    gy.gpu().dispatch(
        kernel,
        bytemuck::bytes_of(&p),
        &[gy.buf()],
        &[gx.buf()],
        grid(gx.numel() / per),
    )?;
    Ok(gx)
}

/// Concatenation along dim 1 of rank-2 or rank-4 inputs.
pub fn concat_channels(xs: &[&Var]) -> Result<Var> {
    let values: Vec<&Tensor> = xs.iter().map(|v| v.value()).collect();
    let y = concat_channels_forward(&values)?;
    let chans: Vec<usize> = xs.iter().map(|v| v.shape()[1]).collect();
    Ok(Var::from_op(
        "concat_channels",
        y,
        xs,
        Box::new(move |gy| {
            let mut start = 0;
            let mut out = Vec::with_capacity(chans.len());
            for &c in &chans {
                out.push(Some(slice_channels_forward(gy, start, c)?));
                start += c;
            }
            Ok(out)
        }),
    ))
}

/// Channels [start, start + len) along dim 1 of a rank-2 or rank-4 input.
pub fn slice_channels(x: &Var, start: usize, len: usize) -> Result<Var> {
    let y = slice_channels_forward(x.value(), start, len)?;
    let shape = x.shape().to_vec();
    Ok(Var::from_op(
        "slice_channels",
        y,
        &[x],
        Box::new(move |gy| Ok(vec![Some(slice_channels_backward(gy, &shape, start)?)])),
    ))
}

/// ResNet option-A shortcut; see [`shortcut_a_forward`].
pub fn shortcut_a(x: &Var, stride: usize, pad_ch: usize) -> Result<Var> {
    let y = shortcut_a_forward(x.value(), stride, pad_ch)?;
    let shape = x.shape().to_vec();
    Ok(Var::from_op(
        "shortcut_a",
        y,
        &[x],
        Box::new(move |gy| Ok(vec![Some(shortcut_a_backward(gy, &shape, stride, pad_ch)?)])),
    ))
}
