//! The fused LSK selection attn = a1·σ(z₀) + a2·σ(z₁) against the f64 reference (its
//! selection on the sigmoid maps, and the sigmoid's derivative for the logits): forward and
//! the three gradients on odd shapes (batch 1, one channel, more channels than pixels), and
//! finite differences of the reference itself.

mod common;

use common::{assert_close, backprop, up};
use lskbb::ops::select;
use lskbb::reference::elementwise::sigmoid;
use lskbb::reference::{dot, finite_diff_check, nn as rnn, Rng, Tol};
use lskbb::Var;

/// sigmoid(z) for |z| <= 2 is within ~1.2e-6 (WGSL's exp: 3 + 2|z| ulp, then a division);
/// its derivative s·(1 - s), formed from s, amplifies that by s/(1 - s) <= 7.4 to <= 9e-6,
/// and channel sums of <= 16 f32 products add ~4·2⁻²⁴: rel 2e-5. y = a1·s0 + a2·s1 adds two
/// products of up to 1.3 that may cancel: ≈ 2·1.3·1.2e-6 ≈ 3e-6 absolute, 1.3e-6 of
/// max|y| ≈ 2.4, which rel 2e-5 meets at 0.1·max|y|.
const SELECT_TOL: Tol = Tol::new(2e-5, 0.1);
/// Central differences of a function that is bilinear in its inputs: exact up to rounding.
const FD_TOL: f64 = 1e-6;

/// [1, 1, 4, 4] and [2, 3, 4, 6] have planes of whole vec4s (four pixels per invocation on a
/// CPU driver), the others do not.
const CASES: &[[usize; 4]] = &[
    [2, 5, 3, 7],
    [1, 1, 4, 4],
    [1, 16, 1, 1],
    [3, 8, 5, 3],
    [2, 3, 4, 6],
];

#[test]
fn lsk_select_matches_reference() {
    let mut rng = Rng(31);
    for s in CASES {
        let (a1, a2) = (rng.arr(s, 1.5), rng.arr(s, 1.5));
        let z = rng.arr(&[s[0], 2, s[2], s[3]], 2.0);
        let sel = z.map(sigmoid);
        let gy = rng.arr(s, 1.0);
        let (v1, v2, vz) = (Var::param(up(&a1)), Var::param(up(&a2)), Var::param(up(&z)));
        let y = select::lsk_select(&v1, &v2, &vz).unwrap();
        assert_close(
            &format!("select y {s:?}"),
            y.value(),
            &rnn::lsk_select(&a1, &a2, &sel),
            SELECT_TOL,
        );
        backprop(&y, &gy);
        let (g1, g2, gs) = rnn::lsk_select_backward(&a1, &a2, &sel, &gy);
        let gz = gs.zip(&sel, |g, s| g * s * (1.0 - s));
        assert_close(
            &format!("select d a1 {s:?}"),
            &v1.grad().unwrap(),
            &g1,
            SELECT_TOL,
        );
        assert_close(
            &format!("select d a2 {s:?}"),
            &v2.grad().unwrap(),
            &g2,
            SELECT_TOL,
        );
        assert_close(
            &format!("select d z {s:?}"),
            &vz.grad().unwrap(),
            &gz,
            SELECT_TOL,
        );
    }
}

#[test]
fn lsk_select_reference_passes_finite_differences() {
    let mut rng = Rng(32);
    let s = [2, 3, 2, 3];
    let (a1, a2) = (rng.arr(&s, 1.0), rng.arr(&s, 1.0));
    let sel = rng.arr(&[2, 2, 2, 3], 1.0);
    let gy = rng.arr(&s, 1.0);
    let (g1, g2, gs) = rnn::lsk_select_backward(&a1, &a2, &sel, &gy);
    let e = finite_diff_check(&a1, &g1, |v| dot(&rnn::lsk_select(v, &a2, &sel), &gy));
    assert!(e < FD_TOL, "d a1: {e:e}");
    let e = finite_diff_check(&a2, &g2, |v| dot(&rnn::lsk_select(&a1, v, &sel), &gy));
    assert!(e < FD_TOL, "d a2: {e:e}");
    let e = finite_diff_check(&sel, &gs, |v| dot(&rnn::lsk_select(&a1, &a2, v), &gy));
    assert!(e < FD_TOL, "d s: {e:e}");
}

#[test]
fn lsk_select_rejects_mismatched_shapes() {
    let mut rng = Rng(33);
    let a = up(&rng.arr(&[1, 2, 3, 3], 1.0));
    let s = up(&rng.arr(&[1, 1, 3, 3], 1.0));
    let err = select::lsk_select_forward(&a, &a, &s)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[N, 2, H, W]"), "{err}");
}
