//! BatchNorm2d, channel mean/max pooling, global average pooling, the channel ops (concat,
//! slice, option-A shortcut) and the batch ops (stack, slice): GPU forward and backward
//! (through autograd) against the f64 CPU reference, finite-difference checks of the
//! reference, and the PyTorch goldens.

mod common;
use common::{assert_close, assert_close_f32, backprop, down, gpu, up};
use lskbb::ops::{batch, batchnorm, channels, chanpool, elementwise, pool, reduce};
use lskbb::reference::{dot, finite_diff_check, nn as rnn, Arr, Rng, Tol};
use lskbb::tensor_file::TensorFile;
use lskbb::{backward, Tensor, Var};
use std::path::Path;

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/golden/ops.safetensors"
);

/// Pure data movement (concat, slice, shortcut, max routing) is exact in f32.
const EXACT: Tol = Tol::EXACT;
/// Sums of up to ~1000 f32 terms of size <= 2, divided by the count: ~1e-6 relative. The
/// sums run on the reduce kernels (at most ~70 additions in a row, then trees), so entries
/// that cancel carry ≈ √70·2⁻²⁴·max|y| ≈ 5e-7·max|y|, which 1e-5 meets at 5e-2·max|y|.
const POOL_TOL: Tol = Tol::new(1e-5, 5e-2);
/// BatchNorm in f32: per-chunk sums shifted by a sample (runs of <= 69 terms per thread, then
/// a tree), chunks merged by a tree with Chan's formula (no cancellation), then
/// 1/sqrt(var + eps) and the dx correction terms (dy - mean(dy) - xhat·mean(dy·xhat)),
/// which cancel to O(1e-2) of their parts; 1e-6 rounding amplified that way stays < 5e-5.
/// Entries that cancel (y = γ·x̂ + β, x - mean; gamma's and beta's sums of up to 1.12M
/// terms in runs of <= 69) carry ≈ √(69 + 20)·2⁻²⁴·max ≈ 6e-7·max, which 5e-5 meets at
/// 1.2e-2·max: the floor is 2e-2.
const BN_TOL: Tol = Tol::new(5e-5, 2e-2);
/// BN's x gradient (γ/σ)·(dy - mean(dy) - x̂·mean(dy·x̂)) can cancel far below its terms
/// everywhere (with 2 values per channel x̂ = ±1 and it is ~1e-6 of them): its floor is a
/// fraction of the terms' size max(γ/σ)·max|dy| (`dx_terms`), which its ~20 roundings of
/// terms up to twice that scale with (≈ 2.4e-6 of it); 5e-5 meets that at 5e-2 of it.
const BN_DX_TOL: Tol = Tol::new(5e-5, 5e-2);
/// Finite differences of the f64 reference with h = 1e-6: truncation O(h²) plus rounding
/// O(1e-16 / h) per evaluation of a loss of size O(10).
const FD_TOL: f64 = 1e-6;
/// The CPU reference against PyTorch float64 values stored as f32: one f32 rounding, relative
/// to each value.
const GOLDEN_REF_TOL: Tol = Tol::new(1e-6, 0.0);

/// The size of the terms of BN's x gradient, (γ/σ)·dy: max γ/√(var + eps) times max |dy|,
/// over the variances of every channel (and group) used.
fn dx_terms(gamma: &Arr, vars: &[f64], gy: &Arr) -> f64 {
    let max_abs = |a: &[f64]| a.iter().fold(0.0, |m: f64, v| m.max(v.abs()));
    let min_sigma = vars
        .iter()
        .fold(f64::INFINITY, |m, &v| m.min((v + 1e-5).sqrt()));
    max_abs(&gamma.data) / min_sigma * max_abs(&gy.data)
}

/// The gradients of BN's x, gamma and beta against the reference's; `dx_terms` as above.
fn assert_bn_grads(what: &str, got: [&Var; 3], want: [&Arr; 3], dx_terms: f64) {
    let tols = [BN_DX_TOL.with_scale(dx_terms), BN_TOL, BN_TOL];
    for (((name, v), w), tol) in ["x", "gamma", "beta"].iter().zip(got).zip(want).zip(tols) {
        assert_close(&format!("{what} grad {name}"), &v.grad().unwrap(), w, tol);
    }
}

fn vec_arr(v: &[f64]) -> Arr {
    Arr::new(&[v.len()], v.to_vec())
}

fn golden() -> TensorFile {
    TensorFile::load(Path::new(GOLDEN)).unwrap()
}

fn golden_arr(f: &TensorFile, name: &str) -> Arr {
    let (shape, data) = f.f32(name).unwrap();
    Arr::from_f32(shape, data)
}

