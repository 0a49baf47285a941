//! Matmul, linear, softmax, label gathering, the fused losses and SGD: GPU against the f64
//! CPU reference, the CPU reference against finite differences, and the PyTorch goldens.

mod common;
use common::losses::{check_reference_losses, labels, up_labels};
use common::{assert_close, assert_close_f32, down, gpu, up};
use lskbb::model::ParamStore;
use lskbb::ops::elementwise as ew;
use lskbb::ops::linear::{self, linear_backward, linear_forward, matmul_forward};
use lskbb::ops::loss::{cb_weights, loss, loss_forward, LossKind};
use lskbb::ops::reduce;
use lskbb::ops::sgd::{sgd_step, SgdConfig};
use lskbb::ops::softmax::{
    self, gather_backward, gather_forward, softmax_backward, softmax_forward,
};
use lskbb::optim::Sgd;
use lskbb::reference::losses as rl;
use lskbb::reference::{dot, finite_diff_check, Arr, Rng, Tol};
use lskbb::tensor_file::TensorFile;
use lskbb::verify::loss_kind;
use lskbb::{backward, Tensor, Var};
use std::path::Path;

const GOLDEN_OPS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/golden/ops.safetensors"
);

/// f32 dot products of at most 70 terms with inputs in [-1, 1]: accumulated rounding stays
/// below 70·2⁻²⁴·|partial sums| ≈ 1e-5 of |result| where the terms add up; where they cancel
/// it stays ≈ √70·2⁻²⁴·max|y| ≈ 5e-7·max|y|, which 2e-5 meets at 2.5e-2·max|y|: entries
/// below 5e-2·max|y| are held to that level.
const TOL_MATMUL: Tol = Tol::new(2e-5, 5e-2);
/// exp and log in WGSL are accurate to a few ulp on the max-subtracted range used here, and
/// rows of up to 300 terms are summed in f32 (≈ √300·2⁻²⁴ ≈ 1e-6 of the largest entry):
/// 1e-5 covers it, with entries below 0.1 of the largest held to that level.
const TOL_SOFTMAX: Tol = Tol::new(1e-5, 0.1);
/// The losses chain exp, log and pow (each a few ulp), rows of up to 300 classes and batch
/// sums of at most 40 f32 terms: as TOL_SOFTMAX.
const TOL_LOSS: Tol = Tol::new(1e-5, 0.1);
/// The golden values are PyTorch f64 results rounded to f32; ours are f32 throughout: as
/// TOL_LOSS.
const TOL_GOLDEN: Tol = Tol::new(1e-5, 0.1);
/// The CPU reference rounded to f32 against PyTorch's f64 values rounded to f32: the two
/// roundings (2⁻²⁴ each), relative to each value.
const TOL_GOLDEN_REF: Tol = Tol::new(1e-6, 0.0);
/// Three SGD updates of O(1) values, ≤ 3 f32 roundings each (d = g + wd·p, buf = m·buf + d,
/// p -= lr·buf) of terms up to max|want|: ≈ √9·2⁻²⁴·max ≈ 2e-7·max|want| where they cancel,
/// which 1e-6 meets at 0.2·max|want|.
const TOL_SGD: Tol = Tol::new(1e-6, 0.2);
/// Central differences in f64 with h = 1e-6: truncation O(h²) plus cancellation O(1e-16/h).
const TOL_FD: f64 = 1e-7;

fn scalar(v: f64) -> Arr {
    Arr::new(&[1], vec![v])
}

