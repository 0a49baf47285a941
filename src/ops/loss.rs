//! Fused classification losses on logits (`shaders/loss.wgsl`): cross-entropy, focal loss,
//! class-balanced CE, the dynamic mixtures DFLCE / DFLCSCE, LDAM and MiSLAS's label-aware
//! smoothing. The forward computes the
//! value and the gradient with respect to the logits on the GPU; the backward only scales
//! that gradient by the upstream scalar.
//!
//! Labels stay on the GPU and are not read back: the data loader validates them. A label
//! >= C makes the loss value and its gradient row NaN instead of reading out of bounds.

use super::elementwise::{binary_forward, BinaryOp};
use super::softmax::{check_labels, rows};
use crate::autograd::Var;
use crate::gpu::{grid, groups, Kernel};
use crate::tensor::{DType, Tensor};
use anyhow::{bail, Result};

const SRC: &str = include_str!("../../shaders/loss.wgsl");
const ROWS: Kernel = Kernel {
    name: "loss",
    source: SRC,
    entry: "rows",
};
const BATCH: Kernel = Kernel {
    name: "loss",
    source: SRC,
    entry: "batch",
};
const SCALE: Kernel = Kernel {
    name: "loss",
    source: SRC,
    entry: "scale",
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Params {
    n: u32,
    c: u32,
    theta: f32,
    gamma: f32,
    /// The logits' scale s (1 but for LDAM).
    s: f32,
    pad: [u32; 3],
}

/// A classification loss on logits z [N, C] with labels y; p = softmax(z).
#[derive(Clone, Debug, PartialEq)]
pub enum LossKind {
    /// Mean cross-entropy −log p_y.
    Ce,
    /// Mean over the batch of −α_y (1−p_y)^γ log p_y (α = 1 without `alpha`).
    Focal { gamma: f32, alpha: Option<Vec<f32>> },
    /// PyTorch's weighted CE: Σ w_y (−log p_y) / Σ w_y.
    CbCe { weights: Vec<f32> },
    /// θ·Focal(γ) + (1−θ)·CE.
    Dflce { theta: f32, gamma: f32 },
    /// θ·Focal(γ) + (1−θ)·CB-CE(weights).
    Dflcsce {
        theta: f32,
        gamma: f32,
        weights: Vec<f32>,
    },
    /// LDAM (Cao et al. 2019): CE of s·(z − Δ_y·onehot(y)), the true class's logit lowered by
    /// its class's margin Δ_y, weighted as CB-CE where `weights` are given (DRW's second
    /// stage).
    Ldam {
        margins: Vec<f32>,
        scale: f32,
        weights: Option<Vec<f32>>,
    },
    /// MiSLAS's label-aware smoothing (Zhong et al. 2021, eq. 4; their `LabelAwareSmoothing`):
    /// mean over the batch of (1−ε_y)(−log p_y) + ε_y·mean_j(−log p_j), with a per-class
    /// ε_y from [`las_smoothing`].
    Las { smoothing: Vec<f32> },
}

/// How label-aware smoothing's ε_y falls from the most frequent class's `head` to the rarest
/// class's `tail` (MiSLAS's `shape` argument; their configs all use the default, concave).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LasShape {
    Concave,
    Linear,
    Convex,
}

impl std::str::FromStr for LasShape {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<LasShape> {
        match s.to_ascii_lowercase().as_str() {
            "concave" => Ok(LasShape::Concave),
            "linear" => Ok(LasShape::Linear),
            "convex" => Ok(LasShape::Convex),
            _ => bail!("--las-shape '{s}' is not one of concave, linear, convex"),
        }
    }
}

/// A loss as θ·Focal(γ, α) + (1−θ)·weighted CE(w), on the logits s·(z − Δ_y·onehot(y)).
pub struct Mixture<'a> {
    pub theta: f32,
    pub gamma: f32,
    pub alpha: Option<&'a [f32]>,
    pub weights: Option<&'a [f32]>,
    pub margins: Option<&'a [f32]>,
    pub scale: f32,
    /// Label-aware smoothing's ε per class. Only [`LossKind::Las`] sets it, whose θ is 0: the
    /// kernel's gradient row is shared by the focal and CE terms, so a focal term beside a
    /// smoothed CE would need a second row.
    pub smoothing: Option<&'a [f32]>,
}

/// The mixture that is `kind`.
pub fn mixture(kind: &LossKind) -> Mixture<'_> {
    let m = Mixture {
        theta: 0.0,
        gamma: 0.0,
        alpha: None,
        weights: None,
        margins: None,
        scale: 1.0,
        smoothing: None,
    };
    match kind {
        LossKind::Ce => m,
        LossKind::Focal { gamma, alpha } => Mixture {
            theta: 1.0,
            gamma: *gamma,
            alpha: alpha.as_deref(),
            ..m
        },
        LossKind::CbCe { weights } => Mixture {
            weights: Some(weights),
            ..m
        },
        LossKind::Dflce { theta, gamma } => Mixture {
            theta: *theta,
            gamma: *gamma,
            ..m
        },
        LossKind::Dflcsce {
            theta,
            gamma,
            weights,
        } => Mixture {
            theta: *theta,
            gamma: *gamma,
            weights: Some(weights),
            ..m
        },
        LossKind::Ldam {
            margins,
            scale,
            weights,
        } => Mixture {
            weights: weights.as_deref(),
            margins: Some(margins),
            scale: *scale,
            ..m
        },
        LossKind::Las { smoothing } => Mixture {
            smoothing: Some(smoothing),
            ..m
        },
    }
}

