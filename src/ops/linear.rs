//! Matrix products and the fully connected layer (`shaders/linear.wgsl`): a tiled 2-D matmul
//! with optional transposes and a fused bias, and `linear` over [`Var`]s in PyTorch's layout.

use super::reduce::sum_to;
use crate::autograd::Var;
use crate::gpu::Kernel;
use crate::tensor::{DType, Tensor};
use anyhow::{bail, Result};

const SRC: &str = include_str!("../../shaders/linear.wgsl");
const MATMUL: Kernel = Kernel {
    name: "linear",
    source: SRC,
    entry: "matmul",
};
/// Output tile edge of the matmul kernel (`@workgroup_size(16, 16)`).
const TILE: usize = 16;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    trans_a: u32,
    trans_b: u32,
    has_bias: u32,
    pad: [u32; 2],
}

fn matrix(t: &Tensor, what: &str) -> Result<(usize, usize)> {
    if t.dtype() != DType::F32 {
        bail!("{what}: expected an f32 tensor, got {:?}", t.dtype());
    }
    match *t.shape() {
        [r, c] => Ok((r, c)),
        ref s => bail!("{what}: expected a 2-D tensor, got shape {s:?}"),
    }
}

fn matmul_impl(
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    trans_a: bool,
    trans_b: bool,
) -> Result<Tensor> {
    let (ar, ac) = matrix(a, "matmul input a")?;
    let (br, bc) = matrix(b, "matmul input b")?;
    let (m, k) = if trans_a { (ac, ar) } else { (ar, ac) };
    let (kb, n) = if trans_b { (bc, br) } else { (br, bc) };
    if k != kb {
        bail!(
            "matmul: inner sizes differ: a {:?} (transposed: {trans_a}) and b {:?} (transposed: {trans_b})",
            a.shape(),
            b.shape()
        );
    }
    if let Some(bias) = bias {
        if bias.shape() != [n] || bias.dtype() != DType::F32 {
            bail!(
                "matmul bias: expected an f32 tensor of shape [{n}], got {:?} {:?}",
                bias.shape(),
                bias.dtype()
            );
        }
    }
    let c = Tensor::empty(a.gpu(), &[m, n], DType::F32)?;
    let p = Params {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        trans_a: trans_a as u32,
        trans_b: trans_b as u32,
        has_bias: bias.is_some() as u32,
        pad: [0; 2],
    };
    // Without a bias the kernel never reads binding 3; `a` stands in for it.
    let bias_buf = bias.unwrap_or(a).buf();
    a.gpu().dispatch(
        &MATMUL,
        bytemuck::bytes_of(&p),
        &[a.buf(), b.buf(), bias_buf],
        &[c.buf()],
        [n.div_ceil(TILE) as u32, m.div_ceil(TILE) as u32, 1],
    )?;
    Ok(c)
}

/// op(a) · op(b) for 2-D tensors, op transposing where the flag is set: a is [M,K] (or
/// [K,M] with `trans_a`), b is [K,N] (or [N,K] with `trans_b`); the result is [M,N].
pub fn matmul_forward(a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
    matmul_impl(a, b, None, trans_a, trans_b)
}

/// y = x·wᵀ + b with x [N,F], w [O,F], b [O]: y [N,O].
pub fn linear_forward(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let (_, f) = matrix(x, "linear input x [N, F]")?;
    let (_, wf) = matrix(w, "linear weight w [O, F]")?;
    if f != wf {
        bail!(
            "linear: input x {:?} has {f} features but weight w {:?} expects {wf}",
            x.shape(),
            w.shape()
        );
    }
    matmul_impl(x, w, b, false, true)
}

/// Gradients of y = x·wᵀ + b at gy [N,O]: (gx = gy·w, gw = gyᵀ·x, gb = Σ_rows gy when
/// `bias`).
pub fn linear_backward(
    x: &Tensor,
    w: &Tensor,
    gy: &Tensor,
    bias: bool,
) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    let (n, o) = matrix(gy, "linear output gradient gy [N, O]")?;
    let (xn, f) = matrix(x, "linear input x [N, F]")?;
    let (wo, wf) = matrix(w, "linear weight w [O, F]")?;
    if xn != n || wo != o || wf != f {
        bail!(
            "linear backward: gy {:?} does not match x {:?} and w {:?}",
            gy.shape(),
            x.shape(),
            w.shape()
        );
    }
    let gx = matmul_forward(gy, w, false, false)?;
    let gw = matmul_forward(gy, x, true, false)?;
    let gb = if bias {
        Some(sum_to(gy, &[1, o])?.reshape(&[o])?)
    } else {
        None
    };
    Ok((gx, gw, gb))
}

/// The fully connected layer in PyTorch's layout: x [N,F], w [O,F], b [O] -> [N,O].
pub fn linear(x: &Var, w: &Var, b: Option<&Var>) -> Result<Var> {
    let y = linear_forward(x.value(), w.value(), b.map(Var::value))?;
    let (tx, tw, has_bias) = (x.value().clone(), w.value().clone(), b.is_some());
    let mut parents = vec![x, w];
    parents.extend(b);
    Ok(Var::from_op(
        "linear",
        y,
        &parents,
        Box::new(move |gy| {
            let (gx, gw, gb) = linear_backward(&tx, &tw, gy, has_bias)?;
            let mut out = vec![Some(gx), Some(gw)];
            if has_bias {
                out.push(gb);
            }
            Ok(out)
        }),
    ))
}
