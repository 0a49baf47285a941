//! `eval` and `predict` of a checkpoint (issue 14): each takes only the flags that apply to
//! it, a checkpoint from `lskbb train` refuses the data flags whose settings it stores (exit
//! 2, naming them), and eval numbers the data's classes as the checkpoint's by name.

mod common;

use common::cli::{
    fails_with, json, lskbb, make_imagefolder, ok, temp_dir, train_tiny, write_synthetic_png,
};
use lskbb::tensor_file::TensorFile;
use std::path::Path;

/// Flags that never apply to a subcommand are usage errors that name them.
#[test]
fn flags_that_never_apply_are_usage_errors() {
    for (cmd, flag, value) in [
        ("eval", "--channels", "1"),
        ("eval", "--split", "train"),
        ("eval", "--batch-size", "0"),
        ("predict", "--channels", "1"),
        ("predict", "--data", "."),
        ("predict", "--test-per-class", "4"),
        ("predict", "--val-per-class", "4"),
        ("predict", "--magnification", "40"),
        ("predict", "--synthetic-classes", "3"),
        ("predict", "--synthetic-per-class", "3"),
        ("predict", "--workers", "2"),
        ("predict", "--cache-mb", "64"),
        ("predict", "--batch-size", "0"),
    ] {
        let mut args = vec![cmd, "--checkpoint", "x.safetensors", flag, value];
        if cmd == "predict" {
            args.push("x.png");
        }
        fails_with(&lskbb(&args), 2, &[flag]);
    }
    let args = [
        "predict",
        "--checkpoint",
        "x",
        "--split-by-patient",
        "x.png",
    ];
    fails_with(&lskbb(&args), 2, &["--split-by-patient"]);
}

