//! Explanations (`lskbb::explain`): the Grad-CAM map and every LSK module's selection masks of
//! a tiny bilateral LSK model against PyTorch's (`reference/gen_explain.py`, float64), the CPU
//! presentation's normalising and upsampling against `F.interpolate`, and a single-branch
//! model's map against its definition computed here from what the GPU captured.

mod common;

use common::{assert_close, assert_close_f32, down, gpu};
use lskbb::checkpoint::load_state_dict;
use lskbb::explain::render::{normalize_max, upsample_bilinear};
use lskbb::explain::{forward_with_maps, grad_cam};
use lskbb::model::{Backbone, ModelConfig, Network};
use lskbb::reference::{Arr, Rng, Tol};
use lskbb::tensor_file::TensorFile;
use lskbb::{no_grad, Tensor, Var};
use std::path::Path;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/explain_w2.safetensors"
);

fn expected(f: &TensorFile, name: &str) -> Arr {
    let (shape, data) = f.f32(name).unwrap();
    Arr::from_f32(shape, data)
}

#[test]
fn grad_cam_and_lsk_masks_match_pytorch() {
    let gpu = gpu();
    let f = TensorFile::load(Path::new(FIXTURE)).unwrap();
    let config = ModelConfig {
        classes: 3,
        in_ch: 3,
        backbone: Backbone::LskResnet32,
        bilateral: true,
        width: 2,
        cosine_scale: None,
    };
    let model = Network::new(&gpu, &config, 0).unwrap();
    let store = &model.store;
    let loaded = load_state_dict(store, &f, "state.", false, Path::new(FIXTURE)).unwrap();
    assert_eq!(loaded, store.params.len() + store.buffers.len());
    let (shape, x) = f.f32("input.x").unwrap();
    let x = Var::constant(Tensor::from_f32(&gpu, x, shape).unwrap());
    let captured = forward_with_maps(&model, &x).unwrap();
    assert_close(
        "logits",
        &captured.logits,
        &expected(&f, "expect.logits"),
        LOGITS_TOL,
    );
    let blocks: Vec<&str> = captured.lsk.iter().map(|m| m.block.as_str()).collect();
    let mut want_blocks: Vec<String> = f
        .tensors
        .keys()
        .filter_map(|k| k.strip_prefix("expect.mask."))
        .map(str::to_string)
        .collect();
    want_blocks.sort();
    let mut sorted = blocks.clone();
    sorted.sort();
    assert_eq!(sorted, want_blocks);
    assert_eq!(blocks.len(), 16);
    assert_eq!(blocks[..2], ["layer1.0", "layer1.1"]);
    assert_eq!(blocks[14..], ["cb_block", "rb_block"]);
    for m in &captured.lsk {
        assert_close(
            &format!("masks of {}", m.block),
            &m.masks,
            &expected(&f, &format!("expect.mask.{}", m.block)),
            MASK_TOL,
        );
    }
    let classes: Vec<usize> = f
        .i64("input.classes")
        .unwrap()
        .1
        .iter()
        .map(|&c| c as usize)
        .collect();
    let cam = grad_cam(&captured, &classes).unwrap();
    let want = expected(&f, "expect.cam");
    assert_close("grad-cam", &cam, &want, CAM_TOL);
    // A map is computed from the captured tensors alone: again, the same.
    assert_eq!(down(&grad_cam(&captured, &classes).unwrap()), down(&cam));
    // The classifier's weights took no gradient, and plain inference gives the same logits.
    assert!(store.params.iter().all(|(_, p)| p.grad().is_none()));
    let logits = no_grad(|| model.infer(&x)).unwrap();
    assert_eq!(down(logits.value()), down(&captured.logits));

    // Presentation: each image's map scaled to [0, 1] and upsampled to the input's 16x12.
    let [n, h, w] = *cam.shape() else {
        panic!("cam shape {:?}", cam.shape())
    };
    assert_eq!([n, h, w], [2, 4, 3]);
    let mut up = Vec::new();
    for map in down(&cam).chunks(h * w) {
        up.extend(upsample_bilinear(&normalize_max(map), h, w, 16, 12).unwrap());
    }
    assert_close_f32(
        "upsampled map",
        &up,
        &expected(&f, "expect.cam_up"),
        CAM_UP_TOL,
    );

    // One class per image, each a class of the model.
    assert!(grad_cam(&captured, &classes[..1]).is_err());
    let err = grad_cam(&captured, &[0, 3]).unwrap_err();
    assert!(format!("{err:#}").contains("class 3"), "{err:#}");
}

