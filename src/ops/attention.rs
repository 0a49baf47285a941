//! Softmax attention over batched rows (`shaders/attention.wgsl`): O = softmax(scale·Q Kᵀ) V
//! per batch entry, for BiFormer's per-region, per-head attention. The forward keeps each
//! query row's log-sum-exp instead of the probabilities; the backward recomputes them.

use crate::autograd::Var;
use crate::gpu::Kernel;
use crate::tensor::{DType, Tensor};
use anyhow::{bail, Result};

const SRC: &str = include_str!("../../shaders/attention.wgsl");

const fn kernel(entry: &'static str) -> Kernel {
    Kernel {
        name: "attention",
        source: SRC,
        entry,
    }
}

const FORWARD: Kernel = kernel("forward");
const BACKWARD_Q: Kernel = kernel("backward_q");
const BACKWARD_KV: Kernel = kernel("backward_kv");

/// The largest query/key and value width per head (the kernels' private accumulators).
pub const MAX_DIM: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    b: u32,
    t: u32,
    s: u32,
    d: u32,
    e: u32,
    scale: f32,
    pad: [u32; 2],
}

/// Workgroups of 64 for `rows` rows (the kernels' `row_id`).
fn rows_grid(rows: usize) -> [u32; 3] {
    let groups = rows.div_ceil(64) as u32;
    if groups <= 65535 {
        [groups, 1, 1]
    } else {
        let y = groups.div_ceil(65535);
        [groups.div_ceil(y), y, 1]
    }
}

fn params(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Params> {
    let (&[b, t, d], &[bk, s, dk], &[bv, sv, e]) = (q.shape(), k.shape(), v.shape()) else {
        bail!(
            "attention: expected Q [B, T, D], K [B, S, D], V [B, S, E], got {:?}, {:?}, {:?}",
            q.shape(),
            k.shape(),
            v.shape()
        );
    };
    if bk != b || bv != b || dk != d || sv != s {
        bail!(
            "attention: Q {:?}, K {:?} and V {:?} do not match (Q [B, T, D], K [B, S, D], V [B, S, E])",
            q.shape(),
            k.shape(),
            v.shape()
        );
    }
    if s == 0 || t == 0 || d == 0 || e == 0 || d > MAX_DIM || e > MAX_DIM {
        bail!(
            "attention: key rows S = {s}, query rows T = {t} and widths D = {d}, E = {e} must be \
             non-zero, the widths at most {MAX_DIM}"
        );
    }
    Ok(Params {
        b: b as u32,
        t: t as u32,
        s: s as u32,
        d: d as u32,
        e: e as u32,
        scale,
        pad: [0; 2],
    })
}

/// O [B, T, E] and each query row's log-sum-exp [B, T].
pub fn attention_forward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f32,
) -> Result<(Tensor, Tensor)> {
    let p = params(q, k, v, scale)?;
    let (b, t, e) = (p.b as usize, p.t as usize, p.e as usize);
    let o = Tensor::empty(q.gpu(), &[b, t, e], DType::F32)?;
    let lse = Tensor::empty(q.gpu(), &[b, t], DType::F32)?;
    q.gpu().dispatch(
        &FORWARD,
        bytemuck::bytes_of(&p),
        &[q.buf(), k.buf(), v.buf()],
        &[o.buf(), lse.buf()],
        rows_grid(b * t),
    )?;
    Ok((o, lse))
}

/// (dQ, dK, dV) from the forward's inputs, its O and log-sum-exp, and dO.
pub fn attention_backward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f32,
    o: &Tensor,
    lse: &Tensor,
    go: &Tensor,
) -> Result<[Tensor; 3]> {
    let p = params(q, k, v, scale)?;
    let (b, t, s) = (p.b as usize, p.t as usize, p.s as usize);
    if go.shape() != o.shape() || lse.shape() != [b, t] {
        bail!(
            "attention backward: grad_o {:?}, o {:?} and lse {:?} do not match Q {:?}",
            go.shape(),
            o.shape(),
            lse.shape(),
            q.shape()
        );
    }
    let gpu = q.gpu();
    let gq = Tensor::empty(gpu, q.shape(), DType::F32)?;
    let gk = Tensor::empty(gpu, k.shape(), DType::F32)?;
    let gv = Tensor::empty(gpu, v.shape(), DType::F32)?;
    let delta = Tensor::empty(gpu, &[b, t], DType::F32)?;
    let bytes = bytemuck::bytes_of(&p);
    gpu.dispatch(
        &BACKWARD_Q,
        bytes,
        &[q.buf(), k.buf(), v.buf(), o.buf(), lse.buf(), go.buf()],
        &[gq.buf(), delta.buf()],
        rows_grid(b * t),
    )?;
    gpu.dispatch(
        &BACKWARD_KV,
        bytes,
        &[q.buf(), k.buf(), v.buf(), lse.buf(), delta.buf(), go.buf()],
        &[gk.buf(), gv.buf()],
        rows_grid(b * s),
    )?;
    Ok([gq, gk, gv])
}

/// softmax(scale·Q Kᵀ) V per batch entry: Q [B, T, D], K [B, S, D], V [B, S, E] -> [B, T, E].
pub fn attention(q: &Var, k: &Var, v: &Var, scale: f32) -> Result<Var> {
    let (o, lse) = attention_forward(q.value(), k.value(), v.value(), scale)?;
    let saved = (
        q.value().clone(),
        k.value().clone(),
        v.value().clone(),
        o.clone(),
    );
    Ok(Var::from_op(
        "attention",
        o,
        &[q, k, v],
        Box::new(move |go| {
            let (q, k, v, o) = &saved;
            let [gq, gk, gv] = attention_backward(q, k, v, scale, o, &lse, go)?;
            Ok(vec![Some(gq), Some(gk), Some(gv)])
        }),
    ))
}
