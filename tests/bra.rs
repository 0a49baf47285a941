//! BiFormer's bi-level routing attention (`model::bra::Bra`) against its PyTorch reading
//! (`reference/bra_torch.py`, `reference/gen_bra.py` -> tests/fixtures/bra.safetensors): the
//! routed regions, the output and the gradients of the input and of every parameter, on a
//! map cut into a 4×4 grid of 2×3-pixel regions and on one that no grid divides; and the
//! whole BiFormer-ResNet-32 (`--backbone biformer-resnet32`): inference logits, the bilateral
//! training forward and every parameter's gradient of BBN's loss; and `lskbb train
//! --backbone biformer-resnet32` end to end.

mod common;

use common::cli::{eval_and_predict, json, temp_dir, train_synthetic_sized};
use common::{assert_close, backprop, gpu};
use lskbb::autograd::no_grad;
use lskbb::checkpoint::load_state_dict;
use lskbb::model::bra::Bra;
use lskbb::model::init::Init;
use lskbb::model::{Backbone, ModelConfig, Network, ParamStore};
use lskbb::ops::elementwise::{add, scale};
use lskbb::ops::loss::{loss, LossKind};
use lskbb::reference::{Arr, Tol};
use lskbb::tensor_file::TensorFile;
use lskbb::{Tensor, Var};
use std::path::Path;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/bra.safetensors"
);

/// Float32 through a 1×1 conv (8-term sums), region means, the attention's exp and sums over
/// up to 143 keys, a 5×5 depthwise conv and another 1×1 conv: a few 1e-7 relative at each
/// step, compounding to ≈ 1e-6; 1e-5, entries below 0.05 of the largest held to that level.
const TOL_Y: Tol = Tol::new(1e-5, 0.05);
/// The gradients add the attention's dP − δ cancellation (see tests/attention.rs) and the
/// sums over all pixels for the weights' gradients: 1e-4.
const TOL_GRAD: Tol = Tol::new(1e-4, 0.05);

fn expected(f: &TensorFile, name: &str) -> Arr {
    let (shape, data) = f.f32(name).unwrap();
    Arr::from_f32(shape, data)
}

#[test]
fn bra_matches_pytorch() {
    let f = TensorFile::load(Path::new(FIXTURE)).unwrap();
    let gpu = gpu();
    let mut store = ParamStore::default();
    let bra = Bra::new(&gpu, &mut store, &mut Init::new(0), "bra", 8, 2, 4).unwrap();
    load_state_dict(&store, &f, "state.", true, Path::new(FIXTURE)).unwrap();
    for case in ["map8x12", "map11x13"] {
        store.zero_grad();
        let (shape, data) = f.f32(&format!("{case}.x")).unwrap();
        let x = Var::param(Tensor::from_f32(&gpu, data, shape).unwrap());
        let routes = bra.routes(&x).unwrap().to_u32().unwrap();
        let (_, want) = f.i64(&format!("{case}.idx")).unwrap();
        let want: Vec<u32> = want.iter().map(|&i| i as u32).collect();
        assert_eq!(routes, want, "{case}: routed regions");
        let y = bra.forward(&x).unwrap();
        assert_close(case, y.value(), &expected(&f, &format!("{case}.y")), TOL_Y);
        backprop(&y, &expected(&f, &format!("{case}.gy")));
        let gx = x.grad().unwrap();
        let want = expected(&f, &format!("{case}.grad.x"));
        assert_close(&format!("{case} dx"), &gx, &want, TOL_GRAD);
        for (name, p) in &store.params {
            let want = expected(&f, &format!("{case}.grad.{name}"));
            let got = p
                .grad()
                .unwrap_or_else(|| panic!("{case}: no gradient for {name}"));
            assert_close(&format!("{case} d{name}"), &got, &want, TOL_GRAD);
        }
    }
}

/// The model's logits pass 16 blocks of f32 convolutions and batch norms (each a few 1e-7
/// relative) and six routing attentions: 1e-4 of the largest logit, as `lskbb verify`'s
/// R_LOGITS for the ResNet-32 goldens.
const TOL_LOGITS: Tol = Tol::new(1e-4, 0.1);
/// Gradients back through the same 16 blocks, against the largest gradient of any parameter
/// (the early layers' are orders of magnitude smaller and carry the later layers' rounding):
/// measured 3.1e-6 of it (the stem's conv, the longest path), held to 2e-5.
const TOL_MODEL_GRAD: f64 = 2e-5;

