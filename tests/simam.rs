//! SimAM (`shaders/simam.wgsl`), the parameter-free attention of the simam-resnet32 backbone:
//! forward and backward against the f64 CPU reference on odd shapes and scales, the
//! reference against finite differences, both against PyTorch's official-code module
//! (`reference/gen_simam.py`), and the refusal of planes it cannot normalise.

mod common;

use common::{assert_close, assert_close_f32, backprop, gpu, up};
use lskbb::ops::simam::{simam, simam_backward, simam_forward, LAMBDA};
use lskbb::reference::simam as rs;
use lskbb::reference::{dot, finite_diff_check, Arr, Rng, Tol};
use lskbb::tensor_file::TensorFile;
use lskbb::{Tensor, Var};
use std::path::Path;

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/simam.safetensors"
);

/// f32 plane sums of up to 600 values (≈ √600·2⁻²⁴ ≈ 1.5e-6 of the sum), a division and
/// WGSL's exp (3 + 2|t| ulp, |t| small where σ is not 1): 1e-6 measured at most 2.2e-7 on
/// centred planes, 2e-6 allowed; entries below 0.1 of the largest held to that level.
/// Planes whose mean is far from zero relative to their spread lose more (see [`cond`]).
const TOL_Y: Tol = Tol::new(2e-6, 0.1);
/// The backward's three terms cancel (gx of a plane sums to a fraction of its terms): 1e-5,
/// entries below 0.1 of the largest held to that level; measured at most 2.2e-7 on centred
/// planes.
const TOL_GX: Tol = Tol::new(1e-5, 0.1);
/// The f32 mean μ of a plane is off by a few ulp of |μ|, so each deviation x − μ is off by
/// ≈ 2⁻²⁴·|μ|: relative to the plane's spread σ, 2⁻²⁴·cond with cond = |μ| / σ. That moves
/// t = (x − μ)² / D (and so y) by up to about that much, times σ(t)'s slope ≤ 0.25: y gets
/// 2⁻²⁴ per unit of cond. The backward's terms, up to 10 times the gradient they sum to,
/// scale it by ≈ 60 (measured 1.3e-6 per unit of cond at cond 470 for a 1×2 plane, 6e-7 at
/// cond 58): 4e-6 per unit of cond.
const Y_PER_COND: f64 = 6e-8;
const GX_PER_COND: f64 = 4e-6;
/// Central differences, h = 1e-6, of a smooth function of O(1) values in f64.
const TOL_FD: f64 = 1e-7;

/// Batch 1, a 1×2 plane (H·W − 1 = 1), one channel, odd planes, planes of whole vec4s,
/// more channels than pixels, and planes longer than a GPU workgroup (256).
const CASES: &[[usize; 4]] = &[
    [1, 1, 1, 2],
    [2, 3, 5, 7],
    [1, 1, 4, 4],
    [3, 16, 2, 3],
    [2, 5, 8, 8],
    [1, 3, 17, 19],
    [2, 2, 33, 9],
];

fn lambda() -> f64 {
    LAMBDA as f64
}