#[test]
fn matmul_matches_reference_for_every_transpose() {
    let mut rng = Rng(10);
    // (M, K, N): single elements, one tile, tile edges +-1, more K than one tile.
    for (m, k, n) in [
        (1, 1, 1),
        (1, 7, 3),
        (16, 16, 16),
        (17, 15, 33),
        (5, 70, 2),
        (31, 3, 1),
    ] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = rng.arr(&if ta { [k, m] } else { [m, k] }, 1.0);
            let b = rng.arr(&if tb { [n, k] } else { [k, n] }, 1.0);
            let c = matmul_forward(&up(&a), &up(&b), ta, tb).unwrap();
            let want = rl::matmul(&a, &b, ta, tb);
            assert_close(
                &format!("matmul {m}x{k}x{n} {ta} {tb}"),
                &c,
                &want,
                TOL_MATMUL,
            );
        }
    }
    let g = gpu();
    let a = Tensor::zeros(&g, &[3, 4]).unwrap();
    assert!(matmul_forward(&a, &a, false, false).is_err());
    assert!(matmul_forward(&a.reshape(&[12]).unwrap(), &a, false, false).is_err());
}

/// (N, F, O, bias): batch 1 and larger, odd sizes, sizes across tile edges.
const LINEAR_CASES: &[(usize, usize, usize, bool)] = &[
    (1, 1, 1, true),
    (1, 9, 4, false),
    (3, 17, 5, true),
    (18, 33, 7, true),
    (5, 64, 10, false),
];

#[test]
fn linear_forward_and_backward_match_reference() {
    let mut rng = Rng(11);
    for &(n, f, o, bias) in LINEAR_CASES {
        let x = rng.arr(&[n, f], 1.0);
        let w = rng.arr(&[o, f], 1.0);
        let b = rng.arr(&[o], 1.0);
        let bt = up(&b);
        let y = linear_forward(&up(&x), &up(&w), bias.then_some(&bt)).unwrap();
        let what = format!("linear {n}x{f}->{o} bias {bias}");
        assert_close(
            &what,
            &y,
            &rl::linear(&x, &w, bias.then_some(&b)),
            TOL_MATMUL,
        );
        let gy = rng.arr(&[n, o], 1.0);
        let (gx, gw, gb) = linear_backward(&up(&x), &up(&w), &up(&gy), bias).unwrap();
        let (wx, ww, wb) = rl::linear_backward(&x, &w, &gy);
        assert_close(&format!("{what} gx"), &gx, &wx, TOL_MATMUL);
        assert_close(&format!("{what} gw"), &gw, &ww, TOL_MATMUL);
        assert_eq!(gb.is_some(), bias);
        if let Some(gb) = gb {
            assert_close(&format!("{what} gb"), &gb, &wb, TOL_MATMUL);
        }
    }
    let g = gpu();
    let x = Tensor::zeros(&g, &[2, 3]).unwrap();
    let w = Tensor::zeros(&g, &[4, 5]).unwrap();
    assert!(linear_forward(&x, &w, None).is_err(), "feature mismatch");
    let w = Tensor::zeros(&g, &[4, 3]).unwrap();
    let b = Tensor::zeros(&g, &[3]).unwrap();
    assert!(linear_forward(&x, &w, Some(&b)).is_err(), "bias mismatch");
}

#[test]
fn linear_then_loss_backpropagates_through_autograd() {
    let mut rng = Rng(12);
    for &(n, f, o, bias) in LINEAR_CASES {
        let (x, w, b) = (
            rng.arr(&[n, f], 1.0),
            rng.arr(&[o, f], 1.0),
            rng.arr(&[o], 0.5),
        );
        let y = labels(&mut rng, n, o);
        let (vx, vw, vb) = (Var::param(up(&x)), Var::param(up(&w)), Var::param(up(&b)));
        let z = linear::linear(&vx, &vw, bias.then_some(&vb)).unwrap();
        let l = loss(&z, &up_labels(&y), &LossKind::Ce).unwrap();
        backward(&l).unwrap();
        let zr = rl::linear(&x, &w, bias.then_some(&b));
        let (v, gz) = rl::loss(&zr, &y, &LossKind::Ce);
        let (wx, ww, wb) = rl::linear_backward(&x, &w, &gz);
        let what = format!("linear+ce {n}x{f}->{o}");
        assert_close(&what, l.value(), &scalar(v), TOL_LOSS);
        assert_close(&format!("{what} gx"), &vx.grad().unwrap(), &wx, TOL_MATMUL);
        assert_close(&format!("{what} gw"), &vw.grad().unwrap(), &ww, TOL_MATMUL);
        assert_eq!(vb.grad().is_some(), bias);
        if bias {
            assert_close(&format!("{what} gb"), &vb.grad().unwrap(), &wb, TOL_MATMUL);
        }
    }
}

