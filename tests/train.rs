//! End-to-end runs of the `lskbb` binary on tiny images (lavapipe in CI): training on the
//! built-in long-tailed set learns and writes the whole run folder; eval and predict read its
//! checkpoints; an interrupted ImageFolder run resumed with --resume ends with exactly the
//! uninterrupted run's weights and momentum; a non-finite loss stops training without
//! touching the last checkpoint; validation is carved from train, or the paper's BreaKHis
//! split; --patience stops early.

mod common;

use common::cli::{
    fails_with, json, lskbb, make_imagefolder, ok, predict_rows, temp_dir, train_synthetic,
    train_tiny, write_synthetic_png,
};
use lskbb::data::BREAKHIS_CLASSES;
use lskbb::tensor_file::{Data, TensorFile};
use std::path::Path;

#[test]
fn train_on_the_builtin_set_learns_and_writes_the_run_folder_then_eval_and_predict() {
    let dir = temp_dir("builtin");
    let out = dir.join("run");
    let o = out.to_str().unwrap();
    // 4 classes, long tail IF 10 (40/18/8/4 images), balanced test set of 20 per class.
    let text = ok(&lskbb(&[
        "train",
        "--epochs",
        "4",
        "--batch-size",
        "8",
        "--image-size",
        "8",
        "--synthetic-per-class",
        "40",
        "--test-per-class",
        "20",
        "--val-per-class",
        "10",
        "--out",
        o,
    ]));
    assert!(text.contains("epoch 4/4"), "{text}");
    for f in [
        "metrics.jsonl",
        "summary.json",
        "curves.png",
        "confusion.png",
        "best.safetensors",
        "last.safetensors",
        "last.optim.safetensors",
        "split.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing in {}", out.display());
    }
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    for key in [
        "epoch",
        "lr",
        "alpha",
        "train_loss",
        "train_acc",
        "test_acc",
        "test_precision",
        "test_sensitivity",
        "test_balanced_acc",
        "val_acc",
        "val_balanced_acc",
        "images_per_s",
        "seconds",
    ] {
        assert!(
            lines[3][key].is_number(),
            "metrics.jsonl lacks {key}: {}",
            lines[3]
        );
    }
    // α = 1 − (epoch/E)² per epoch (0-based epoch).
    assert_eq!(lines[0]["alpha"].as_f64(), Some(1.0));
    assert!((lines[2]["alpha"].as_f64().unwrap() - 0.75).abs() < 1e-6);
    let s = json(&out.join("summary.json"));
    for key in [
        "best_acc",
        "final_acc",
        "best_epoch",
        "per_class",
        "confusion",
        "config",
        "adapter",
    ] {
        assert!(!s[key].is_null(), "summary.json lacks {key}");
    }
    for key in [
        "precision",
        "sensitivity",
        "specificity",
        "f1",
        "accuracy",
        "auc",
    ] {
        assert!(s["per_class"][3][key].is_number(), "per-class {key}");
    }
    // Validation and test metrics at the best-validation epoch and at the end.
    for set in ["validation", "test"] {
        for when in ["best", "final"] {
            let m = &s[set][when];
            for key in ["accuracy", "balanced_accuracy", "specificity", "f1", "auc"] {
                assert!(
                    m[key].is_number(),
                    "summary.json {set}.{when} lacks {key}: {m}"
                );
            }
        }
    }
    assert_eq!(s["selected_on"], "validation balanced accuracy");
    assert_eq!(s["best_acc"], s["test"]["best"]["accuracy"]);
    assert_eq!(
        s["best_score"],
        s["validation"]["best"]["balanced_accuracy"]
    );
    let best_epoch = s["best_epoch"].as_u64().unwrap() as usize;
    assert_eq!(
        lines[best_epoch - 1]["val_balanced_acc"],
        s["best_score"],
        "the best epoch is the one of the best validation balanced accuracy"
    );
    assert!(s["tail_acc"].is_number() && s["head_acc"].is_number());
    // Chance is 25%; the tiny run reaches ~75% on lavapipe.
    let best = s["best_acc"].as_f64().unwrap();
    assert!(
        best >= 50.0,
        "best test accuracy {best}% is not well above chance (25%)"
    );
    let split = json(&out.join("split.json"));
    assert_eq!(split["counts"]["train"], serde_json::json!([40, 18, 8, 4]));
    assert_eq!(split["counts"]["val"], serde_json::json!([10, 10, 10, 10]));
    assert_eq!(split["val"].as_array().unwrap().len(), 40);

    // eval of best.safetensors reproduces the best epoch's test accuracy.
    let best_ckpt = out.join("best.safetensors");
    let text = ok(&lskbb(&[
        "eval",
        "--checkpoint",
        best_ckpt.to_str().unwrap(),
    ]));
    assert!(text.contains("accuracy"), "{text}");
    let e = json(&out.join("eval-best.json"));
    assert!((e["accuracy"].as_f64().unwrap() - best).abs() < 1e-9, "{e}");
    assert!(out.join("eval-best-confusion.png").is_file());
    assert!(
        e["balanced_accuracy"].is_number() && e["auc"].is_number(),
        "{e}"
    );
    assert!(
        text.contains("balanced accuracy") && text.contains("ROC-AUC"),
        "{text}"
    );
    // ... and on the validation split, the best epoch's validation metrics.
    ok(&lskbb(&[
        "eval",
        "--checkpoint",
        best_ckpt.to_str().unwrap(),
        "--split",
        "val",
        "--out",
        dir.join("val-eval").to_str().unwrap(),
    ]));
    let e = json(&dir.join("val-eval/eval-best.json"));
    let v = &s["validation"]["best"];
    assert!(
        (e["accuracy"].as_f64().unwrap() - v["accuracy"].as_f64().unwrap()).abs() < 1e-9,
        "{e} vs {v}"
    );

    // predict on image files (and a folder of them) as JSON lines and as a table.
    let imgs = dir.join("images");
    for k in 0..4 {
        write_synthetic_png(&imgs.join(format!("img{k}.png")), k, 500, 4, 8);
    }
    let rows = predict_rows(&best_ckpt, &imgs);
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert!(r["class"].as_str().unwrap().starts_with("class_"));
    }
    let table = ok(&lskbb(&[
        "predict",
        "--checkpoint",
        best_ckpt.to_str().unwrap(),
        imgs.join("img1.png").to_str().unwrap(),
    ]));
    assert!(
        table.contains("img1.png") && table.contains("class_"),
        "{table}"
    );
    let missing = lskbb(&[
        "predict",
        "--checkpoint",
        best_ckpt.to_str().unwrap(),
        "/no/such/image.png",
    ]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/no/such/image.png"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn tensors(path: &Path) -> Vec<(String, Data)> {
    TensorFile::load(path)
        .unwrap()
        .tensors
        .into_iter()
        .map(|(k, e)| (k, e.data))
        .collect()
}

