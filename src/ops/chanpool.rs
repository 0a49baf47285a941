//! LSK spatial selection pooling (`shaders/chanpool.wgsl`): cat(mean over channels, max over
//! channels) with keepdim, [N, C, H, W] -> [N, 2, H, W].

use crate::autograd::Var;
use crate::gpu::{grid, Kernel};
use crate::tensor::{nchw, DType, Tensor};
use anyhow::{bail, Result};

const SRC: &str = include_str!("../../shaders/chanpool.wgsl");
const FORWARD: Kernel = Kernel {
    name: "chanpool",
    source: SRC,
    entry: "forward",
};
const BACKWARD: Kernel = Kernel {
    name: "chanpool",
    source: SRC,
    entry: "backward",
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Params {
    n: u32,
    c: u32,
    hw: u32,
    pad: u32,
}

fn params(x: &Tensor) -> Result<([usize; 4], Params)> {
    let d @ [n, c, h, w] = nchw(x, "channel_mean_max input")?;
    if c == 0 || x.dtype() != DType::F32 {
        bail!(
            "channel_mean_max: expected an f32 input with at least one channel, got {:?} {:?}",
            x.dtype(),
            x.shape()
        );
    }
    let p = Params {
        n: (n * h * w) as u32,
        c: c as u32,
        hw: (h * w) as u32,
        pad: 0,
    };
    Ok((d, p))
}

/// y[:, 0] = mean of x over channels, y[:, 1] = max of x over channels.
pub fn channel_mean_max_forward(x: &Tensor) -> Result<Tensor> {
    let ([n, _, h, w], p) = params(x)?;
    let y = Tensor::empty(x.gpu(), &[n, 2, h, w], DType::F32)?;
    x.gpu().dispatch(
        &FORWARD,
        bytemuck::bytes_of(&p),
        &[x.buf()],
        &[y.buf()],
        grid(p.n as usize),
    )?;
    Ok(y)
}

/// gx: gy[:, 0] / C on every channel plus gy[:, 1] on the first channel holding the maximum.
pub fn channel_mean_max_backward(x: &Tensor, gy: &Tensor) -> Result<Tensor> {
    let ([n, _, h, w], p) = params(x)?;
    if gy.shape() != [n, 2, h, w] {
        bail!(
            "channel_mean_max backward: expected grad_y of shape {:?}, got {:?}",
            [n, 2, h, w],
            gy.shape()
        );
    }
    let gx = Tensor::empty(x.gpu(), x.shape(), DType::F32)?;
    x.gpu().dispatch(
        &BACKWARD,
        bytemuck::bytes_of(&p),
        &[x.buf(), gy.buf()],
        &[gx.buf()],
        grid(p.n as usize),
    )?;
    Ok(gx)
}

/// [N, C, H, W] -> [N, 2, H, W]: cat(x.mean(1, keepdim), x.max(1, keepdim)).
pub fn channel_mean_max(x: &Var) -> Result<Var> {
    let y = channel_mean_max_forward(x.value())?;
    let tx = x.value().clone();
    Ok(Var::from_op(
        "channel_mean_max",
        y,
        &[x],
        Box::new(move |gy| Ok(vec![Some(channel_mean_max_backward(&tx, gy)?)])),
    ))
}