/// BatchNorm cases [N, C, H, W]: batch 1, single pixels (N·H·W = 3), N·H·W = 2 (smallest
/// valid), odd sizes, one channel longer than a workgroup (N·H·W = 578 > 256), channels split
/// into 4 chunks merged in a second stage (N·H·W = 13467), and one channel of 1.12M values in
/// 64 chunks (274 on a GPU adapter: more than the merging workgroup has threads). Planes of a
/// multiple of 4 values run on vec4 loads on a CPU driver: 4×6 and 8×8 (planes shorter than a
/// workgroup's 256-value step, so a step crosses several samples), 16×20 (320 values: a step
/// ends mid-plane and wraps to the next sample) and 700×800.
const BN_CASES: &[[usize; 4]] = &[
    [3, 2, 4, 6],
    [5, 3, 8, 8],
    [2, 5, 16, 20],
    [2, 3, 5, 7],
    [1, 4, 3, 3],
    [3, 5, 1, 1],
    [1, 2, 1, 2],
    [2, 3, 17, 17],
    [3, 5, 67, 67],
    [2, 1, 700, 800],
];
const EPS: f32 = 1e-5;
const MOMENTUM: f32 = 0.1;

fn bn_inputs(rng: &mut Rng, s: &[usize; 4]) -> (Arr, Arr, Arr, Arr, Arr, Arr) {
    let c = s[1];
    let x = rng.arr(s, 2.0).map(|v| v + 0.5);
    let gamma = rng.arr(&[c], 0.5).map(|v| v + 1.0);
    let beta = rng.arr(&[c], 1.0);
    let rm = rng.arr(&[c], 0.5);
    let rv = rng.arr(&[c], 0.5).map(|v| v + 1.0);
    let gy = rng.arr(s, 1.0);
    (x, gamma, beta, rm, rv, gy)
}

/// x, gamma and beta as parameters on the GPU.
fn bn_params(x: &Arr, gamma: &Arr, beta: &Arr) -> (Var, Var, Var) {
    (
        Var::param(up(x)),
        Var::param(up(gamma)),
        Var::param(up(beta)),
    )
}

#[test]
fn batch_norm_training_matches_reference_and_updates_running_stats() {
    let mut rng = Rng(11);
    for s in BN_CASES {
        let (x, gamma, beta, rm, rv, gy) = bn_inputs(&mut rng, s);
        let (trm, trv) = (up(&rm), up(&rv));
        let (vx, vg, vb) = bn_params(&x, &gamma, &beta);
        let y = batchnorm::batch_norm(&vx, &vg, &vb, &trm, &trv, true, MOMENTUM, EPS).unwrap();
        let (want, mean, var) = rnn::batch_norm_train(&x, &gamma, &beta, EPS as f64);
        assert_close(&format!("bn y {s:?}"), y.value(), &want, BN_TOL);
        let (wrm, wrv) = rnn::running_update(&x, &rm.data, &rv.data, MOMENTUM as f64);
        assert_close(
            &format!("bn running_mean {s:?}"),
            &trm,
            &vec_arr(&wrm),
            BN_TOL,
        );
        assert_close(
            &format!("bn running_var {s:?}"),
            &trv,
            &vec_arr(&wrv),
            BN_TOL,
        );
        backprop(&y, &gy);
        let (gx, gg, gb) = rnn::batch_norm_backward(&x, &gamma, &mean, &var, &gy, true, 1e-5);
        let terms = dx_terms(&gamma, &var, &gy);
        assert_bn_grads(
            &format!("bn {s:?}"),
            [&vx, &vg, &vb],
            [&gx, &gg, &gb],
            terms,
        );
    }
}

/// BatchNorm fused with the ReLU after it, in training and eval: y against relu of the
/// reference, gradients against the reference's BN backward of gy cut where y = 0. The mask
/// comes from the GPU's own y, so a value within rounding of 0 cannot flip it, and a backward
/// that finds the cut otherwise than where its forward's y is zero fails.
#[test]
fn batch_norm_relu_matches_reference_bn_then_relu() {
    let mut rng = Rng(15);
    for training in [true, false] {
        for s in BN_CASES {
            let (x, gamma, beta, rm, rv, gy) = bn_inputs(&mut rng, s);
            let (trm, trv) = (up(&rm), up(&rv));
            let (vx, vg, vb) = bn_params(&x, &gamma, &beta);
            let mode = batchnorm::BnMode {
                training,
                momentum: MOMENTUM,
                eps: EPS,
                groups: 1,
            };
            let y = batchnorm::batch_norm_with(&vx, &vg, &vb, [&trm, &trv], mode, true).unwrap();
            let (bn, mean, var) = if training {
                rnn::batch_norm_train(&x, &gamma, &beta, EPS as f64)
            } else {
                let y = rnn::batch_norm_apply(&x, &gamma, &beta, &rm.data, &rv.data, 1e-5);
                (y, rm.data.clone(), rv.data.clone())
            };
            let what = format!("bn+relu training {training} {s:?}");
            assert_close(
                &format!("{what} y"),
                y.value(),
                &bn.map(|v| v.max(0.0)),
                BN_TOL,
            );
            let kept = Arr::from_f32(s, &down(y.value()));
            backprop(&y, &gy);
            let cut = gy.zip(&kept, |g, y| if y > 0.0 { g } else { 0.0 });
            let (gx, gg, gb) =
                rnn::batch_norm_backward(&x, &gamma, &mean, &var, &cut, training, 1e-5);
            let terms = dx_terms(&gamma, &var, &cut);
            assert_bn_grads(&what, [&vx, &vg, &vb], [&gx, &gg, &gb], terms);
        }
    }
}

