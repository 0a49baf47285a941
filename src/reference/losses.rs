//! CPU reference of the fully connected layer, row L2 normalisation (the cosine classifier),
//! softmax, label gathering, the classification losses (value and gradient) and the SGD step.

use super::Arr;
use crate::ops::loss::LossKind;
use crate::ops::sgd::SgdConfig;

/// op(a)·op(b) for 2-D arrays, op transposing where the flag is set.
pub fn matmul(a: &Arr, b: &Arr, ta: bool, tb: bool) -> Arr {
    let (m, k) = if ta {
        (a.shape[1], a.shape[0])
    } else {
        (a.shape[0], a.shape[1])
    };
    let n = if tb { b.shape[0] } else { b.shape[1] };
    let at = |i: usize, q: usize| {
        if ta {
            a.data[q * m + i]
        } else {
            a.data[i * k + q]
        }
    };
    let bt = |q: usize, j: usize| {
        if tb {
            b.data[j * k + q]
        } else {
            b.data[q * n + j]
        }
    };
    let mut c = Arr::zeros(&[m, n]);
    for i in 0..m {
        for j in 0..n {
            c.data[i * n + j] = (0..k).map(|q| at(i, q) * bt(q, j)).sum();
        }
    }
    c
}

/// y = x·wᵀ + b with x [N,F], w [O,F], b [O].
pub fn linear(x: &Arr, w: &Arr, b: Option<&Arr>) -> Arr {
    let mut y = matmul(x, w, false, true);
    if let Some(b) = b {
        let o = b.numel();
        for (i, v) in y.data.iter_mut().enumerate() {
            *v += b.data[i % o];
        }
    }
    y
}

/// (gx, gw, gb) of y = x·wᵀ + b at gy.
pub fn linear_backward(x: &Arr, w: &Arr, gy: &Arr) -> (Arr, Arr, Arr) {
    let (n, o) = (gy.shape[0], gy.shape[1]);
    let mut gb = Arr::zeros(&[o]);
    for i in 0..n * o {
        gb.data[i % o] += gy.data[i];
    }
    (matmul(gy, w, false, false), matmul(gy, x, true, false), gb)
}

/// x / max(‖x_i‖, eps) per row of an [N, F] array.
pub fn normalize(x: &Arr, eps: f64) -> Arr {
    let f = x.shape[1];
    let mut y = x.clone();
    for row in y.data.chunks_mut(f) {
        let d = row.iter().map(|v| v * v).sum::<f64>().sqrt().max(eps);
        row.iter_mut().for_each(|v| *v /= d);
    }
    y
}

/// gx of y = normalize(x): (gy − y (y·gy)) / ‖x‖ per row, gy / eps where the norm is
/// below eps.
pub fn normalize_backward(x: &Arr, gy: &Arr, eps: f64) -> Arr {
    let f = x.shape[1];
    let y = normalize(x, eps);
    let mut gx = Arr::zeros(&x.shape);
    for i in 0..x.shape[0] {
        let r = i * f..(i + 1) * f;
        let norm = x.data[r.clone()].iter().map(|v| v * v).sum::<f64>().sqrt();
        let proj: f64 = if norm > eps {
            r.clone().map(|k| y.data[k] * gy.data[k]).sum()
        } else {
            0.0
        };
        for k in r {
            gx.data[k] = (gy.data[k] - y.data[k] * proj) / norm.max(eps);
        }
    }
    gx
}

/// Row-wise log-softmax of an [N, C] array.
pub fn log_softmax(x: &Arr) -> Arr {
    let c = x.shape[1];
    let mut y = x.clone();
    for row in y.data.chunks_mut(c) {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        row.iter_mut().for_each(|v| *v -= lse);
    }
    y
}

pub fn softmax(x: &Arr) -> Arr {
    log_softmax(x).map(f64::exp)
}

/// gx of y = softmax(x): y (gy − Σ_row gy·y).
pub fn softmax_backward(y: &Arr, gy: &Arr) -> Arr {
    let c = y.shape[1];
    let mut gx = Arr::zeros(&y.shape);
    for i in 0..y.shape[0] {
        let r = i * c..(i + 1) * c;
        let s: f64 = (r.clone()).map(|k| gy.data[k] * y.data[k]).sum();
        for k in r {
            gx.data[k] = y.data[k] * (gy.data[k] - s);
        }
    }
    gx
}

/// gx of y = log_softmax(x): gy − softmax(x) Σ_row gy.
pub fn log_softmax_backward(y: &Arr, gy: &Arr) -> Arr {
    let c = y.shape[1];
    let mut gx = Arr::zeros(&y.shape);
    for i in 0..y.shape[0] {
        let r = i * c..(i + 1) * c;
        let s: f64 = gy.data[r.clone()].iter().sum();
        for k in r {
            gx.data[k] = gy.data[k] - y.data[k].exp() * s;
        }
    }
    gx
}

/// x[i, labels[i]].
pub fn gather(x: &Arr, labels: &[u32]) -> Arr {
    let c = x.shape[1];
    Arr::new(
        &[labels.len()],
        labels
            .iter()
            .enumerate()
            .map(|(i, &l)| x.data[i * c + l as usize])
            .collect(),
    )
}

/// The [N, C] gradient of `gather` at g.
pub fn gather_backward(g: &Arr, labels: &[u32], c: usize) -> Arr {
    let mut gx = Arr::zeros(&[labels.len(), c]);
    for (i, &l) in labels.iter().enumerate() {
        gx.data[i * c + l as usize] = g.data[i];
    }
    gx
}

