//! The LSK module's spatial selection (`shaders/select.wgsl`): attn = a1·σ(z₀) + a2·σ(z₁),
//! with a1, a2 [N, C, H, W] and the selection logits z [N, 2, H, W] (the conv_squeeze output),
//! whose sigmoid maps broadcast over channels. One fused kernel forward and one backward (a
//! thread per pixel: the input gradients of its channels and the logits' gradient) replace a
//! sigmoid, two slices, two broadcast products, a sum and their backward passes, and keep
//! neither the sigmoid maps nor the products alive.

use super::FourWide;
use crate::autograd::Var;
use crate::gpu::{grid, Kernel};
use crate::tensor::{nchw, DType, Tensor};
use anyhow::{bail, Result};
use std::sync::LazyLock;

const SRC: &str = include_str!("../../shaders/select.wgsl");
static SRC_VEC4: LazyLock<String> =
    LazyLock::new(|| SRC.replace("alias V = f32;", "alias V = vec4<f32>;"));
static KERNELS: FourWide = FourWide {
    name: "select",
    source: SRC,
    name4: "select_vec4",
    source4: &SRC_VEC4,
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Params {
    n: u32,
    c: u32,
    hw: u32,
    np: u32,
}

/// The parameter block (counts in the kernel's values of one or four pixels) and the kernel.
fn params(a1: &Tensor, a2: &Tensor, z: &Tensor, entry: &'static str) -> Result<(Params, Kernel)> {
    let [n, c, h, w] = nchw(a1, "lsk_select a1")?;
    if a2.shape() != a1.shape() || z.shape() != [n, 2, h, w] {
        bail!(
            "lsk_select: expected a1, a2 of one shape [N, C, H, W] and logits z [N, 2, H, W], got {:?}, {:?}, {:?}",
            a1.shape(),
            a2.shape(),
            z.shape()
        );
    }
    if [a1, a2, z].iter().any(|t| t.dtype() != DType::F32) {
        bail!("lsk_select: inputs must be f32");
    }
    let (k, lanes) = KERNELS.kernel(a1, h * w, entry);
    let p = Params {
        n: (n * c * h * w / lanes) as u32,
        c: c as u32,
        hw: (h * w / lanes) as u32,
        np: (n * h * w / lanes) as u32,
    };
    Ok((p, k))
}

/// attn = a1·σ(z[:, 0:1]) + a2·σ(z[:, 1:2]).
pub fn lsk_select_forward(a1: &Tensor, a2: &Tensor, z: &Tensor) -> Result<Tensor> {
    let (p, k) = params(a1, a2, z, "forward")?;
    let y = Tensor::empty(a1.gpu(), a1.shape(), DType::F32)?;
    a1.gpu().dispatch(
        &k,
        bytemuck::bytes_of(&p),
        &[a1.buf(), a2.buf(), z.buf()],
        &[y.buf()],
        grid(p.n as usize),
    )?;
    Ok(y)
}

/// (d a1, d a2, d z) from d attn.
pub fn lsk_select_backward(
    a1: &Tensor,
    a2: &Tensor,
    z: &Tensor,
    gy: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (p, k) = params(a1, a2, z, "backward")?;
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
    let gz = Tensor::empty(gpu, z.shape(), DType::F32)?;
    gpu.dispatch(
        &k,
        bytemuck::bytes_of(&p),
        &[a1.buf(), a2.buf(), z.buf(), gy.buf()],
        &[g1.buf(), g2.buf(), gz.buf()],
        grid(p.np as usize),
    )?;
    Ok((g1, g2, gz))
}

/// attn = a1·σ(z₀) + a2·σ(z₁) (the LSK module's selection of its two kernel branches by the
/// sigmoid of the squeezed attention logits z).
pub fn lsk_select(a1: &Var, a2: &Var, z: &Var) -> Result<Var> {
    let y = lsk_select_forward(a1.value(), a2.value(), z.value())?;
    let (t1, t2, tz) = (a1.value().clone(), a2.value().clone(), z.value().clone());
    Ok(Var::from_op(
        "lsk_select",
        y,
        &[a1, a2, z],
        Box::new(move |gy| {
            let (g1, g2, gz) = lsk_select_backward(&t1, &t2, &tz, gy)?;
            Ok(vec![Some(g1), Some(g2), Some(gz)])
        }),
    ))
}