/// A single-branch model's classifier is fc(cat(2·GAP(A), 0)), so d y_c / d A_k = 2·W[c, k] /
/// (h·w) everywhere and the map is relu(Σ_k 2·W[c, k]/(h·w) · A_k), computed here in f64 from
/// the captured A and the fc weights.
#[test]
fn a_single_branch_map_follows_from_the_fc_weights() {
    let gpu = gpu();
    let config = ModelConfig {
        classes: 4,
        in_ch: 1,
        backbone: Backbone::Resnet32,
        bilateral: false,
        width: 2,
        cosine_scale: None,
    };
    let model = Network::new(&gpu, &config, 3).unwrap();
    let xs = Rng(5).arr(&[3, 1, 9, 11], 1.0);
    let x = Var::constant(Tensor::from_f32(&gpu, &xs.to_f32(), &xs.shape).unwrap());
    let captured = forward_with_maps(&model, &x).unwrap();
    assert!(captured.lsk.is_empty());
    assert_eq!(captured.last.len(), 1);
    let logits = no_grad(|| model.infer(&x)).unwrap();
    assert_eq!(down(logits.value()), down(&captured.logits));
    let classes = [2, 0, 3];
    let cam = grad_cam(&captured, &classes).unwrap();
    let a = &captured.last[0];
    let [_, c, h, w] = *a.shape() else {
        panic!("{:?}", a.shape())
    };
    assert_eq!(cam.shape(), [3, h, w]);
    let a = down(a);
    let fc = model
        .store
        .params
        .iter()
        .find(|(name, _)| name == "fc.weight")
        .map(|(_, p)| down(p.value()))
        .unwrap();
    let mut want = Vec::new();
    for (i, &class) in classes.iter().enumerate() {
        for p in 0..h * w {
            let s: f64 = (0..c)
                .map(|k| {
                    let weight = 2.0 * fc[class * 2 * c + k] as f64 / (h * w) as f64;
                    weight * a[(i * c + k) * h * w + p] as f64
                })
                .sum();
            want.push(s.max(0.0));
        }
    }
    assert_close(
        "single-branch grad-cam",
        &cam,
        &Arr::new(&[3, h, w], want),
        SINGLE_TOL,
    );
}

/// float32 through 16 LSK blocks against float64, as `lskbb verify` holds the eval-mode logits
/// (r = 1e-4); measured 9.2e-7 on lavapipe.
const LOGITS_TOL: Tol = Tol::new(1e-4, 1e-3);
/// A sigmoid of logits that carry the float32 forward's error (about 1e-6 of their scale, as
/// the logits' 9.2e-7) moves by at most a quarter of it, plus a few ulp of WGSL's exp; the
/// masks lie in [0.3, 0.73], so no floor is needed. Measured at most 2.3e-7 over the 16 blocks.
const MASK_TOL: Tol = Tol::new(1e-5, 0.0);
/// The map is a sum over 16 channels of activations times weights that cancel where it
/// crosses the ReLU's edge: entries below 1e-3 of the largest are held to that level. The
/// activations carry the forward's ~1e-6; measured 1.9e-6.
const CAM_TOL: Tol = Tol::new(5e-5, 1e-3);
/// The map's error, at most doubled by the division by its (equally rounded) maximum, and
/// float32 bilinear weights (~1e-7); measured 2.3e-6.
const CAM_UP_TOL: Tol = Tol::new(1e-4, 1e-3);
/// float32 sums of 8 channel products against float64 from the same inputs; where they cancel
/// (near the ReLU's edge) an entry below 1e-3 of the largest is held to that level. Measured
/// 1.0e-5.
const SINGLE_TOL: Tol = Tol::new(1e-4, 1e-3);
