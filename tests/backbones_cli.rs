//! `lskbb train --backbone resnet18|vgg16` (issue 16): each trains an epoch on the built-in
//! synthetic set at its smallest image size, its checkpoint holds torchvision's names (or
//! BBN's branch blocks when bilateral), eval and predict rebuild the network from it, and an
//! image too small for VGG16 is refused naming --image-size.

mod common;

use common::cli::{eval_and_predict, fails_with, json, lskbb, temp_dir, train_synthetic_sized};
use lskbb::tensor_file::TensorFile;
use std::path::Path;

/// The model config and tensor shapes a checkpoint stores.
fn checkpoint(path: &Path) -> (serde_json::Value, TensorFile) {
    let f = TensorFile::load(path).unwrap();
    let model = serde_json::from_str(&f.metadata["model"]).unwrap();
    (model, f)
}

fn shape<'a>(f: &'a TensorFile, name: &str) -> &'a [usize] {
    f.f32(name).unwrap().0
}

/// Single-branch ResNet-18 at torchvision's width: its state_dict is torchvision's
/// (`layer4.1`, `fc` over 512 features, 7x7 stem).
#[test]
fn resnet18_trains_single_branch_at_torchvision_width() {
    let dir = temp_dir("backbone-resnet18");
    let out = dir.join("run");
    let text = train_synthetic_sized(
        &out,
        "1",
        "8",
        &[
            "--backbone",
            "resnet18",
            "--loss",
            "ce",
            "--branches",
            "single",
        ],
    );
    assert!(text.contains("training resnet18+ce+single"), "{text}");
    assert_eq!(json(&out.join("config.json"))["backbone"], "resnet18");
    let best = out.join("best.safetensors");
    let (model, f) = checkpoint(&best);
    assert_eq!(model["backbone"], "resnet18", "{model}");
    assert_eq!(model["width"], 64, "{model}");
    assert_eq!(shape(&f, "conv1.weight"), [64, 3, 7, 7]);
    assert_eq!(shape(&f, "layer2.0.downsample.0.weight"), [128, 64, 1, 1]);
    assert_eq!(shape(&f, "layer4.1.conv2.weight"), [512, 512, 3, 3]);
    assert_eq!(shape(&f, "fc.weight"), [4, 512]);
    assert!(!f.tensors.contains_key("cb_block.conv1.weight"));
    eval_and_predict(&best, &dir, 8);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bilateral VGG16 at width 8 (lavapipe's 128 MiB storage buffers cannot hold width 64's
/// 25088×4096 classifier.0): the branch blocks, the classifier over both branches.
#[test]
fn vgg16_trains_bilateral_at_its_smallest_image_size() {
    let dir = temp_dir("backbone-vgg16");
    let out = dir.join("run");
    let text = train_synthetic_sized(
        &out,
        "1",
        "32",
        &[
            "--backbone",
            "vgg16",
            "--loss",
            "ce",
            "--branches",
            "bilateral",
            "--width",
            "8",
        ],
    );
    assert!(text.contains("training vgg16+ce+bilateral"), "{text}");
    let best = out.join("best.safetensors");
    let (model, f) = checkpoint(&best);
    assert_eq!(model["backbone"], "vgg16", "{model}");
    assert_eq!(model["width"], 8, "{model}");
    assert_eq!(shape(&f, "features.0.weight"), [8, 3, 3, 3]);
    assert_eq!(shape(&f, "features.37.weight"), [64, 64, 3, 3]);
    assert_eq!(shape(&f, "cb_block.0.weight"), [64, 64, 3, 3]);
    assert_eq!(shape(&f, "rb_block.1.running_var"), [64]);
    assert_eq!(shape(&f, "classifier.0.weight"), [512, 64 * 49]);
    assert_eq!(shape(&f, "classifier.6.weight"), [4, 1024]);
    assert!(!f.tensors.contains_key("features.40.weight"));
    eval_and_predict(&best, &dir, 32);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_image_too_small_for_vgg16_names_the_flag() {
    let dir = temp_dir("backbone-vgg16-small");
    let out = lskbb(&[
        "train",
        "--epochs",
        "1",
        "--image-size",
        "16",
        "--synthetic-per-class",
        "4",
        "--backbone",
        "vgg16",
        "--out",
        dir.join("run").to_str().unwrap(),
    ]);
    fails_with(&out, 1, &["--image-size", "32", "vgg16"]);
    let _ = std::fs::remove_dir_all(&dir);
}
