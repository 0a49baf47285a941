//! Plumbing along dim 0: stacking tensors into one batch and taking samples back out of it.
//! N is the outermost dimension, so each input or output is one contiguous run of the
//! stacked buffer and both directions are plain buffer copies (no kernel).

use crate::autograd::Var;
use crate::tensor::{DType, Tensor};
use anyhow::{bail, Result};

/// Bytes of one sample of `t` (everything after dim 0).
fn sample_bytes(t: &Tensor) -> u64 {
    4 * (t.numel() / t.shape()[0].max(1)) as u64
}

fn check(t: &Tensor, what: &str) -> Result<()> {
    if t.dtype() != DType::F32 || t.shape().len() < 2 || t.shape()[0] == 0 {
        bail!(
            "{what}: expected an f32 tensor with a batch dimension, got {:?} {:?}",
            t.dtype(),
            t.shape()
        );
    }
    Ok(())
}

/// The inputs one after another along dim 0; all have the same sizes outside dim 0.
pub fn stack_batch_forward(xs: &[&Tensor]) -> Result<Tensor> {
    let Some(first) = xs.first() else {
        bail!("stack_batch: no inputs");
    };
    let mut n = 0;
    for (i, x) in xs.iter().enumerate() {
        check(x, &format!("stack_batch input {i}"))?;
        if x.shape()[1..] != first.shape()[1..] {
            bail!(
                "stack_batch: input {i} has shape {:?}, which differs from input 0 {:?} \
                 outside dim 0",
                x.shape(),
                first.shape()
            );
        }
        n += x.shape()[0];
    }
    let mut shape = first.shape().to_vec();
    shape[0] = n;
    let y = Tensor::empty(first.gpu(), &shape, DType::F32)?;
    let mut off = 0;
    for x in xs {
        let bytes = 4 * x.numel() as u64;
        y.gpu().copy(x.buf(), 0, y.buf(), off, bytes);
        off += bytes;
    }
    Ok(y)
}

/// Samples [start, start + len) of x.
pub fn slice_batch_forward(x: &Tensor, start: usize, len: usize) -> Result<Tensor> {
    check(x, "slice_batch input")?;
    if len == 0 || start + len > x.shape()[0] {
        bail!(
            "slice_batch: samples {start}..{} out of range (or empty) for shape {:?}",
            start + len,
            x.shape()
        );
    }
    let mut shape = x.shape().to_vec();
    shape[0] = len;
    let y = Tensor::empty(x.gpu(), &shape, DType::F32)?;
    let s = sample_bytes(x);
    x.gpu()
        .copy(x.buf(), start as u64 * s, y.buf(), 0, len as u64 * s);
    Ok(y)
}

/// The gradient of [`slice_batch_forward`]: gy at samples [start, start + len), zeros
/// elsewhere in x's shape.
pub fn slice_batch_backward(gy: &Tensor, x_shape: &[usize], start: usize) -> Result<Tensor> {
    check(gy, "slice_batch gradient")?;
    if x_shape.len() != gy.shape().len()
        || x_shape[1..] != gy.shape()[1..]
        || start + gy.shape()[0] > x_shape[0]
    {
        bail!(
            "slice_batch backward: gradient of shape {:?} at sample {start} does not fit an \
             input of shape {x_shape:?}",
            gy.shape()
        );
    }
    let gx = Tensor::zeros(gy.gpu(), x_shape)?;
    let s = sample_bytes(gy);
    gy.gpu().copy(
        gy.buf(),
        0,
        gx.buf(),
        start as u64 * s,
        4 * gy.numel() as u64,
    );
    Ok(gx)
}

/// Stacking along dim 0 (see [`stack_batch_forward`]).
pub fn stack_batch(xs: &[&Var]) -> Result<Var> {
    let values: Vec<&Tensor> = xs.iter().map(|v| v.value()).collect();
    let y = stack_batch_forward(&values)?;
    let sizes: Vec<usize> = xs.iter().map(|v| v.shape()[0]).collect();
    Ok(Var::from_op(
        "stack_batch",
        y,
        xs,
        Box::new(move |gy| {
            let mut start = 0;
            let mut out = Vec::with_capacity(sizes.len());
            for &n in &sizes {
                out.push(Some(slice_batch_forward(gy, start, n)?));
                start += n;
            }
            Ok(out)
        }),
    ))
}

/// Samples [start, start + len) along dim 0.
pub fn slice_batch(x: &Var, start: usize, len: usize) -> Result<Var> {
    let y = slice_batch_forward(x.value(), start, len)?;
    let shape = x.shape().to_vec();
    Ok(Var::from_op(
        "slice_batch",
        y,
        &[x],
        Box::new(move |gy| Ok(vec![Some(slice_batch_backward(gy, &shape, start)?)])),
    ))
}