/// Focal loss mean_i(−α_y (1−p_y)^γ log p_y) and its gradient.
fn focal(z: &Arr, labels: &[u32], gamma: f64, alpha: Option<&[f32]>) -> (f64, Arr) {
    let (n, c) = (z.shape[0], z.shape[1]);
    let lp = log_softmax(z);
    let mut g = Arr::zeros(&z.shape);
    let mut v = 0.0;
    for (i, &y) in labels.iter().enumerate() {
        let y = y as usize;
        let a = alpha.map_or(1.0, |a| a[y] as f64);
        let logp = lp.data[i * c + y];
        let p = logp.exp();
        let q = 1.0 - p;
        v += -a * q.powf(gamma) * logp;
        // d/dz_j = α [γ q^(γ−1) p log p − q^γ] (δ_jy − p_j)
        let second = if q > 0.0 && gamma != 0.0 {
            gamma * q.powf(gamma - 1.0) * p * logp
        } else {
            0.0
        };
        let k = a * (second - q.powf(gamma));
        for j in 0..c {
            let d = if j == y { 1.0 } else { 0.0 };
            g.data[i * c + j] = k * (d - lp.data[i * c + j].exp()) / n as f64;
        }
    }
    (v / n as f64, g)
}

/// Weighted CE Σ w_y (−log p_y) / Σ w_y (plain mean CE without weights) and its gradient.
fn ce(z: &Arr, labels: &[u32], w: Option<&[f32]>) -> (f64, Arr) {
    let c = z.shape[1];
    let lp = log_softmax(z);
    let wy = |y: usize| w.map_or(1.0, |w| w[y] as f64);
    let total: f64 = labels.iter().map(|&y| wy(y as usize)).sum();
    let mut g = Arr::zeros(&z.shape);
    let mut v = 0.0;
    for (i, &y) in labels.iter().enumerate() {
        let y = y as usize;
        v -= wy(y) * lp.data[i * c + y];
        for j in 0..c {
            let d = if j == y { 1.0 } else { 0.0 };
            g.data[i * c + j] = wy(y) * (lp.data[i * c + j].exp() - d) / total;
        }
    }
    (v / total, g)
}

/// LDAM: CE (weighted where `w` is given) of s·(z − Δ_y·onehot(y)), and its gradient.
fn ldam(z: &Arr, labels: &[u32], margins: &[f32], s: f64, w: Option<&[f32]>) -> (f64, Arr) {
    let c = z.shape[1];
    let mut zs = z.clone();
    for (i, &y) in labels.iter().enumerate() {
        zs.data[i * c + y as usize] -= margins[y as usize] as f64;
    }
    let (v, g) = ce(&zs.map(|x| s * x), labels, w);
    (v, g.map(|x| s * x))
}

/// MiSLAS's label-aware smoothing: mean_i (1−ε_y)(−log p_y) + ε_y·mean_j(−log p_j), and its
/// gradient (p_j − (1−ε_y)δ_jy − ε_y/C)/N.
fn las(z: &Arr, labels: &[u32], eps: &[f32]) -> (f64, Arr) {
    let (n, c) = (z.shape[0], z.shape[1]);
    let lp = log_softmax(z);
    let mut g = Arr::zeros(&z.shape);
    let mut v = 0.0;
    for (i, &y) in labels.iter().enumerate() {
        let (y, e) = (y as usize, eps[y as usize] as f64);
        let row = &lp.data[i * c..(i + 1) * c];
        let mean: f64 = row.iter().sum::<f64>() / c as f64;
        v -= (1.0 - e) * row[y] + e * mean;
        for (j, lpj) in row.iter().enumerate() {
            let d = if j == y { 1.0 - e } else { 0.0 };
            g.data[i * c + j] = (lpj.exp() - d - e / c as f64) / n as f64;
        }
    }
    (v / n as f64, g)
}

fn mix(theta: f64, a: (f64, Arr), b: (f64, Arr)) -> (f64, Arr) {
    (
        theta * a.0 + (1.0 - theta) * b.0,
        a.1.zip(&b.1, |x, y| theta * x + (1.0 - theta) * y),
    )
}

/// The loss value and its gradient with respect to the logits z [N, C].
pub fn loss(z: &Arr, labels: &[u32], kind: &LossKind) -> (f64, Arr) {
    match kind {
        LossKind::Ce => ce(z, labels, None),
        LossKind::Focal { gamma, alpha } => focal(z, labels, *gamma as f64, alpha.as_deref()),
        LossKind::CbCe { weights } => ce(z, labels, Some(weights)),
        LossKind::Dflce { theta, gamma } => mix(
            *theta as f64,
            focal(z, labels, *gamma as f64, None),
            ce(z, labels, None),
        ),
        LossKind::Dflcsce {
            theta,
            gamma,
            weights,
        } => mix(
            *theta as f64,
            focal(z, labels, *gamma as f64, None),
            ce(z, labels, Some(weights)),
        ),
        LossKind::Ldam {
            margins,
            scale,
            weights,
        } => ldam(z, labels, margins, *scale as f64, weights.as_deref()),
        LossKind::Las { smoothing } => las(z, labels, smoothing),
    }
}

/// One torch.optim.SGD step (dampening 0) in place; `buf` starts as zeros.
pub fn sgd_step(p: &mut Arr, g: &Arr, buf: &mut Arr, cfg: &SgdConfig) {
    let (lr, mom, wd) = (cfg.lr as f64, cfg.momentum as f64, cfg.weight_decay as f64);
    for i in 0..p.numel() {
        let d = g.data[i] + wd * p.data[i];
        buf.data[i] = mom * buf.data[i] + d;
        let step = if cfg.nesterov {
            d + mom * buf.data[i]
        } else {
            buf.data[i]
        };
        p.data[i] -= lr * step;
    }
}
