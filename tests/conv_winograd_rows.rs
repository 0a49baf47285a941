//! The row-Winograd dense 3×3 kernels (`ops::conv::winograd_rows`): every variant's forward
//! (with and without bias) and grad_x (stride 1 and 2, with and without a gradient to
//! accumulate) against the f64 CPU reference on maps 4, 8 and 16 wide (8, 4 and 2 image rows
//! per subgroup row) and 32, 64 and 96 wide (one to three tiles of 32 columns) with odd
//! heights and channel counts, and what they refuse. Skipped, with a note, on a device
//! without `wgpu::Features::SUBGROUP` and subgroups of 8+ lanes.

mod common;
use common::subgroups::{available, check_rows_forward, check_rows_grad_x, params, RowsCase};
use common::up;
use lskbb::ops::conv::subgroup_rows::RowsVariant;
use lskbb::ops::conv::winograd_rows;
use lskbb::reference::{Rng, Tol};

/// Each output is an f32 sum of at most 20·9 = 180 products of values ≤ 1 (plus a bias or an
/// accumulated gradient ≤ 1), taken as 20·3 sums of 6 transformed products: Bᵀ scales the
/// inputs by up to 10 and Aᵀ the sums by up to 18, so f32 rounding reaches some 100 eps of the
/// sum of |terms| (eps 6e-8; measured below 2e-5 of the largest value here) where the direct
/// kernels stay near √terms·eps. 1e-4 with the floor at the largest |want| (as
/// tests/conv_subgroup_rows.rs) still fails a wrong lane, column, edge, tap, transform
/// coefficient or channel, whose errors are O(0.1). NaN or inf fail (Tol::check).
const TOL: Tol = Tol::new(1e-4, 1.0);

/// Widths 4, 8 and 16 (several image rows per subgroup row: the rows above and below from
/// other lanes and rows), 32, 64 and 96 (one, two and three tiles: the columns past a tile);
/// heights 1 to 33, not multiples of the rows per subgroup row or the row blocks; channels
/// not multiples of 8 or 16.
const CASES: &[RowsCase] = &[
    (2, 3, (9, 8), 6, true),
    (1, 17, (5, 16), 20, false),
    (3, 5, (7, 32), 9, true),
    (1, 1, (1, 8), 3, false),
    (2, 20, (3, 16), 17, true),
    (1, 4, (33, 32), 8, false),
    (1, 6, (6, 96), 9, false),
    (2, 2, (3, 64), 3, true),
    (2, 5, (6, 4), 7, false),
    (1, 3, (11, 4), 2, true),
    (1, 9, (17, 16), 5, false),
];

/// Blocks of 8 and 16 channels (one and two groups of the weights' vec4 loads) of 2, 4 and 8
/// subgroup rows (more than some maps have), the defaults among them; the larger unrolled
/// variants take 3-10 s each to compile on lavapipe.
const VARIANTS: &[RowsVariant] = &[
    RowsVariant { k: 8, p: 2 },
    RowsVariant { k: 16, p: 2 },
    RowsVariant { k: 16, p: 4 },
    RowsVariant { k: 8, p: 8 },
];

#[test]
fn forward_matches_reference() {
    if available() {
        let family = (winograd_rows::applies as _, winograd_rows::forward as _);
        check_rows_forward("winograd", CASES, VARIANTS, family, TOL, 51);
    }
}

#[test]
fn grad_x_matches_reference() {
    if available() {
        let family = (
            winograd_rows::applies as _,
            winograd_rows::grad_x_applies as _,
            winograd_rows::grad_x as _,
        );
        check_rows_grad_x("winograd", CASES, VARIANTS, family, TOL, 52);
    }
}

#[test]
fn refuses_other_convolutions() {
    if !available() {
        return;
    }
    let x = |w: usize| up(&Rng(54).arr(&[1, 2, 8, w], 1.0));
    let w3 = up(&Rng(55).arr(&[2, 2, 3, 3], 1.0));
    let w5 = up(&Rng(56).arr(&[2, 2, 5, 5], 1.0));
    let v = VARIANTS[0];
    for (what, x, w, p) in [
        ("width 24", x(24), &w3, params(1)),
        ("width 48", x(48), &w3, params(1)),
        ("width 12", x(12), &w3, params(1)),
        ("stride 2", x(16), &w3, params(2)),
        ("5x5", x(16), &w5, params(1)),
    ] {
        assert!(!winograd_rows::applies(&x, w, p), "{what} must not apply");
        let err = winograd_rows::forward(&x, w, None, p, v).unwrap_err();
        assert!(
            err.to_string().contains("conv_winograd_rows")
                || err.to_string().contains("conv_subgroup_rows"),
            "{what}: {err}"
        );
    }
}
