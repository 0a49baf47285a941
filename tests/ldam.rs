//! The LDAM loss (Cao et al. 2019) in `shaders/loss.wgsl`: value and gradient against the
//! CPU reference on odd shapes, with and without DRW's class-balanced weights, the reference
//! against finite differences, and the margins' formula.

mod common;

use common::losses::{check_reference_losses, labels, up_labels};
use common::{assert_close, gpu, up};
use lskbb::backward;
use lskbb::ops::loss::{cb_weights, ldam_margins, loss, loss_forward, LossKind};
use lskbb::reference::losses as rl;
use lskbb::reference::{Arr, Rng, Tol};
use lskbb::{Tensor, Var};

/// The scaled logits s·(z_j − δ_jy·Δ_y) carry the f32 rounding of z_y − Δ_y and of the
/// product, ≈ s·2⁻²⁴·max|z| ≈ 30·6e-8·3 ≈ 5e-6 in an exponent of up to s·6 = 180 (scale 3),
/// which becomes a relative error of the probabilities; with TOL_LOSS's exp, log and sums
/// (1e-5 of the largest entry): 2e-5, entries below 0.1 of the largest held to that level.
const TOL_LDAM: Tol = Tol::new(2e-5, 0.1);
/// Central differences with h = 1e-6 in f64 on losses of curvature up to s² (s = 30):
/// truncation ≈ h²·s³/6 ≈ 5e-9, cancellation ≈ 1e-16·|L|/h ≈ 1e-8 for |L| up to 100.
const TOL_FD: f64 = 1e-7;

/// Shapes with one class, one sample, odd sizes and a row longer than a workgroup.
const CASES: &[(usize, usize)] = &[(1, 1), (1, 5), (7, 3), (37, 10), (3, 300)];

/// LDAM at LDAM's s = 30 and at s = 1, on long-tailed counts, without and with DRW's
/// class-balanced weights (β = 0.9999).
fn kinds(c: usize) -> Vec<LossKind> {
    let counts: Vec<usize> = (0..c).map(|i| 1 + 500 / (i + 1)).collect();
    let margins = ldam_margins(&counts, 0.5);
    let weights = cb_weights(&counts, 0.9999);
    let mut v = Vec::new();
    for scale in [30.0, 1.0] {
        for w in [None, Some(weights.clone())] {
            v.push(LossKind::Ldam {
                margins: margins.clone(),
                scale,
                weights: w,
            });
        }
    }
    v
}

#[test]
fn ldam_value_and_gradient_match_reference() {
    let mut rng = Rng(41);
    for &(n, c) in CASES {
        // Scale 1: the cosine logits LDAM was designed on; 3: a plain classifier's.
        for scale in [1.0, 3.0] {
            let z = rng.arr(&[n, c], scale);
            let y = labels(&mut rng, n, c);
            for kind in kinds(c) {
                let what = format!("{kind:?} {n}x{c} logits {scale}");
                let (value, grad) = loss_forward(&up(&z), &up_labels(&y), &kind).unwrap();
                let (v, g) = rl::loss(&z, &y, &kind);
                assert_close(&what, &value, &Arr::new(&[1], vec![v]), TOL_LDAM);
                assert_close(&format!("{what} grad"), &grad, &g, TOL_LDAM);
            }
        }
    }
}

#[test]
fn ldam_backward_reaches_the_logits() {
    let mut rng = Rng(42);
    let (n, c) = (5, 4);
    let z = rng.arr(&[n, c], 1.0);
    let y = labels(&mut rng, n, c);
    let kind = kinds(c).remove(1);
    let vz = Var::param(up(&z));
    backward(&loss(&vz, &up_labels(&y), &kind).unwrap()).unwrap();
    let (_, g) = rl::loss(&z, &y, &kind);
    assert_close("ldam grad via autograd", &vz.grad().unwrap(), &g, TOL_LDAM);
}

#[test]
fn reference_ldam_passes_finite_differences() {
    check_reference_losses(43, kinds, TOL_FD);
}

/// Δ_j = C / n_j^(1/4) with C such that the rarest class's margin is 0.5 (their max_m).
#[test]
fn margins_follow_cao_et_al() {
    let counts = [5000, 500, 50, 5];
    let m = ldam_margins(&counts, 0.5);
    for (got, n) in m.iter().zip(counts) {
        let want = 0.5 * (5.0f64 / n as f64).powf(0.25);
        assert!((*got as f64 - want).abs() < 1e-7, "{got} vs {want}");
    }
    assert_eq!(m[3], 0.5);
    // A class without images counts as one.
    assert_eq!(ldam_margins(&[100, 0], 0.5)[1], 0.5);
}

#[test]
fn ldam_rejects_a_bad_scale_or_margin_table() {
    let z = Tensor::zeros(&gpu(), &[2, 3]).unwrap();
    let y = up_labels(&[0, 2]);
    for (margins, scale) in [
        (vec![0.1; 3], 0.0),
        (vec![0.1; 3], f32::NAN),
        (vec![0.1; 2], 30.0),
    ] {
        let kind = LossKind::Ldam {
            margins,
            scale,
            weights: None,
        };
        assert!(loss_forward(&z, &y, &kind).is_err(), "{kind:?}");
    }
}