/// Samples [g·nb, (g+1)·nb) of a [N, ...] reference array.
fn batch_part(a: &Arr, g: usize, nb: usize) -> Arr {
    let per = a.numel() / a.shape[0];
    let mut shape = a.shape.clone();
    shape[0] = nb;
    Arr::new(&shape, a.data[g * nb * per..(g + 1) * nb * per].to_vec())
}

/// Stacked batches (`BnMode::groups`, the BBN branches through the shared trunk), with and
/// without the fused ReLU: each group is normalised with its own statistics, the running
/// statistics take the groups in order, and gamma and beta collect every group's gradient.
/// The reference is one separate batch norm per group, as BBN runs the trunk once per branch.
#[test]
fn batch_norm_of_stacked_batches_matches_one_batch_norm_per_batch() {
    let mut rng = Rng(16);
    for (i, (groups, s)) in [
        (2, [2, 3, 5, 7]),
        (2, [1, 2, 1, 2]),
        (3, [1, 4, 3, 3]),
        (2, [3, 2, 4, 6]),
        (3, [2, 3, 16, 20]),
    ]
    .into_iter()
    .chain(BN_CASES[7..].iter().map(|s| (2, *s)))
    .enumerate()
    {
        let relu = i % 2 == 1;
        let nb = s[0];
        let stacked = [groups * nb, s[1], s[2], s[3]];
        let (x, gamma, beta, rm, rv, gy) = bn_inputs(&mut rng, &stacked);
        let (trm, trv) = (up(&rm), up(&rv));
        let (vx, vg, vb) = bn_params(&x, &gamma, &beta);
        let mode = batchnorm::BnMode {
            training: true,
            momentum: MOMENTUM,
            eps: EPS,
            groups,
        };
        let y = batchnorm::batch_norm_with(&vx, &vg, &vb, [&trm, &trv], mode, relu).unwrap();
        let (mut want_rm, mut want_rv) = (rm.data.clone(), rv.data.clone());
        let mut parts = Vec::new();
        for g in 0..groups {
            let xg = batch_part(&x, g, nb);
            let (yg, mean, var) = rnn::batch_norm_train(&xg, &gamma, &beta, EPS as f64);
            (want_rm, want_rv) = rnn::running_update(&xg, &want_rm, &want_rv, MOMENTUM as f64);
            parts.push((xg, yg, mean, var));
        }
        let act = |v: f64| if relu { v.max(0.0) } else { v };
        let want_y: Vec<f64> = parts
            .iter()
            .flat_map(|p| p.1.data.iter().map(|&v| act(v)))
            .collect();
        let what = format!("stacked bn, {groups} x {s:?}, relu {relu}");
        assert_close(
            &format!("{what} y"),
            y.value(),
            &Arr::new(&stacked, want_y),
            BN_TOL,
        );
        assert_close(
            &format!("{what} running_mean"),
            &trm,
            &vec_arr(&want_rm),
            BN_TOL,
        );
        assert_close(
            &format!("{what} running_var"),
            &trv,
            &vec_arr(&want_rv),
            BN_TOL,
        );
        let kept = Arr::from_f32(&stacked, &down(y.value()));
        backprop(&y, &gy);
        let (mut gx, mut gg, mut gb) = (Vec::new(), Arr::zeros(&[s[1]]), Arr::zeros(&[s[1]]));
        for (g, (xg, _, mean, var)) in parts.iter().enumerate() {
            let cut = batch_part(&gy, g, nb).zip(&batch_part(&kept, g, nb), |d, y| {
                if relu && y <= 0.0 {
                    0.0
                } else {
                    d
                }
            });
            let (gxg, ggg, gbg) =
                rnn::batch_norm_backward(xg, &gamma, mean, var, &cut, true, EPS as f64);
            gx.extend(gxg.data);
            gg = gg.zip(&ggg, |a, b| a + b);
            gb = gb.zip(&gbg, |a, b| a + b);
        }
        let gx = Arr::new(&stacked, gx);
        let vars: Vec<f64> = parts.iter().flat_map(|p| p.3.iter().copied()).collect();
        let terms = dx_terms(&gamma, &vars, &gy);
        assert_bn_grads(&what, [&vx, &vg, &vb], [&gx, &gg, &gb], terms);
    }
}

/// Batch statistics of data far from zero (mean 100, spread 0.1) over several chunks: values
/// within a chunk differ from its first value exactly in f32, so each chunk's variance is good
/// to ~1e-6; merging adds the chunk means' rounding (~4e-6 each at 100) to deviations of
/// ~2e-3, ~1e-5 of the variance. E[x^2] - m^2 in f32 would lose it entirely (1e4 vs 3e-3).
/// Relative to each variance (all are ~3e-3), so no floor.
const BN_FAR_VAR_TOL: Tol = Tol::new(1e-4, 0.0);