/// (N, C): single row and class, rows narrower and wider than a workgroup.
const ROW_CASES: &[(usize, usize)] = &[(1, 1), (1, 5), (7, 3), (37, 10), (3, 300)];

#[test]
fn softmax_and_log_softmax_match_reference() {
    let mut rng = Rng(13);
    for &(n, c) in ROW_CASES {
        // Scale 30: exponents far outside f32's exp range unless the max is subtracted.
        for scale in [3.0, 30.0] {
            let x = rng.arr(&[n, c], scale);
            let gy = rng.arr(&[n, c], 1.0);
            for log in [false, true] {
                let what = format!("softmax log={log} {n}x{c} scale {scale}");
                let y = softmax_forward(&up(&x), log).unwrap();
                let (want, wgx) = if log {
                    let y = rl::log_softmax(&x);
                    let g = rl::log_softmax_backward(&y, &gy);
                    (y, g)
                } else {
                    let y = rl::softmax(&x);
                    let g = rl::softmax_backward(&y, &gy);
                    (y, g)
                };
                assert_close(&what, &y, &want, TOL_SOFTMAX);
                let gx = softmax_backward(&y, &up(&gy), log).unwrap();
                // softmax's y·(gy - Σ y·gy): where a row is nearly one-hot (scale 30), the
                // bracket cancels to ~(1 - y_max)·gy for the largest y, and every entry is far
                // smaller than the terms y·gy (<= max|gy|) whose rounding it carries: its floor
                // is taken from max|gy|. log_softmax's gy - p·Σ gy does not cancel that way.
                let tol = if log {
                    TOL_SOFTMAX
                } else {
                    TOL_SOFTMAX.with_scale(gy.data.iter().fold(0.0, |m, v| v.abs().max(m)))
                };
                assert_close(&format!("{what} grad"), &gx, &wgx, tol);
            }
        }
    }
}

#[test]
fn gather_label_forward_backward_and_autograd() {
    let mut rng = Rng(14);
    for &(n, c) in ROW_CASES {
        let x = rng.arr(&[n, c], 3.0);
        let y = labels(&mut rng, n, c);
        let ty = up_labels(&y);
        let out = gather_forward(&up(&x), &ty).unwrap();
        assert_close(
            &format!("gather {n}x{c}"),
            &out,
            &rl::gather(&x, &y),
            Tol::EXACT,
        );
        let g = rng.arr(&[n], 1.0);
        let gx = gather_backward(&up(&g), &ty, c).unwrap();
        let want = rl::gather_backward(&g, &y, c);
        assert_close(&format!("scatter {n}x{c}"), &gx, &want, Tol::EXACT);
        // Σ_i log_softmax(x)[i, y_i] through the autograd wrappers.
        let vx = Var::param(up(&x));
        let s = softmax::gather_label(&softmax::log_softmax(&vx).unwrap(), &ty).unwrap();
        let s = reduce::sum(&s, &[0], true).unwrap();
        backward(&s).unwrap();
        let lp = rl::log_softmax(&x);
        let ones = Arr::new(&[n], vec![1.0; n]);
        let want = rl::log_softmax_backward(&lp, &rl::gather_backward(&ones, &y, c));
        let sum: f64 = rl::gather(&lp, &y).data.iter().sum();
        assert_close(
            &format!("Σ log p_y {n}x{c}"),
            s.value(),
            &scalar(sum),
            TOL_SOFTMAX,
        );
        assert_close(
            &format!("Σ log p_y grad {n}x{c}"),
            &vx.grad().unwrap(),
            &want,
            TOL_SOFTMAX,
        );
        let p = softmax::softmax(&Var::constant(up(&x))).unwrap();
        assert_close(
            &format!("softmax var {n}x{c}"),
            p.value(),
            &rl::softmax(&x),
            TOL_SOFTMAX,
        );
    }
}

