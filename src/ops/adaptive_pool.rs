//! Adaptive average pooling to a fixed (OH, OW), PyTorch's `F.adaptive_avg_pool2d`
//! (`shaders/adaptive_pool.wgsl`): VGG's `avgpool`, AdaptiveAvgPool2d((7, 7)), which is the
//! identity on the 7×7 maps of a 224 input and replicates the 1×1 map of a 32 input.

use crate::autograd::Var;
use crate::gpu::{grid, Kernel};
use crate::tensor::{nchw, DType, Tensor};
use anyhow::{anyhow, bail, Result};

const SRC: &str = include_str!("../../shaders/adaptive_pool.wgsl");
const FORWARD: Kernel = Kernel {
    name: "adaptive_pool",
    source: SRC,
    entry: "forward",
};
const BACKWARD: Kernel = Kernel {
    name: "adaptive_pool",
    source: SRC,
    entry: "backward",
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Params {
    n: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    pad: [u32; 3],
}

fn params(threads: usize, [h, w, oh, ow]: [usize; 4]) -> Result<Params> {
    if [h, w, oh, ow].contains(&0) {
        bail!("adaptive_avg_pool2d: cannot pool a {h}x{w} map to {oh}x{ow}");
    }
    // The kernel's bin bounds multiply an index by a length: (H + 1)·OH must fit in u32.
    let fits = |a: usize, b: usize| {
        (a + 1)
            .checked_mul(b)
            .is_some_and(|v| v <= u32::MAX as usize)
    };
    if !fits(h, oh) || !fits(w, ow) || !fits(oh, h) || !fits(ow, w) {
        bail!("adaptive_avg_pool2d: a {h}x{w} map pooled to {oh}x{ow} is too large");
    }
    let n = u32::try_from(threads).map_err(|_| {
        anyhow!("adaptive_avg_pool2d: {threads} elements are too many for one call")
    })?;
    Ok(Params {
        n,
        h: h as u32,
        w: w as u32,
        oh: oh as u32,
        ow: ow as u32,
        ..Default::default()
    })
}

/// y [N, C, oh, ow]: the mean of x over each of PyTorch's adaptive bins.
pub fn adaptive_avg_pool2d_forward(x: &Tensor, oh: usize, ow: usize) -> Result<Tensor> {
    let [n, c, h, w] = nchw(x, "adaptive_avg_pool2d input")?;
    if x.dtype() != DType::F32 {
        bail!(
            "adaptive_avg_pool2d: expected an f32 input, got {:?}",
            x.dtype()
        );
    }
    let y = Tensor::empty(x.gpu(), &[n, c, oh, ow], DType::F32)?;
    let p = params(y.numel(), [h, w, oh, ow])?;
    x.gpu().dispatch(
        &FORWARD,
        bytemuck::bytes_of(&p),
        &[x.buf()],
        &[y.buf()],
        grid(y.numel()),
    )?;
    Ok(y)
}

/// gx of the input shape `x_shape`: gy spread evenly over each output's bin.
pub fn adaptive_avg_pool2d_backward(gy: &Tensor, x_shape: &[usize]) -> Result<Tensor> {
    let &[n, c, h, w] = x_shape else {
        bail!(
            "adaptive_avg_pool2d backward: expected an [N, C, H, W] input shape, got {x_shape:?}"
        );
    };
    let [gn, gc, oh, ow] = nchw(gy, "adaptive_avg_pool2d grad_y")?;
    if (gn, gc) != (n, c) || gy.dtype() != DType::F32 {
        bail!(
            "adaptive_avg_pool2d backward: grad_y {:?} does not match the input {x_shape:?}",
            gy.shape()
        );
    }
    let gx = Tensor::empty(gy.gpu(), x_shape, DType::F32)?;
    let p = params(gx.numel(), [h, w, oh, ow])?;
    gy.gpu().dispatch(
        &BACKWARD,
        bytemuck::bytes_of(&p),
        &[gy.buf()],
        &[gx.buf()],
        grid(gx.numel()),
    )?;
    Ok(gx)
}

/// [N, C, H, W] -> [N, C, oh, ow] (PyTorch's `nn.AdaptiveAvgPool2d((oh, ow))`).
pub fn adaptive_avg_pool2d(x: &Var, oh: usize, ow: usize) -> Result<Var> {
    let y = adaptive_avg_pool2d_forward(x.value(), oh, ow)?;
    let shape = x.shape().to_vec();
    Ok(Var::from_op(
        "adaptive_avg_pool2d",
        y,
        &[x],
        Box::new(move |gy| Ok(vec![Some(adaptive_avg_pool2d_backward(gy, &shape)?)])),
    ))
}

/// [N, C, H, W] -> [N, C·H·W] (`torch.flatten(x, 1)`, as VGG before its classifier): the same
/// buffer seen with another shape, and the gradient seen back.
pub fn flatten(x: &Var) -> Result<Var> {
    let [n, c, h, w] = nchw(x.value(), "flatten input")?;
    let shape = x.shape().to_vec();
    Ok(Var::from_op(
        "flatten",
        x.value().reshape(&[n, c * h * w])?,
        &[x],
        Box::new(move |gy| Ok(vec![Some(gy.reshape(&shape)?)])),
    ))
}