#[test]
fn batch_norm_statistics_stay_accurate_far_from_zero() {
    let mut rng = Rng(14);
    let s = [3, 2, 67, 67];
    let x = rng.arr(&s, 0.1).map(|v| (100.0 + v) as f32 as f64);
    let ones = || up(&vec_arr(&[1.0, 1.0]));
    let zeros = || up(&vec_arr(&[0.0, 0.0]));
    let (gamma, beta, rm, rv) = (ones(), zeros(), zeros(), ones());
    let (_, mean, var) =
        batchnorm::batch_norm_forward(&up(&x), &gamma, &beta, &rm, &rv, true, MOMENTUM, EPS)
            .unwrap();
    let (want_mean, want_var) = rnn::channel_stats(&x);
    assert_close("bn far mean", &mean, &vec_arr(&want_mean), BN_TOL);
    assert_close("bn far var", &var, &vec_arr(&want_var), BN_FAR_VAR_TOL);
}

#[test]
fn batch_norm_eval_uses_running_stats_and_leaves_them_alone() {
    let mut rng = Rng(12);
    for s in BN_CASES.iter().chain(&[[1, 3, 1, 1]]) {
        let (x, gamma, beta, rm, rv, gy) = bn_inputs(&mut rng, s);
        let (trm, trv) = (up(&rm), up(&rv));
        let (vx, vg, vb) = bn_params(&x, &gamma, &beta);
        let y = batchnorm::batch_norm(&vx, &vg, &vb, &trm, &trv, false, MOMENTUM, EPS).unwrap();
        let want = rnn::batch_norm_apply(&x, &gamma, &beta, &rm.data, &rv.data, EPS as f64);
        assert_close(&format!("bn eval y {s:?}"), y.value(), &want, BN_TOL);
        assert_eq!(down(&trm), rm.to_f32(), "eval changed running_mean");
        assert_eq!(down(&trv), rv.to_f32(), "eval changed running_var");
        // A training step between forward and backward must not change this backward.
        let other = Var::constant(up(&rng.arr(s, 1.0)));
        batchnorm::batch_norm(&other, &vg, &vb, &trm, &trv, true, 0.5, EPS).ok();
        backprop(&y, &gy);
        let (gx, gg, gb) =
            rnn::batch_norm_backward(&x, &gamma, &rm.data, &rv.data, &gy, false, 1e-5);
        let terms = dx_terms(&gamma, &rv.data, &gy);
        let what = format!("bn eval {s:?}");
        assert_bn_grads(&what, [&vx, &vg, &vb], [&gx, &gg, &gb], terms);
    }
}

#[test]
fn batch_norm_rejects_single_values_and_bad_shapes() {
    let g = gpu();
    let t = |shape: &[usize]| Tensor::zeros(&g, shape).unwrap();
    let (gamma, beta, rm, rv) = (t(&[3]), t(&[3]), t(&[3]), t(&[3]));
    let run = |x: &Tensor, gamma: &Tensor, training| {
        batchnorm::batch_norm_forward(x, gamma, &beta, &rm, &rv, training, MOMENTUM, EPS)
    };
    let err = run(&t(&[1, 3, 1, 1]), &gamma, true).unwrap_err();
    assert!(format!("{err}").contains("more than one value"), "{err}");
    assert!(run(&t(&[1, 3, 1, 1]), &gamma, false).is_ok());
    assert!(run(&t(&[2, 4, 3, 3]), &gamma, true).is_err());
    assert!(run(&t(&[2, 3, 3]), &gamma, true).is_err());
    assert!(run(&t(&[2, 3, 3, 3]), &t(&[3, 1]), true).is_err());
    let stacked = |n: usize, groups: usize| {
        let mode = batchnorm::BnMode {
            training: true,
            momentum: MOMENTUM,
            eps: EPS,
            groups,
        };
        let (x, vg, vb) = (t(&[n, 3, 2, 2]), Var::param(t(&[3])), Var::param(t(&[3])));
        batchnorm::batch_norm_with(&Var::constant(x), &vg, &vb, [&rm, &rv], mode, false)
    };
    for (n, groups) in [(3, 2), (2, 0)] {
        let err = stacked(n, groups).err().expect("bad stacking accepted");
        assert!(format!("{err}").contains("stacked batches"), "{err}");
    }
    assert!(stacked(4, 2).is_ok());
    // The running statistics are written in place: sharing a buffer with an input (here
    // gamma, another view of one buffer, as parameters in a parameter block) is refused.
    let block = t(&[2 * 64]);
    let (gamma, beta) = (block.view(0, &[3]).unwrap(), block.view(64, &[3]).unwrap());
    let x = t(&[2, 3, 2, 2]);
    let err = batchnorm::batch_norm_forward(&x, &gamma, &rm, &rv, &beta, true, MOMENTUM, EPS)
        .unwrap_err();
    assert!(
        format!("{err}").contains("running_var") && format!("{err}").contains("gamma"),
        "{err}"
    );
}