fn kinds(c: usize) -> Vec<LossKind> {
    let alpha: Vec<f32> = (0..c).map(|i| 0.25 + 0.5 * (i % 3) as f32).collect();
    let counts: Vec<usize> = (0..c).map(|i| 1 + 500 / (i + 1)).collect();
    let weights = cb_weights(&counts, 0.999);
    vec![
        LossKind::Ce,
        LossKind::Focal {
            gamma: 2.0,
            alpha: None,
        },
        LossKind::Focal {
            gamma: 1.5,
            alpha: Some(alpha.clone()),
        },
        LossKind::Focal {
            gamma: 0.5,
            alpha: Some(alpha),
        },
        LossKind::Focal {
            gamma: 0.0,
            alpha: None,
        },
        LossKind::CbCe {
            weights: weights.clone(),
        },
        LossKind::Dflce {
            theta: 0.37,
            gamma: 2.0,
        },
        LossKind::Dflcsce {
            theta: 0.8,
            gamma: 3.0,
            weights,
        },
    ]
}

#[test]
fn losses_value_and_gradient_match_reference() {
    let mut rng = Rng(15);
    for &(n, c) in ROW_CASES {
        for scale in [3.0, 30.0] {
            let z = rng.arr(&[n, c], scale);
            let y = labels(&mut rng, n, c);
            let ty = up_labels(&y);
            for kind in kinds(c) {
                let what = format!("{kind:?} {n}x{c} scale {scale}");
                let (value, grad) = loss_forward(&up(&z), &ty, &kind).unwrap();
                let (v, g) = rl::loss(&z, &y, &kind);
                assert_close(&what, &value, &scalar(v), TOL_LOSS);
                assert_close(&format!("{what} grad"), &grad, &g, TOL_LOSS);
            }
        }
    }
}

#[test]
fn loss_backward_scales_by_the_upstream_gradient() {
    let mut rng = Rng(16);
    let (n, c) = (6, 5);
    let z = rng.arr(&[n, c], 2.0);
    let y = labels(&mut rng, n, c);
    let kind = LossKind::Dflce {
        theta: 0.6,
        gamma: 2.0,
    };
    let vz = Var::param(up(&z));
    let l = loss(&vz, &up_labels(&y), &kind).unwrap();
    assert_eq!(l.shape(), &[1]);
    backward(&ew::scale(&l, -2.5).unwrap()).unwrap();
    let (_, g) = rl::loss(&z, &y, &kind);
    assert_close(
        "scaled loss grad",
        &vz.grad().unwrap(),
        &g.map(|v| -2.5 * v),
        TOL_LOSS,
    );
}

#[test]
fn loss_rejects_bad_inputs_and_flags_bad_labels() {
    let g = gpu();
    let z = Tensor::zeros(&g, &[3, 4]).unwrap();
    let kind = LossKind::Ce;
    assert!(
        loss_forward(&z, &up_labels(&[0, 1]), &kind).is_err(),
        "label count"
    );
    let f = Tensor::from_f32(&g, &[0.0, 1.0, 2.0], &[3]).unwrap();
    assert!(loss_forward(&z, &f, &kind).is_err(), "label dtype");
    assert!(loss_forward(&z.reshape(&[12]).unwrap(), &up_labels(&[0; 12]), &kind).is_err());
    let short = LossKind::CbCe {
        weights: vec![1.0; 3],
    };
    assert!(
        loss_forward(&z, &up_labels(&[0, 1, 2]), &short).is_err(),
        "weights length"
    );
    let bad = LossKind::Dflce {
        theta: 1.5,
        gamma: 2.0,
    };
    assert!(
        loss_forward(&z, &up_labels(&[0, 1, 2]), &bad).is_err(),
        "theta range"
    );
    // A label >= C is not read back; it shows as NaN rather than an out-of-bounds read.
    let (v, grad) = loss_forward(&z, &up_labels(&[0, 9, 2]), &kind).unwrap();
    assert!(down(&v)[0].is_nan());
    let grad = down(&grad);
    assert!(grad[4..8].iter().all(|x| x.is_nan()));
    assert!(gather_forward(&z, &up_labels(&[0, 9, 2]))
        .unwrap()
        .to_f32()
        .unwrap()[1]
        .is_nan());
}