#[test]
fn interrupted_imagefolder_run_resumes_to_the_same_weights() {
    let dir = temp_dir("resume");
    let data = dir.join("data");
    make_imagefolder(&data);
    let common = [
        "train",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--image-size",
        "8",
        "--log-every",
        "1",
    ];
    let (a, b) = (dir.join("a"), dir.join("b"));
    let run = |out: &Path, extra: &[&str]| {
        let mut args = common.to_vec();
        args.extend(["--out", out.to_str().unwrap()]);
        args.extend(extra);
        lskbb(&args)
    };
    ok(&run(&a, &[]));
    // Stop mid-way through the first epoch (5 steps per epoch), then resume.
    let text = ok(&run(&b, &["--stop-after-steps", "3"]));
    assert!(text.contains("stopped at epoch 1 batch 3"), "{text}");
    // Stopped inside its first epoch, the run still says what it was.
    let cfg = json(&b.join("config.json"));
    assert_eq!(cfg["epochs"], 2, "{cfg}");
    assert_eq!(cfg["batch_size"], 4, "{cfg}");
    assert!(!b.join("summary.json").exists());
    let again = run(&b, &[]);
    assert!(
        !again.status.success(),
        "a second run into a used folder must not overwrite it"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    // --resume takes the saved run's settings: only where it is, not the flags that made it.
    let resume = || {
        lskbb(&[
            "train",
            "--resume",
            "--out",
            b.to_str().unwrap(),
            "--log-every",
            "1",
        ])
    };
    let text = ok(&resume());
    assert!(text.contains("resuming"), "{text}");
    for f in ["last.safetensors", "last.optim.safetensors"] {
        assert_eq!(
            tensors(&a.join(f)),
            tensors(&b.join(f)),
            "{f} differs after resume"
        );
    }
    let loss = |d: &Path| -> Vec<f64> {
        std::fs::read_to_string(d.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["train_loss"]
                    .as_f64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(loss(&a), loss(&b));
    let split = json(&a.join("split.json"));
    assert_eq!(split["classes"], serde_json::json!(["c0", "c1", "c2"]));
    // No val/ folder: 10% of each class (at least 1) is carved from train for validation.
    assert_eq!(split["counts"]["train"], serde_json::json!([11, 5, 2]));
    assert_eq!(split["counts"]["val"], serde_json::json!([1, 1, 1]));

    // A checkpoint whose weights make the loss overflow: resuming stops with a message and
    // leaves the checkpoint as it was.
    let last = b.join("last.safetensors");
    let mut f = TensorFile::load(&last).unwrap();
    let e = f.tensors.get_mut("fc.weight").unwrap();
    if let Data::F32(v) = &mut e.data {
        v.iter_mut().for_each(|x| *x = 3e38);
    }
    // Reopen the run one epoch early so that a step is left to take.
    let mut state: serde_json::Value = serde_json::from_str(&f.metadata["run"]).unwrap();
    state["epoch"] = serde_json::json!(1);
    f.metadata.insert("run".into(), state.to_string());
    f.save(&last).unwrap();
    let before = std::fs::read(&last).unwrap();
    let out = resume();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("non-finite") && err.contains("intact"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&last).unwrap(),
        before,
        "the last checkpoint was modified"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every method trains and evaluates (the single-branch baselines use the conventional
/// branch alone, the others both), with and without block recomputation.
#[test]
fn every_method_runs_an_epoch() {
    let dir = temp_dir("methods");
    for (method, extra) in [
        ("bbn", &[][..]),
        ("ce", &[]),
        ("focal", &[]),
        ("cb-ce", &["--recompute"]),
        ("dflcsce", &["--recompute", "--theta-per", "epoch"]),
    ] {
        let out = dir.join(method);
        let text = train_synthetic(&out, "1", &[&["--method", method], extra].concat());
        assert!(text.contains("epoch 1/1"), "{method}: {text}");
        let s = json(&out.join("summary.json"));
        assert_eq!(
            s["config"]["method"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .replace('-', ""),
            method.replace('-', "")
        );
        assert!(s["final_acc"].is_number(), "{method}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without validation images the run carves them from train and records them in split.json;
/// config.json holds the run's settings.
#[test]
fn carved_validation_is_listed_in_split_json() {
    let dir = temp_dir("carved-val");
    let out = dir.join("run");
    ok(&lskbb(&[
        "train",
        "--method",
        "ce",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--image-size",
        "8",
        "--synthetic-per-class",
        "40",
        "--test-per-class",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]));
    let split = json(&out.join("split.json"));
    // Long tail 40/18/8/4, then 10% per class (rounded, at least 1) for validation.
    assert_eq!(split["counts"]["val"], serde_json::json!([4, 2, 1, 1]));
    assert_eq!(split["counts"]["train"], serde_json::json!([36, 16, 7, 3]));
    assert_eq!(split["val"].as_array().unwrap().len(), 8);
    let s = json(&out.join("summary.json"));
    assert_eq!(s["selected_on"], "validation balanced accuracy");
    assert!(s["validation"]["final"]["balanced_accuracy"].is_number());
    let cfg = json(&out.join("config.json"));
    // The same settings as summary.json's (which prints f32 values widened to f64).
    for key in ["epochs", "batch_size", "method", "seed", "patience"] {
        assert_eq!(cfg[key], s["config"][key], "{key}");
    }
    assert_eq!(cfg["data"]["val_fraction"], 0.1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// --patience 1 stops a run whose validation balanced accuracy does not improve. Each class
/// of this val/ folder holds the same image, so whatever the model learns it predicts one
/// class for all three: balanced accuracy is exactly 1/3 every epoch, epoch 1 stays the best
/// and the run stops after epoch 2 of 4.
#[test]
fn patience_stops_when_validation_does_not_improve() {
    let dir = temp_dir("patience");
    let data = dir.join("data");
    make_imagefolder(&data);
    for c in 0..3 {
        write_synthetic_png(&data.join(format!("val/c{c}/same.png")), 0, 200, 3, 12);
    }
    let out = dir.join("run");
    let text = ok(&lskbb(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "4",
        "--batch-size",
        "4",
        "--image-size",
        "8",
        "--patience",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]));
    let history: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(history.len(), 2, "{text}");
    for rec in &history {
        let v = rec["val_balanced_acc"].as_f64().unwrap();
        assert!((v - 100.0 / 3.0).abs() < 1e-9, "{rec}");
    }
    let s = json(&out.join("summary.json"));
    assert_eq!(s["stopped_early"], true, "{text}");
    assert_eq!(s["epochs_done"], 2, "{text}");
    assert_eq!(s["best_epoch"], 1, "{text}");
    assert!(
        text.contains("stopping early") && text.contains("not improved for 1 epoch"),
        "{text}"
    );
    assert_eq!(json(&out.join("config.json"))["patience"], 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes `per_class` BreaKHis images of each class under `root` in the archive's layout
/// (two patients per class, the four magnifications in turn) and two symlinks that loop
/// back up the tree; returns the number of images.
fn write_breakhis(root: &Path, per_class: usize) -> usize {
    let breast = root.join("BreaKHis_v1/histology_slides/breast");
    for (k, (code, name)) in BREAKHIS_CLASSES.iter().enumerate() {
        let (group, dir) = if k < 4 {
            ("B", "benign")
        } else {
            ("M", "malignant")
        };
        for i in 0..per_class {
            let slide = format!("{}{code}", 1000 + 10 * k + i % 2);
            let mag = [40, 100, 200, 400][i % 4];
            let file = format!("SOB_{group}_{code}-14-{slide}-{mag}-{i:03}.png");
            let path = breast.join(format!(
                "{dir}/SOB/{name}/SOB_{group}_{code}-14-{slide}/{mag}X/{file}"
            ));
            write_synthetic_png(&path, k, i as u64, 8, 12);
        }
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("..", breast.join("benign/SOB/loop")).unwrap();
        std::os::unix::fs::symlink(&breast, breast.join("malignant/loop")).unwrap();
    }
    8 * per_class
}

/// The BreaKHis default is the paper's split: 80 validation and 80 test images per class held
/// out, listed in split.json and counted in summary.json; the walker lists each image once
/// whatever links loop; classes too small for the split are named with the flags to lower.
#[test]
fn breakhis_trains_on_the_papers_split() {
    let dir = temp_dir("breakhis");
    let data = dir.join("data");
    let total = write_breakhis(&data, 162);
    let out = dir.join("run");
    train_tiny(&data, &out, &[]);
    let split = json(&out.join("split.json"));
    assert_eq!(split["kind"], "breakhis");
    let per_class = |n: usize| serde_json::json!(vec![n; 8]);
    assert_eq!(split["counts"]["test"], per_class(80));
    assert_eq!(split["counts"]["val"], per_class(80));
    assert_eq!(split["counts"]["train"], per_class(2));
    let mut listed = Vec::new();
    for set in ["train", "val", "test"] {
        for s in split[set].as_array().unwrap() {
            assert!(
                s["patient"].is_string() && s["magnification"].is_number(),
                "{s}"
            );
            listed.push(s["file"].as_str().unwrap().to_string());
        }
    }
    listed.sort();
    listed.dedup();
    assert_eq!(listed.len(), total);
    let s = json(&out.join("summary.json"));
    let names: Vec<&str> = BREAKHIS_CLASSES.iter().map(|(_, n)| *n).collect();
    assert_eq!(s["classes"], serde_json::json!(names));
    assert_eq!(s["selected_on"], "validation balanced accuracy");
    assert_eq!(s["val_counts"], per_class(80));
    assert_eq!(s["test_counts"], per_class(80));
    assert_eq!(s["epochs_done"], 1);
    assert_eq!(s["config"]["data"]["val_per_class"], 80);
    assert_eq!(s["config"]["data"]["test_per_class"], 80);
    assert_eq!(s["config"]["data"]["augment"], "crop");
    for set in ["best", "final"] {
        let v = &s["validation"][set]["per_class"];
        let counts: Vec<u64> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["test_count"].as_u64().unwrap())
            .collect();
        assert_eq!(counts, [80; 8], "{set}");
    }

    let small = dir.join("small");
    write_breakhis(&small, 3);
    let small_out = dir.join("small-run");
    let run = lskbb(&[
        "train",
        "--data",
        small.to_str().unwrap(),
        "--out",
        small_out.to_str().unwrap(),
    ]);
    fails_with(
        &run,
        1,
        &[
            "adenosis (3)",
            "papillary_carcinoma (3)",
            "--test-per-class",
            "--val-per-class",
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
}