fn labels(f: &TensorFile, name: &str) -> Tensor {
    let (shape, y) = f.i64(name).unwrap();
    let y: Vec<u32> = y.iter().map(|&v| v as u32).collect();
    Tensor::from_u32(&gpu(), &y, shape).unwrap()
}

#[test]
fn biformer_resnet32_matches_pytorch() {
    let f = TensorFile::load(Path::new(FIXTURE)).unwrap();
    let gpu = gpu();
    let config = ModelConfig {
        classes: 3,
        in_ch: 3,
        backbone: Backbone::BiformerResnet32,
        bilateral: true,
        width: 4,
        cosine_scale: None,
    };
    let model = Network::new(&gpu, &config, 0).unwrap();
    load_state_dict(&model.store, &f, "model.state.", true, Path::new(FIXTURE)).unwrap();
    let has = |name: &str| model.store.params.iter().any(|(n, _)| n == name);
    assert!(has("layer3.0.bra.qkv.weight") && has("rb_block.bra.wo.bias"));
    assert!(!has("layer2.4.bra.qkv.weight"));
    let input = |name: &str| {
        let (shape, data) = f.f32(name).unwrap();
        Var::constant(Tensor::from_f32(&gpu, data, shape).unwrap())
    };
    let (x_c, x_r) = (input("model.x_c"), input("model.x_r"));
    let infer = no_grad(|| model.infer(&x_c)).unwrap();
    assert_close(
        "inference logits",
        infer.value(),
        &expected(&f, "model.infer"),
        TOL_LOGITS,
    );
    let alpha = f.f32("model.alpha").unwrap().1[0];
    let z = model.forward(&x_c, &x_r, alpha, true).unwrap();
    assert_close(
        "training logits",
        z.value(),
        &expected(&f, "model.logits"),
        TOL_LOGITS,
    );
    let l = add(
        &scale(
            &loss(&z, &labels(&f, "model.y_c"), &LossKind::Ce).unwrap(),
            alpha,
        )
        .unwrap(),
        &scale(
            &loss(&z, &labels(&f, "model.y_r"), &LossKind::Ce).unwrap(),
            1.0 - alpha,
        )
        .unwrap(),
    )
    .unwrap();
    lskbb::backward(&l).unwrap();
    let largest = model
        .store
        .params
        .iter()
        .flat_map(|(name, _)| expected(&f, &format!("model.grad.{name}")).data)
        .fold(0.0f64, |m, v| m.max(v.abs()));
    let tol = Tol::new(TOL_MODEL_GRAD, 1.0).with_scale(largest);
    for (name, p) in &model.store.params {
        let got = p.grad().unwrap_or_else(|| panic!("no gradient for {name}"));
        assert_close(
            &format!("d{name}"),
            &got,
            &expected(&f, &format!("model.grad.{name}")),
            tol,
        );
    }
}

/// `--backbone biformer-resnet32` trains (bilateral, 16×16 images: stage 3's 4×4 maps as a 4×4
/// grid of regions each routed to 4), its checkpoint holds the attention of the last stage
/// alone, and eval and predict rebuild it from the checkpoint.
#[test]
fn biformer_backbone_trains_evaluates_and_predicts() {
    let dir = temp_dir("biformer-cli");
    let out = dir.join("run");
    let choices = ["--backbone", "biformer-resnet32", "--loss", "ce"];
    let text = train_synthetic_sized(&out, "1", "16", &choices);
    assert!(text.contains("biformer-resnet32+ce+bilateral"), "{text}");
    assert_eq!(
        json(&out.join("config.json"))["backbone"],
        "biformer-resnet32"
    );
    let best = out.join("best.safetensors");
    let f = TensorFile::load(&best).unwrap();
    let model: serde_json::Value = serde_json::from_str(&f.metadata["model"]).unwrap();
    assert_eq!(model["backbone"], "biformer-resnet32", "{model}");
    assert!(f.tensors.contains_key("cb_block.bra.qkv.weight"));
    assert!(!f
        .tensors
        .keys()
        .any(|k| k.starts_with("layer2.") && k.contains(".bra.")));
    eval_and_predict(&best, &dir, 16);
    let _ = std::fs::remove_dir_all(&dir);
}