#[test]
fn reference_losses_pass_finite_differences() {
    check_reference_losses(17, kinds, TOL_FD);
}

#[test]
fn reference_linear_and_softmax_pass_finite_differences() {
    let mut rng = Rng(18);
    let (x, w, b) = (
        rng.arr(&[3, 5], 1.0),
        rng.arr(&[4, 5], 1.0),
        rng.arr(&[4], 1.0),
    );
    let gy = rng.arr(&[3, 4], 1.0);
    let (gx, gw, gb) = rl::linear_backward(&x, &w, &gy);
    let f = |x: &Arr, w: &Arr, b: &Arr| dot(&rl::linear(x, w, Some(b)), &gy);
    assert!(
        finite_diff_check(&x, &gx, |v| f(v, &w, &b)) < TOL_FD,
        "linear x"
    );
    assert!(
        finite_diff_check(&w, &gw, |v| f(&x, v, &b)) < TOL_FD,
        "linear w"
    );
    assert!(
        finite_diff_check(&b, &gb, |v| f(&x, &w, v)) < TOL_FD,
        "linear b"
    );
    let z = rng.arr(&[3, 7], 3.0);
    let gz = rng.arr(&[3, 7], 1.0);
    let g = rl::softmax_backward(&rl::softmax(&z), &gz);
    assert!(
        finite_diff_check(&z, &g, |v| dot(&rl::softmax(v), &gz)) < TOL_FD,
        "softmax"
    );
    let g = rl::log_softmax_backward(&rl::log_softmax(&z), &gz);
    let err = finite_diff_check(&z, &g, |v| dot(&rl::log_softmax(v), &gz));
    assert!(err < TOL_FD, "log_softmax");
    let y = [6, 0, 3];
    let gl = rng.arr(&[3], 1.0);
    let g = rl::gather_backward(&gl, &y, 7);
    assert!(
        finite_diff_check(&z, &g, |v| dot(&rl::gather(v, &y), &gl)) < TOL_FD,
        "gather"
    );
}

#[test]
fn cb_weights_follow_cui_et_al() {
    let counts = [500, 120, 31, 5];
    let w = cb_weights(&counts, 0.9999);
    let raw: Vec<f64> = counts
        .iter()
        .map(|&n| 1e-4 / (1.0 - 0.9999f64.powi(n as i32)))
        .collect();
    let s: f64 = raw.iter().sum();
    for (got, r) in w.iter().zip(&raw) {
        assert!((*got as f64 - r / s * 4.0).abs() < 1e-6);
    }
    assert!((w.iter().map(|&v| v as f64).sum::<f64>() - 4.0).abs() < 1e-5);
    assert!(
        w.windows(2).all(|p| p[0] < p[1]),
        "rarer classes weigh more"
    );
}

