//! `eval` and `predict` of a checkpoint (issue 14): each takes only the flags that apply to
//! it, and a checkpoint from `lskbb train` refuses the data flags whose settings it stores
//! (exit 2, naming them).

mod common;

use common::cli::{fails_with, lskbb, ok, temp_dir, write_synthetic_png};

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