#[test]
fn batch_norm_reference_passes_finite_differences() {
    let mut rng = Rng(13);
    let eps = 1e-5;
    for training in [true, false] {
        let (x, gamma, beta, rm, rv, gy) = bn_inputs(&mut rng, &[2, 3, 2, 3]);
        let f = |x: &Arr, g: &Arr, b: &Arr| {
            let y = if training {
                rnn::batch_norm_train(x, g, b, eps).0
            } else {
                rnn::batch_norm_apply(x, g, b, &rm.data, &rv.data, eps)
            };
            dot(&y, &gy)
        };
        let (mean, var) = if training {
            rnn::channel_stats(&x)
        } else {
            (rm.data.clone(), rv.data.clone())
        };
        let (gx, gg, gb) = rnn::batch_norm_backward(&x, &gamma, &mean, &var, &gy, training, eps);
        let mode = if training { "train" } else { "eval" };
        let e = finite_diff_check(&x, &gx, |v| f(v, &gamma, &beta));
        assert!(e < FD_TOL, "{mode} x: {e:e}");
        let e = finite_diff_check(&gamma, &gg, |v| f(&x, v, &beta));
        assert!(e < FD_TOL, "{mode} gamma: {e:e}");
        let e = finite_diff_check(&beta, &gb, |v| f(&x, &gamma, v));
        assert!(e < FD_TOL, "{mode} beta: {e:e}");
    }
    // Running statistics: unbiased variance, momentum on the batch value.
    let x = Arr::new(&[2, 1, 1, 1], vec![1.0, 3.0]);
    let (rm, rv) = rnn::running_update(&x, &[0.0], &[1.0], 0.1);
    assert!((rm[0] - 0.2).abs() < 1e-12 && (rv[0] - (0.9 + 0.1 * 2.0)).abs() < 1e-12);
}

#[test]
fn batch_norm_matches_pytorch_golden() {
    let f = golden();
    let a = |name: &str| golden_arr(&f, &format!("bn.{name}"));
    let (x, gamma, beta, gy) = (a("x"), a("gamma"), a("beta"), a("grad_y"));
    let (y, mean, var) = rnn::batch_norm_train(&x, &gamma, &beta, 1e-5);
    let (gx, gg, gb) = rnn::batch_norm_backward(&x, &gamma, &mean, &var, &gy, true, 1e-5);
    for (name, got) in [
        ("y", &y),
        ("grad_x", &gx),
        ("grad_gamma", &gg),
        ("grad_beta", &gb),
    ] {
        let what = format!("reference bn.{name}");
        assert_close_f32(&what, &a(name).to_f32(), got, GOLDEN_REF_TOL);
    }
    let c = gamma.numel();
    let ones = up(&Arr::new(&[c], vec![1.0; c]));
    let zeros = up(&Arr::zeros(&[c]));
    let (vx, vg, vb) = bn_params(&x, &gamma, &beta);
    let yv = batchnorm::batch_norm(&vx, &vg, &vb, &zeros, &ones, true, MOMENTUM, 1e-5).unwrap();
    backprop(&yv, &gy);
    assert_close("golden bn.y", yv.value(), &a("y"), BN_TOL);
    assert_close(
        "golden bn.grad_x",
        &vx.grad().unwrap(),
        &a("grad_x"),
        BN_TOL,
    );
    assert_close(
        "golden bn.grad_gamma",
        &vg.grad().unwrap(),
        &a("grad_gamma"),
        BN_TOL,
    );
    assert_close(
        "golden bn.grad_beta",
        &vb.grad().unwrap(),
        &a("grad_beta"),
        BN_TOL,
    );
}

/// Channel pooling cases: batch 1, one channel, odd sizes, more channels than pixels.
/// [1, 1, 4, 4] and [2, 6, 4, 5] have planes of whole vec4s (four pixels per invocation on a
/// CPU driver, each with its own maximum), the others do not.
const CHANPOOL_CASES: &[[usize; 4]] = &[
    [2, 5, 3, 7],
    [1, 1, 4, 4],
    [1, 9, 1, 1],
    [3, 16, 5, 3],
    [2, 6, 4, 5],
];

#[test]
fn channel_mean_max_matches_reference_with_ties() {
    let mut rng = Rng(21);
    for s in CHANPOOL_CASES {
        for ties in [false, true] {
            let mut x = rng.arr(s, 2.0);
            if ties {
                // Few distinct values: maxima repeat, and the first one must get the gradient.
                x = x.map(|v| (v * 1.5).round());
            }
            let gy = rng.arr(&[s[0], 2, s[2], s[3]], 1.0);
            let vx = Var::param(up(&x));
            let y = chanpool::channel_mean_max(&vx).unwrap();
            assert_close(
                &format!("chanpool y {s:?} ties {ties}"),
                y.value(),
                &rnn::channel_mean_max(&x),
                POOL_TOL,
            );
            backprop(&y, &gy);
            assert_close(
                &format!("chanpool grad {s:?} ties {ties}"),
                &vx.grad().unwrap(),
                &rnn::channel_mean_max_backward(&x, &gy),
                POOL_TOL,
            );
        }
    }
    let x = Arr::new(&[1, 3, 1, 1], vec![2.0, 2.0, 1.0]);
    let gy = Arr::new(&[1, 2, 1, 1], vec![3.0, 1.0]);
    let (gx, _) =
        chanpool::channel_mean_max_backward(&up(&x), None, &up(&gy), [None, None]).unwrap();
    assert_eq!(
        down(&gx),
        vec![2.0, 1.0, 1.0],
        "max gradient goes to the first maximum"
    );
}

