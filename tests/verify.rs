//! `lskbb verify` over every golden file in ../shared/golden (written by the PyTorch
//! reference in float64): every tensor must meet the criterion
//! ‖a−b‖ ≤ r‖b‖ + 1e-5·√n·s (r = 1e-4 logits/loss, 1e-3 otherwise; see src/verify.rs).

mod common;

use lskbb::verify::verify_file;
use std::path::PathBuf;

fn golden_files() -> Vec<PathBuf> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/golden");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    // Made the same way with other shapes, strides, dilations and groups (bench/interop.py).
    files.push(PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ops_extra.safetensors"
    )));
    files
}

#[test]
fn every_golden_file_passes() {
    let files = golden_files();
    assert!(
        files.iter().any(|f| f.to_string_lossy().contains("model_")),
        "no model_step golden files found in {files:?}"
    );
    let gpu = common::gpu();
    for f in files {
        let rows = verify_file(&gpu, &f).unwrap_or_else(|e| panic!("{}: {e:#}", f.display()));
        assert!(
            rows.len() > 10,
            "{}: only {} tensors compared",
            f.display(),
            rows.len()
        );
        let failed: Vec<String> = rows
            .iter()
            .filter(|r| !r.pass())
            .map(|r| {
                format!(
                    "{} (rel {:.3e}, err {:.3e} > {:.3e})",
                    r.name, r.rel, r.err, r.bound
                )
            })
            .collect();
        assert!(failed.is_empty(), "{}: {failed:?}", f.display());
    }
}

#[test]
fn the_verify_command_exits_zero_on_goldens_and_nonzero_on_a_bad_file() {
    let bin = env!("CARGO_BIN_EXE_lskbb");
    let ops = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/golden/ops.safetensors"
    );
    let out = std::process::Command::new(bin)
        .args(["verify", "--failures-only", ops])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("0 failed"), "{text}");
    let bad = std::env::temp_dir().join(format!(
        "lskbb-not-golden-{}.safetensors",
        std::process::id()
    ));
    std::fs::write(&bad, b"not a safetensors file").unwrap();
    let out = std::process::Command::new(bin)
        .args(["verify", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lskbb-not-golden"),
        "error should name the file: {err}"
    );
}