/// Class-balanced weights of Cui et al. (2019) from per-class sample counts:
/// w_c = (1−β)/(1−β^n_c), normalised to sum to the number of classes. Computed in f64 and
/// rounded to f32, as the PyTorch reference does.
pub fn cb_weights(counts: &[usize], beta: f64) -> Vec<f32> {
    let w: Vec<f64> = counts
        .iter()
        .map(|&n| (1.0 - beta) / (1.0 - beta.powf(n as f64)))
        .collect();
    let sum: f64 = w.iter().sum();
    w.iter()
        .map(|v| (v / sum * counts.len() as f64) as f32)
        .collect()
}

/// LDAM's margins (Cao et al. 2019): Δ_j ∝ n_j^(−1/4), scaled so that the rarest
/// class's is `max_margin` (their code's `max_m`, 0.5). A class without images counts as one.
/// Computed in f64 and rounded to f32.
pub fn ldam_margins(counts: &[usize], max_margin: f64) -> Vec<f32> {
    let m: Vec<f64> = counts
        .iter()
        .map(|&n| (n.max(1) as f64).powf(-0.25))
        .collect();
    let largest = m.iter().cloned().fold(0.0, f64::max);
    m.iter()
        .map(|v| (v / largest * max_margin) as f32)
        .collect()
}

/// MiSLAS's per-class smoothing ε_j (their `LabelAwareSmoothing.__init__`): with
/// r_j = (n_j − n_min)/(n_max − n_min),
/// concave ε = tail + (head − tail)·sin(r·π/2), linear ε = tail + (head − tail)·r,
/// convex ε = head + (head − tail)·sin(3π/2 + r·π/2). Every class counts as head where all
/// counts are equal (their code divides 0 by 0 there). Computed in f64 and rounded to f32.
pub fn las_smoothing(counts: &[usize], head: f64, tail: f64, shape: LasShape) -> Vec<f32> {
    let most = counts.iter().copied().max().unwrap_or(0);
    let least = counts.iter().copied().min().unwrap_or(0);
    let half_pi = std::f64::consts::FRAC_PI_2;
    counts
        .iter()
        .map(|&n| {
            let r = if most == least {
                1.0
            } else {
                (n - least) as f64 / (most - least) as f64
            };
            let e = match shape {
                LasShape::Concave => tail + (head - tail) * (r * half_pi).sin(),
                LasShape::Linear => tail + (head - tail) * r,
                LasShape::Convex => head + (head - tail) * (3.0 * half_pi + r * half_pi).sin(),
            };
            e as f32
        })
        .collect()
}

/// The loss value [1] and its gradient with respect to the logits [N, C].
pub fn loss_forward(logits: &Tensor, labels: &Tensor, kind: &LossKind) -> Result<(Tensor, Tensor)> {
    let (n, c) = rows(logits, "loss logits")?;
    if n == 0 {
        bail!(
            "loss: the batch is empty (logits of shape {:?})",
            logits.shape()
        );
    }
    check_labels(labels, n)?;
    let mx = mixture(kind);
    let (theta, gamma, s) = (mx.theta, mx.gamma, mx.scale);
    let usable =
        (0.0..=1.0).contains(&theta) && (0.0..).contains(&gamma) && s > 0.0 && s.is_finite();
    if !usable {
        bail!("loss {kind:?}: needs 0 <= theta <= 1, gamma >= 0 and a finite scale s > 0");
    }
    if let Some(eps) = mx.smoothing {
        if eps.iter().any(|e| !(0.0..=1.0).contains(e)) {
            bail!("loss: label smoothing {eps:?} is not within [0, 1]");
        }
    }
    // α[C], w[C] (ones where not given), then the margins Δ[C] and the smoothing ε[C] (zeros).
    let mut table = vec![1.0f32; 4 * c];
    table[2 * c..].fill(0.0);
    for (name, v, off) in [
        ("focal alpha", mx.alpha, 0),
        ("class weights", mx.weights, c),
        ("margins", mx.margins, 2 * c),
        ("label smoothing", mx.smoothing, 3 * c),
    ] {
        if let Some(v) = v {
            if v.len() != c {
                bail!("loss: {name} has {} entries for {c} classes", v.len());
            }
            table[off..off + c].copy_from_slice(v);
        }
    }
    let gpu = logits.gpu();
    let table = Tensor::from_f32(gpu, &table, &[4 * c])?;
    let terms = Tensor::empty(gpu, &[n, 4], DType::F32)?;
    let grad = Tensor::empty(gpu, &[n, c], DType::F32)?;
    let value = Tensor::empty(gpu, &[1], DType::F32)?;
    let coef = Tensor::empty(gpu, &[2], DType::F32)?;
    let p = Params {
        n: n as u32,
        c: c as u32,
        theta,
        gamma,
        s,
        pad: [0; 3],
    };
    let pb = bytemuck::bytes_of(&p);
    gpu.dispatch(
        &ROWS,
        pb,
        &[logits.buf(), labels.buf(), table.buf()],
        &[terms.buf(), grad.buf()],
        groups(n),
    )?;
    gpu.dispatch(
        &BATCH,
        pb,
        &[terms.buf()],
        &[value.buf(), coef.buf()],
        [1, 1, 1],
    )?;
    gpu.dispatch(
        &SCALE,
        pb,
        &[terms.buf(), coef.buf()],
        &[grad.buf()],
        grid(n * c),
    )?;
    Ok((value, grad))
}

/// The loss of logits [N, C] against U32 labels [N], as a [1] tensor.
pub fn loss(logits: &Var, labels: &Tensor, kind: &LossKind) -> Result<Var> {
    let (value, grad) = loss_forward(logits.value(), labels, kind)?;
    Ok(Var::from_op(
        "loss",
        value,
        &[logits],
        Box::new(move |gy| Ok(vec![Some(binary_forward(&grad, gy, BinaryOp::Mul)?)])),
    ))
}
