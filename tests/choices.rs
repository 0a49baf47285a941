//! The separate choices of `lskbb train` (issue 16): --backbone, --loss, --branches and
//! --sampler train what they name, override the --method preset, are stored in the
//! checkpoint and rebuild its network in eval and predict; a loss flag that does not apply
//! to the chosen loss is a usage error; a checkpoint saved with a method alone still loads.

mod common;

use common::cli::{eval_and_predict, fails_with, json, lskbb, temp_dir, train_synthetic};
use lskbb::tensor_file::TensorFile;

/// The LSK backbone with CE on one branch (Table 5's LSK+CE row, no preset of its own)
/// trains, its config and checkpoint say so, and eval and predict rebuild that network.
#[test]
fn lsk_backbone_with_ce_on_one_branch_trains_and_evaluates() {
    let dir = temp_dir("choices-lsk-ce");
    let out = dir.join("run");
    let text = train_synthetic(
        &out,
        "1",
        &[
            "--backbone",
            "lsk-resnet32",
            "--loss",
            "ce",
            "--branches",
            "single",
        ],
    );
    assert!(text.contains("training lsk-resnet32+ce+single"), "{text}");
    let cfg = json(&out.join("config.json"));
    assert_eq!(cfg["backbone"], "lsk-resnet32", "{cfg}");
    assert_eq!(cfg["loss"], "ce", "{cfg}");
    assert_eq!(cfg["branches"], "single", "{cfg}");
    assert_eq!(cfg["sampler"], "uniform", "{cfg}");
    assert!(cfg["method"].is_null(), "no preset is this: {cfg}");
    let best = out.join("best.safetensors");
    let f = TensorFile::load(&best).unwrap();
    let train: serde_json::Value = serde_json::from_str(&f.metadata["train"]).unwrap();
    for key in ["backbone", "loss", "branches", "sampler", "method"] {
        assert_eq!(train[key], cfg[key], "{key}");
    }
    let model: serde_json::Value = serde_json::from_str(&f.metadata["model"]).unwrap();
    assert_eq!(model["backbone"], "lsk-resnet32", "{model}");
    assert_eq!(model["bilateral"], false, "{model}");
    assert!(f.tensors.contains_key("layer1.0.lsk.conv0.weight"));
    eval_and_predict(&best, &dir, 8);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A choice given with a preset replaces the preset's; the sampler follows the branches.
#[test]
fn a_given_choice_overrides_the_preset_and_names_the_run() {
    let dir = temp_dir("choices-override");
    let out = dir.join("run");
    train_synthetic(
        &out,
        "1",
        &[
            "--method",
            "lskbb",
            "--backbone",
            "resnet32",
            "--loss",
            "ce",
        ],
    );
    let cfg = json(&out.join("config.json"));
    // lskbb with the plain backbone and CE is BBN's recipe.
    assert_eq!(cfg["method"], "Bbn", "{cfg}");
    assert_eq!(cfg["branches"], "bilateral", "{cfg}");
    assert_eq!(cfg["sampler"], "reversed", "{cfg}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A loss flag that does not apply to the chosen loss, or a value that names no choice, is a
/// usage error that names the flags.
#[test]
fn a_flag_that_does_not_fit_the_choices_is_a_usage_error() {
    for (args, words) in [
        (
            &["--loss", "ce", "--gamma", "1"][..],
            &["--gamma", "--loss ce"][..],
        ),
        (
            &["--method", "bbn", "--cb-beta", "0.99"],
            &["--cb-beta", "--method bbn"],
        ),
        (
            &[
                "--method",
                "lskbb",
                "--loss",
                "focal",
                "--theta-per",
                "epoch",
            ],
            &["--theta-per", "--loss focal", "dflce"],
        ),
        (
            &["--backbone", "vgg19"],
            &[
                "--backbone",
                "resnet32, lsk-resnet32, biformer-resnet32, simam-resnet32, resnet18, vgg16",
            ],
        ),
        (
            &["--branches", "three"],
            &["--branches", "single, bilateral"],
        ),
        (
            &["--sampler", "square-root"],
            &["--sampler", "class-balanced"],
        ),
        (&["--method", "misla"], &["--method", "ldam-drw, mislas"]),
        (
            &["--method", "mislas", "--branches", "bilateral"],
            &["--method mislas", "--branches single"],
        ),
        (&["--loss", "ce", "--mixup", "1"], &["--mixup", "--loss ce"]),
        (
            &["--method", "bbn", "--stage2-epochs", "2"],
            &["--stage2-epochs", "--method bbn"],
        ),
        (
            &[
                "--method",
                "mislas",
                "--epochs",
                "3",
                "--stage2-epochs",
                "3",
            ],
            &["--stage2-epochs 3", "--epochs 3"],
        ),
        (
            &["--method", "mislas", "--reweight", "drw"],
            &["--reweight drw", "--method mislas"],
        ),
        (
            &["--method", "mislas", "--smooth-head", "1.5"],
            &["--smooth-head"],
        ),
        (
            &["--method", "ldam-drw", "--no-shift-bn"],
            &["--no-shift-bn", "--method ldam-drw"],
        ),
        (
            &["--method", "mislas", "--patience", "3"],
            &["--patience", "--loss mislas"],
        ),
        (
            &["--method", "ldam-drw", "--loss", "focal"],
            &["--method ldam-drw", "--loss focal", "--reweight none"],
        ),
        (
            &["--reweight", "drw", "--loss", "dflce"],
            &["--reweight drw", "--loss dflce"],
        ),
        (
            &["--loss", "ce", "--ldam-scale", "10"],
            &["--ldam-scale", "--loss ce"],
        ),
        (
            &["--method", "ce", "--ldam-max-margin", "0.3"],
            &["--ldam-max-margin", "--method ce"],
        ),
    ] {
        let mut a = vec!["train"];
        a.extend_from_slice(args);
        fails_with(&lskbb(&a), 2, words);
    }
    fails_with(&lskbb(&["bench", "--loss", "nope"]), 2, &["--loss"]);
}

/// LDAM-DRW: the cosine classifier, LDAM's margins, and from the DRW epoch (the second of
/// two, with the learning rate's first drop) class-balanced weights; eval and predict
/// rebuild the cosine classifier, whose probabilities are softmax(s·cos).
#[test]
fn ldam_drw_trains_with_its_cosine_classifier_and_deferred_weights() {
    let dir = temp_dir("choices-ldam");
    let out = dir.join("run");
    let text = train_synthetic(&out, "2", &["--method", "ldam-drw"]);
    assert!(text.contains("training ldam-drw"), "{text}");
    assert!(
        text.contains("epoch 2: deferred re-weighting starts"),
        "{text}"
    );
    let cfg = json(&out.join("config.json"));
    assert_eq!(cfg["method"], "LdamDrw", "{cfg}");
    assert_eq!(cfg["loss"], "ldam", "{cfg}");
    assert_eq!(cfg["reweight"], "drw", "{cfg}");
    assert_eq!(cfg["ldam_scale"], 30.0, "{cfg}");
    assert_eq!(cfg["ldam_max_margin"], 0.5, "{cfg}");
    // LDAM-DRW's schedule: its first drop (×0.01) at the DRW epoch.
    assert_eq!(
        cfg["schedule"]["Step"]["milestones"],
        serde_json::json!([1]),
        "{cfg}"
    );
    let metrics: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(metrics
        .iter()
        .all(|m| m["train_loss"].as_f64().unwrap().is_finite()));
    let last = out.join("last.safetensors");
    let f = TensorFile::load(&last).unwrap();
    let model: serde_json::Value = serde_json::from_str(&f.metadata["model"]).unwrap();
    assert_eq!(model["cosine_scale"], 30.0, "{model}");
    assert_eq!(model["bilateral"], false, "{model}");
    // The cosine classifier: fc.weight on the conventional branch's 64 features, no bias.
    assert_eq!(f.tensors["fc.weight"].shape, vec![4, 64]);
    assert!(!f.tensors.contains_key("fc.bias"));
    eval_and_predict(&last, &dir, 8);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A checkpoint saved when a run was a method alone (no backbone, loss, branches or sampler
/// in its 'train' metadata) still evaluates and predicts.
#[test]
fn a_checkpoint_with_a_method_alone_still_evaluates() {
    let dir = temp_dir("choices-old");
    let out = dir.join("run");
    train_synthetic(&out, "1", &["--method", "ce"]);
    let best = out.join("best.safetensors");
    let mut f = TensorFile::load(&best).unwrap();
    let mut train: serde_json::Value = serde_json::from_str(&f.metadata["train"]).unwrap();
    let obj = train.as_object_mut().unwrap();
    for key in ["backbone", "loss", "branches", "sampler"] {
        assert!(obj.remove(key).is_some(), "{key}");
    }
    assert_eq!(obj["method"], "Ce");
    f.metadata.insert("train".into(), train.to_string());
    let old = dir.join("old.safetensors");
    f.save(&old).unwrap();
    eval_and_predict(&old, &dir, 8);
    let _ = std::fs::remove_dir_all(&dir);
}
