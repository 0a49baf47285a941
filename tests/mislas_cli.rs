//! `lskbb train --method mislas` (Zhong et al. 2021) on the built-in set: stage one with
//! mixup, stage two retraining the classifier alone while the batch norms' running statistics
//! follow the class-balanced batches, in one run that resumes exactly across the boundary;
//! eval and predict take the result as an ordinary single-branch model.

mod common;

use common::cli::{json, lskbb, ok, predict_rows, temp_dir, train_synthetic, write_synthetic_png};
use lskbb::tensor_file::TensorFile;
use std::path::Path;

/// The steps per epoch that `train` reports ("… epochs of N steps").
fn steps_per_epoch(text: &str) -> usize {
    let at = text.find(" steps, batch").expect("the run's plan");
    let words: Vec<&str> = text[..at].split_whitespace().collect();
    words.last().unwrap().parse().unwrap()
}

fn resume(out: &Path, extra: &[&str]) -> String {
    let mut args = vec!["train", "--resume", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    ok(&lskbb(&args))
}

#[test]
fn mislas_trains_both_stages_and_resumes_across_the_boundary() {
    let dir = temp_dir("mislas");
    let (a, b) = (dir.join("a"), dir.join("b"));
    let flags = ["--method", "mislas", "--stage2-epochs", "2"];
    let text = train_synthetic(&a, "3", &flags);
    assert!(text.contains("training mislas"), "{text}");
    assert!(text.contains("epoch 2: MiSLAS stage two"), "{text}");
    let per_epoch = steps_per_epoch(&text);
    let cfg = json(&a.join("config.json"));
    assert_eq!(cfg["method"], "Mislas", "{cfg}");
    assert_eq!(cfg["loss"], "mislas", "{cfg}");
    assert_eq!(cfg["branches"], "single", "{cfg}");
    let m = &cfg["mislas"];
    assert_eq!(m["mixup_alpha"], 1.0, "{cfg}");
    assert_eq!(m["stage2_epochs"], 2, "{cfg}");
    assert_eq!(m["shape"], "concave", "{cfg}");
    assert_eq!(m["shift_bn"], true, "{cfg}");
    // Stage one's schedule spans its single epoch: no drop.
    assert_eq!(cfg["schedule"]["Step"]["milestones"], serde_json::json!([]));
    // Stage two's rate: lr_factor·base·½(1 + cos(π·e/2)) for e = 0, 1.
    let lrs: Vec<f64> = std::fs::read_to_string(a.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["lr"]
                .as_f64()
                .unwrap()
        })
        .collect();
    let base = 0.05;
    for (got, want) in lrs[1..].iter().zip([0.2 * base, 0.2 * base * 0.5]) {
        // f32 arithmetic of the rate, read back through JSON: 1e-6 relative.
        assert!((got - want).abs() < 1e-6 * want, "{lrs:?}");
    }

    // The same run, stopped at the end of stage one, then inside stage two, then resumed.
    let stop = per_epoch.to_string();
    let mut args = flags.to_vec();
    args.extend(["--stop-after-steps", &stop]);
    let text = train_synthetic(&b, "3", &args);
    assert!(text.contains("stopped after epoch 1"), "{text}");
    let stage1 = TensorFile::load(&b.join("last.safetensors")).unwrap();
    let mid = (per_epoch + 3).to_string();
    let text = resume(&b, &["--stop-after-steps", &mid]);
    assert!(text.contains("epoch 2: MiSLAS stage two"), "{text}");
    assert!(text.contains("stopped at epoch 3 batch 3"), "{text}");
    let text = resume(&b, &[]);
    assert!(!text.contains("MiSLAS stage two"), "{text}");
    for f in ["last.safetensors", "last.optim.safetensors"] {
        let (x, y) = (
            TensorFile::load(&a.join(f)).unwrap(),
            TensorFile::load(&b.join(f)).unwrap(),
        );
        assert!(x.tensors == y.tensors, "{f} differs after resuming");
    }

    // Stage two changed the classifier and the running statistics of every batch norm the
    // single branch runs through, nothing else (the unused re-balancing block not at all).
    let end = TensorFile::load(&a.join("last.safetensors")).unwrap();
    let mut stats = 0;
    for (name, before) in &stage1.tensors {
        let after = &end.tensors[name];
        let moved = !name.starts_with("rb_block.")
            && (name.starts_with("fc.")
                || name.ends_with(".running_mean")
                || name.ends_with(".running_var")
                || name.ends_with(".num_batches_tracked"));
        if moved {
            assert!(before != after, "{name} did not change in stage two");
            stats += usize::from(name.ends_with(".running_mean"));
        } else {
            assert!(before == after, "{name} changed in stage two");
        }
    }
    // ResNet-32's stem and 15 basic blocks of two batch norms each (cb_block the 15th).
    assert_eq!(stats, 31);

    // An ordinary single-branch model for eval and predict.
    let last = a.join("last.safetensors");
    let text = ok(&lskbb(&[
        "eval",
        "--checkpoint",
        last.to_str().unwrap(),
        "--out",
        dir.join("eval").to_str().unwrap(),
    ]));
    assert!(text.contains("balanced accuracy"), "{text}");
    let imgs = dir.join("images");
    for k in 0..4 {
        write_synthetic_png(&imgs.join(format!("img{k}.png")), k, 500, 4, 8);
    }
    assert_eq!(predict_rows(&last, &imgs).len(), 4);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without shifted batch norms (their CIFAR-10-LT configs) stage two leaves every running
/// statistic as stage one left it: only the classifier changes. Both stages run with
/// recomputed blocks (`--recompute`, which a resumed run may set anew).
#[test]
fn without_shift_bn_stage_two_changes_the_classifier_alone() {
    let dir = temp_dir("mislas-no-shift");
    let out = dir.join("run");
    let flags = [
        "--method",
        "mislas",
        "--no-shift-bn",
        "--recompute",
        "--stop-after-steps",
    ];
    let text = train_synthetic(&dir.join("probe"), "2", &[&flags[..], &["1"]].concat());
    let per_epoch = steps_per_epoch(&text).to_string();
    train_synthetic(&out, "2", &[&flags[..], &[&per_epoch]].concat());
    let stage1 = TensorFile::load(&out.join("last.safetensors")).unwrap();
    let text = resume(&out, &["--recompute"]);
    assert!(text.contains("epoch 2: MiSLAS stage two"), "{text}");
    assert!(!text.contains("shifting"), "{text}");
    let cfg = json(&out.join("config.json"));
    assert_eq!(cfg["mislas"]["shift_bn"], false, "{cfg}");
    let end = TensorFile::load(&out.join("last.safetensors")).unwrap();
    for (name, before) in &stage1.tensors {
        let changed = before != &end.tensors[name];
        assert_eq!(changed, name.starts_with("fc."), "{name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