#[test]
fn losses_match_pytorch_golden() {
    let file = TensorFile::load(Path::new(GOLDEN_OPS)).unwrap();
    let meta: serde_json::Value = serde_json::from_str(file.meta("losses").unwrap()).unwrap();
    let losses = meta.as_object().unwrap();
    for want in ["focal", "focal_g1", "ce", "cb-ce", "dflce", "dflcsce"] {
        assert!(losses.contains_key(want), "the golden has no loss {want}");
    }
    for (name, settings) in losses {
        let kind = loss_kind(settings, 4).unwrap();
        let (zs, zd) = file.f32(&format!("loss.{name}.logits")).unwrap();
        let (_, yd) = file.i64(&format!("loss.{name}.y")).unwrap();
        let y: Vec<u32> = yd.iter().map(|&v| v as u32).collect();
        let z = Arr::from_f32(zs, zd);
        let (vs, vd) = file.f32(&format!("loss.{name}.value")).unwrap();
        let (gs, gd) = file.f32(&format!("loss.{name}.grad")).unwrap();
        let (want_v, want_g) = (Arr::from_f32(vs, vd), Arr::from_f32(gs, gd));
        let (value, grad) = loss_forward(&up(&z), &up_labels(&y), &kind).unwrap();
        assert_close(&format!("golden {name} value"), &value, &want_v, TOL_GOLDEN);
        assert_close(&format!("golden {name} grad"), &grad, &want_g, TOL_GOLDEN);
        // The CPU reference agrees with PyTorch too (to f32 rounding of the stored values).
        let (v, g) = rl::loss(&z, &y, &kind);
        let what = format!("reference {name}");
        assert_close_f32(
            &format!("{what} value"),
            &[v as f32],
            &want_v,
            TOL_GOLDEN_REF,
        );
        assert_close_f32(
            &format!("{what} grad"),
            &g.to_f32(),
            &want_g,
            TOL_GOLDEN_REF,
        );
    }
}

#[test]
fn sgd_matches_reference_over_three_steps() {
    let mut rng = Rng(19);
    let configs = [
        (0.1, 0.0, 0.0, false),
        (0.05, 0.9, 2e-4, false),
        (0.05, 0.9, 5e-4, true),
        (0.2, 0.5, 0.0, true),
    ];
    for (lr, momentum, weight_decay, nesterov) in configs {
        let cfg = SgdConfig {
            lr,
            momentum,
            weight_decay,
            nesterov,
        };
        for shape in [&[1usize][..], &[7, 3, 3], &[517]] {
            let mut p = rng.arr(shape, 1.0);
            let mut buf = Arr::zeros(shape);
            let (tp, tbuf) = (up(&p), Tensor::zeros(&gpu(), shape).unwrap());
            for step in 0..3 {
                let g = rng.arr(shape, 1.0);
                sgd_step(&tp, &up(&g), &tbuf, &cfg).unwrap();
                rl::sgd_step(&mut p, &g, &mut buf, &cfg);
                let what = format!("sgd {cfg:?} {shape:?} step {step}");
                assert_close(&what, &tp, &p, TOL_SGD);
                assert_close(&format!("{what} buf"), &tbuf, &buf, TOL_SGD);
            }
        }
    }
    let g = gpu();
    let p = Tensor::zeros(&g, &[4]).unwrap();
    let bad = Tensor::zeros(&g, &[5]).unwrap();
    let cfg = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.0,
        nesterov: false,
    };
    assert!(sgd_step(&p, &bad, &p, &cfg).is_err());
    assert!(sgd_step(&p, &p, &bad, &cfg).is_err());
}

