//! Bad input from the command line (issue 14's corpus, as a new user meets it): each case
//! ends with a clear message that names the file, flag or class and what was expected, the
//! conventional exit code (1 error, 2 usage), or the behaviour a user expects; none panics,
//! hangs or aborts.

mod common;

use common::cli::{
    fails_with, lskbb, make_imagefolder, ok, run_train_tiny, stderr, temp_dir, write_synthetic_png,
};
use lskbb::tensor_file::TensorFile;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn training_flags_out_of_range_are_usage_errors_that_name_the_flag() {
    for (flag, value) in [
        ("--momentum", "nan"),
        ("--momentum", "1"),
        ("--cb-beta", "1"),
        ("--weight-decay", "-5"),
        ("--lr", "0"),
        ("--lr", "inf"),
        ("--gamma", "-1"),
        ("--image-size", "100000"),
        ("--epochs", "0"),
        ("--batch-size", "1"),
        ("--channels", "2"),
    ] {
        let arg = format!("{flag}={value}");
        fails_with(&lskbb(&["train", &arg]), 2, &[flag]);
    }
}

/// A 0-byte PNG, or one whose header claims 30,000,000 x 1 pixels, among the training images:
/// with --skip-bad-images the bilateral run (whose branches mix features pairwise) trains on
/// and names the file; without it the run stops with an error that names it.
#[test]
fn an_unreadable_training_image_is_skipped_by_name_or_named_in_the_error() {
    for (name, bytes) in [("empty.png", Vec::new()), ("huge.png", huge_png())] {
        let dir = temp_dir(&format!("bad-train-{name}"));
        let data = dir.join("data");
        make_imagefolder(&data);
        std::fs::write(data.join("train/c0").join(name), bytes).unwrap();
        let out = dir.join("run");
        let run = run_train_tiny(&data, &out, &["--skip-bad-images"]);
        ok(&run);
        assert!(stderr(&run).contains(name), "{}", stderr(&run));
        let _ = std::fs::remove_dir_all(&out);
        fails_with(&run_train_tiny(&data, &out, &[]), 1, &[name]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// `predict` over a folder with an unreadable image, a PNG whose header claims 30,000,000 x 1
/// pixels and two symlinks back to the folder itself: each good image is listed once, and the
/// bad ones are skipped by name (--skip-bad-images) or stop it with their name.
#[test]
fn predict_lists_each_good_image_once_and_names_the_bad_ones() {
    let dir = temp_dir("bad-predict");
    let images = dir.join("images");
    for i in 0..3 {
        write_synthetic_png(&images.join(format!("good{i}.png")), i as usize, i, 5, 16);
    }
    std::fs::write(images.join("empty.png"), b"").unwrap();
    std::fs::write(images.join("huge.png"), huge_png()).unwrap();
    #[cfg(unix)]
    for link in ["loop1", "loop2"] {
        std::os::unix::fs::symlink(".", images.join(link)).unwrap();
    }
    let ckpt = fixture("torch_lsk_5cls_gray_w4.safetensors");
    let base = [
        "predict",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--json",
        "--image-size",
        "16",
    ];
    let mut args = base.to_vec();
    args.extend(["--skip-bad-images", images.to_str().unwrap()]);
    let run = lskbb(&args);
    let text = ok(&run);
    for i in 0..3 {
        let name = format!("good{i}.png");
        assert_eq!(text.matches(&name).count(), 1, "{name} once: {text}");
    }
    let err = stderr(&run);
    assert!(
        err.contains("empty.png") && err.contains("huge.png"),
        "{err}"
    );
    let mut args = base.to_vec();
    let huge = images.join("huge.png");
    args.push(huge.to_str().unwrap());
    fails_with(&lskbb(&args), 1, &["huge.png"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A checkpoint whose metadata names fewer classes than the model has outputs, in predict
/// and in eval.
#[test]
fn a_checkpoint_with_too_few_class_names_is_refused_by_name() {
    let dir = temp_dir("bad-classes");
    let mut f = TensorFile::load(&fixture("torch_lsk_5cls_gray_w4.safetensors")).unwrap();
    f.metadata
        .insert("classes".into(), r#"["benign", "malignant"]"#.into());
    let ckpt = dir.join("two-names.safetensors");
    f.save(&ckpt).unwrap();
    let img = dir.join("x.png");
    write_synthetic_png(&img, 0, 0, 5, 16);
    let named = ["two-names.safetensors", "2 classes", "5 outputs"];
    let predict = lskbb(&[
        "predict",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    fails_with(&predict, 1, &named);
    let data = dir.join("data");
    make_imagefolder(&data);
    let eval = lskbb(&[
        "eval",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--image-size",
        "8",
    ]);
    fails_with(&eval, 1, &named);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A golden file whose config claims 10^12 classes is refused before anything is allocated.
#[test]
fn a_golden_claiming_a_trillion_classes_is_refused() {
    let dir = temp_dir("bad-golden");
    let src = fixture("golden/model_plain_dflce_gray_2cls.safetensors");
    let mut f = TensorFile::load(&src).unwrap();
    let cfg = f.metadata["config"].replace("\"classes\": 2", "\"classes\": 1000000000000");
    assert_ne!(cfg, f.metadata["config"]);
    f.metadata.insert("config".into(), cfg);
    let path = dir.join("trillion.safetensors");
    f.save(&path).unwrap();
    fails_with(
        &lskbb(&["verify", path.to_str().unwrap()]),
        1,
        &["trillion.safetensors", "classes"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A checkpoint whose model metadata claims 10^12 classes is refused by name before anything
/// is allocated.
#[test]
fn a_checkpoint_claiming_a_trillion_classes_is_refused() {
    let dir = temp_dir("bad-checkpoint-classes");
    let mut f = TensorFile::load(&fixture("torch_lsk_5cls_gray_w4.safetensors")).unwrap();
    f.metadata.insert(
        "model".into(),
        r#"{"classes": 1000000000000, "in_ch": 1, "lsk": true, "width": 4}"#.into(),
    );
    let ckpt = dir.join("trillion.safetensors");
    f.save(&ckpt).unwrap();
    let img = dir.join("x.png");
    write_synthetic_png(&img, 0, 0, 5, 16);
    fails_with(
        &lskbb(&[
            "predict",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            img.to_str().unwrap(),
        ]),
        1,
        &["trillion.safetensors", "classes", "1000000000000"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A valid PNG (signature, IHDR, one IDAT, IEND) whose header claims 30,000,000 x 1 grey
/// pixels while it holds a few bytes.
fn huge_png() -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = 30_000_000u32.to_be_bytes().to_vec();
    ihdr.extend(1u32.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]); // 8-bit grey, deflate, no filter, no interlace
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

/// CRC-32 (IEEE, as PNG chunks use).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Starts a short synthetic run in `out`, sends it `signal` (TERM or INT) after its first
/// step, and returns its exit status and stderr lines.
#[cfg(unix)]
fn stop_with(signal: &str, out: &Path) -> (Option<i32>, Vec<String>) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let args = [
        "train",
        "--epochs",
        "2",
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
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_lskbb"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // The first progress line comes after the first step.
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let stepped = line.contains(" step ");
        seen.push(line);
        if stepped {
            break;
        }
    }
    let kill = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    seen.extend(lines.map_while(Result::ok));
    (child.wait().unwrap().code(), seen)
}

/// SIGTERM (a scheduler's stop) finishes the step, saves a checkpoint and exits 143; the run
/// then resumes to the end.
#[cfg(unix)]
#[test]
fn sigterm_saves_a_checkpoint_and_exits_143_then_the_run_resumes() {
    let dir = temp_dir("sigterm");
    let out = dir.join("run");
    let (code, seen) = stop_with("TERM", &out);
    assert_eq!(code, Some(143), "{seen:#?}");
    assert!(seen.iter().any(|l| l.contains("SIGTERM")), "{seen:#?}");
    assert!(out.join("last.safetensors").exists());
    ok(&lskbb(&[
        "train",
        "--resume",
        "--out",
        out.to_str().unwrap(),
    ]));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ctrl-C (SIGINT) saves a checkpoint too and exits 130, not 0 like a finished run.
#[cfg(unix)]
#[test]
fn ctrl_c_saves_a_checkpoint_and_exits_130() {
    let dir = temp_dir("sigint");
    let out = dir.join("run");
    let (code, seen) = stop_with("INT", &out);
    assert_eq!(code, Some(130), "{seen:#?}");
    assert!(seen.iter().any(|l| l.contains("Ctrl-C")), "{seen:#?}");
    assert!(out.join("last.safetensors").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A result file that cannot be written (here config.json, in the way as a folder, as a full
/// disk would stop it) fails the run by name and leaves no temporary file behind.
#[test]
fn a_failed_write_names_the_file_and_leaves_no_temporary_file() {
    let dir = temp_dir("failed-write");
    let out = dir.join("run");
    std::fs::create_dir_all(out.join("config.json")).unwrap();
    fails_with(
        &lskbb(&[
            "train",
            "--epochs",
            "1",
            "--image-size",
            "8",
            "--synthetic-per-class",
            "20",
            "--test-per-class",
            "4",
            "--out",
            out.to_str().unwrap(),
        ]),
        1,
        &["config.json"],
    );
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A run that fails before writing anything leaves no empty run folder behind.
#[test]
fn a_failed_start_leaves_no_run_folder() {
    let dir = temp_dir("no-folder");
    let data = dir.join("not-a-dataset");
    std::fs::create_dir_all(&data).unwrap();
    let out = dir.join("run");
    fails_with(
        &lskbb(&[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]),
        1,
        &["not-a-dataset"],
    );
    assert!(!out.exists(), "{} was left behind", out.display());
    let _ = std::fs::remove_dir_all(&dir);
}

/// An imbalance factor that leaves a class without training images is refused (it trained on
/// before, or ended in a non-finite class-balanced loss).
#[test]
fn an_imbalance_that_empties_a_class_is_refused() {
    let dir = temp_dir("empty-class");
    let data = dir.join("data");
    make_imagefolder(&data);
    let out = dir.join("run");
    fails_with(
        &lskbb(&[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--imbalance",
            "20",
            "--out",
            out.to_str().unwrap(),
        ]),
        1,
        &["--imbalance", "no training image", "class 2"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--resume` from another folder: the run stored its data folder as an absolute path; flags
/// that would change the saved run are usage errors naming them; data that changed since the
/// run started is refused by name rather than silently trained on.
#[test]
fn resume_keeps_its_data_and_settings_or_says_why_not() {
    use std::process::Command;
    let dir = temp_dir("resume-checks");
    make_imagefolder(&dir.join("data"));
    let out = dir.join("run");
    let run_in = |cwd: &Path, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lskbb"))
            .current_dir(cwd)
            .args([
                "train",
                "--out",
                out.to_str().unwrap(),
                "--epochs",
                "2",
                "--batch-size",
                "4",
                "--image-size",
                "8",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    ok(&run_in(
        &dir,
        &["--data", "data", "--stop-after-steps", "1"],
    ));
    let resume = |cwd: &Path, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lskbb"))
            .current_dir(cwd)
            .args(["train", "--resume", "--out", out.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let changed = [
        "--epochs",
        "3",
        "--lr",
        "0.1",
        "--backbone",
        "resnet32",
        "--loss",
        "ce",
        "--branches",
        "single",
        "--sampler",
        "uniform",
    ];
    fails_with(
        &resume(Path::new("/"), &changed),
        2,
        &[
            "--epochs",
            "--lr",
            "--backbone",
            "--loss",
            "--branches",
            "--sampler",
        ],
    );
    let extra = dir.join("data/train/c0/extra.png");
    write_synthetic_png(&extra, 0, 77, 3, 12);
    fails_with(
        &resume(Path::new("/"), &[]),
        1,
        &["train images differ", "split.json"],
    );
    std::fs::remove_file(&extra).unwrap();
    ok(&resume(Path::new("/"), &[]));
    let _ = std::fs::remove_dir_all(&dir);
}
