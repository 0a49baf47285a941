//! `lskbb predict --explain DIR`: one PNG per image, `<stem>.png` (numbered when stems
//! collide), of the size the layout gives; a DIR that cannot be a folder is an error naming it.

mod common;

use common::cli::{fails_with, lskbb, ok, temp_dir, write_synthetic_png};
use common::gpu;
use lskbb::checkpoint::save;
use lskbb::model::{Backbone, ModelConfig, Network};
use std::collections::HashMap;
use std::path::Path;

/// The PNG's width and height.
fn png_size(path: &Path) -> (u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (img.width(), img.height())
}

/// Every `.png` in `dir`, sorted by name.
fn pngs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// 16x16 inputs make 128x128 panels (the smallest whole multiple of at least 128): three
/// columns of 128 with 6-pixel gaps and margins are 408 wide; each row is a 16-pixel title
/// strip, the panel and a gap (150), plus a top margin (6) and the colour bar with its labels
/// and margin (12 + 16 + 6): with the Grad-CAM row and four LSK rows 790 high, with the
/// Grad-CAM row alone (no LSK) 190.
const WIDTH: u32 = 408;
const HEIGHT_LSK: u32 = 790;
const HEIGHT_PLAIN: u32 = 190;

#[test]
fn predict_explain_writes_one_picture_per_image() {
    let dir = temp_dir("explain-cli");
    let images = dir.join("images");
    // Two images named x.png in different folders, and one more.
    write_synthetic_png(&images.join("a/x.png"), 0, 0, 4, 20);
    write_synthetic_png(&images.join("b/x.png"), 1, 1, 4, 24);
    write_synthetic_png(&images.join("b/y.png"), 2, 2, 4, 16);
    let out = dir.join("maps/nested");
    // A PyTorch state_dict of an LSK bilateral model (1 channel, width 4, 5 classes).
    let ckpt = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch_lsk_5cls_gray_w4.safetensors");
    let predict = |extra: &[&str]| {
        let mut a = vec![
            "predict",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--image-size",
            "16",
            "--normalize",
            "none",
            "--batch-size",
            "2",
        ];
        a.extend_from_slice(extra);
        a.push(images.to_str().unwrap());
        lskbb(&a)
    };
    let text = ok(&predict(&["--explain", out.to_str().unwrap()]));
    assert!(text.contains("explanations: 3 pictures"), "{text}");
    assert_eq!(pngs(&out), ["x-2.png", "x.png", "y.png"]);
    for name in pngs(&out) {
        assert_eq!(png_size(&out.join(&name)), (WIDTH, HEIGHT_LSK), "{name}");
    }
    // With --json each row names its picture.
    let again = dir.join("again");
    let text = ok(&predict(&["--json", "--explain", again.to_str().unwrap()]));
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let picture = row["explanation"].as_str().unwrap();
        assert!(Path::new(picture).is_file(), "{row}");
    }
    assert_eq!(pngs(&again).len(), 3);

    // A folder that cannot be made (a file's path) is an error naming it, before any work.
    let file = images.join("b/y.png");
    fails_with(
        &predict(&["--explain", file.to_str().unwrap()]),
        1,
        &["--explain", file.to_str().unwrap()],
    );
    let under_file = file.join("maps");
    fails_with(
        &predict(&["--explain", under_file.to_str().unwrap()]),
        1,
        &[under_file.to_str().unwrap()],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A single-branch model without LSK: the picture has the Grad-CAM row only.
#[test]
fn a_model_without_lsk_gets_the_grad_cam_row_alone() {
    let dir = temp_dir("explain-plain");
    let config = ModelConfig {
        classes: 2,
        in_ch: 3,
        backbone: Backbone::Resnet32,
        bilateral: false,
        width: 2,
        cosine_scale: None,
    };
    let model = Network::new(&gpu(), &config, 1).unwrap();
    let ckpt = dir.join("plain.safetensors");
    save(&ckpt, &model, HashMap::new(), None).unwrap();
    let img = dir.join("scan.png");
    write_synthetic_png(&img, 0, 3, 2, 16);
    let out = dir.join("out");
    ok(&lskbb(&[
        "predict",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--image-size",
        "16",
        "--normalize",
        "imagenet",
        "--explain",
        out.to_str().unwrap(),
        img.to_str().unwrap(),
    ]));
    assert_eq!(png_size(&out.join("scan.png")), (WIDTH, HEIGHT_PLAIN));
    let _ = std::fs::remove_dir_all(&dir);
}