/// The optimiser over a model's parameter blocks: parameters packed into blocks (one larger
/// than the first block opens its own), updated one dispatch per block when every gradient
/// is in its block, else one per parameter: a parameter without a gradient is left alone
/// (PyTorch), and a gradient set from elsewhere is used. Every parameter and momentum
/// buffer against the reference after each step; the padding between parameters stays zero.
#[test]
fn sgd_over_parameter_blocks_matches_reference_per_parameter() {
    let g = gpu();
    let mut rng = Rng(23);
    let shapes: [&[usize]; 4] = [&[3], &[7, 3, 3], &[300_000], &[5]];
    let mut store = ParamStore::default();
    let mut want: Vec<Arr> = Vec::new();
    for (i, shape) in shapes.iter().enumerate() {
        let p = rng.arr(shape, 1.0);
        store
            .param(&g, format!("p{i}"), &p.to_f32(), shape)
            .unwrap();
        want.push(p);
    }
    assert_eq!(
        store.blocks.len(),
        2,
        "the 300000-element parameter opens a second block"
    );
    let cfg = SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 5e-4,
        nesterov: false,
    };
    let mut opt = Sgd::new(&store, cfg).unwrap();
    let mut bufs: Vec<Arr> = shapes.iter().map(|s| Arr::zeros(s)).collect();
    // Step 0: every parameter; step 1: p0 has no gradient; step 2: p1's gradient is set
    // by hand, so block 0 goes parameter by parameter twice.
    for step in 0..3 {
        store.zero_grad();
        let grads: Vec<Arr> = shapes.iter().map(|s| rng.arr(s, 1.0)).collect();
        let used: Vec<usize> = (0..shapes.len()).filter(|&i| step != 1 || i != 0).collect();
        let terms: Vec<Var> = used
            .iter()
            .map(|&i| {
                let prod = ew::mul(&store.params[i].1, &Var::constant(up(&grads[i]))).unwrap();
                reduce::sum(&prod, &(0..shapes[i].len()).collect::<Vec<_>>(), false).unwrap()
            })
            .collect();
        let total = terms[1..]
            .iter()
            .fold(terms[0].clone(), |a, b| ew::add(&a, b).unwrap());
        backward(&total).unwrap();
        if step == 2 {
            store.params[1].1.set_grad(Some(up(&grads[1])));
        }
        opt.step(&store).unwrap();
        for &i in &used {
            rl::sgd_step(&mut want[i], &grads[i], &mut bufs[i], &cfg);
        }
        let state = opt.state(&store).unwrap();
        for (i, (name, p)) in store.params.iter().enumerate() {
            let what = format!("sgd block step {step} {name}");
            assert_close(&what, p.value(), &want[i], TOL_SGD);
            let (shape, buf) = state.f32(&format!("optim.{name}.momentum_buffer")).unwrap();
            assert_eq!(shape, &bufs[i].shape[..], "{what} momentum shape");
            assert_close_f32(&format!("{what} momentum"), buf, &bufs[i], TOL_SGD);
        }
        let values = down(&store.blocks[0].values);
        let filled: Vec<(usize, usize)> = store.blocks[0]
            .members
            .iter()
            .map(|&(i, start)| (start, start + want[i].numel()))
            .collect();
        for (k, v) in values.iter().enumerate() {
            if !filled.iter().any(|&(a, b)| (a..b).contains(&k)) {
                assert_eq!(*v, 0.0, "padding element {k} of block 0 after step {step}");
            }
        }
    }
}

/// Three steps of torch.optim.SGD (momentum, weight decay) from a fresh momentum buffer.
#[test]
fn sgd_steps_match_pytorch_golden() {
    let file = TensorFile::load(Path::new(GOLDEN_OPS)).unwrap();
    let s: serde_json::Value = serde_json::from_str(file.meta("sgd").unwrap()).unwrap();
    let cfg = SgdConfig {
        lr: s["lr"].as_f64().unwrap() as f32,
        momentum: s["momentum"].as_f64().unwrap() as f32,
        weight_decay: s["weight_decay"].as_f64().unwrap() as f32,
        nesterov: s["nesterov"].as_bool().unwrap(),
    };
    let (ps, pd) = file.f32("sgd.p").unwrap();
    let p = Tensor::from_f32(&gpu(), pd, ps).unwrap();
    let buf = Tensor::zeros(&gpu(), ps).unwrap();
    for i in 0..s["steps"].as_u64().unwrap() {
        let (_, gd) = file.f32(&format!("sgd.grad{i}")).unwrap();
        let grad = Tensor::from_f32(&gpu(), gd, ps).unwrap();
        sgd_step(&p, &grad, &buf, &cfg).unwrap();
        let (es, ed) = file.f32(&format!("sgd.p{}", i + 1)).unwrap();
        assert_close(
            &format!("golden sgd step {}", i + 1),
            &p,
            &Arr::from_f32(es, ed),
            TOL_SGD,
        );
    }
}
