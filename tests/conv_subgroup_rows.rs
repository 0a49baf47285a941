//! The one-row-tile-per-subgroup dense 3×3 kernels (`ops::conv::subgroup_rows`): every
//! variant's forward (with and without bias), grad_x (stride 1 and 2, with and without a
//! gradient to accumulate) and grad_w (one chunk or several) against the f64 CPU reference on
//! maps 4 to 64 columns wide (several image rows per subgroup, one tile or several) with odd
//! heights and channel counts, and what they refuse. Skipped, with a note, on a device without `wgpu::Features::SUBGROUP` and
//! subgroups of 8+ lanes.

mod common;
use common::subgroups::{available, check_rows_forward, check_rows_grad_x, params, RowsCase};
use common::{assert_close, up};
use lskbb::ops::conv::subgroup_rows::{self, RowsWVariant, ROWS_VARIANTS, ROWS_W_VARIANTS};
use lskbb::reference::conv as rconv;
use lskbb::reference::{Rng, Tol};

/// Each output is an f32 sum of at most 20·9 = 180 products of values ≤ 1 (plus a bias or an
/// accumulated gradient ≤ 1), each weight gradient of at most 3·9·32 = 864, summed in another
/// order than the f64 reference: f32 rounding gives ~√terms·eps (eps 6e-8) of the sum of
/// |terms|, below 3e-5 of the largest value here; 1e-4 with the floor at the largest |want|
/// (as tests/conv_subgroup.rs) leaves margin, while a wrong lane, column, edge, tap or
/// channel gives errors of O(0.1). NaN or inf fail (Tol::check).
const TOL: Tol = Tol::new(1e-4, 1.0);

/// Widths 4 and 8 (four columns per lane, 8 and 4 image rows per subgroup row: the rows
/// above and below from other lanes and rows), 16 and 32 (one tile of two and four columns
/// per lane), 24, 48 and 64 (three, three and two tiles of one, two and four columns per
/// lane: the columns past a tile);
/// heights 1 to 33, not multiples of the rows per subgroup row or the row blocks; channels
/// not multiples of 8 or 16.
const CASES: &[RowsCase] = &[
    (2, 3, (9, 8), 6, true),
    (1, 17, (5, 16), 20, false),
    (3, 5, (7, 32), 9, true),
    (1, 1, (1, 8), 3, false),
    (2, 20, (3, 16), 17, true),
    (1, 4, (33, 32), 8, false),
    (2, 3, (5, 24), 5, true),
    (1, 6, (6, 48), 9, false),
    (2, 2, (3, 64), 3, true),
    (2, 5, (6, 4), 7, false),
    (1, 3, (11, 4), 2, true),
];

#[test]
fn forward_matches_reference() {
    if available() {
        let family = (subgroup_rows::applies as _, subgroup_rows::forward as _);
        check_rows_forward("rows", CASES, ROWS_VARIANTS, family, TOL, 41);
    }
}

#[test]
fn grad_x_matches_reference() {
    if available() {
        let family = (
            subgroup_rows::applies as _,
            subgroup_rows::grad_x_applies as _,
            subgroup_rows::grad_x as _,
        );
        check_rows_grad_x("rows", CASES, ROWS_VARIANTS, family, TOL, 42);
    }
}

#[test]
fn grad_w_matches_reference() {
    if !available() {
        return;
    }
    let mut rng = Rng(43);
    // One chunk (gw written directly) and up to a chunk per image (partial sums added).
    let targets = [1, 3, 64];
    for &(n, cin, (h, w), cout, _) in CASES {
        let x = rng.arr(&[n, cin, h, w], 1.0);
        let wt = rng.arr(&[cout, cin, 3, 3], 0.5);
        let gy = rng.arr(&[n, cout, h, w], 1.0);
        let (_, gw, _) = rconv::conv2d_backward(&x, &wt, &gy, 1, 1, 1, 1);
        let (tx, tw, tgy) = (up(&x), up(&wt), up(&gy));
        for &v in ROWS_W_VARIANTS {
            for target in targets {
                let v = RowsWVariant { target, ..v };
                let got = subgroup_rows::grad_w(&tx, &tw, &tgy, params(1), v).unwrap();
                let what = format!("gw {v} target {target} {:?} x {:?}", x.shape, wt.shape);
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
    let x = |w: usize| up(&Rng(44).arr(&[1, 2, 8, w], 1.0));
    let w3 = up(&Rng(45).arr(&[2, 2, 3, 3], 1.0));
    let w5 = up(&Rng(46).arr(&[2, 2, 5, 5], 1.0));
    let v = ROWS_VARIANTS[0];
    for (what, x, w, p) in [
        ("width 12", x(12), &w3, params(1)),
        ("width 60", x(60), &w3, params(1)),
        ("stride 2", x(16), &w3, params(2)),
        ("5x5", x(16), &w5, params(1)),
    ] {
        assert!(!subgroup_rows::applies(&x, w, p), "{what} must not apply");
        let err = subgroup_rows::forward(&x, w, None, p, v).unwrap_err();
        assert!(
            err.to_string().contains("conv_subgroup_rows"),
            "{what}: {err}"
        );
    }
}
