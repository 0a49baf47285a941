//! Row-wise L2 normalisation (`shaders/normalize.wgsl`), the cosine classifier's: forward and
//! backward against the CPU reference on odd shapes, rows whose norm is clamped at ε, and the
//! reference against finite differences.

mod common;

use common::{assert_close, backprop, up};
use lskbb::ops::normalize::{normalize_rows, EPS};
use lskbb::reference::losses as rl;
use lskbb::reference::{dot, finite_diff_check, Arr, Rng, Tol};
use lskbb::Var;

/// Sums of up to 300 squares in f32 (≈ √300·2⁻²⁴ ≈ 1e-6 of the sum), a square root and a
/// division (an ulp each): 1e-5, entries below 0.1 of the largest held to that level. The
/// backward's gy − y (y·gy) cancels (entirely for one feature, where y = ±1): its rounding is
/// of the size of its terms, max|gy| / min ‖x_i‖, which its floor is a fraction of.
const TOL_NORM: Tol = Tol::new(1e-5, 0.1);
/// Central differences, h = 1e-6, of a smooth function of O(1) values in f64.
const TOL_FD: f64 = 1e-7;

/// One row, one feature, odd sizes, a row longer than a workgroup, and the cosine
/// classifier's shapes (features [N, 64], class vectors [C, 64]).
const CASES: &[(usize, usize)] = &[
    (1, 1),
    (1, 5),
    (7, 3),
    (37, 10),
    (3, 300),
    (16, 64),
    (4, 64),
];

fn max_abs(a: &Arr) -> f64 {
    a.data.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// The smallest L2 norm of a row of x [N, F].
fn min_norm(x: &Arr) -> f64 {
    x.data
        .chunks(x.shape[1])
        .map(|r| r.iter().map(|v| v * v).sum::<f64>().sqrt())
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn normalize_forward_and_backward_match_reference() {
    let mut rng = Rng(51);
    for &(n, f) in CASES {
        for scale in [1e-3, 1.0, 30.0] {
            let x = rng.arr(&[n, f], scale);
            let gy = rng.arr(&[n, f], 1.0);
            let what = format!("normalize {n}x{f} scale {scale}");
            let vx = Var::param(up(&x));
            let y = normalize_rows(&vx).unwrap();
            assert_close(&what, y.value(), &rl::normalize(&x, EPS as f64), TOL_NORM);
            backprop(&y, &gy);
            let want = rl::normalize_backward(&x, &gy, EPS as f64);
            let terms = max_abs(&gy) / min_norm(&x);
            let tol = TOL_NORM.with_scale(terms);
            assert_close(&format!("{what} gx"), &vx.grad().unwrap(), &want, tol);
        }
    }
}

/// A zero row stays zero and its gradient is gy / ε (y = x / ε there), as F.normalize's.
#[test]
fn a_zero_row_is_divided_by_eps() {
    let x = Arr::zeros(&[1, 6]);
    let gy = Rng(52).arr(&[1, 6], 1.0);
    let vx = Var::param(up(&x));
    let y = normalize_rows(&vx).unwrap();
    assert_close("zero row", y.value(), &x, Tol::EXACT);
    backprop(&y, &gy);
    // gy / ε in f32 against f64: the quotient's rounding.
    let want = rl::normalize_backward(&x, &gy, EPS as f64);
    assert_close(
        "zero row gx",
        &vx.grad().unwrap(),
        &want,
        Tol::new(1e-6, 0.0),
    );
}

#[test]
fn reference_normalize_passes_finite_differences() {
    let mut rng = Rng(53);
    for (n, f) in [(1, 1), (2, 4), (5, 3)] {
        let x = rng.arr(&[n, f], 2.0);
        let gy = rng.arr(&[n, f], 1.0);
        let g = rl::normalize_backward(&x, &gy, 1e-12);
        let err = finite_diff_check(&x, &g, |v| dot(&rl::normalize(v, 1e-12), &gy));
        assert!(err < TOL_FD, "{n}x{f}: finite differences off by {err:.2e}");
    }
}
