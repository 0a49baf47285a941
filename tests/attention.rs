//! Softmax attention (`shaders/attention.wgsl`, BiFormer's per-region attention): forward and
//! backward against the f64 reference on odd shapes, and the reference against finite
//! differences.

mod common;

use common::{assert_close, backprop, up};
use lskbb::ops::attention::attention;
use lskbb::reference::attention as ra;
use lskbb::reference::{dot, finite_diff_check, Rng, Tol};
use lskbb::Var;

/// Scores are D-term f32 dot products (≈ √D·2⁻²⁴ relative), then exp and an online sum over S
/// terms rescaled as the maximum grows (a few ulps per step, ≈ S·6e-8 ≈ 2e-5 at S = 300);
/// the output sums S weighted values: 5e-5, entries below 0.1 of the largest held to that
/// level.
const TOL_FWD: Tol = Tol::new(5e-5, 0.1);
/// The backward recomputes the probabilities from the stored log-sum-exp (its rounding, ≈
/// 1e-6 of the scores, enters every p) and forms dP − δ, which cancels to a fraction of its
/// terms' size: 2e-4 of the largest gradient, entries below 0.1 of it held to that level.
const TOL_BWD: Tol = Tol::new(2e-4, 0.1);
/// Central differences, h = 1e-6, of a smooth function of O(1) values in f64.
const TOL_FD: f64 = 1e-6;

/// (B, T, S, D, E): one of everything, odd sizes, keys longer than a workgroup, the widest
/// heads the kernels take (64), and BiFormer's shape at 224×224 in ResNet-32's last stage
/// (64 pixels a region, 4 routed regions, heads of 32).
const CASES: &[(usize, usize, usize, usize, usize)] = &[
    (1, 1, 1, 1, 1),
    (3, 5, 7, 3, 2),
    (2, 9, 13, 17, 11),
    (1, 3, 300, 64, 64),
    (2, 64, 256, 32, 32),
];

#[test]
fn attention_forward_and_backward_match_reference() {
    let mut rng = Rng(71);
    for &(b, t, s, d, e) in CASES {
        for score_scale in [0.3, 3.0] {
            let q = rng.arr(&[b, t, d], score_scale);
            let k = rng.arr(&[b, s, d], 1.0);
            let v = rng.arr(&[b, s, e], 1.0);
            let go = rng.arr(&[b, t, e], 1.0);
            let scale = 1.0 / (d as f64).sqrt();
            let what = format!("attention B{b} T{t} S{s} D{d} E{e} q×{score_scale}");
            let (vq, vk, vv) = (Var::param(up(&q)), Var::param(up(&k)), Var::param(up(&v)));
            let o = attention(&vq, &vk, &vv, scale as f32).unwrap();
            assert_close(&what, o.value(), &ra::attention(&q, &k, &v, scale), TOL_FWD);
            backprop(&o, &go);
            let [gq, gk, gv] = ra::attention_backward(&q, &k, &v, scale, &go);
            for (name, var, want) in [("dQ", &vq, gq), ("dK", &vk, gk), ("dV", &vv, gv)] {
                let got = var.grad().unwrap();
                assert_close(&format!("{what} {name}"), &got, &want, TOL_BWD);
            }
        }
    }
}

#[test]
fn attention_rejects_mismatched_and_too_wide_inputs() {
    let mut rng = Rng(72);
    let var = |shape: &[usize], rng: &mut Rng| Var::param(up(&rng.arr(shape, 1.0)));
    let q = var(&[2, 3, 4], &mut rng);
    let k = var(&[2, 5, 4], &mut rng);
    let err = attention(&q, &k, &var(&[2, 6, 4], &mut rng), 1.0)
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("do not match"), "{err:#}");
    let wide = var(&[1, 2, 65], &mut rng);
    let err = attention(&wide, &wide, &wide, 1.0).err().unwrap();
    assert!(format!("{err:#}").contains("at most 64"), "{err:#}");
}

#[test]
fn reference_attention_passes_finite_differences() {
    let mut rng = Rng(73);
    for (b, t, s, d, e) in [(1, 1, 1, 1, 1), (2, 3, 4, 2, 3)] {
        let q = rng.arr(&[b, t, d], 1.0);
        let k = rng.arr(&[b, s, d], 1.0);
        let v = rng.arr(&[b, s, e], 1.0);
        let go = rng.arr(&[b, t, e], 1.0);
        let [gq, gk, gv] = ra::attention_backward(&q, &k, &v, 0.7, &go);
        let errs = [
            finite_diff_check(&q, &gq, |x| dot(&ra::attention(x, &k, &v, 0.7), &go)),
            finite_diff_check(&k, &gk, |x| dot(&ra::attention(&q, x, &v, 0.7), &go)),
            finite_diff_check(&v, &gv, |x| dot(&ra::attention(&q, &k, x, 0.7), &go)),
        ];
        for (name, err) in ["dQ", "dK", "dV"].iter().zip(errs) {
            assert!(
                err < TOL_FD,
                "{name} {b}x{t}x{s}: finite differences off by {err:.2e}"
            );
        }
    }
}
