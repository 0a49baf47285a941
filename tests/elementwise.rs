//! Elementwise and reduction ops: GPU forward and backward against the f64 CPU reference.

mod common;
use common::{assert_close, gpu, up};
use lskbb::ops::elementwise::{self as ew, BinaryOp, UnaryOp};
use lskbb::ops::reduce;
use lskbb::reference::elementwise as refew;
use lskbb::reference::{finite_diff_check, Rng, Tol};
use lskbb::{backward, Var};

/// One f32 operation on exact inputs: add, sub and mul correctly rounded (2⁻²⁴ ≈ 6e-8), div
/// within 2.5 ulp, exp within WGSL's 3 + 2|x| ulp (<= 1.3e-6 for |x| <= 4) and sigmoid
/// 1/(1 + exp(-x)) within ~1.7e-6: relative to each value, with no floor.
const POINTWISE_TOL: Tol = Tol::new(2e-6, 0.0);
/// Everything that sums (broadcast gradients, a·b + c, sums and means over axes): the reduce
/// kernels add at most ~70 terms in a row (runs of <= 37 per thread, 70-term workgroup rows),
/// then trees, so rounding reaches ≈ √70·2⁻²⁴·max|y| ≈ 5e-7·max|y|, which rel 1e-5 meets at
/// 5e-2·max|y|. Also log, whose WGSL error is absolute near x = 1 (2⁻²¹ ≈ 5e-7, where log
/// crosses 0): ≈ 2e-7·max|y| with max|log x| ≈ 2.3 here.
const TOL: Tol = Tol::new(1e-5, 5e-2);
/// sigmoid's derivative y·(1 - y)·gy from the saved y: y's error (<= 1.7e-6·y, as above)
/// stays absolute in 1 - y, which near saturation (y = 0.982 at x = 4) is 55 times smaller
/// than y: up to 1.6e-6·|gy|, 6.4e-6 of the largest derivative 0.25·|gy|, so every entry is
/// held to 1e-5 of the largest (floor 1).
const SIGMOID_GRAD_TOL: Tol = Tol::new(1e-5, 1.0);

/// (a shape, b shape): same shape (mul then has a one-pass backward; 144 values: four at a
/// time on a CPU driver), per-channel, per-sample, scalar, odd sizes, rank 2.
const BINARY_CASES: &[(&[usize], &[usize])] = &[
    (&[2, 3, 5, 7], &[2, 3, 5, 7]),
    (&[2, 3, 4, 6], &[2, 3, 4, 6]),
    (&[2, 3, 5, 7], &[3, 1, 1]),
    (&[3, 5, 4, 3], &[3, 1, 1, 1]),
    (&[1, 6, 9, 9], &[1]),
    (&[4, 1, 5, 5], &[4, 7, 5, 5]),
    (&[7, 13], &[1, 13]),
];

#[test]
fn binary_ops_forward_and_backward_match_reference() {
    let mut rng = Rng(1);
    for &(sa, sb) in BINARY_CASES {
        for (op, name) in [
            (BinaryOp::Add, "add"),
            (BinaryOp::Sub, "sub"),
            (BinaryOp::Mul, "mul"),
            (BinaryOp::Div, "div"),
            (BinaryOp::AddRelu, "add_relu"),
        ] {
            let a = rng.arr(sa, 2.0);
            // Divisors kept away from zero so the quotient is well conditioned.
            let b = if op == BinaryOp::Div {
                rng.arr(sb, 1.0).map(|v| v.signum() * (0.5 + v.abs()))
            } else {
                rng.arr(sb, 2.0)
            };
            let want = refew::binary(&a, &b, |x, y| match op {
                BinaryOp::Add => x + y,
                BinaryOp::Sub => x - y,
                BinaryOp::Mul => x * y,
                BinaryOp::Div => x / y,
                BinaryOp::AddRelu => (x + y).max(0.0),
            });
            let (ta, tb) = (up(&a), up(&b));
            let y = ew::binary_forward(&ta, &tb, op).unwrap();
            assert_close(&format!("{name} {sa:?} {sb:?}"), &y, &want, POINTWISE_TOL);
            let gy = rng.arr(&want.shape, 1.0);
            let (wa, wb) = refew::binary_backward(&a, &b, &gy, name);
            let (ga, gb) = ew::binary_backward(&ta, &tb, &y, &up(&gy), op).unwrap();
            assert_close(&format!("{name} grad a {sa:?} {sb:?}"), &ga, &wa, TOL);
            assert_close(&format!("{name} grad b {sa:?} {sb:?}"), &gb, &wb, TOL);
        }
    }
}

