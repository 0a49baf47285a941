//! 2-D max pooling, PyTorch's `F.max_pool2d` with a square window, stride and padding and
//! ceil_mode=false (`shaders/maxpool.wgsl`): torchvision's ResNet stem pools 3/2/1, VGG's
//! stages 2/2/0. The forward keeps the argmax per output; the backward gathers through it.

use crate::autograd::Var;
use crate::gpu::{grid, Kernel};
use crate::tensor::{nchw, DType, Tensor};
use anyhow::{bail, Result};

const SRC: &str = include_str!("../../shaders/maxpool.wgsl");
const FORWARD: Kernel = Kernel {
    name: "maxpool",
    source: SRC,
    entry: "forward",
};
const BACKWARD: Kernel = Kernel {
    name: "maxpool",
    source: SRC,
    entry: "backward",
};

/// A max pooling window: `k`×`k`, moved by `stride`, over an input padded by `padding` on
/// each side (with −∞).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool {
    pub k: usize,
    pub stride: usize,
    pub padding: usize,
}

impl MaxPool {
    /// The output's (OH, OW) for an H×W input, or an error naming `what` when the window
    /// does not fit or the parameters are ones PyTorch refuses (padding over half the window).
    pub fn out_size(&self, h: usize, w: usize, what: &str) -> Result<(usize, usize)> {
        let MaxPool { k, stride, padding } = *self;
        if k == 0 || stride == 0 {
            bail!("{what}: max pooling needs a window and stride of at least 1, got {self:?}");
        }
        if 2 * padding > k {
            bail!("{what}: max pooling padding {padding} is more than half the window {k}");
        }
        if h + 2 * padding < k || w + 2 * padding < k {
            bail!(
                "{what}: a {h}x{w} input padded by {padding} is smaller than the {k}x{k} max \
                 pooling window"
            );
        }
        Ok((
            (h + 2 * padding - k) / stride + 1,
            (w + 2 * padding - k) / stride + 1,
        ))
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    k: u32,
    s: u32,
    pad: u32,
}

fn params(threads: usize, [h, w, oh, ow]: [usize; 4], m: MaxPool) -> Result<Params> {
    let n = u32::try_from(threads)
        .map_err(|_| anyhow::anyhow!("max_pool2d: {threads} elements are too many for one call"))?;
    Ok(Params {
        n,
        h: h as u32,
        w: w as u32,
        oh: oh as u32,
        ow: ow as u32,
        k: m.k as u32,
        s: m.stride as u32,
        pad: m.padding as u32,
    })
}

/// y [N, C, OH, OW], the maximum of each window, and the index iy·W + ix (u32) of the first
/// input element holding it within its plane.
pub fn max_pool2d_forward(x: &Tensor, m: MaxPool) -> Result<(Tensor, Tensor)> {
    let [n, c, h, w] = nchw(x, "max_pool2d input")?;
    if x.dtype() != DType::F32 {
        bail!("max_pool2d: expected an f32 input, got {:?}", x.dtype());
    }
    let (oh, ow) = m.out_size(h, w, "max_pool2d")?;
    let y = Tensor::empty(x.gpu(), &[n, c, oh, ow], DType::F32)?;
    let idx = Tensor::empty(x.gpu(), &[n, c, oh, ow], DType::U32)?;
    let p = params(y.numel(), [h, w, oh, ow], m)?;
    x.gpu().dispatch(
        &FORWARD,
        bytemuck::bytes_of(&p),
        &[x.buf()],
        &[y.buf(), idx.buf()],
        grid(y.numel()),
    )?;
    Ok((y, idx))
}

/// gx of the input shape `x_shape`: each input element gets the sum of gy over the outputs
/// whose stored index names it.
pub fn max_pool2d_backward(
    idx: &Tensor,
    gy: &Tensor,
    x_shape: &[usize],
    m: MaxPool,
) -> Result<Tensor> {
    let &[n, c, h, w] = x_shape else {
        bail!("max_pool2d backward: expected an [N, C, H, W] input shape, got {x_shape:?}");
    };
    let (oh, ow) = m.out_size(h, w, "max_pool2d backward")?;
    if gy.shape() != [n, c, oh, ow] || idx.shape() != gy.shape() || idx.dtype() != DType::U32 {
        bail!(
            "max_pool2d backward: expected grad_y and u32 indices of shape {:?}, got {:?} and \
             {:?} {:?}",
            [n, c, oh, ow],
            gy.shape(),
            idx.dtype(),
            idx.shape()
        );
    }
    let gx = Tensor::empty(gy.gpu(), x_shape, DType::F32)?;
    let p = params(gx.numel(), [h, w, oh, ow], m)?;
    gy.gpu().dispatch(
        &BACKWARD,
        bytemuck::bytes_of(&p),
        &[idx.buf(), gy.buf()],
        &[gx.buf()],
        grid(gx.numel()),
    )?;
    Ok(gx)
}

/// Max pooling of x [N, C, H, W] (PyTorch's `nn.MaxPool2d(k, stride, padding)`).
pub fn max_pool2d(x: &Var, m: MaxPool) -> Result<Var> {
    let (y, idx) = max_pool2d_forward(x.value(), m)?;
    let shape = x.shape().to_vec();
    Ok(Var::from_op(
        "max_pool2d",
        y,
        &[x],
        Box::new(move |gy| Ok(vec![Some(max_pool2d_backward(&idx, gy, &shape, m)?)])),
    ))
}
