//! Running the `lskbb` binary on small image folders.

use lskbb::data::synthetic_image;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh empty folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lskbb-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn lskbb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lskbb"))
        .args(args)
        .output()
        .unwrap()
}

pub fn ok(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Fails unless the command exited with `code` and its stderr holds every one of `words`.
pub fn fails_with(out: &Output, code: i32, words: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "exit status; stderr: {err}");
    for w in words {
        assert!(err.contains(w), "stderr should name {w:?}: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A PNG of the synthetic set's `index`-th image of `class` (of `classes`), `size` pixels.
pub fn write_synthetic_png(path: &Path, class: usize, index: u64, classes: usize, size: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let px = synthetic_image(0, class, index, classes, size);
    image::RgbImage::from_raw(px.w as u32, px.h as u32, px.data)
        .unwrap()
        .save(path)
        .unwrap();
}

/// An ImageFolder: 3 classes, long-tailed 12/6/3 training images, 4 test images per class.
pub fn make_imagefolder(root: &Path) {
    for (c, n) in [12u64, 6, 3].into_iter().enumerate() {
        for i in 0..n {
            write_synthetic_png(&root.join(format!("train/c{c}/{i}.png")), c, i, 3, 12);
        }
        for i in 0..4 {
            write_synthetic_png(&root.join(format!("test/c{c}/{i}.png")), c, 100 + i, 3, 12);
        }
    }
}

/// `lskbb train` for one epoch, batch 4, 8×8 images on the data folder `data` into `out`,
/// with `extra` flags; fails the test unless it succeeds, and returns what it printed.
pub fn train_tiny(data: &Path, out: &Path, extra: &[&str]) -> String {
    ok(&run_train_tiny(data, out, extra))
}

/// [`train_tiny`]'s run, whatever its outcome.
pub fn run_train_tiny(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--image-size",
        "8",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    lskbb(&args)
}

/// `lskbb predict --json` of `checkpoint` on `input` (a file or folder): one JSON object per
/// image, each checked to hold probabilities that sum to 1.
pub fn predict_rows(checkpoint: &Path, input: &Path) -> Vec<serde_json::Value> {
    let text = ok(&lskbb(&[
        "predict",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--json",
        input.to_str().unwrap(),
    ]));
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for r in &rows {
        let total: f64 = r["probabilities"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_f64().unwrap())
            .sum();
        assert!((total - 1.0).abs() < 1e-4, "{r}");
    }
    rows
}

/// `epochs` tiny epochs on the built-in set (4 classes, 8×8) into `out`, with `choices`.
pub fn train_synthetic(out: &Path, epochs: &str, choices: &[&str]) -> String {
    train_synthetic_sized(out, epochs, "8", choices)
}

/// [`train_synthetic`] on `size`×`size` images.
pub fn train_synthetic_sized(out: &Path, epochs: &str, size: &str, choices: &[&str]) -> String {
    let mut args = vec![
        "train",
        "--epochs",
        epochs,
        "--batch-size",
        "4",
        "--image-size",
        size,
        "--synthetic-per-class",
        "10",
        "--test-per-class",
        "3",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(choices);
    ok(&lskbb(&args))
}

/// eval of `ckpt` writes its report, and predict gives each of 4 synthetic `size`×`size`
/// images a class and probabilities that sum to 1 ([`predict_rows`]).
pub fn eval_and_predict(ckpt: &Path, dir: &Path, size: usize) {
    let text = ok(&lskbb(&[
        "eval",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--out",
        dir.join("eval").to_str().unwrap(),
    ]));
    assert!(text.contains("balanced accuracy"), "{text}");
    let stem = ckpt.file_stem().unwrap().to_str().unwrap();
    let e = json(&dir.join(format!("eval/eval-{stem}.json")));
    assert!(e["accuracy"].is_number(), "{e}");
    let imgs = dir.join("images");
    for k in 0..4 {
        write_synthetic_png(&imgs.join(format!("img{k}.png")), k, 500, 4, size);
    }
    assert_eq!(predict_rows(ckpt, &imgs).len(), 4);
}