/// relu(a·b + c) through autograd, on odd shapes (the LSK block's join), with about half the
/// outputs clipped ([3, 17, 4, 9] is whole vec4s: the CPU driver's four-wide kernels); a shape
/// mismatch is an error naming the input.
#[test]
fn mul_add_relu_forward_and_backward_match_reference() {
    let mut rng = Rng(5);
    for shape in [&[2, 3, 5, 7][..], &[1, 1, 1, 1], &[3, 17, 4, 9], &[5, 11]] {
        let (a, b, c) = (
            rng.arr(shape, 2.0),
            rng.arr(shape, 2.0),
            rng.arr(shape, 2.0),
        );
        let (va, vb, vc) = (Var::param(up(&a)), Var::param(up(&b)), Var::param(up(&c)));
        let y = ew::mul_add_relu(&va, &vb, &vc).unwrap();
        assert_close(
            &format!("mul_add_relu {shape:?}"),
            y.value(),
            &refew::mul_add_relu(&a, &b, &c),
            TOL,
        );
        let gy = rng.arr(shape, 1.0);
        common::backprop(&y, &gy);
        let (wa, wb, wc) = refew::mul_add_relu_backward(&a, &b, &c, &gy);
        for (name, v, want) in [("a", &va, wa), ("b", &vb, wb), ("c", &vc, wc)] {
            let what = format!("mul_add_relu grad {name} {shape:?}");
            assert_close(&what, &v.grad().unwrap(), &want, POINTWISE_TOL);
        }
    }
    let (t, u) = (up(&rng.arr(&[2, 3], 1.0)), up(&rng.arr(&[3], 1.0)));
    let err = ew::mul_add_relu_forward(&t, &t, &u).unwrap_err();
    assert!(format!("{err}").contains("input c has shape [3]"), "{err}");
}

/// [1000, 3] is whole vec4s (the CPU driver's four-wide kernels), the others are not.
#[test]
fn unary_ops_forward_and_backward_match_reference() {
    let mut rng = Rng(2);
    for shape in [&[1usize][..], &[3, 5, 7, 2], &[1000, 3]] {
        for (op, name) in [
            (UnaryOp::Relu, "relu"),
            (UnaryOp::Sigmoid, "sigmoid"),
            (UnaryOp::Exp, "exp"),
            (UnaryOp::Log, "log"),
            (UnaryOp::Scale, "scale"),
        ] {
            let mut x = rng.arr(shape, 4.0);
            if op == UnaryOp::Log {
                x = x.map(|v| v.abs() + 0.1);
            }
            let (want, deriv) = refew::unary(&x, name, -1.5);
            let tx = up(&x);
            let y = ew::unary_forward(&tx, op, -1.5).unwrap();
            let tol = if op == UnaryOp::Log {
                TOL
            } else {
                POINTWISE_TOL
            };
            assert_close(&format!("{name} {shape:?}"), &y, &want, tol);
            let gy = rng.arr(shape, 1.0);
            let gx = ew::unary_backward(op.saved(&tx, &y), &up(&gy), op, -1.5).unwrap();
            assert_close(
                &format!("{name} grad {shape:?}"),
                &gx,
                &deriv.zip(&gy, |d, g| d * g),
                if op == UnaryOp::Sigmoid {
                    SIGMOID_GRAD_TOL
                } else {
                    POINTWISE_TOL
                },
            );
        }
    }
}

#[test]
fn sums_and_means_over_axes_match_reference() {
    let mut rng = Rng(3);
    let shape = [3, 5, 7, 4];
    let x = rng.arr(&shape, 2.0);
    for (axes, keep) in [
        (&[1usize][..], [3, 1, 7, 4]),
        (&[0, 2, 3][..], [1, 5, 1, 1]),
        (&[0, 1, 2, 3][..], [1, 1, 1, 1]),
        (&[2, 3][..], [3, 5, 1, 1]),
    ] {
        let count: usize = axes.iter().map(|&a| shape[a]).product();
        let want = refew::sum_to(&x, &keep);
        let v = Var::param(up(&x));
        let s = reduce::sum(&v, axes, true).unwrap();
        assert_close(&format!("sum {axes:?}"), s.value(), &want, TOL);
        let m = reduce::mean(&v, axes, false).unwrap();
        let mean_want = want.map(|t| t / count as f64);
        assert_eq!(m.value().numel(), mean_want.numel());
        assert_close(
            &format!("mean {axes:?}"),
            &m.value().reshape(&keep).unwrap(),
            &mean_want,
            TOL,
        );
        // d(sum of all means)/dx = 1/count everywhere.
        let total = reduce::sum(&m, &(0..m.shape().len()).collect::<Vec<_>>(), false);
        let total = total.unwrap();
        let total = total.value().reshape(&[1]).map(|_| total.clone()).unwrap();
        backward(&total).unwrap();
        let g = v.grad().unwrap();
        assert_close(
            &format!("mean grad {axes:?}"),
            &g,
            &x.map(|_| 1.0 / count as f64),
            POINTWISE_TOL,
        );
    }
}

