//! The LSK module's spatial selection (`shaders/select.wgsl`): attn = a1·s₀ + a2·s₁, with
//! a1, a2 [N, C, H, W] and the sigmoid selection maps s [N, 2, H, W] broadcast over channels.
//! One fused kernel forward and two backward (element-wise input gradients, per-pixel channel
//! sums for s) replace two slices, two broadcast products, a sum and their backward
//! reductions, and keep none of the products alive.

use crate::autograd::Var;
use crate::gpu::{grid, Kernel};
use crate::tensor::{nchw, DType, Tensor};
use anyhow::{bail, Result};

const SRC: &str = include_str!("../../shaders/select.wgsl");
const FORWARD: Kernel = Kernel {
    name: "select",
    source: SRC,
    entry: "forward",
};
const BACKWARD_INPUTS: Kernel = Kernel {
    name: "select",
    source: SRC,
    entry: "backward_inputs",
};
const BACKWARD_SELECT: Kernel = Kernel {
    name: "select",
    source: SRC,
    entry: "backward_select",
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Params {
    n: u32,
    c: u32,
    hw: u32,
    np: u32,
}

fn params(a1: &Tensor, a2: &Tensor, s: &Tensor) -> Result<Params> {
    let [n, c, h, w] = nchw(a1, "lsk_select a1")?;
    if a2.shape() != a1.shape() || s.shape() != [n, 2, h, w] {
        bail!(
            "lsk_select: expected a1, a2 of one shape [N, C, H, W] and s [N, 2, H, W], got {:?}, {:?}, {:?}",
            a1.shape(),
            a2.shape(),
            s.shape()
        );
    }
    if [a1, a2, s].iter().any(|t| t.dtype() != DType::F32) {
        bail!("lsk_select: inputs must be f32");
    }
    Ok(Params {
        n: (n * c * h * w) as u32,
        c: c as u32,
        hw: (h * w) as u32,
        np: (n * h * w) as u32,
    })
}

/// attn = a1·s[:, 0:1] + a2·s[:, 1:2].
pub fn lsk_select_forward(a1: &Tensor, a2: &Tensor, s: &Tensor) -> Result<Tensor> {
    let p = params(a1, a2, s)?;
    let y = Tensor::empty(a1.gpu(), a1.shape(), DType::F32)?;
    a1.gpu().dispatch(
        &FORWARD,
        bytemuck::bytes_of(&p),
        &[a1.buf(), a2.buf(), s.buf()],
        &[y.buf()],
        grid(p.n as usize),
    )?;
    Ok(y)
}

/// (d a1, d a2, d s) from d attn.
pub fn lsk_select_backward(
    a1: &Tensor,
    a2: &Tensor,
    s: &Tensor,
    gy: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let p = params(a1, a2, s)?;
    if gy.shape() != a1.shape() {
        bail!(
            "lsk_select backward: expected grad of shape {:?}, got {:?}",
            a1.shape(),
            gy.shape()
        );
    }
    let gpu = a1.gpu();
    let g1 = Tensor::empty(gpu, a1.shape(), DType::F32)?;
    let g2 = Tensor::empty(gpu, a2.shape(), DType::F32)?;
    let gs = Tensor::empty(gpu, s.shape(), DType::F32)?;
    let pb = bytemuck::bytes_of(&p);
    gpu.dispatch(
        &BACKWARD_INPUTS,
        pb,
        &[a1.buf(), a2.buf(), s.buf(), gy.buf()],
        &[g1.buf(), g2.buf()],
        grid(p.n as usize),
    )?;
    // The per-pixel sums write d s through the first output binding.
    gpu.dispatch(
        &BACKWARD_SELECT,
        pb,
        &[a1.buf(), a2.buf(), s.buf(), gy.buf()],
        &[gs.buf(), g2.buf()],
        grid(p.np as usize),
    )?;
    Ok((g1, g2, gs))
}

/// attn = a1·s₀ + a2·s₁ (the LSK module's selection of its two kernel branches).
pub fn lsk_select(a1: &Var, a2: &Var, s: &Var) -> Result<Var> {
    let y = lsk_select_forward(a1.value(), a2.value(), s.value())?;
    let (t1, t2, ts) = (a1.value().clone(), a2.value().clone(), s.value().clone());
    Ok(Var::from_op(
        "lsk_select",
        y,
        &[a1, a2, s],
        Box::new(move |gy| {
            let (g1, g2, gs) = lsk_select_backward(&t1, &t2, &ts, gy)?;
            Ok(vec![Some(g1), Some(g2), Some(gs)])
        }),
    ))
}