/// The pair form pools over cat(a, b) without building it: same values and gradients as the
/// reference on the concatenation, split back at the boundary (ties across the two inputs
/// send the max gradient to the first one, in a).
#[test]
fn channel_mean_max_pair_matches_reference_on_the_concatenation() {
    let mut rng = Rng(23);
    for (s, split) in [
        ([2, 5, 3, 7], 2),
        ([1, 2, 4, 4], 1),
        ([3, 16, 5, 3], 8),
        ([1, 9, 1, 1], 4),
        ([2, 7, 4, 6], 3),
    ] {
        let x = rng.arr(&s, 2.0).map(|v| (v * 1.5).round());
        let gy = rng.arr(&[s[0], 2, s[2], s[3]], 1.0);
        let a = rnn::slice_channels(&x, 0, split);
        let b = rnn::slice_channels(&x, split, s[1] - split);
        let (va, vb) = (Var::param(up(&a)), Var::param(up(&b)));
        let y = chanpool::channel_mean_max_pair(&va, &vb).unwrap();
        assert_close(
            &format!("pair y {s:?}"),
            y.value(),
            &rnn::channel_mean_max(&x),
            POOL_TOL,
        );
        backprop(&y, &gy);
        let gx = rnn::channel_mean_max_backward(&x, &gy);
        let want = rnn::concat_channels_backward(&[split, s[1] - split], &gx);
        assert_close(
            &format!("pair grad a {s:?}"),
            &va.grad().unwrap(),
            &want[0],
            POOL_TOL,
        );
        assert_close(
            &format!("pair grad b {s:?}"),
            &vb.grad().unwrap(),
            &want[1],
            POOL_TOL,
        );
        // Gradients of a and b from elsewhere, added in the kernel's store: to both, or to b
        // alone.
        let acc = [rng.arr(&a.shape, 1.0), rng.arr(&b.shape, 1.0)];
        let (ta, tb, tg) = (up(&a), up(&b), up(&gy));
        let acc_up = [up(&acc[0]), up(&acc[1])];
        for adds in [[true, true], [false, true]] {
            let given = [0, 1].map(|i| adds[i].then_some(&acc_up[i]));
            let (ga, gb) = chanpool::channel_mean_max_backward(&ta, Some(&tb), &tg, given).unwrap();
            for (i, got) in [ga, gb.unwrap()].iter().enumerate() {
                let want = match adds[i] {
                    true => want[i].zip(&acc[i], |x, y| x + y),
                    false => want[i].clone(),
                };
                let what = format!("pair grad {i} adding {adds:?} {s:?}");
                assert_close(&what, got, &want, POOL_TOL);
            }
        }
    }
    let x = up(&Arr::zeros(&[1, 3, 2, 2]));
    let err = chanpool::channel_mean_max_backward(
        &x,
        Some(&x),
        &up(&Arr::zeros(&[1, 2, 2, 2])),
        [Some(&up(&Arr::zeros(&[1, 2, 2, 2]))), None],
    )
    .unwrap_err();
    assert!(format!("{err}").contains("input a"), "{err}");
}

#[test]
fn channel_mean_max_matches_pytorch_golden() {
    let f = golden();
    let a = |name: &str| golden_arr(&f, &format!("chanpool.{name}"));
    let (x, gy) = (a("x"), a("grad_y"));
    let want = rnn::channel_mean_max(&x);
    assert_close_f32(
        "reference chanpool.y",
        &a("y").to_f32(),
        &want,
        GOLDEN_REF_TOL,
    );
    let gx = rnn::channel_mean_max_backward(&x, &gy);
    let got = a("grad_x").to_f32();
    assert_close_f32("reference chanpool.grad_x", &got, &gx, GOLDEN_REF_TOL);
    let tx = up(&x);
    let y = chanpool::channel_mean_max_forward(&tx, None).unwrap();
    assert_close("golden chanpool.y", &y, &a("y"), POOL_TOL);
    let (g, _) = chanpool::channel_mean_max_backward(&tx, None, &up(&gy), [None, None]).unwrap();
    assert_close("golden chanpool.grad_x", &g, &a("grad_x"), POOL_TOL);
}

#[test]
fn pooling_references_pass_finite_differences() {
    let mut rng = Rng(22);
    let x = rng.arr(&[2, 4, 3, 3], 2.0);
    let gy = rng.arr(&[2, 2, 3, 3], 1.0);
    let g = rnn::channel_mean_max_backward(&x, &gy);
    let e = finite_diff_check(&x, &g, |v| dot(&rnn::channel_mean_max(v), &gy));
    assert!(e < FD_TOL, "channel_mean_max: {e:e}");
    let gy = rng.arr(&[2, 4], 1.0);
    let g = rnn::global_avg_pool_backward(&x.shape, &gy);
    let e = finite_diff_check(&x, &g, |v| dot(&rnn::global_avg_pool(v), &gy));
    assert!(e < FD_TOL, "global_avg_pool: {e:e}");
}

