//! Softmax and log-softmax over the last dimension of an [N, C] tensor, and picking one entry
//! per row at a label (`shaders/softmax.wgsl`).

use crate::autograd::Var;
use crate::gpu::{grid, groups, Kernel};
use crate::tensor::{DType, Tensor};
use anyhow::{bail, Result};

/// The kernels, after the workgroup sums and maxima they share (`shaders/row_reduce.wgsl`).
const SRC: &str = concat!(
    include_str!("../../shaders/row_reduce.wgsl"),
    include_str!("../../shaders/softmax.wgsl")
);
const SOFTMAX: Kernel = Kernel {
    name: "softmax",
    source: SRC,
    entry: "softmax",
};
const SOFTMAX_BACKWARD: Kernel = Kernel {
    name: "softmax",
    source: SRC,
    entry: "softmax_backward",
};
const GATHER: Kernel = Kernel {
    name: "softmax",
    source: SRC,
    entry: "gather",
};
const SCATTER: Kernel = Kernel {
    name: "softmax",
    source: SRC,
    entry: "scatter",
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Params {
    n: u32,
    c: u32,
    log: u32,
    pad: u32,
}

/// (N, C) of an f32 [N, C] tensor with C >= 1.
pub(crate) fn rows(t: &Tensor, what: &str) -> Result<(usize, usize)> {
    match (t.shape(), t.dtype()) {
        (&[n, c], DType::F32) if c > 0 => Ok((n, c)),
        _ => bail!(
            "{what}: expected an f32 [N, C] tensor with C >= 1, got {:?} {:?}",
            t.shape(),
            t.dtype()
        ),
    }
}

/// Checks that `labels` is a U32 [n] tensor.
pub(crate) fn check_labels(labels: &Tensor, n: usize) -> Result<()> {
    if labels.dtype() != DType::U32 || labels.shape() != [n] {
        bail!(
            "labels: expected a U32 tensor of shape [{n}], got {:?} {:?}",
            labels.shape(),
            labels.dtype()
        );
    }
    Ok(())
}

/// softmax(x) (or log_softmax(x) with `log`) over the last dimension of x [N, C].
pub fn softmax_forward(x: &Tensor, log: bool) -> Result<Tensor> {
    let (n, c) = rows(x, "softmax input")?;
    let y = Tensor::empty(x.gpu(), &[n, c], DType::F32)?;
    let p = Params {
        n: n as u32,
        c: c as u32,
        log: log as u32,
        pad: 0,
    };
    x.gpu().dispatch(
        &SOFTMAX,
        bytemuck::bytes_of(&p),
        &[x.buf()],
        &[y.buf()],
        groups(n),
    )?;
    Ok(y)
}

/// gx from the forward output y and gy (same `log` flag as the forward).
pub fn softmax_backward(y: &Tensor, gy: &Tensor, log: bool) -> Result<Tensor> {
    let (n, c) = rows(y, "softmax output")?;
    if gy.shape() != y.shape() {
        bail!(
            "softmax backward: gy {:?} does not match y {:?}",
            gy.shape(),
            y.shape()
        );
    }
    let gx = Tensor::empty(y.gpu(), &[n, c], DType::F32)?;
    let p = Params {
        n: n as u32,
        c: c as u32,
        log: log as u32,
        pad: 0,
    };
    y.gpu().dispatch(
        &SOFTMAX_BACKWARD,
        bytemuck::bytes_of(&p),
        &[y.buf(), gy.buf()],
        &[gx.buf()],
        groups(n),
    )?;
    Ok(gx)
}

fn softmax_var(x: &Var, log: bool) -> Result<Var> {
    let y = softmax_forward(x.value(), log)?;
    let ty = y.clone();
    Ok(Var::from_op(
        if log { "log_softmax" } else { "softmax" },
        y,
        &[x],
        Box::new(move |gy| Ok(vec![Some(softmax_backward(&ty, gy, log)?)])),
    ))
}

/// Softmax over the last dimension of an [N, C] tensor (numerically stable).
pub fn softmax(x: &Var) -> Result<Var> {
    softmax_var(x, false)
}

/// Log-softmax over the last dimension of an [N, C] tensor (numerically stable).
pub fn log_softmax(x: &Var) -> Result<Var> {
    softmax_var(x, true)
}

/// out[i] = x[i, labels[i]] for x [N, C] and U32 labels [N]. Labels are not read back to
/// the CPU: a label >= C yields NaN, which the caller's loss then shows.
pub fn gather_forward(x: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (n, c) = rows(x, "gather input")?;
    check_labels(labels, n)?;
    let out = Tensor::empty(x.gpu(), &[n], DType::F32)?;
    let p = Params {
        n: n as u32,
        c: c as u32,
        ..Default::default()
    };
    x.gpu().dispatch(
        &GATHER,
        bytemuck::bytes_of(&p),
        &[x.buf(), labels.buf()],
        &[out.buf()],
        grid(n),
    )?;
    Ok(out)
}

/// The backward of [`gather_forward`]: an [N, C] tensor holding g[i] at (i, labels[i]) and
/// zeros elsewhere.
pub fn gather_backward(g: &Tensor, labels: &Tensor, c: usize) -> Result<Tensor> {
    let n = g.numel();
    if g.shape() != [n] || g.dtype() != DType::F32 || c == 0 {
        bail!(
            "gather backward: expected an f32 [N] gradient and C >= 1, got {:?} {:?}, C = {c}",
            g.shape(),
            g.dtype()
        );
    }
    check_labels(labels, n)?;
    let gx = Tensor::empty(g.gpu(), &[n, c], DType::F32)?;
    let p = Params {
        n: n as u32,
        c: c as u32,
        ..Default::default()
    };
    g.gpu().dispatch(
        &SCATTER,
        bytemuck::bytes_of(&p),
        &[g.buf(), labels.buf()],
        &[gx.buf()],
        grid(n * c),
    )?;
    Ok(gx)
}

/// x[i, y_i] for x [N, C] and U32 labels [N]; the backward scatters into an [N, C] gradient.
pub fn gather_label(x: &Var, labels: &Tensor) -> Result<Var> {
    let out = gather_forward(x.value(), labels)?;
    let (tl, c) = (labels.clone(), x.shape()[1]);
    Ok(Var::from_op(
        "gather_label",
        out,
        &[x],
        Box::new(move |g| Ok(vec![Some(gather_backward(g, &tl, c)?)])),
    ))
}