/// sum_to cases (input shape, output shape) by strategy: one thread per output (7 or 10 terms,
/// reduced axes before or around kept ones; 32768 outputs of 65 terms), one workgroup per
/// output (70 terms; the last axis reduced), and chunked two-stage sums (4489 to 600000 terms
/// in up to 64 chunks on lavapipe, 147 on a GPU; a rank-2 column sum with strided reads).
const SUM_TO_CASES: &[(&[usize], &[usize])] = &[
    (&[3, 7, 33, 35], &[3, 1, 33, 35]),
    (&[2, 64, 5, 3], &[1, 64, 1, 3]),
    (&[1, 65, 128, 256], &[1, 1, 128, 256]),
    (&[2, 70, 9, 11], &[2, 1, 9, 11]),
    (&[3, 5, 67, 67], &[3, 5, 67, 1]),
    (&[3, 5, 67, 67], &[1, 5, 1, 1]),
    (&[3, 5, 67, 67], &[3, 5, 1, 1]),
    (&[3, 5, 67, 67], &[1, 1, 1, 1]),
    (&[5000, 3], &[1, 3]),
    (&[1, 1, 1, 600000], &[1]),
];
/// Sums of n terms in [-2, 2] have size ~√n and f32 rounding errors ~1e-7·√n·log2(n) (runs
/// of <= 37 terms per thread, then trees), so sums scaled by 1/√n (k of sum_to_scaled) are O(1)
/// with errors ~1e-7·log2(n) <= 2e-6; entries that cancel are held to 5e-7·max|y| as in TOL.
const SUM_TO_TOL: Tol = TOL;

#[test]
fn sum_to_strategies_match_reference() {
    let mut rng = Rng(5);
    for &(big, small) in SUM_TO_CASES {
        let x = rng.arr(big, 2.0);
        let count = x.numel() / small.iter().product::<usize>();
        let k = 1.0 / (count as f64).sqrt();
        let want = refew::sum_to(&x, small).map(|v| k * v);
        let y = reduce::sum_to_scaled(&up(&x), small, k as f32).unwrap();
        assert_close(
            &format!("sum_to {big:?} -> {small:?}"),
            &y,
            &want,
            SUM_TO_TOL,
        );
    }
}

#[test]
fn broadcast_reduction_reference_passes_finite_differences() {
    let mut rng = Rng(4);
    let (a, b) = (rng.arr(&[2, 3, 4, 5], 1.0), rng.arr(&[3, 1, 1], 1.0));
    let gy = rng.arr(&[2, 3, 4, 5], 1.0);
    for op in ["add", "sub", "mul", "div"] {
        let b = b.map(|v| v.signum() * (0.5 + v.abs()));
        let f = |aa: &lskbb::reference::Arr, bb: &lskbb::reference::Arr| {
            let y = refew::binary(aa, bb, |x, y| match op {
                "add" => x + y,
                "sub" => x - y,
                "mul" => x * y,
                _ => x / y,
            });
            lskbb::reference::dot(&y, &gy)
        };
        let (ga, gb) = refew::binary_backward(&a, &b, &gy, op);
        assert!(finite_diff_check(&a, &ga, |x| f(x, &b)) < 1e-6, "{op} a");
        assert!(finite_diff_check(&b, &gb, |x| f(&a, x)) < 1e-6, "{op} b");
    }
}

/// acc += g in place (a parameter's gradient at home), on a shape of whole vec4s (the CPU
/// driver's four-wide kernel) and one without.
#[test]
fn add_into_accumulates_in_place() {
    let mut rng = Rng(9);
    for shape in [&[3usize][..], &[2, 3, 4], &[5, 7]] {
        let (acc, g) = (rng.arr(shape, 1.0), rng.arr(shape, 1.0));
        let t = up(&acc);
        ew::add_into(&t, &up(&g)).unwrap();
        assert_close(
            &format!("add_into {shape:?}"),
            &t,
            &acc.zip(&g, |a, b| a + b),
            POINTWISE_TOL,
        );
    }
}

