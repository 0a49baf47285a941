//! MiSLAS's ops (Zhong et al. 2021): the GPU mixup of a batch (`shaders/mixup.wgsl`) and the
//! label-aware smoothing loss in `shaders/loss.wgsl`, against the CPU reference on odd shapes,
//! the reference against finite differences, and both against PyTorch running MiSLAS's own
//! `LabelAwareSmoothing`, `mixup_data` and `mixup_criterion` (`reference/gen_mislas.py`).

mod common;

use common::losses::{check_reference_losses, labels, up_labels};
use common::{assert_close, gpu, up};
use lskbb::backward;
use lskbb::ops::elementwise::{add, scale};
use lskbb::ops::loss::{las_smoothing, loss, loss_forward, LasShape, LossKind};
use lskbb::ops::mixup::mixup;
use lskbb::reference::elementwise as re;
use lskbb::reference::losses as rl;
use lskbb::reference::{Arr, Rng, Tol};
use lskbb::tensor_file::TensorFile;
use lskbb::{Tensor, Var};
use std::path::Path;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/mislas_las.safetensors"
);

/// λ·x + (1 − λ)·x' is two f32 products and a sum: at most ~1.5 ulp of the larger term, and
/// the result may cancel, so every entry is held to 4e-7 of the batch's largest |x|.
const TOL_MIXUP: Tol = Tol::new(4e-7, 1.0);
/// CE's (tests/linear_loss.rs TOL_LOSS: exp, log and row sums of up to 300 f32 terms) plus
/// the mean of the row's log-probabilities, with one more effect: where ε_y is near 1, the
/// off-label entries p_j − ε_y/C cancel (p_j ≈ 1/C there), keeping p_j's absolute error
/// (≈ 1e-5 of the largest entry, measured 1.02e-5 at 300 classes): 2e-5 as LDAM's TOL_LDAM,
/// entries below 0.1 of the largest held to that level.
const TOL_LAS: Tol = Tol::new(2e-5, 0.1);
/// PyTorch in f64 against the f32 kernel on logits of size up to ~9: as TOL_LAS.
const TOL_GOLDEN: Tol = Tol::new(1e-5, 0.1);
/// ε computed in f64 from the same formula and rounded to f32 on both sides: equal but for
/// the last bit of sin's f64 result.
const TOL_SMOOTH: Tol = Tol::new(1e-7, 0.0);
/// Central differences, h = 1e-6 in f64, on a loss of curvature below 1: truncation and
/// cancellation both below 1e-9.
const TOL_FD: f64 = 1e-7;

/// Batches [N, C, H, W] with one sample, one value per sample, and sizes that are no
/// multiple of 4.
const MIX_CASES: &[[usize; 4]] = &[[1, 1, 1, 1], [2, 3, 5, 7], [5, 1, 3, 3], [3, 2, 17, 9]];

/// A random permutation of 0..n from the test generator.
fn permutation(rng: &mut Rng, n: usize) -> Vec<u32> {
    let mut p: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        p.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    p
}

#[test]
fn mixup_matches_reference() {
    let mut rng = Rng(51);
    for shape in MIX_CASES {
        let x = rng.arr(shape, 2.0);
        let perm = permutation(&mut rng, shape[0]);
        for lambda in [0.0f32, 0.3125, 0.77, 1.0] {
            let got = mixup(&up(&x), &perm, lambda).unwrap();
            let want = re::mixup(&x, &perm, lambda as f64);
            let tol = TOL_MIXUP.with_scale(2.0);
            assert_close(&format!("mixup {shape:?} λ {lambda}"), &got, &want, tol);
        }
    }
}

#[test]
fn mixup_refuses_a_bad_permutation_or_lambda() {
    let x = Tensor::zeros(&gpu(), &[3, 2]).unwrap();
    for (perm, lambda) in [
        (vec![0, 1], 0.5),
        (vec![0, 1, 1], 0.5),
        (vec![0, 1, 3], 0.5),
        (vec![2, 0, 1], 1.5),
        (vec![2, 0, 1], f32::NAN),
    ] {
        assert!(mixup(&x, &perm, lambda).is_err(), "{perm:?} {lambda}");
    }
}

/// Smoothing of every shape on long-tailed counts, and an ε of 1 for the rarest class.
fn kinds(c: usize) -> Vec<LossKind> {
    let counts: Vec<usize> = (0..c).map(|i| 1 + 500 / (i + 1)).collect();
    let mut v: Vec<LossKind> = [LasShape::Concave, LasShape::Linear, LasShape::Convex]
        .into_iter()
        .map(|shape| LossKind::Las {
            smoothing: las_smoothing(&counts, 0.4, 0.1, shape),
        })
        .collect();
    v.push(LossKind::Las {
        smoothing: las_smoothing(&counts, 0.0, 1.0, LasShape::Linear),
    });
    v
}

/// Shapes with one class, one sample, odd sizes and a row longer than a workgroup.
const CASES: &[(usize, usize)] = &[(1, 1), (1, 5), (7, 3), (37, 10), (3, 300)];

