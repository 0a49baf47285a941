//! Adaptive average pooling (`ops::adaptive_pool`): forward and the gathering backward through
//! autograd against the f64 CPU reference on a table of odd shapes (shrinking with overlapping
//! bins, growing, identity, VGG's 7x7 of a 1x1 map), finite differences of the reference,
//! PyTorch's bins, and PyTorch's F.adaptive_avg_pool2d (`reference/gen_pool.py`).

mod common;
use common::{assert_close, backprop, down, gpu, up};
use lskbb::ops::adaptive_pool::{adaptive_avg_pool2d, adaptive_avg_pool2d_forward};
use lskbb::reference::{dot, finite_diff_check, pool as rpool, Arr, Rng, Tol};
use lskbb::tensor_file::TensorFile;
use lskbb::{Tensor, Var};
use std::path::Path;

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/pool.safetensors"
);

/// Forward: f32 sums of a bin's values (up to 17·16 = 272 terms here), then one division;
/// backward: sums of gy / bin size over the bins holding an element (up to 49 bins, 1x1 to
/// 7x7). A run of m f32 additions errs by at most m·2⁻²⁴ of the sum of |terms| (272 terms of
/// |x| <= 2: 3.2e-5 absolute, 1.6e-5 of a mean's scale), typically √m of that; 1e-5 relative
/// with a floor of 0.1·max|want| allows 1e-6·max|want| absolute on entries that cancel.
const TOL: Tol = Tol::new(1e-5, 0.1);
/// Finite differences of the f64 reference with h = 1e-6 on a linear loss: rounding only.
const FD_TOL: f64 = 1e-7;
/// The CPU reference against PyTorch's float64 results stored as f32: one f32 rounding.
const GOLDEN_REF_TOL: Tol = Tol::new(1e-7, 0.0);

/// (N, C, H, W, OH, OW): identity (7x7, and 1x1 of 1x1), VGG's 7x7 of 1x1 (replication) and
/// of a 2x2 map, shrinking by non-divisors (overlapping bins), growing, mixed, batch 1, a
/// single output (global average pooling), and a map whose bins span 17x16 inputs.
const CASES: &[[usize; 6]] = &[
    [2, 3, 7, 7, 7, 7],
    [1, 1, 1, 1, 1, 1],
    [3, 5, 1, 1, 7, 7],
    [2, 3, 2, 2, 7, 7],
    [1, 4, 9, 11, 7, 7],
    [2, 3, 13, 6, 4, 5],
    [1, 3, 3, 5, 7, 4],
    [2, 2, 15, 17, 1, 1],
    [1, 2, 100, 97, 6, 6],
    [4, 3, 33, 31, 7, 7],
];

#[test]
fn adaptive_avg_pool_matches_reference_on_odd_shapes() {
    let mut rng = Rng(53);
    for (i, c) in CASES.iter().enumerate() {
        let what = format!("case {i} {c:?}");
        let x = rng.arr(&c[..4], 2.0);
        let want_y = rpool::adaptive_avg_pool2d(&x, c[4], c[5]);
        let xv = Var::param(up(&x));
        let y = adaptive_avg_pool2d(&xv, c[4], c[5]).unwrap();
        assert_close(&format!("{what} y"), y.value(), &want_y, TOL);
        let gy = rng.arr(&want_y.shape, 1.0);
        backprop(&y, &gy);
        let want_gx = rpool::adaptive_avg_pool2d_backward(&x.shape, &gy);
        assert_close(&format!("{what} gx"), &xv.grad().unwrap(), &want_gx, TOL);
    }
}

/// PyTorch's bins (aten AdaptiveAveragePooling start_index/end_index) on hand-checked sizes:
/// 5 -> 3 overlaps ([0,2), [1,4), [3,5)); 1 -> 7 repeats the one element; and at 7 -> 7 the
/// GPU's pooling of a 1x1 map copies it to all 49 outputs exactly.
#[test]
fn bins_follow_pytorch() {
    let bins: Vec<_> = (0..3).map(|i| rpool::adaptive_bin(i, 5, 3)).collect();
    assert_eq!(bins, [(0, 2), (1, 4), (3, 5)]);
    assert!((0..7).all(|i| rpool::adaptive_bin(i, 1, 7) == (0, 1)));
    let x = Tensor::from_f32(&gpu(), &[0.3, -1.7], &[1, 2, 1, 1]).unwrap();
    let y = down(&adaptive_avg_pool2d_forward(&x, 7, 7).unwrap());
    assert!(y[..49].iter().all(|&v| v == 0.3) && y[49..].iter().all(|&v| v == -1.7));
}

#[test]
fn reference_backward_matches_finite_differences() {
    let mut rng = Rng(59);
    for c in [[1, 2, 5, 7, 3, 4], [2, 1, 2, 3, 5, 7]] {
        let x = rng.arr(&c[..4], 2.0);
        let gy = rng.arr(&[c[0], c[1], c[4], c[5]], 1.0);
        let gx = rpool::adaptive_avg_pool2d_backward(&x.shape, &gy);
        let loss = |x: &Arr| dot(&rpool::adaptive_avg_pool2d(x, c[4], c[5]), &gy);
        let err = finite_diff_check(&x, &gx, loss);
        assert!(err <= FD_TOL, "{c:?}: finite differences off by {err:e}");
    }
}

#[test]
fn empty_sizes_are_refused() {
    let x = Tensor::zeros(&gpu(), &[1, 2, 3, 3]).unwrap();
    let e = format!("{:#}", adaptive_avg_pool2d_forward(&x, 0, 7).unwrap_err());
    assert!(e.contains("3x3") && e.contains("0x7"), "{e}");
    let flat = Tensor::zeros(&gpu(), &[2, 9]).unwrap();
    assert!(adaptive_avg_pool2d_forward(&flat, 1, 1).is_err());
}

fn golden_arr(f: &TensorFile, name: &str) -> Arr {
    let (shape, data) = f.f32(name).unwrap();
    Arr::from_f32(shape, data)
}

#[test]
fn adaptive_avg_pool_matches_pytorch() {
    let f = TensorFile::load(Path::new(GOLDEN)).unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(f.meta("avg_cases").unwrap()).unwrap();
    assert_eq!(cases.len(), 6);
    for (i, c) in cases.iter().enumerate() {
        let (oh, ow) = (
            c["oh"].as_u64().unwrap() as usize,
            c["ow"].as_u64().unwrap() as usize,
        );
        let get = |t: &str| golden_arr(&f, &format!("avg{i}.{t}"));
        let (x, gy, want_y, want_gx) = (get("x"), get("grad_y"), get("y"), get("grad_x"));
        let ref_y = rpool::adaptive_avg_pool2d(&x, oh, ow);
        GOLDEN_REF_TOL.check(&ref_y.to_f32(), &want_y).unwrap();
        let ref_gx = rpool::adaptive_avg_pool2d_backward(&x.shape, &gy);
        GOLDEN_REF_TOL.check(&ref_gx.to_f32(), &want_gx).unwrap();

        let xv = Var::param(up(&x));
        let y = adaptive_avg_pool2d(&xv, oh, ow).unwrap();
        // TOL plus the golden's own f32 rounding (6e-8 relative), well inside it.
        assert_close(&format!("golden {i} y"), y.value(), &want_y, TOL);
        backprop(&y, &gy);
        assert_close(
            &format!("golden {i} gx"),
            &xv.grad().unwrap(),
            &want_gx,
            TOL,
        );
    }
}
