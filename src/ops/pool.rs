//! Global average pooling, [N, C, H, W] -> [N, C], on the reduction kernels of
//! `shaders/reduce.wgsl` (a sum over H, W scaled by 1/(H·W), and its broadcast back).

use super::reduce::{expand_scaled, sum_to_scaled};
use crate::autograd::Var;
use crate::tensor::{nchw, Tensor};
use anyhow::{bail, Result};

pub fn global_avg_pool_forward(x: &Tensor) -> Result<Tensor> {
    let [n, c, h, w] = nchw(x, "global_avg_pool input")?;
    if h * w == 0 {
        bail!(
            "global_avg_pool: empty spatial size in input shape {:?}",
            x.shape()
        );
    }
    sum_to_scaled(x, &[n, c, 1, 1], 1.0 / (h * w) as f32)?.reshape(&[n, c])
}

/// gx = gy / (H·W) broadcast over H, W; `x_shape` is the forward input's shape.
pub fn global_avg_pool_backward(gy: &Tensor, x_shape: &[usize]) -> Result<Tensor> {
    let &[n, c, h, w] = x_shape else {
        bail!("global_avg_pool backward: expected an [N, C, H, W] input shape, got {x_shape:?}");
    };
    if gy.shape() != [n, c] {
        bail!(
            "global_avg_pool backward: expected grad_y of shape {:?}, got {:?}",
            [n, c],
            gy.shape()
        );
    }
    expand_scaled(&gy.reshape(&[n, c, 1, 1])?, x_shape, 1.0 / (h * w) as f32)
}

/// Mean over H and W: [N, C, H, W] -> [N, C].
pub fn global_avg_pool(x: &Var) -> Result<Var> {
    let y = global_avg_pool_forward(x.value())?;
    let shape = x.shape().to_vec();
    Ok(Var::from_op(
        "global_avg_pool",
        y,
        &[x],
        Box::new(move |gy| Ok(vec![Some(global_avg_pool_backward(gy, &shape)?)])),
    ))
}