#[test]
fn global_avg_pool_matches_reference() {
    let mut rng = Rng(23);
    for s in [[2, 3, 5, 7], [1, 4, 1, 1], [1, 2, 33, 31], [3, 1, 2, 2]] {
        let x = rng.arr(&s, 2.0);
        let gy = rng.arr(&[s[0], s[1]], 1.0);
        let vx = Var::param(up(&x));
        let y = pool::global_avg_pool(&vx).unwrap();
        assert_close(
            &format!("gap {s:?}"),
            y.value(),
            &rnn::global_avg_pool(&x),
            POOL_TOL,
        );
        backprop(&y, &gy);
        let want = rnn::global_avg_pool_backward(&s, &gy);
        assert_close(
            &format!("gap grad {s:?}"),
            &vx.grad().unwrap(),
            &want,
            POOL_TOL,
        );
    }
}

#[test]
fn concat_and_slice_channels_match_reference() {
    let mut rng = Rng(31);
    // (shapes of the concatenated inputs) at rank 4 and rank 2, batch 1 and > 1.
    let cases: &[&[&[usize]]] = &[
        &[&[2, 3, 5, 7], &[2, 1, 5, 7], &[2, 4, 5, 7]],
        &[&[1, 2, 1, 1], &[1, 5, 1, 1]],
        &[&[3, 7], &[3, 2]],
        &[&[1, 4]],
    ];
    for shapes in cases {
        let xs: Vec<Arr> = shapes.iter().map(|s| rng.arr(s, 2.0)).collect();
        let vs: Vec<Var> = xs.iter().map(|x| Var::param(up(x))).collect();
        let refs: Vec<&Arr> = xs.iter().collect();
        let want = rnn::concat_channels(&refs);
        let y = channels::concat_channels(&vs.iter().collect::<Vec<_>>()).unwrap();
        assert_close(&format!("concat {shapes:?}"), y.value(), &want, EXACT);
        let gy = rng.arr(&want.shape, 1.0);
        backprop(&y, &gy);
        let chans: Vec<usize> = shapes.iter().map(|s| s[1]).collect();
        for (i, g) in rnn::concat_channels_backward(&chans, &gy)
            .iter()
            .enumerate()
        {
            assert_close(
                &format!("concat grad {i} {shapes:?}"),
                &vs[i].grad().unwrap(),
                g,
                EXACT,
            );
        }
        // Slices of the concatenation: one channel at the ends and a middle block.
        let total = want.shape[1];
        for (start, len) in [(0, 1), (total - 1, 1), (total / 3, total - total / 3)] {
            let vx = Var::param(up(&want));
            let s = channels::slice_channels(&vx, start, len).unwrap();
            let ws = rnn::slice_channels(&want, start, len);
            assert_close(
                &format!("slice {start}+{len} {shapes:?}"),
                s.value(),
                &ws,
                EXACT,
            );
            let gs = rng.arr(&ws.shape, 1.0);
            backprop(&s, &gs);
            let wg = rnn::slice_channels_backward(&want.shape, start, &gs);
            let what = format!("slice grad {start}+{len} {shapes:?}");
            assert_close(&what, &vx.grad().unwrap(), &wg, EXACT);
        }
    }
}

/// Stacking along N and slicing samples back out (the BBN trunk's two batches): the values
/// are the inputs' data end to end; a slice's gradient is gy at its samples and zero
/// elsewhere, and slices that cover the whole batch add back up to the stacked gradient.
#[test]
fn stack_and_slice_batch_move_whole_samples() {
    let mut rng = Rng(33);
    let cases: &[&[&[usize]]] = &[
        &[&[2, 3, 5, 7], &[2, 3, 5, 7]],
        &[&[1, 2, 1, 1], &[3, 2, 1, 1], &[2, 2, 1, 1]],
        &[&[3, 7], &[1, 7]],
    ];
    for shapes in cases {
        let xs: Vec<Arr> = shapes.iter().map(|s| rng.arr(s, 2.0)).collect();
        let vs: Vec<Var> = xs.iter().map(|x| Var::param(up(x))).collect();
        let y = batch::stack_batch(&vs.iter().collect::<Vec<_>>()).unwrap();
        let mut shape = shapes[0].to_vec();
        shape[0] = shapes.iter().map(|s| s[0]).sum();
        let want = Arr::new(&shape, xs.iter().flat_map(|x| x.data.clone()).collect());
        assert_close(&format!("stack {shapes:?}"), y.value(), &want, EXACT);
        let gy = rng.arr(&shape, 1.0);
        backprop(&y, &gy);
        let mut off = 0;
        for (i, x) in xs.iter().enumerate() {
            let part = Arr::new(&x.shape, gy.data[off..off + x.numel()].to_vec());
            off += x.numel();
            let what = format!("stack grad {i} {shapes:?}");
            assert_close(&what, &vs[i].grad().unwrap(), &part, EXACT);
        }
        // Every input's samples sliced back out of the stack, all feeding one loss.
        let vx = Var::param(up(&want));
        let (mut start, mut parts) = (0, Vec::new());
        for (i, x) in xs.iter().enumerate() {
            let s = batch::slice_batch(&vx, start, x.shape[0]).unwrap();
            assert_close(&format!("slice {i} {shapes:?}"), s.value(), x, EXACT);
            parts.push(elementwise::scale(&s, (i + 1) as f32).unwrap());
            start += x.shape[0];
        }
        let weights: Vec<f64> = xs
            .iter()
            .enumerate()
            .flat_map(|(i, x)| std::iter::repeat_n((i + 1) as f64, x.numel()))
            .collect();
        let total = parts
            .iter()
            .map(|p| reduce::sum(p, &(0..p.shape().len()).collect::<Vec<_>>(), false).unwrap())
            .reduce(|a, b| elementwise::add(&a, &b).unwrap())
            .unwrap();
        backward(&total).unwrap();
        let wg = Arr::new(&shape, weights);
        assert_close(
            &format!("slice grads {shapes:?}"),
            &vx.grad().unwrap(),
            &wg,
            EXACT,
        );
    }
    let g = gpu();
    let x = Tensor::zeros(&g, &[2, 3]).unwrap();
    assert!(batch::slice_batch_forward(&x, 1, 2).is_err());
    assert!(batch::stack_batch_forward(&[&x, &Tensor::zeros(&g, &[2, 4]).unwrap()]).is_err());
}

