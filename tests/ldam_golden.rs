//! LDAM-DRW's loss and cosine classifier against PyTorch: `reference/gen_ldam.py` runs Cao et
//! al.'s own `LDAMLoss`, DRW weights and `NormedLinear` (transcribed from their code) in
//! float64 and stores `tests/fixtures/ldam_cosine.safetensors`.

mod common;

use common::{assert_close, gpu};
use lskbb::backward;
use lskbb::model::head::Fc;
use lskbb::ops::loss::{cb_weights, ldam_margins, loss, loss_forward, LossKind};
use lskbb::reference::{Arr, Tol};
use lskbb::tensor_file::TensorFile;
use lskbb::{Tensor, Var};
use std::path::Path;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/ldam_cosine.safetensors"
);

/// LDAM's exponent s·(z − Δ_y) carries f32 rounding of ≈ s·2⁻²⁴·|z| ≈ 30·6e-8 ≈ 2e-6 (cosine
/// logits, |z| <= 1), which becomes a relative error of the probabilities and of the loss;
/// the margins and weights are computed in f64 and rounded once. With the softmax's exp, log
/// and sums: 2e-5, entries below 0.1 of the largest held to that level (as tests/ldam.rs).
const TOL_LOSS: Tol = Tol::new(2e-5, 0.1);
/// The cosine head adds two row normalisations (a 12-term sum of squares, a square root and
/// a division: a few ulps, ≈ 3e-7 of each cosine) and a 12-term dot product before s = 30
/// scales the error into the exponent: ≈ 30·4e-7 ≈ 1e-5 relative in the probabilities; the
/// gradients through the normalisations cancel terms of their own size: 1e-4.
const TOL_HEAD: Tol = Tol::new(1e-4, 0.1);

fn expected(f: &TensorFile, name: &str) -> Arr {
    let (shape, data) = f.f32(name).unwrap();
    Arr::from_f32(shape, data)
}

fn upload(f: &TensorFile, name: &str) -> Tensor {
    let (shape, data) = f.f32(name).unwrap();
    Tensor::from_f32(&gpu(), data, shape).unwrap()
}

/// The class counts, the labels on the GPU, and LDAM with and without DRW's weights built by
/// lskbb's own functions from the counts (as training builds them).
fn setup(f: &TensorFile) -> (Tensor, LossKind, LossKind) {
    let counts: Vec<usize> = f
        .f32("counts")
        .unwrap()
        .1
        .iter()
        .map(|&c| c as usize)
        .collect();
    let (shape, y) = f.i64("labels").unwrap();
    let y: Vec<u32> = y.iter().map(|&v| v as u32).collect();
    let labels = Tensor::from_u32(&gpu(), &y, shape).unwrap();
    let margins = ldam_margins(&counts, 0.5);
    let weights = cb_weights(&counts, 0.9999);
    assert_close(
        "DRW weights",
        &Tensor::from_f32(&gpu(), &weights, &[weights.len()]).unwrap(),
        &expected(f, "drw.weights"),
        Tol::new(1e-6, 0.0),
    );
    let plain = LossKind::Ldam {
        margins: margins.clone(),
        scale: 30.0,
        weights: None,
    };
    let drw = LossKind::Ldam {
        margins,
        scale: 30.0,
        weights: Some(weights),
    };
    (labels, plain, drw)
}

#[test]
fn ldam_with_and_without_drw_matches_cao_et_al() {
    let f = TensorFile::load(Path::new(FIXTURE)).unwrap();
    let (labels, plain, drw) = setup(&f);
    let logits = upload(&f, "logits");
    for (name, kind) in [("ldam", plain), ("ldam_drw", drw)] {
        let (value, grad) = loss_forward(&logits, &labels, &kind).unwrap();
        assert_close(
            name,
            &value,
            &expected(&f, &format!("{name}.loss")),
            TOL_LOSS,
        );
        assert_close(
            &format!("{name} gradient"),
            &grad,
            &expected(&f, &format!("{name}.grad")),
            TOL_LOSS,
        );
    }
}

#[test]
fn cosine_classifier_under_ldam_drw_matches_normed_linear() {
    let f = TensorFile::load(Path::new(FIXTURE)).unwrap();
    let (labels, _, drw) = setup(&f);
    let features = Var::param(upload(&f, "cos.features"));
    let head = Fc::Cosine {
        weight: Var::param(upload(&f, "cos.weight")),
        scale: 30.0,
    };
    let cos = head.logits(&features).unwrap();
    assert_close(
        "cosines",
        cos.value(),
        &expected(&f, "cos.logits"),
        TOL_HEAD,
    );
    let l = loss(&cos, &labels, &drw).unwrap();
    assert_close("loss", l.value(), &expected(&f, "head.loss"), TOL_HEAD);
    backward(&l).unwrap();
    let Fc::Cosine { weight, .. } = &head else {
        unreachable!("built as a cosine classifier above")
    };
    let grads = [
        ("features", features.grad(), "head.grad_features"),
        ("weight", weight.grad(), "head.grad_weight"),
    ];
    for (what, got, want) in grads {
        let got = got.unwrap_or_else(|| panic!("no gradient for the {what}"));
        assert_close(
            &format!("d loss / d {what}"),
            &got,
            &expected(&f, want),
            TOL_HEAD,
        );
    }
}