#[test]
fn las_value_and_gradient_match_reference() {
    let mut rng = Rng(52);
    for &(n, c) in CASES {
        let z = rng.arr(&[n, c], 3.0);
        let y = labels(&mut rng, n, c);
        for kind in kinds(c) {
            let what = format!("{n}x{c} {kind:?}");
            let (value, grad) = loss_forward(&up(&z), &up_labels(&y), &kind).unwrap();
            let (v, g) = rl::loss(&z, &y, &kind);
            assert_close(&what, &value, &Arr::new(&[1], vec![v]), TOL_LAS);
            assert_close(&format!("{what} grad"), &grad, &g, TOL_LAS);
        }
    }
}

#[test]
fn las_without_smoothing_is_ce_bit_for_bit() {
    let mut rng = Rng(53);
    let (n, c) = (9, 6);
    let z = up(&rng.arr(&[n, c], 3.0));
    let y = up_labels(&labels(&mut rng, n, c));
    let las = LossKind::Las {
        smoothing: vec![0.0; c],
    };
    let (v0, g0) = loss_forward(&z, &y, &LossKind::Ce).unwrap();
    let (v1, g1) = loss_forward(&z, &y, &las).unwrap();
    assert_eq!(v0.to_f32().unwrap(), v1.to_f32().unwrap());
    assert_eq!(g0.to_f32().unwrap(), g1.to_f32().unwrap());
}

#[test]
fn reference_las_passes_finite_differences() {
    check_reference_losses(54, kinds, TOL_FD);
}

#[test]
fn las_refuses_a_bad_table() {
    let z = Tensor::zeros(&gpu(), &[2, 3]).unwrap();
    let y = up_labels(&[0, 2]);
    for smoothing in [vec![0.1; 2], vec![0.1, 1.5, 0.0], vec![0.1, f32::NAN, 0.0]] {
        let kind = LossKind::Las { smoothing };
        assert!(loss_forward(&z, &y, &kind).is_err(), "{kind:?}");
    }
}

/// Every class is head where all counts are equal (their code divides 0 by 0).
#[test]
fn balanced_counts_smooth_as_head() {
    for shape in [LasShape::Concave, LasShape::Linear, LasShape::Convex] {
        assert_eq!(las_smoothing(&[7, 7, 7], 0.4, 0.1, shape), vec![0.4f32; 3]);
    }
}

fn arr(f: &TensorFile, name: &str) -> Arr {
    let (shape, data) = f.f32(name).unwrap();
    Arr::from_f32(shape, data)
}

fn ints(f: &TensorFile, name: &str) -> Vec<i64> {
    f.i64(name).unwrap().1.to_vec()
}

#[test]
fn las_and_mixup_match_pytorch() {
    let f = TensorFile::load(Path::new(FIXTURE)).unwrap();
    let z = arr(&f, "input.z");
    let y: Vec<u32> = ints(&f, "input.y").iter().map(|&v| v as u32).collect();
    let perm: Vec<u32> = ints(&f, "input.perm").iter().map(|&v| v as u32).collect();
    let counts: Vec<usize> = ints(&f, "input.counts")
        .iter()
        .map(|&v| v as usize)
        .collect();
    let lam = f.f32("input.lam").unwrap().1[0];
    for (name, shape) in [
        ("concave", LasShape::Concave),
        ("linear", LasShape::Linear),
        ("convex", LasShape::Convex),
    ] {
        let smoothing = las_smoothing(&counts, 0.4, 0.1, shape);
        let want = arr(&f, &format!("expect.{name}.smooth"));
        let eps = Tensor::from_f32(&gpu(), &smoothing, &[smoothing.len()]).unwrap();
        assert_close(&format!("{name} ε"), &eps, &want, TOL_SMOOTH);
        let kind = LossKind::Las { smoothing };
        let (v, g) = loss_forward(&up(&z), &up_labels(&y), &kind).unwrap();
        assert_close(
            name,
            &v,
            &arr(&f, &format!("expect.{name}.loss")),
            TOL_GOLDEN,
        );
        let gw = arr(&f, &format!("expect.{name}.grad"));
        assert_close(&format!("{name} grad"), &g, &gw, TOL_GOLDEN);
    }
    // mixup_criterion: λ·L(z, y) + (1 − λ)·L(z, y[perm]) through autograd.
    let kind = LossKind::Las {
        smoothing: las_smoothing(&counts, 0.4, 0.1, LasShape::Concave),
    };
    let y_b: Vec<u32> = perm.iter().map(|&j| y[j as usize]).collect();
    let vz = Var::param(up(&z));
    let la = loss(&vz, &up_labels(&y), &kind).unwrap();
    let lb = loss(&vz, &up_labels(&y_b), &kind).unwrap();
    let total = add(&scale(&la, lam).unwrap(), &scale(&lb, 1.0 - lam).unwrap()).unwrap();
    backward(&total).unwrap();
    assert_close(
        "mixup loss",
        total.value(),
        &arr(&f, "expect.mixup.loss"),
        TOL_GOLDEN,
    );
    let gw = arr(&f, "expect.mixup.grad");
    assert_close("mixup grad", &vz.grad().unwrap(), &gw, TOL_GOLDEN);
    let x = arr(&f, "input.x");
    let mixed = mixup(&up(&x), &perm, lam).unwrap();
    let scale_x = x.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let tol = TOL_MIXUP.with_scale(scale_x);
    assert_close("mixup_data", &mixed, &arr(&f, "expect.mixup.x"), tol);
}
