//! SimAM (Yang et al., ICML 2021), the parameter-free attention y = x · σ(1 / e*) per
//! (n, c) plane (`shaders/simam.wgsl`, which gives the equations), with the official code's
//! λ = 1e-4 (github.com/ZjjConan/SimAM, networks/attentions/simam_module.py).

use crate::autograd::Var;
use crate::gpu::{groups, Kernel};
use crate::tensor::{nchw, DType, Tensor};
use anyhow::{bail, Result};
use std::sync::LazyLock;

const SRC: &str = include_str!("../../shaders/simam.wgsl");
/// The shader for CPU drivers: workgroups of 8 (one thread runs a workgroup there, and the
/// sums' tree costs 3 barriers instead of 8), as `ops::batchnorm` chooses.
static SRC_CPU: LazyLock<String> =
    LazyLock::new(|| SRC.replace("const WG: u32 = 256u;", "const WG: u32 = 8u;"));

/// The regulariser λ of the energy (the official code's `e_lambda` default).
pub const LAMBDA: f32 = 1e-4;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    planes: u32,
    m: u32,
    lambda: f32,
    pad: u32,
}

fn kernel(x: &Tensor, entry: &'static str) -> Kernel {
    let (name, source) = match x.gpu().cpu_threads() {
        Some(_) => ("simam_cpu", SRC_CPU.as_str()),
        None => ("simam", SRC),
    };
    Kernel {
        name,
        source,
        entry,
    }
}

/// Validates x [N, C, H, W]; returns the parameter block.
fn params(x: &Tensor, what: &str) -> Result<Params> {
    let [n, c, h, w] = nchw(x, what)?;
    if x.dtype() != DType::F32 {
        bail!("{what}: expected f32, got {:?}", x.dtype());
    }
    // The energy divides the plane's sum of squared deviations by H·W − 1: the official code
    // gives NaN on a 1×1 plane; refuse it instead.
    if h * w < 2 {
        bail!(
            "{what}: SimAM needs planes of at least 2 pixels (it divides by H·W − 1), got shape \
             {:?}",
            x.shape()
        );
    }
    Ok(Params {
        planes: (n * c) as u32,
        m: (h * w) as u32,
        lambda: LAMBDA,
        pad: 0,
    })
}

/// y = x · σ((x − μ)² / (4 (σ² + λ)) + 0.5) per plane, and the per-plane (μ, D = 4 (σ² + λ))
/// [N·C, 2] the backward takes (σ² with H·W − 1 in the denominator, as the official code).
pub fn simam_forward(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let p = params(x, "simam input")?;
    let y = Tensor::empty(x.gpu(), x.shape(), DType::F32)?;
    let stats = Tensor::empty(x.gpu(), &[p.planes as usize, 2], DType::F32)?;
    x.gpu().dispatch(
        &kernel(x, "forward"),
        bytemuck::bytes_of(&p),
        &[x.buf()],
        &[y.buf(), stats.buf()],
        groups(p.planes as usize),
    )?;
    Ok((y, stats))
}

/// gx from the forward's input x and per-plane statistics, and gy (through the mean and the
/// variance of each plane).
pub fn simam_backward(x: &Tensor, stats: &Tensor, gy: &Tensor) -> Result<Tensor> {
    let p = params(x, "simam backward input")?;
    if gy.shape() != x.shape() || stats.shape() != [p.planes as usize, 2] {
        bail!(
            "simam backward: grad_y {:?} and statistics {:?} do not match x {:?}",
            gy.shape(),
            stats.shape(),
            x.shape()
        );
    }
    let gx = Tensor::empty(x.gpu(), x.shape(), DType::F32)?;
    x.gpu().dispatch(
        &kernel(x, "backward"),
        bytemuck::bytes_of(&p),
        &[x.buf(), stats.buf(), gy.buf()],
        &[gx.buf()],
        groups(p.planes as usize),
    )?;
    Ok(gx)
}

/// SimAM over x [N, C, H, W] (H·W ≥ 2).
pub fn simam(x: &Var) -> Result<Var> {
    let (y, stats) = simam_forward(x.value())?;
    let tx = x.value().clone();
    Ok(Var::from_op(
        "simam",
        y,
        &[x],
        Box::new(move |gy| Ok(vec![Some(simam_backward(&tx, &stats, gy)?)])),
    ))
}