/// A checkpoint from `lskbb train` stores its dataset kind, split and pipeline: eval and
/// predict refuse the flags that would set them, and take the ones that only say how to read.
#[test]
fn a_trained_checkpoint_refuses_the_data_flags_it_stores() {
    let dir = temp_dir("eval-stored");
    let out = dir.join("run");
    ok(&lskbb(&[
        "train",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--image-size",
        "8",
        "--synthetic-per-class",
        "20",
        "--test-per-class",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]));
    let best = out.join("best.safetensors");
    let ckpt = best.to_str().unwrap();
    let eval = |extra: &[&str]| {
        let mut a = vec!["eval", "--checkpoint", ckpt];
        a.extend_from_slice(extra);
        lskbb(&a)
    };
    fails_with(
        &eval(&["--augment", "flip", "--normalize", "none"]),
        2,
        &[
            "--augment, --normalize",
            "best.safetensors",
            "preprocessing",
        ],
    );
    fails_with(
        &eval(&["--dataset", "synthetic", "--test-per-class", "3"]),
        2,
        &["--test-per-class", "--dataset", "split"],
    );
    fails_with(
        &eval(&["--image-size", "16"]),
        2,
        &["--image-size", "best.safetensors"],
    );
    fails_with(
        &eval(&["--data", dir.to_str().unwrap()]),
        2,
        &["--data", "synthetic set"],
    );
    let img = dir.join("x.png");
    write_synthetic_png(&img, 0, 0, 4, 8);
    fails_with(
        &lskbb(&[
            "predict",
            "--checkpoint",
            ckpt,
            "--image-size",
            "16",
            img.to_str().unwrap(),
        ]),
        2,
        &["--image-size", "best.safetensors"],
    );
    let text = ok(&eval(&[
        "--split",
        "val",
        "--workers",
        "1",
        "--cache-mb",
        "16",
        "--skip-bad-images",
        "--batch-size",
        "3",
        "--out",
        dir.join("eval").to_str().unwrap(),
    ]));
    assert!(text.contains("balanced accuracy"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An ImageFolder of `counts[k]` test images (and two training images) per class
/// `names[k]`.
fn folder(root: &Path, names: &[&str], counts: &[u64]) {
    for (k, (name, &n)) in names.iter().zip(counts).enumerate() {
        for i in 0..2 {
            write_synthetic_png(&root.join(format!("train/{name}/{i}.png")), k, i, 3, 12);
        }
        for i in 0..n {
            let path = root.join(format!("test/{name}/{i}.png"));
            write_synthetic_png(&path, k, 100 + i, 3, 12);
        }
    }
}

/// The classes and per-class image counts of eval's report.
fn scored(report: &Path) -> (Vec<String>, Vec<u64>) {
    let e = json(report);
    let rows = e["metrics"]["per_class"].as_array().unwrap().clone();
    let classes = e["classes"].as_array().unwrap();
    let names: Vec<String> = classes
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    for (row, name) in rows.iter().zip(&names) {
        assert_eq!(row["class"].as_str().unwrap(), name);
    }
    let counts = rows
        .iter()
        .map(|r| r["test_count"].as_u64().unwrap())
        .collect();
    (names, counts)
}

/// eval numbers the data's classes as the checkpoint's by name: the same classes in another
/// order, or some of them, are scored under their own names; a class the checkpoint was not
/// trained on is an error naming it, the folder and the checkpoint's classes. predict prints
/// the checkpoint's names.
#[test]
fn eval_maps_the_data_classes_to_the_checkpoint_by_name() {
    let dir = temp_dir("eval-classes");
    let data = dir.join("data");
    make_imagefolder(&data);
    let out = dir.join("run");
    train_tiny(&data, &out, &[]);
    // The same model with its outputs named in another order than the folders sort.
    let best = out.join("best.safetensors");
    let mut f = TensorFile::load(&best).unwrap();
    f.metadata
        .insert("classes".into(), r#"["c2", "c0", "c1"]"#.into());
    let renamed = dir.join("renamed.safetensors");
    f.save(&renamed).unwrap();

    let full = dir.join("full");
    folder(&full, &["c0", "c1", "c2"], &[1, 2, 3]);
    let subset = dir.join("subset");
    folder(&subset, &["c0", "c2"], &[1, 3]);
    let eval = |ckpt: &Path, data: &Path| {
        let report = dir.join("eval");
        ok(&lskbb(&[
            "eval",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            report.to_str().unwrap(),
        ]));
        let stem = ckpt.file_stem().unwrap().to_str().unwrap();
        scored(&report.join(format!("eval-{stem}.json")))
    };
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        eval(&best, &full),
        (names(&["c0", "c1", "c2"]), vec![1, 2, 3])
    );
    assert_eq!(
        eval(&renamed, &full),
        (names(&["c2", "c0", "c1"]), vec![3, 1, 2])
    );
    assert_eq!(
        eval(&best, &subset),
        (names(&["c0", "c1", "c2"]), vec![1, 0, 3])
    );
    assert_eq!(
        eval(&renamed, &subset),
        (names(&["c2", "c0", "c1"]), vec![3, 1, 0])
    );

    let unknown = dir.join("unknown");
    folder(&unknown, &["c0", "c3", "x"], &[1, 1, 1]);
    fails_with(
        &lskbb(&[
            "eval",
            "--checkpoint",
            renamed.to_str().unwrap(),
            "--data",
            unknown.to_str().unwrap(),
        ]),
        1,
        &[
            "c3, x",
            unknown.to_str().unwrap(),
            "renamed.safetensors",
            "c2, c0, c1",
        ],
    );

    let text = ok(&lskbb(&[
        "predict",
        "--checkpoint",
        renamed.to_str().unwrap(),
        "--json",
        full.join("test").to_str().unwrap(),
    ]));
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let mut keys: Vec<&String> = row["probabilities"].as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["c0", "c1", "c2"], "{row}");
        let class = row["class"].as_str().unwrap();
        assert_eq!(row["probabilities"][class], row["probability"], "{row}");
    }
    assert_eq!(text.lines().count(), 6, "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