#[test]
fn shortcut_a_matches_reference() {
    let mut rng = Rng(32);
    // ([N, C, H, W], stride, pad): the ResNet-32 stage transitions, odd sizes, identity; on
    // CPU drivers maps a multiple of 8 wide at stride 2 run four values per invocation (odd
    // heights too).
    let cases: &[([usize; 4], usize, usize)] = &[
        ([2, 4, 8, 8], 2, 2),
        ([3, 5, 7, 16], 2, 3),
        ([1, 2, 6, 24], 2, 0),
        ([1, 3, 7, 5], 2, 1),
        ([2, 2, 5, 5], 3, 0),
        ([1, 3, 4, 4], 1, 0),
        ([3, 1, 1, 1], 2, 3),
    ];
    for &(s, stride, pad) in cases {
        let x = rng.arr(&s, 2.0);
        let want = rnn::shortcut_a(&x, stride, pad);
        let vx = Var::param(up(&x));
        let y = channels::shortcut_a(&vx, stride, pad).unwrap();
        let what = format!("shortcut {s:?} s{stride} p{pad}");
        assert_close(&what, y.value(), &want, EXACT);
        let gy = rng.arr(&want.shape, 1.0);
        backprop(&y, &gy);
        let wg = rnn::shortcut_a_backward(&s, stride, pad, &gy);
        assert_close(&format!("{what} grad"), &vx.grad().unwrap(), &wg, EXACT);
    }
}

#[test]
fn channel_op_references_pass_finite_differences() {
    let mut rng = Rng(33);
    let (a, b) = (rng.arr(&[2, 3, 2, 2], 1.0), rng.arr(&[2, 2, 2, 2], 1.0));
    let gy = rng.arr(&[2, 5, 2, 2], 1.0);
    let g = rnn::concat_channels_backward(&[3, 2], &gy);
    let e = finite_diff_check(&a, &g[0], |v| dot(&rnn::concat_channels(&[v, &b]), &gy));
    assert!(e < FD_TOL, "concat a: {e:e}");
    let e = finite_diff_check(&b, &g[1], |v| dot(&rnn::concat_channels(&[&a, v]), &gy));
    assert!(e < FD_TOL, "concat b: {e:e}");
    let gs = rng.arr(&[2, 2, 2, 2], 1.0);
    let g = rnn::slice_channels_backward(&a.shape, 1, &gs);
    let e = finite_diff_check(&a, &g, |v| dot(&rnn::slice_channels(v, 1, 2), &gs));
    assert!(e < FD_TOL, "slice: {e:e}");
    let x = rng.arr(&[1, 2, 5, 3], 1.0);
    let gy = rng.arr(&[1, 4, 3, 2], 1.0);
    let g = rnn::shortcut_a_backward(&x.shape, 2, 1, &gy);
    let e = finite_diff_check(&x, &g, |v| dot(&rnn::shortcut_a(v, 2, 1), &gy));
    assert!(e < FD_TOL, "shortcut: {e:e}");
}

#[test]
fn channel_ops_reject_bad_shapes() {
    let g = gpu();
    let v = |shape: &[usize]| Var::constant(Tensor::zeros(&g, shape).unwrap());
    let (a, b) = (v(&[2, 3, 4, 4]), v(&[2, 3, 4, 5]));
    assert!(channels::concat_channels(&[&a, &b]).is_err());
    assert!(channels::concat_channels(&[&a, &v(&[2, 3])]).is_err());
    assert!(channels::concat_channels(&[]).is_err());
    assert!(channels::slice_channels(&a, 2, 2).is_err());
    assert!(channels::slice_channels(&a, 0, 0).is_err());
    assert!(channels::slice_channels(&v(&[2, 3, 4]), 0, 1).is_err());
    assert!(channels::shortcut_a(&v(&[2, 3]), 2, 1).is_err());
    assert!(channels::shortcut_a(&a, 0, 1).is_err());
    assert!(chanpool::channel_mean_max(&v(&[2, 3])).is_err());
    assert!(pool::global_avg_pool(&v(&[2, 3])).is_err());
}
