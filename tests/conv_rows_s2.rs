//! The stride-2 dense 3×3 kernels with a map's row per subgroup (`ops::conv::rows_s2`): every
//! variant's forward (with and without bias), grad_x (with and without a gradient to
//! accumulate) and grad_w (one chunk or several) against the
//! f64 CPU reference on maps 16 and 32 wide (two and four columns of x per lane), heights
//! odd and even (the last output row's lower input row past the map, or not), not multiples
//! of the row blocks, channels not multiples of 8 or 16; and what they refuse. Skipped, with
//! a note, on a device without `wgpu::Features::SUBGROUP` and subgroups of 8+ lanes.

mod common;
use common::subgroups::{available, params};
use common::{assert_close, up};
use lskbb::ops::conv::rows_s2::{self, S2WVariant, S2_VARIANTS, S2_W_VARIANTS, S2_X_VARIANTS};
use lskbb::reference::conv as rconv;
use lskbb::reference::{Rng, Tol};

/// Each output is an f32 sum of at most 20·9 = 180 products of values ≤ 1 (plus a bias ≤ 1),
/// each weight gradient of at most 2·16·16 = 512, summed in another order than the f64
/// reference: f32 rounding stays below 3e-5 of the largest value here; 1e-4 leaves margin,
/// while a wrong lane, column, edge, tap or channel gives errors of O(0.1). NaN or inf fail
/// (Tol::check).
const TOL: Tol = Tol::new(1e-4, 1.0);

/// n, cin, (h, w), cout.
const CASES: &[(usize, usize, (usize, usize), usize)] = &[
    (2, 3, (9, 16), 5),
    (1, 17, (7, 32), 9),
    (2, 4, (1, 16), 20),
    (1, 9, (32, 32), 3),
    (3, 2, (16, 16), 17),
    (1, 5, (2, 32), 8),
];

#[test]
fn forward_grad_x_and_grad_w_match_reference() {
    if !available() {
        return;
    }
    let mut rng = Rng(41);
    let p = params(2);
    for &(n, cin, (h, w), cout) in CASES {
        let x = rng.arr(&[n, cin, h, w], 1.0);
        let wt = rng.arr(&[cout, cin, 3, 3], 0.5);
        let b = rng.arr(&[cout], 0.5);
        let y = rconv::conv2d(&x, &wt, Some(&b), 2, 1, 1, 1);
        let y0 = rconv::conv2d(&x, &wt, None, 2, 1, 1, 1);
        let gy = rng.arr(&y.shape, 1.0);
        let (gx, gw, _) = rconv::conv2d_backward(&x, &wt, &gy, 2, 1, 1, 1);
        let acc = rng.arr(&x.shape, 1.0);
        let gx_acc = gx.zip(&acc, |a, b| a + b);
        let (tx, tw, tb, tgy, tacc) = (up(&x), up(&wt), up(&b), up(&gy), up(&acc));
        assert!(rows_s2::applies(&tx, &tw, p));
        for &v in S2_VARIANTS {
            let what = format!("{v} {:?} w {:?}", x.shape, wt.shape);
            let got = rows_s2::forward(&tx, &tw, Some(&tb), p, v).unwrap();
            assert_close(&format!("y {what}"), &got, &y, TOL);
            let got = rows_s2::forward(&tx, &tw, None, p, v).unwrap();
            assert_close(&format!("y no bias {what}"), &got, &y0, TOL);
        }
        for &v in S2_X_VARIANTS {
            let what = format!("{v} {:?} w {:?}", x.shape, wt.shape);
            let got = rows_s2::grad_x(&tx, &tw, &tgy, None, p, v).unwrap();
            assert_close(&format!("gx {what}"), &got, &gx, TOL);
            let got = rows_s2::grad_x(&tx, &tw, &tgy, Some(&tacc), p, v).unwrap();
            assert_close(&format!("gx + acc {what}"), &got, &gx_acc, TOL);
        }
        // One chunk (gw written directly) and a chunk per image (partial sums added).
        for &v in S2_W_VARIANTS {
            for target in [1, 64] {
                let v = S2WVariant { target, ..v };
                let got = rows_s2::grad_w(&tx, &tw, &tgy, p, v).unwrap();
                let what = format!("gw {v} target {target} {:?} w {:?}", x.shape, wt.shape);
                assert_close(&what, &got, &gw, TOL);
            }
        }
    }
}

#[test]
fn refuses_other_convolutions() {
    if !available() {
        return;
    }
    let mut rng = Rng(42);
    let w3 = up(&rng.arr(&[4, 4, 3, 3], 0.5));
    let (v, wv) = (S2_VARIANTS[0], S2_W_VARIANTS[0]);
    // Stride 1, a map 24 or 8 wide, a 5×5 kernel.
    let x16 = up(&rng.arr(&[1, 4, 8, 16], 1.0));
    let x24 = up(&rng.arr(&[1, 4, 8, 24], 1.0));
    let x8 = up(&rng.arr(&[1, 4, 8, 8], 1.0));
    let w5 = up(&rng.arr(&[4, 4, 5, 5], 0.5));
    let five = lskbb::ops::conv::Conv2dParams {
        padding: 2,
        ..params(2)
    };
    for (x, w, q) in [
        (&x16, &w3, params(1)),
        (&x24, &w3, params(2)),
        (&x8, &w3, params(2)),
        (&x16, &w5, five),
    ] {
        assert!(!rows_s2::applies(x, w, q), "{:?} {q:?}", x.shape());
        let err = rows_s2::forward(x, w, None, q, v).unwrap_err();
        assert!(err.to_string().contains("conv_rows_s2"), "{err}");
    }
    let gy = up(&rng.arr(&[1, 4, 4, 12], 1.0));
    assert!(rows_s2::grad_w(&x24, &w3, &gy, params(2), wv).is_err());
    // A block of 12 output channels.
    let odd = rows_s2::S2Variant { k: 12, p: 2 };
    assert!(rows_s2::forward(&x16, &w3, None, params(2), odd).is_err());
}
