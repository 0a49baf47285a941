//! Max pooling (`ops::maxpool`): forward values and argmax indices, the gathering backward
//! through autograd, against the f64 CPU reference on a table of odd shapes, ties and −∞
//! padding, finite differences of the reference, and PyTorch's F.max_pool2d
//! (`reference/gen_pool.py`).

mod common;
use common::{assert_close, backprop, down, gpu, up};
use lskbb::ops::maxpool::{max_pool2d, max_pool2d_backward, max_pool2d_forward, MaxPool};
use lskbb::reference::{dot, finite_diff_check, pool as rpool, Arr, Rng, Tol};
use lskbb::tensor_file::TensorFile;
use lskbb::{Tensor, Var};
use std::path::Path;

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/pool.safetensors"
);

/// A max only selects one of its inputs: exact in f32.
const EXACT: Tol = Tol::EXACT;
/// gx sums gy over the outputs whose argmax an input is: at most ceil(k/s)² terms (9 here,
/// k3 s1), each |gy| <= 1, so f32 rounding is at most 8 additions × 2⁻²⁴ × 9·max|gy| ≈
/// 4.3e-6·max|gy|. Held to 1e-5 of a floor of 0.5·max|gy| (`with_scale`): 5e-6·max|gy|.
const GX_TOL: Tol = Tol::new(1e-5, 0.5);
/// Finite differences of the f64 reference with h = 1e-6 on a piecewise-linear loss (no
/// window's two largest values closer than h): rounding O(1e-16 / h) only.
const FD_TOL: f64 = 1e-7;
/// The CPU reference against PyTorch's float64 results stored as f32: one f32 rounding.
const GOLDEN_REF_TOL: Tol = Tol::new(1e-7, 0.0);

/// (N, C, H, W, k, stride, padding): a 1x1 window, torchvision's stem pool 3/2/1 and VGG's
/// 2/2/0 at odd and even sizes, batch 1, overlapping stride-1 windows, strides over the window,
/// padding of half the window (k 4, p 2: edge windows of two valid rows), a window as large as
/// the padded input, a 2x2 map under a 3x3 window, and a stem-sized map (112²).
const CASES: &[[usize; 7]] = &[
    [1, 1, 1, 1, 1, 1, 0],
    [2, 3, 9, 9, 3, 2, 1],
    [1, 5, 7, 13, 2, 2, 0],
    [5, 3, 8, 8, 2, 2, 0],
    [3, 2, 11, 6, 3, 1, 1],
    [2, 3, 10, 13, 2, 3, 1],
    [2, 4, 17, 15, 4, 3, 2],
    [1, 1, 5, 5, 5, 3, 2],
    [1, 2, 2, 2, 3, 2, 1],
    [2, 3, 112, 112, 3, 2, 1],
];

fn pool_of(c: &[usize; 7]) -> MaxPool {
    MaxPool {
        k: c[4],
        stride: c[5],
        padding: c[6],
    }
}

fn max_abs(a: &Arr) -> f64 {
    a.data.iter().fold(0.0, |m: f64, v| m.max(v.abs()))
}

/// Forward (values, indices) and backward of x against the reference.
fn check(what: &str, x: &Arr, gy_seed: u64, m: MaxPool) {
    let (want_y, want_idx) = rpool::max_pool2d(x, m.k, m.stride, m.padding);
    let xv = Var::param(up(x));
    let y = max_pool2d(&xv, m).unwrap();
    assert_close(&format!("{what} y"), y.value(), &want_y, EXACT);
    let (_, idx) = max_pool2d_forward(&up(x), m).unwrap();
    let got_idx: Vec<usize> = idx.to_u32().unwrap().iter().map(|&i| i as usize).collect();
    assert_eq!(got_idx, want_idx, "{what} indices");
    let gy = Rng(gy_seed).arr(&want_y.shape, 1.0);
    backprop(&y, &gy);
    let want_gx = rpool::max_pool2d_backward(&x.shape, &want_idx, &gy);
    let tol = GX_TOL.with_scale(max_abs(&gy));
    assert_close(&format!("{what} gx"), &xv.grad().unwrap(), &want_gx, tol);
}

#[test]
fn max_pool_matches_reference_on_odd_shapes() {
    let mut rng = Rng(31);
    for (i, c) in CASES.iter().enumerate() {
        let x = rng.arr(&c[..4], 2.0);
        check(&format!("case {i} {c:?}"), &x, 100 + i as u64, pool_of(c));
    }
}

