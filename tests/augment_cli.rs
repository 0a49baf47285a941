//! `--augment` and `--normalize` on the command line (issue 17): words outside the lists are
//! usage errors naming the flag and the word; a run records its pipeline in summary.json and
//! the checkpoint, and eval and predict use the statistics the checkpoint stores.

mod common;

use common::cli::{json, lskbb, make_imagefolder, ok, temp_dir};
use lskbb::data::Normalize;
use lskbb::tensor_file::TensorFile;
use lskbb::train::run::saved_config;
use std::path::Path;

#[test]
fn augment_and_normalize_words_outside_the_lists_are_usage_errors() {
    for (flag, value, word) in [
        ("--augment", "spin", "spin"),
        ("--augment", "crop,hflip", "hflip"),
        ("--augment", "none,flip", "none"),
        ("--normalize", "batch", "batch"),
    ] {
        let out = lskbb(&["train", flag, value, "--out", "/nonexistent/never"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(err.contains(flag) && err.contains(word), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

fn probabilities(text: &str) -> Vec<Vec<f64>> {
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let mut p: Vec<(String, f64)> = v["probabilities"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, x)| (k.clone(), x.as_f64().unwrap()))
                .collect();
            p.sort_by(|a, b| a.0.cmp(&b.0));
            p.into_iter().map(|(_, x)| x).collect()
        })
        .collect()
}

fn predict(ckpt: &Path, images: &Path) -> Vec<Vec<f64>> {
    probabilities(&ok(&lskbb(&[
        "predict",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--json",
        images.to_str().unwrap(),
    ])))
}

#[test]
fn eval_and_predict_use_the_statistics_the_checkpoint_stores() {
    let dir = temp_dir("augment-cli");
    let data = dir.join("data");
    make_imagefolder(&data);
    let out = dir.join("run");
    ok(&lskbb(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--image-size",
        "8",
        "--augment",
        "crop,flip",
        "--normalize",
        "dataset",
        "--out",
        out.to_str().unwrap(),
    ]));
    let s = json(&out.join("summary.json"));
    let pre = &s["preprocessing"];
    assert_eq!(pre["augment"], "crop,flip");
    assert_eq!(pre["normalize"], "dataset");
    assert_eq!(pre["eval"], "shorter side to 9, centre 8x8 window");
    let mean = pre["mean"].as_array().unwrap();
    assert_eq!(mean.len(), 3);
    assert_eq!(s["config"]["data"]["augment"], "crop,flip");
    let close = |a: &serde_json::Value, b: &serde_json::Value| {
        let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-6)
    };
    assert!(close(&s["config"]["data"]["mean"], &pre["mean"]), "{s}");
    let best = out.join("best.safetensors");
    let f = TensorFile::load(&best).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&f.metadata["train"]).unwrap();
    assert_eq!(saved["data"]["normalize"], "dataset");
    assert!(close(&saved["data"]["std"], &pre["std"]), "{saved}");

    // eval of a copy of the data whose training images are all white: a recomputation would
    // see other statistics; the stored ones give the run's own test accuracy
    let white = dir.join("white");
    make_imagefolder(&white);
    for entry in walk(&white.join("train")) {
        image::RgbImage::from_pixel(12, 12, image::Rgb([255, 255, 255]))
            .save(&entry)
            .unwrap();
    }
    ok(&lskbb(&[
        "eval",
        "--checkpoint",
        best.to_str().unwrap(),
        "--data",
        white.to_str().unwrap(),
    ]));
    let e = json(&out.join("eval-best.json"));
    let acc = e["accuracy"].as_f64().unwrap();
    assert!((acc - s["best_acc"].as_f64().unwrap()).abs() < 1e-9, "{e}");

    // predict has no training split: the stored statistics are all it has, and changing
    // them in the checkpoint changes its probabilities
    let images = data.join("test");
    let p = predict(&best, &images);
    assert_eq!(p.len(), 12);
    let mut tampered = f.clone();
    let mut cfg = saved.clone();
    cfg["data"]["mean"] = serde_json::json!([0.6, 0.2, 0.6]);
    tampered
        .metadata
        .insert("train".into(), serde_json::to_string(&cfg).unwrap());
    let other = dir.join("tampered.safetensors");
    tampered.save(&other).unwrap();
    let q = predict(&other, &images);
    assert!(
        p.iter()
            .zip(&q)
            .any(|(a, b)| a.iter().zip(b).any(|(x, y)| (x - y).abs() > 1e-4)),
        "{p:?} vs {q:?}"
    );

    // a checkpoint written before issue 17 (no augment, normalize or statistics) loads with
    // the pipeline it trained with: crops and flips on an ImageFolder, ImageNet statistics
    let mut old = f.clone();
    let mut cfg = saved.clone();
    for k in ["augment", "normalize", "mean", "std"] {
        cfg["data"].as_object_mut().unwrap().remove(k);
    }
    old.metadata
        .insert("train".into(), serde_json::to_string(&cfg).unwrap());
    let old_path = dir.join("old.safetensors");
    old.save(&old_path).unwrap();
    let back = saved_config(&TensorFile::load(&old_path).unwrap(), &old_path)
        .unwrap()
        .unwrap();
    assert_eq!(back.data.augment.unwrap().to_string(), "crop,flip");
    assert_eq!(back.data.normalize, Some(Normalize::Imagenet));
    assert_eq!(predict(&old_path, &images).len(), 12);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The files below `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
