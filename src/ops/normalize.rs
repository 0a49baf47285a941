//! Row-wise L2 normalisation of an [N, F] tensor, y = x / max(‖x‖, ε) as PyTorch's
//! `F.normalize(x, dim=1)` (`shaders/normalize.wgsl`): the cosine classifier's features and
//! class vectors (Cao et al. 2019's `NormedLinear`).

use super::softmax::rows;
use crate::autograd::Var;
use crate::gpu::{groups, Kernel};
use crate::tensor::{DType, Tensor};
use anyhow::{bail, Result};

/// The kernels, after the workgroup sums and maxima they share (`shaders/row_reduce.wgsl`).
const SRC: &str = concat!(
    include_str!("../../shaders/row_reduce.wgsl"),
    include_str!("../../shaders/normalize.wgsl")
);
const NORMALIZE: Kernel = Kernel {
    name: "normalize",
    source: SRC,
    entry: "l2norm",
};
const NORMALIZE_BACKWARD: Kernel = Kernel {
    name: "normalize",
    source: SRC,
    entry: "l2norm_backward",
};

/// The smallest norm divided by: F.normalize's default ε.
pub const EPS: f32 = 1e-12;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    f: u32,
    eps: f32,
    pad: u32,
}

fn params(n: usize, f: usize) -> Params {
    Params {
        n: n as u32,
        f: f as u32,
        eps: EPS,
        pad: 0,
    }
}

/// y = x / max(‖x_i‖, ε) per row of x [N, F], and the divisors d [N].
pub fn normalize_forward(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let (n, f) = rows(x, "normalize input")?;
    let y = Tensor::empty(x.gpu(), &[n, f], DType::F32)?;
    let d = Tensor::empty(x.gpu(), &[n], DType::F32)?;
    x.gpu().dispatch(
        &NORMALIZE,
        bytemuck::bytes_of(&params(n, f)),
        &[x.buf()],
        &[y.buf(), d.buf()],
        groups(n),
    )?;
    Ok((y, d))
}

/// gx from the forward's y and divisors d, and gy.
pub fn normalize_backward(y: &Tensor, d: &Tensor, gy: &Tensor) -> Result<Tensor> {
    let (n, f) = rows(y, "normalize output")?;
    if gy.shape() != y.shape() || d.shape() != [n] {
        bail!(
            "normalize backward: gy {:?} and d {:?} do not match y {:?}",
            gy.shape(),
            d.shape(),
            y.shape()
        );
    }
    let gx = Tensor::empty(y.gpu(), &[n, f], DType::F32)?;
    y.gpu().dispatch(
        &NORMALIZE_BACKWARD,
        bytemuck::bytes_of(&params(n, f)),
        &[y.buf(), d.buf(), gy.buf()],
        &[gx.buf()],
        groups(n),
    )?;
    Ok(gx)
}

/// Each row of x [N, F] divided by its L2 norm (at least ε).
pub fn normalize_rows(x: &Var) -> Result<Var> {
    let (y, d) = normalize_forward(x.value())?;
    let ty = y.clone();
    Ok(Var::from_op(
        "normalize",
        y,
        &[x],
        Box::new(move |gy| Ok(vec![Some(normalize_backward(&ty, &d, gy)?)])),
    ))
}
