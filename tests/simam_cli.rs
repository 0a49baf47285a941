//! `--backbone simam-resnet32` (issue 16; the paper's table 4): it trains bilaterally, its
//! config and checkpoint name it, eval and predict rebuild it from the checkpoint, and bench
//! runs its step (recomputed, with SimAM's kernels among the profiled ones).

mod common;

use common::cli::{eval_and_predict, json, temp_dir, train_synthetic};
use lskbb::bench::{run_bench, step_flops, BenchConfig};
use lskbb::model::{Backbone, ModelConfig};
use lskbb::tensor_file::TensorFile;
use lskbb::train::method::Method;

#[test]
fn simam_backbone_trains_evaluates_and_predicts() {
    let dir = temp_dir("simam-cli");
    let out = dir.join("run");
    let text = train_synthetic(
        &out,
        "1",
        &[
            "--backbone",
            "simam-resnet32",
            "--loss",
            "ce",
            "--branches",
            "bilateral",
        ],
    );
    assert!(
        text.contains("training simam-resnet32+ce+bilateral"),
        "{text}"
    );
    let cfg = json(&out.join("config.json"));
    assert_eq!(cfg["backbone"], "simam-resnet32", "{cfg}");
    let best = out.join("best.safetensors");
    let f = TensorFile::load(&best).unwrap();
    let model: serde_json::Value = serde_json::from_str(&f.metadata["model"]).unwrap();
    assert_eq!(model["backbone"], "simam-resnet32", "{model}");
    assert_eq!(model["bilateral"], true, "{model}");
    // SimAM adds no parameters: ResNet-32's state_dict, without any LSK module.
    assert!(f.tensors.contains_key("layer3.3.conv2.weight"));
    assert!(
        !f.tensors.keys().any(|k| k.contains("lsk")),
        "{:?}",
        f.tensors.keys()
    );
    eval_and_predict(&best, &dir, 8);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A recomputed bilateral step of SimAM-ResNet-32 at 8×8 (stage 3's planes 2×2): the
/// report names the backbone, counts ResNet-32's FLOPs (SimAM is elementwise work, which
/// the count leaves out) and, where the adapter profiles, times SimAM's kernels.
#[test]
fn bench_runs_a_simam_step() {
    let gpu = lskbb::Gpu::new(&lskbb::AdapterChoice::default()).expect("a GPU adapter");
    let mut choices = Method::Bbn.choices();
    choices.backbone = Backbone::SimamResnet32;
    let cfg = BenchConfig {
        image_size: 8,
        batch: 2,
        steps: 1,
        warmup: 1,
        profile_steps: 1,
        channels: 1,
        classes: 3,
        recompute: true,
        choices,
        ..BenchConfig::default()
    };
    let r = run_bench(&gpu, &cfg).unwrap();
    assert_eq!(r.backbone, "simam-resnet32");
    let paper = ModelConfig::PAPER_WIDTH;
    let plain = step_flops(Backbone::Resnet32, paper, 8, 2, 1, 3, true).unwrap();
    assert_eq!(r.step_gflop, Some(plain / 1e9), "{r:?}");
    if gpu.profiling_supported() {
        assert!(
            r.kernels.iter().any(|k| k.kernel.starts_with("simam")),
            "{:?}",
            r.kernels
        );
    }
}
