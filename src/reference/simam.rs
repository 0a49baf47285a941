//! CPU reference of SimAM (Yang et al., ICML 2021; github.com/ZjjConan/SimAM,
//! networks/attentions/simam_module.py), forward and backward, per (n, c) plane.

use super::Arr;

/// The plane of m values' mean μ, deviations c = x − μ and D = 4 (Σ c² / (m − 1) + λ).
fn plane_stats(x: &[f64], lambda: f64) -> (Vec<f64>, f64) {
    let m = x.len() as f64;
    let mu = x.iter().sum::<f64>() / m;
    let c: Vec<f64> = x.iter().map(|v| v - mu).collect();
    let big_d = 4.0 * (c.iter().map(|v| v * v).sum::<f64>() / (m - 1.0) + lambda);
    (c, big_d)
}

fn sigmoid(t: f64) -> f64 {
    1.0 / (1.0 + (-t).exp())
}

fn plane_len(x: &Arr) -> usize {
    match x.shape[..] {
        [_, _, h, w] => h * w,
        ref s => panic!("simam: expected an [N, C, H, W] array, got {s:?}"),
    }
}

/// y = x · σ((x − μ)² / D + 0.5) per plane.
pub fn simam(x: &Arr, lambda: f64) -> Arr {
    let m = plane_len(x);
    let mut y = Vec::with_capacity(x.numel());
    for plane in x.data.chunks(m) {
        let (c, big_d) = plane_stats(plane, lambda);
        y.extend(
            plane
                .iter()
                .zip(&c)
                .map(|(v, ci)| v * sigmoid(ci * ci / big_d + 0.5)),
        );
    }
    Arr::new(&x.shape, y)
}

/// gx = Jᵀ gy, from the plane's full Jacobian (O(m²), unlike the kernel's two sums):
/// ∂y_i/∂x_k = δ_ik s_i + x_i s_i (1 − s_i) ∂t_i/∂x_k, with t_i = c_i² / D,
/// ∂c_i/∂x_k = δ_ik − 1/m and ∂D/∂x_k = 8/(m − 1) Σ_j c_j ∂c_j/∂x_k.
pub fn simam_backward(x: &Arr, gy: &Arr, lambda: f64) -> Arr {
    let m = plane_len(x);
    let mut gx = Vec::with_capacity(x.numel());
    for (plane, g) in x.data.chunks(m).zip(gy.data.chunks(m)) {
        let (c, big_d) = plane_stats(plane, lambda);
        let mf = m as f64;
        let s: Vec<f64> = c.iter().map(|ci| sigmoid(ci * ci / big_d + 0.5)).collect();
        let sum_c: f64 = c.iter().sum();
        for k in 0..m {
            let dd_dk = 8.0 / (mf - 1.0) * (c[k] - sum_c / mf);
            let mut acc = g[k] * s[k];
            for i in 0..m {
                let dc = if i == k { 1.0 } else { 0.0 } - 1.0 / mf;
                let dt = (2.0 * c[i] * dc * big_d - c[i] * c[i] * dd_dk) / (big_d * big_d);
                acc += g[i] * plane[i] * s[i] * (1.0 - s[i]) * dt;
            }
            gx.push(acc);
        }
    }
    Arr::new(&x.shape, gx)
}
