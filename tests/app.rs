//! The library API for apps (`lskbb::app`): a checkpoint loaded from bytes classifies an
//! image as `lskbb predict --json` does, and each kind of failure comes back as its own
//! error variant.

mod common;

use common::cli::{lskbb, make_imagefolder, ok, temp_dir, train_tiny};
use lskbb::app::{block_on, Classifier, Error};
use std::path::Path;

/// A one-epoch run on a tiny ImageFolder; returns (checkpoint, a test image).
fn trained(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = dir.join("data");
    make_imagefolder(&data);
    let out = dir.join("run");
    train_tiny(&data, &out, &[]);
    let image = std::fs::read_dir(data.join("test/c1"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    (out.join("best.safetensors"), image)
}

#[test]
fn the_library_classifies_as_predict_does() {
    let dir = temp_dir("app-classify");
    let (ckpt, image) = trained(&dir);
    let printed = ok(&lskbb(&[
        "predict",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--json",
        image.to_str().unwrap(),
    ]));
    let want: serde_json::Value = serde_json::from_str(printed.trim()).unwrap();

    let gpu = common::gpu();
    let bytes = std::fs::read(&ckpt).unwrap();
    let model = Classifier::from_bytes(&gpu, &bytes, "best.safetensors").unwrap();
    assert_eq!(model.classes(), ["c0", "c1", "c2"]);
    assert_eq!(model.image_size(), 8);
    let p = block_on(model.classify_bytes(&std::fs::read(&image).unwrap())).unwrap();
    assert_eq!(p.class, want["class"].as_str().unwrap());
    // The same kernels on the same adapter and the same preprocessing: only the batch
    // differs (one image here, one there), so the probabilities agree to rounding.
    for (name, v) in &p.probabilities {
        let w = want["probabilities"][name].as_f64().unwrap();
        assert!(
            v.is_finite() && (f64::from(*v) - w).abs() <= 1e-5,
            "{name}: {v} vs {w}"
        );
    }
    let sum: f32 = p.probabilities.iter().map(|(_, v)| v).sum();
    assert!((sum - 1.0).abs() < 1e-5, "probabilities sum to {sum}");
    let top = p.top(2);
    assert_eq!(top[0].0, p.class);
    assert!(top[0].1 >= top[1].1);

    // A decoded image gives the same answer as its encoded bytes.
    let decoded = image::open(&image).unwrap();
    assert_eq!(block_on(model.classify(&decoded)).unwrap(), p);

    // The explanation predicts the same, with a heat map over the input and a picture.
    let e = block_on(model.explain(&decoded)).unwrap();
    assert_eq!(e.prediction, p);
    assert_eq!((e.size, e.heat_map.len()), (8, 64));
    let top = e.heat_map.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    assert!(e
        .heat_map
        .iter()
        .all(|v| v.is_finite() && (0.0..=1.0).contains(v)));
    assert!(
        top == 1.0 || top == 0.0,
        "the map is scaled to a largest value of 1: {top}"
    );
    let picture = image::load_from_memory(&e.png).unwrap();
    assert!(picture.width() >= 128 && picture.height() >= 128);

    // On a device the app opened itself, with its own (WebGPU default) limits.
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::PRIMARY;
    let adapter = block_on(wgpu::Instance::new(desc).request_adapter(&Default::default())).unwrap();
    let (device, queue) = block_on(adapter.request_device(&Default::default())).unwrap();
    let shared = lskbb::Gpu::from_device(device, queue, adapter.get_info());
    let model = Classifier::from_bytes(&shared, &bytes, "best.safetensors").unwrap();
    let q = block_on(model.classify(&decoded)).unwrap();
    assert_eq!(q.class, p.class);
    for ((name, v), (_, w)) in q.probabilities.iter().zip(&p.probabilities) {
        // Without subgroups other kernels run: the same sums in another order.
        assert!((v - w).abs() <= 1e-5, "{name}: {v} vs {w}");
    }
}

#[test]
fn each_failure_is_its_own_error() {
    let dir = temp_dir("app-errors");
    let (ckpt, _) = trained(&dir);
    let gpu = common::gpu();
    let bad_ckpt = |r: Result<Classifier, Error>, words: &[&str]| match r {
        Err(Error::BadCheckpoint(m)) => {
            for w in words {
                assert!(m.contains(w), "{m} should name {w}");
            }
        }
        Err(e) => panic!("expected BadCheckpoint, got {e:?}"),
        Ok(_) => panic!("expected BadCheckpoint, got a model"),
    };
    bad_ckpt(
        Classifier::from_bytes(&gpu, b"not a checkpoint", "junk.safetensors"),
        &["junk.safetensors", "not a safetensors file"],
    );
    bad_ckpt(
        Classifier::load(&gpu, &dir.join("missing.safetensors")),
        &["missing.safetensors"],
    );
    // A state_dict without lskbb's metadata: the preprocessing is unknown.
    let mut f = lskbb::tensor_file::TensorFile::load(&ckpt).unwrap();
    f.metadata.clear();
    let bare = dir.join("bare.safetensors");
    f.save(&bare).unwrap();
    bad_ckpt(
        Classifier::load(&gpu, &bare),
        &["bare.safetensors", "with_preprocessing"],
    );

    let model = Classifier::load(&gpu, &ckpt).unwrap();
    match block_on(model.classify_bytes(b"\x89PNG\r\n\x1a\n truncated")) {
        Err(Error::BadImage(m)) => assert!(m.contains("cannot decode"), "{m}"),
        other => panic!("expected BadImage, got {other:?}"),
    }
    match block_on(model.classify_bytes(b"plain text")) {
        Err(Error::BadImage(m)) => assert!(m.contains("not a PNG"), "{m}"),
        other => panic!("expected BadImage, got {other:?}"),
    }
    let thin = image::DynamicImage::new_rgb8(200, 2);
    match block_on(model.classify(&thin)) {
        Err(Error::BadImage(m)) => assert!(m.contains("200x2"), "{m}"),
        other => panic!("expected BadImage, got {other:?}"),
    }
}
