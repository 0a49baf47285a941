//! Mixup of an input batch on the GPU (`shaders/mixup.wgsl`): x̃ = λ·x + (1 − λ)·x[perm], as
//! MiSLAS's `mixup_data` (Zhong et al. 2021, after Zhang et al. 2018) mixes stage one's images.
//! λ and the permutation are drawn on the CPU from the run's seeded generator
//! (`train::stages`). Only a forward: the images are data, nothing upstream of them trains,
//! so no gradient is taken with respect to them.

use crate::gpu::{grid, Kernel};
use crate::tensor::{DType, Tensor};
use anyhow::{bail, Result};

const MIX: Kernel = Kernel {
    name: "mixup",
    source: include_str!("../../shaders/mixup.wgsl"),
    entry: "mix",
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    d: u32,
    lambda: f32,
    pad: u32,
}

/// λ·x + (1 − λ)·x[perm] for a batch x [N, ...] (samples along the first axis), with `perm`
/// a permutation of 0..N and 0 <= λ <= 1.
pub fn mixup(x: &Tensor, perm: &[u32], lambda: f32) -> Result<Tensor> {
    let shape = x.shape().to_vec();
    let Some(&n) = shape.first() else {
        bail!("mixup: the batch is a scalar, not [N, ...]");
    };
    if x.dtype() != DType::F32 {
        bail!("mixup: the batch must be f32, got {:?}", x.dtype());
    }
    if perm.len() != n {
        bail!(
            "mixup: a permutation of {} entries for a batch of {n} (shape {shape:?})",
            perm.len()
        );
    }
    let mut seen = vec![false; n];
    for &j in perm {
        match seen.get_mut(j as usize) {
            Some(s) if !*s => *s = true,
            _ => bail!("mixup: {perm:?} is not a permutation of 0..{n}"),
        }
    }
    if !(0.0..=1.0).contains(&lambda) {
        bail!("mixup: λ = {lambda} is not in [0, 1]");
    }
    let d = shape[1..].iter().product::<usize>();
    let out = Tensor::empty(x.gpu(), &shape, DType::F32)?;
    if n * d == 0 {
        return Ok(out);
    }
    let idx = Tensor::from_u32(x.gpu(), perm, &[n])?;
    let p = Params {
        n: n as u32,
        d: d as u32,
        lambda,
        pad: 0,
    };
    x.gpu().dispatch(
        &MIX,
        bytemuck::bytes_of(&p),
        &[x.buf(), idx.buf()],
        &[out.buf()],
        grid(n * d),
    )?;
    Ok(out)
}