fn max_abs(a: &Arr) -> f64 {
    a.data.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// The largest |μ| / σ over the planes of x, σ² = v + λ the energy's variance term: how much
/// the f32 mean's rounding weighs against the plane's spread.
fn cond(x: &Arr) -> f64 {
    let m = x.shape[2] * x.shape[3];
    x.data
        .chunks(m)
        .map(|p| {
            let mu = p.iter().sum::<f64>() / m as f64;
            let v = p.iter().map(|a| (a - mu).powi(2)).sum::<f64>() / (m as f64 - 1.0);
            mu.abs() / (v + lambda()).sqrt()
        })
        .fold(0.0, f64::max)
}

/// TOL_Y and TOL_GX widened by x's [`cond`].
fn tols(x: &Arr) -> (Tol, Tol) {
    let k = cond(x);
    (
        Tol::new(TOL_Y.rel + Y_PER_COND * k, TOL_Y.floor),
        Tol::new(TOL_GX.rel + GX_PER_COND * k, TOL_GX.floor),
    )
}

#[test]
fn simam_forward_and_backward_match_reference() {
    let mut rng = Rng(161);
    for s in CASES {
        // 1e-3: the variance (~1e-6) far below λ; 30: far above it; shift: a plane whose mean
        // is 20 times its spread.
        for (scale, shift) in [(1e-3, 0.0), (1.0, 0.0), (30.0, 0.0), (1.0, 20.0)] {
            // Rounded to f32 as the GPU gets it, so that the reference sees the same input.
            let x = rng.arr(s, scale).map(|v| v + shift);
            let x = Arr::from_f32(s, &x.to_f32());
            let gy = rng.arr(s, 1.0);
            let what = format!("simam {s:?} scale {scale} shift {shift}");
            let vx = Var::param(up(&x));
            let y = simam(&vx).unwrap();
            let (tol_y, tol_gx) = tols(&x);
            assert_close(&what, y.value(), &rs::simam(&x, lambda()), tol_y);
            backprop(&y, &gy);
            let want = rs::simam_backward(&x, &gy, lambda());
            assert_close(&format!("{what} gx"), &vx.grad().unwrap(), &want, tol_gx);
        }
    }
}

#[test]
fn reference_simam_passes_finite_differences() {
    let mut rng = Rng(162);
    for s in [[1, 1, 1, 2], [2, 2, 3, 3], [1, 3, 2, 5]] {
        for scale in [0.05, 1.0, 4.0] {
            let x = rng.arr(&s, scale);
            let gy = rng.arr(&s, 1.0);
            let g = rs::simam_backward(&x, &gy, lambda());
            let err =
                finite_diff_check(&x, &g, |v| dot(&rs::simam(v, lambda()), &gy)) / max_abs(&g);
            assert!(
                err < TOL_FD,
                "{s:?} scale {scale}: finite differences off by {err:.2e}"
            );
        }
    }
}

fn golden(f: &TensorFile, name: &str) -> Arr {
    let (shape, data) = f.f32(name).unwrap();
    Arr::from_f32(shape, data)
}

#[test]
fn simam_matches_pytorch_golden() {
    let f = TensorFile::load(Path::new(GOLDEN)).unwrap();
    let cases: Vec<[usize; 4]> = serde_json::from_str(f.meta("simam_cases").unwrap()).unwrap();
    assert!(
        cases.len() >= 5,
        "the golden has {} SimAM cases",
        cases.len()
    );
    for (i, s) in cases.iter().enumerate() {
        let [x, gy, y, gx] =
            ["x", "grad_y", "y", "grad_x"].map(|k| golden(&f, &format!("simam{i}.{k}")));
        assert_eq!(x.shape, s);
        // PyTorch's f64 results rounded to f32 against ours in f32: as the reference's.
        let (tol_y, tol_gx) = tols(&x);
        let (ty, stats) = simam_forward(&up(&x)).unwrap();
        assert_close(&format!("golden simam{i} y"), &ty, &y, tol_y);
        let tgx = simam_backward(&up(&x), &stats, &up(&gy)).unwrap();
        assert_close(&format!("golden simam{i} gx"), &tgx, &gx, tol_gx);
        // The CPU reference agrees with PyTorch to the f32 rounding of the stored values
        // (2⁻²⁴ each, relative to each value; gx's entries below 1e-3 of the largest are
        // differences of larger terms, held to that level).
        let r = rs::simam(&x, lambda());
        let rg = rs::simam_backward(&x, &gy, lambda());
        let what = format!("reference simam{i}");
        assert_close_f32(&format!("{what} y"), &r.to_f32(), &y, Tol::new(1e-6, 0.0));
        assert_close_f32(
            &format!("{what} gx"),
            &rg.to_f32(),
            &gx,
            Tol::new(1e-6, 1e-3),
        );
    }
}

/// 1×1 planes (H·W − 1 = 0: the official code divides 0 by 0) and inputs that are not
/// [N, C, H, W] are refused with the shape in the message.
#[test]
fn simam_refuses_single_pixel_planes_and_other_ranks() {
    let g = gpu();
    let one = Tensor::from_f32(&g, &[1.0, 2.0], &[2, 1, 1, 1]).unwrap();
    let err = format!("{:#}", simam_forward(&one).unwrap_err());
    assert!(
        err.contains("at least 2 pixels") && err.contains("[2, 1, 1, 1]"),
        "{err}"
    );
    let flat = Tensor::from_f32(&g, &[1.0; 6], &[2, 3]).unwrap();
    let err = format!("{:#}", simam_forward(&flat).unwrap_err());
    assert!(
        err.contains("[N, C, H, W]") && err.contains("[2, 3]"),
        "{err}"
    );
    let x = Tensor::from_f32(&g, &[1.0; 8], &[1, 2, 2, 2]).unwrap();
    let (_, stats) = simam_forward(&x).unwrap();
    let bad_gy = Tensor::from_f32(&g, &[1.0; 4], &[1, 1, 2, 2]).unwrap();
    let err = format!("{:#}", simam_backward(&x, &stats, &bad_gy).unwrap_err());
    assert!(
        err.contains("[1, 1, 2, 2]") && err.contains("[1, 2, 2, 2]"),
        "{err}"
    );
}