/// Three values, and eight (whole vec4s: the CPU driver's four-wide accumulate and mul
/// backward).
#[test]
fn gradients_accumulate_across_backward_calls() {
    let g = gpu();
    for v in [
        &[1.0, -2.0, 3.0][..],
        &[1.0, -2.0, 3.0, 0.5, -1.0, 2.0, 4.0, -0.25],
    ] {
        let x = Var::param(lskbb::Tensor::from_f32(&g, v, &[v.len()]).unwrap());
        for _ in 0..2 {
            let y = ew::mul(&x, &x).unwrap();
            let s = reduce::sum(&y, &[0], false).unwrap();
            let s = Var::from_op(
                "id",
                s.value().reshape(&[1]).unwrap(),
                &[&s],
                Box::new(|g| Ok(vec![Some(g.reshape(&[]).unwrap())])),
            );
            backward(&s).unwrap();
        }
        let want: Vec<f32> = v.iter().map(|x| 4.0 * x).collect();
        assert_eq!(x.grad().unwrap().to_f32().unwrap(), want);
    }
}

/// A graph back-propagates once: its backward closures, and the tensors they saved, are
/// freed as they run, so a second backward through the same ops is an error that names the
/// op, not a silent wrong gradient.
/// A parameter with a gradient home used inside a checkpointed function and, downstream of
/// it, outside: the walk reaches the parameter (its first gradient, copied home after the
/// walk) before the checkpoint's backward adds its part, which must not be lost.
#[test]
fn a_parameter_inside_and_outside_a_checkpoint_gets_both_gradients() {
    use lskbb::autograd::{checkpoint, CheckpointFn};
    let g = gpu();
    let t = |v: &[f32]| lskbb::Tensor::from_f32(&g, v, &[v.len()]).unwrap();
    let home = lskbb::Tensor::zeros(&g, &[2]).unwrap();
    let p = Var::param_with_grad_home(t(&[2.0, 3.0]), home).unwrap();
    let x = Var::param(t(&[5.0, 7.0]));
    let inner = p.clone();
    let f: CheckpointFn = std::rc::Rc::new(move |xs: &[Var], _| ew::mul(&xs[0], &inner));
    // w = p · (x · p): d/dp = 2·x·p, d/dx = p².
    let w = ew::mul(&p, &checkpoint("x·p", &[&x], 1, f).unwrap()).unwrap();
    backward(&reduce::sum(&w, &[0], false).unwrap()).unwrap();
    assert_eq!(p.grad().unwrap().to_f32().unwrap(), vec![20.0, 42.0]);
    assert!(p.grad_at_home());
    assert_eq!(x.grad().unwrap().to_f32().unwrap(), vec![4.0, 9.0]);
}

#[test]
fn second_backward_through_a_graph_is_an_error() {
    let g = gpu();
    let x = Var::param(lskbb::Tensor::from_f32(&g, &[1.0, -2.0, 3.0], &[3]).unwrap());
    let s = reduce::sum(&ew::mul(&x, &x).unwrap(), &[0], true).unwrap();
    backward(&s).unwrap();
    let e = backward(&s).unwrap_err().to_string();
    assert!(e.contains("op sum a second time"), "{e}");
    assert_eq!(x.grad().unwrap().to_f32().unwrap(), vec![2.0, -4.0, 6.0]);
}

/// The comparison every test uses fails on a GPU tensor that is all NaN or holds an infinity,
/// however loose the tolerance (the old measure folded with f64::max, which drops NaN, and
/// passed an all-NaN output with error 0); and it holds small entries to the floor: a gradient
/// of size ~1e-5 off by a factor 2 in one entry fails at the tolerance of these tests.
#[test]
fn nan_inf_and_small_but_wrong_outputs_fail_the_comparison() {
    use lskbb::reference::Arr;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let want = Arr::new(&[4], vec![1.0, -2.0, 0.5, 0.0]);
    let loose = Tol::new(1e30, 1.0);
    let fails = |got: &[f64], want: &Arr, tol: Tol| {
        let t = up(&Arr::new(&want.shape, got.to_vec()));
        let what = format!("{got:?}");
        catch_unwind(AssertUnwindSafe(|| assert_close(&what, &t, want, tol))).is_err()
    };
    assert!(fails(&[f64::NAN; 4], &want, loose), "all NaN");
    assert!(fails(&[1.0, f64::NAN, 0.5, 0.0], &want, loose), "one NaN");
    assert!(fails(&[1.0, f64::INFINITY, 0.5, 0.0], &want, loose), "inf");
    assert!(
        fails(&[1.0, -2.0, f64::NEG_INFINITY, 0.0], &want, loose),
        "-inf"
    );
    assert!(!fails(&[1.0, -2.0, 0.5, 0.0], &want, Tol::EXACT), "equal");
    let small = Arr::new(&[3], vec![1e-5, -2e-5, 3e-5]);
    assert!(fails(&[1e-5, -4e-5, 3e-5], &small, TOL), "small but wrong");
    assert!(!fails(&small.data, &small, TOL), "small and right");
}
