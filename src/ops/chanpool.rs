//! LSK spatial selection pooling (`shaders/chanpool.wgsl`): cat(mean over channels, max over
//! channels) with keepdim, [N, C, H, W] -> [N, 2, H, W]; the pair form pools over the
//! channels of cat(a, b) without building the concatenation, and its backward sums in the
//! gradients a and b already hold.

use super::FourWide;
use crate::autograd::Var;
use crate::gpu::{grid, Kernel};
use crate::tensor::{nchw, DType, Tensor};
use anyhow::{bail, Result};
use std::sync::LazyLock;

const SRC: &str = include_str!("../../shaders/chanpool.wgsl");
static SRC_VEC4: LazyLock<String> = LazyLock::new(|| {
    SRC.replace("alias V = f32;", "alias V = vec4<f32>;")
        .replace("alias VU = u32;", "alias VU = vec4<u32>;")
});
static KERNELS: FourWide = FourWide {
    name: "chanpool",
    source: SRC,
    name4: "chanpool_vec4",
    source4: &SRC_VEC4,
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Params {
    n: u32,
    ca: u32,
    cb: u32,
    hw: u32,
    add_a: u32,
    add_b: u32,
    pad: [u32; 2],
}

/// The input's shape, the parameter block (pixel counts in the kernel's values of one or four
/// pixels) and the kernel `entry`.
fn params(
    a: &Tensor,
    b: Option<&Tensor>,
    entry: &'static str,
) -> Result<([usize; 4], Params, Kernel)> {
    let d @ [n, ca, h, w] = nchw(a, "channel_mean_max input")?;
    let cb = match b {
        Some(b) => {
            let [nb, cb, hb, wb] = nchw(b, "channel_mean_max second input")?;
            if (nb, hb, wb) != (n, h, w) || b.dtype() != DType::F32 {
                bail!(
                    "channel_mean_max: inputs {:?} and {:?} differ outside the channel axis",
                    a.shape(),
                    b.shape()
                );
            }
            cb
        }
        None => 0,
    };
    if ca == 0 || a.dtype() != DType::F32 {
        bail!(
            "channel_mean_max: expected an f32 input with at least one channel, got {:?} {:?}",
            a.dtype(),
            a.shape()
        );
    }
    let (k, lanes) = KERNELS.kernel(a, h * w, entry);
    let p = Params {
        n: (n * h * w / lanes) as u32,
        ca: ca as u32,
        cb: cb as u32,
        hw: (h * w / lanes) as u32,
        ..Default::default()
    };
    Ok((d, p, k))
}

/// y[:, 0] = mean and y[:, 1] = max over the channels of cat(a, b) (of a alone without b).
pub fn channel_mean_max_forward(a: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let ([n, _, h, w], p, k) = params(a, b, "forward")?;
    let y = Tensor::empty(a.gpu(), &[n, 2, h, w], DType::F32)?;
    a.gpu().dispatch(
        &k,
        bytemuck::bytes_of(&p),
        &[a.buf(), b.unwrap_or(a).buf()],
        &[y.buf()],
        grid(p.n as usize),
    )?;
    Ok(y)
}

/// (ga, gb): gy[:, 0] / C on every channel plus gy[:, 1] on the first channel holding the
/// maximum; plus `acc_a` and `acc_b` (gradients of a and b from elsewhere) where given.
pub fn channel_mean_max_backward(
    a: &Tensor,
    b: Option<&Tensor>,
    gy: &Tensor,
    [acc_a, acc_b]: [Option<&Tensor>; 2],
) -> Result<(Tensor, Option<Tensor>)> {
    let ([n, _, h, w], p, k) = params(a, b, "backward")?;
    if gy.shape() != [n, 2, h, w] {
        bail!(
            "channel_mean_max backward: expected grad_y of shape {:?}, got {:?}",
            [n, 2, h, w],
            gy.shape()
        );
    }
    for (name, acc, input) in [("a", acc_a, Some(a)), ("b", acc_b, b)] {
        if let Some(acc) = acc {
            if input.map(Tensor::shape) != Some(acc.shape()) || acc.dtype() != DType::F32 {
                bail!(
                    "channel_mean_max backward: the gradient to add for input {name} has shape \
                     {:?}, expected the input's {:?}",
                    acc.shape(),
                    input.map(Tensor::shape)
                );
            }
        }
    }
    let ga = Tensor::empty(a.gpu(), a.shape(), DType::F32)?;
    let gb = b
        .map(|b| Tensor::empty(b.gpu(), b.shape(), DType::F32))
        .transpose()?;
    let p = Params {
        add_a: u32::from(acc_a.is_some()),
        add_b: u32::from(acc_b.is_some()),
        ..p
    };
    a.gpu().dispatch(
        &k,
        bytemuck::bytes_of(&p),
        &[
            a.buf(),
            b.unwrap_or(a).buf(),
            gy.buf(),
            acc_a.unwrap_or(a).buf(),
            acc_b.unwrap_or(a).buf(),
        ],
        // Without b the kernel writes no channel of its second output.
        &[ga.buf(), gb.as_ref().unwrap_or(&ga).buf()],
        grid(p.n as usize),
    )?;
    Ok((ga, gb))
}

/// [N, C, H, W] -> [N, 2, H, W]: cat(x.mean(1, keepdim), x.max(1, keepdim)).
pub fn channel_mean_max(x: &Var) -> Result<Var> {
    let y = channel_mean_max_forward(x.value(), None)?;
    let tx = x.value().clone();
    Ok(Var::from_op(
        "channel_mean_max",
        y,
        &[x],
        Box::new(move |gy| {
            let (gx, _) = channel_mean_max_backward(&tx, None, gy, [None, None])?;
            Ok(vec![Some(gx)])
        }),
    ))
}

/// channel_mean_max(cat(a, b)) without the concatenation (the LSK module's aggregation).
/// Its backward runs after the LSK selection's (which also reads a and b) and adds the
/// selection's gradients into its own.
pub fn channel_mean_max_pair(a: &Var, b: &Var) -> Result<Var> {
    let y = channel_mean_max_forward(a.value(), Some(b.value()))?;
    let (ta, tb) = (a.value().clone(), b.value().clone());
    Ok(Var::from_op_accumulating(
        "channel_mean_max_pair",
        y,
        &[a, b],
        Box::new(move |gy, acc| {
            let [acc_a, acc_b] = [acc[0].take(), acc[1].take()];
            let (ga, gb) =
                channel_mean_max_backward(&ta, Some(&tb), gy, [acc_a.as_ref(), acc_b.as_ref()])?;
            Ok(vec![Some(ga), gb])
        }),
    ))
}