/// Ties go to the first element of the window in row-major order, as PyTorch: on a constant
/// map every output's index is its window's top-left element inside the input, and the
/// gradient lands there. Padding is −∞, not 0: on an all-negative map no output is 0.
#[test]
fn ties_take_the_first_index_and_padding_never_wins() {
    for c in [
        [2, 3, 9, 9, 3, 2, 1],
        [1, 2, 7, 6, 4, 1, 2],
        [1, 1, 6, 5, 2, 2, 0],
    ] {
        let m = pool_of(&c);
        let x = Arr::new(&c[..4], vec![-1.5; c[..4].iter().product()]);
        let (want_y, want_idx) = rpool::max_pool2d(&x, m.k, m.stride, m.padding);
        assert!(want_y.data.iter().all(|&v| v == -1.5));
        let ow = want_y.shape[3];
        for (o, &i) in want_idx.iter().enumerate() {
            let (oy, ox) = ((o / ow) % want_y.shape[2], o % ow);
            let first = |o: usize| (o * m.stride).saturating_sub(m.padding);
            assert_eq!(i, first(oy) * c[3] + first(ox), "{c:?} output {o}");
        }
        check(&format!("constant {c:?}"), &x, 7, m);
        let neg = Rng(5).arr(&c[..4], 1.0).map(|v| (v - 2.0) as f32 as f64);
        check(&format!("negative {c:?}"), &neg, 8, m);
        let (y, _) = max_pool2d_forward(&up(&neg), m).unwrap();
        assert!(down(&y).iter().all(|&v| v < -0.9), "{c:?}: padding won");
    }
}

#[test]
fn reference_backward_matches_finite_differences() {
    let mut rng = Rng(41);
    for c in [
        [1, 2, 7, 6, 3, 2, 1],
        [2, 1, 5, 5, 3, 1, 1],
        [1, 1, 6, 7, 4, 3, 2],
    ] {
        let m = pool_of(&c);
        let x = rng.arr(&c[..4], 2.0);
        let (y, idx) = rpool::max_pool2d(&x, m.k, m.stride, m.padding);
        let gy = rng.arr(&y.shape, 1.0);
        let gx = rpool::max_pool2d_backward(&x.shape, &idx, &gy);
        let loss = |x: &Arr| dot(&rpool::max_pool2d(x, m.k, m.stride, m.padding).0, &gy);
        let err = finite_diff_check(&x, &gx, loss);
        assert!(err <= FD_TOL, "{c:?}: finite differences off by {err:e}");
    }
}

#[test]
fn bad_windows_are_refused_with_their_sizes() {
    let x = up(&Rng(1).arr(&[1, 2, 4, 4], 1.0));
    let msg = |m: MaxPool| format!("{:#}", max_pool2d_forward(&x, m).unwrap_err());
    let over_half = msg(MaxPool {
        k: 3,
        stride: 2,
        padding: 2,
    });
    assert!(over_half.contains("padding 2"), "{over_half}");
    let too_big = msg(MaxPool {
        k: 7,
        stride: 1,
        padding: 1,
    });
    assert!(too_big.contains("4x4"), "{too_big}");
    let zero = msg(MaxPool {
        k: 2,
        stride: 0,
        padding: 0,
    });
    assert!(zero.contains("stride"), "{zero}");
    let flat = Tensor::zeros(&gpu(), &[4, 4]).unwrap();
    let m = MaxPool {
        k: 2,
        stride: 2,
        padding: 0,
    };
    assert!(max_pool2d_forward(&flat, m).is_err());
    let idx = Tensor::from_u32(&gpu(), &[0; 8], &[1, 2, 2, 2]).unwrap();
    let gy = Tensor::zeros(&gpu(), &[1, 2, 3, 2]).unwrap();
    assert!(max_pool2d_backward(&idx, &gy, &[1, 2, 4, 4], m).is_err());
}

fn golden_arr(f: &TensorFile, name: &str) -> Arr {
    let (shape, data) = f.f32(name).unwrap();
    Arr::from_f32(shape, data)
}

#[test]
fn max_pool_matches_pytorch() {
    let f = TensorFile::load(Path::new(GOLDEN)).unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(f.meta("max_cases").unwrap()).unwrap();
    assert_eq!(cases.len(), 6);
    for (i, c) in cases.iter().enumerate() {
        let m = MaxPool {
            k: c["k"].as_u64().unwrap() as usize,
            stride: c["stride"].as_u64().unwrap() as usize,
            padding: c["padding"].as_u64().unwrap() as usize,
        };
        let get = |t: &str| golden_arr(&f, &format!("max{i}.{t}"));
        let (x, gy, want_y, want_gx) = (get("x"), get("grad_y"), get("y"), get("grad_x"));
        let (_, want_idx) = f.i64(&format!("max{i}.idx")).unwrap();
        let (ref_y, ref_idx) = rpool::max_pool2d(&x, m.k, m.stride, m.padding);
        GOLDEN_REF_TOL.check(&ref_y.to_f32(), &want_y).unwrap();
        let ref_gx = rpool::max_pool2d_backward(&x.shape, &ref_idx, &gy);
        GOLDEN_REF_TOL.check(&ref_gx.to_f32(), &want_gx).unwrap();

        let xv = Var::param(up(&x));
        let y = max_pool2d(&xv, m).unwrap();
        assert_close(&format!("golden {i} y"), y.value(), &want_y, EXACT);
        let (_, idx) = max_pool2d_forward(&up(&x), m).unwrap();
        let got_idx: Vec<i64> = idx.to_u32().unwrap().iter().map(|&v| v as i64).collect();
        assert_eq!(got_idx, want_idx, "golden {i} indices");
        backprop(&y, &gy);
        // GX_TOL plus the golden's own f32 rounding (6e-8 relative), well inside it.
        let tol = GX_TOL.with_scale(max_abs(&gy));
        assert_close(
            &format!("golden {i} gx"),
            &xv.grad().unwrap(),
            &want_gx,
            tol,
        );
    }
}
