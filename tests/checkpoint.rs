//! Checkpoints carry exactly the PyTorch reference's state_dict: the golden files' `param.*`
//! and `buffer.*` names (which come from the reference's named_parameters / named_buffers)
//! plus one int64 scalar `num_batches_tracked` per BatchNorm2d, with the same shapes, so
//! `load_state_dict(strict=True)` takes them. Loads are strict and name the offending tensor.

mod common;

use lskbb::checkpoint::{load_model, load_state_dict, save, state_dict};
use lskbb::model::{Backbone, ModelConfig, Network};
use lskbb::tensor_file::{Data, Entry, TensorFile};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

fn golden(name: &str) -> (PathBuf, TensorFile) {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/golden"
    ))
    .join(name);
    let f = TensorFile::load(&p).unwrap();
    (p, f)
}

fn config_of(f: &TensorFile) -> ModelConfig {
    let cfg: serde_json::Value = serde_json::from_str(f.meta("config").unwrap()).unwrap();
    ModelConfig {
        classes: cfg["classes"].as_u64().unwrap() as usize,
        in_ch: cfg["in_ch"].as_u64().unwrap() as usize,
        backbone: if cfg["lsk"].as_bool().unwrap() {
            Backbone::LskResnet32
        } else {
            Backbone::Resnet32
        },
        bilateral: true,
        width: cfg["width"].as_u64().unwrap() as usize,
        cosine_scale: None,
    }
}

#[test]
fn state_dict_names_and_shapes_match_the_reference() {
    for name in [
        "model_lsk16_dflce.safetensors",
        "model_plain_ce_4cls.safetensors",
    ] {
        let (_, g) = golden(name);
        let model = Network::new(&common::gpu(), &config_of(&g), 1).unwrap();
        let sd = state_dict(&model.store).unwrap();
        let mut want: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (k, e) in &g.tensors {
            for prefix in ["param.", "buffer."] {
                if let Some(n) = k.strip_prefix(prefix) {
                    want.insert(n.to_string(), e.shape.clone());
                    if let Some(bn) = n.strip_suffix(".running_mean") {
                        want.insert(format!("{bn}.num_batches_tracked"), vec![]);
                    }
                }
            }
        }
        let got: BTreeMap<String, Vec<usize>> = sd
            .tensors
            .iter()
            .map(|(k, e)| (k.clone(), e.shape.clone()))
            .collect();
        assert_eq!(got, want, "{name}");
        for (k, e) in &sd.tensors {
            if k.ends_with("num_batches_tracked") {
                assert!(matches!(e.data, Data::I64(ref v) if v.len() == 1), "{k}");
            }
        }
        assert!(got.contains_key("layer3.3.bn2.running_var") && got.contains_key("fc.bias"));
    }
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("lskbb-ckpt-{}-{name}", std::process::id()))
}

#[test]
fn save_then_load_restores_every_tensor_and_the_config() {
    let (gp, g) = golden("model_lsk16_dflce.safetensors");
    let gpu = common::gpu();
    let model = Network::new(&gpu, &config_of(&g), 1).unwrap();
    load_state_dict(&model.store, &g, "param.", false, &gp).unwrap();
    model.store.counters[3].1.set(17);
    let path = temp("roundtrip.safetensors");
    save(&path, &model, HashMap::new(), None).unwrap();
    let (back, _) = load_model(&gpu, &path).unwrap();
    assert_eq!(back.config, model.config);
    let a = state_dict(&model.store).unwrap();
    let b = state_dict(&back.store).unwrap();
    assert_eq!(a.tensors, b.tensors);
    let _ = std::fs::remove_file(&path);
}

fn expect_err(f: &TensorFile, model: &Network, needle: &str) {
    let err = load_state_dict(&model.store, f, "", true, Path::new("ck.safetensors"))
        .err()
        .unwrap_or_else(|| panic!("loading should fail ({needle})"));
    let msg = format!("{err:#}");
    assert!(
        msg.contains(needle) && msg.contains("ck.safetensors"),
        "{msg}"
    );
}

#[test]
fn strict_load_names_missing_extra_and_misshapen_tensors() {
    let gpu = common::gpu();
    let cfg = ModelConfig {
        classes: 3,
        in_ch: 1,
        backbone: Backbone::LskResnet32,
        bilateral: true,
        width: ModelConfig::PAPER_WIDTH,
        cosine_scale: None,
    };
    let model = Network::new(&gpu, &cfg, 2).unwrap();
    let full = state_dict(&model.store).unwrap();
    let mut missing = full.clone();
    missing.tensors.remove("layer2.0.lsk.conv_spatial.weight");
    expect_err(&missing, &model, "layer2.0.lsk.conv_spatial.weight");
    let mut extra = full.clone();
    extra
        .tensors
        .insert("head.weight".into(), Entry::f32(&[1], vec![0.0]));
    expect_err(&extra, &model, "head.weight");
    let mut shaped = full.clone();
    shaped
        .tensors
        .insert("fc.bias".into(), Entry::f32(&[4], vec![0.0; 4]));
    expect_err(&shaped, &model, "fc.bias");
    let mut counter = full;
    counter
        .tensors
        .insert("bn1.num_batches_tracked".into(), Entry::f32(&[], vec![0.0]));
    expect_err(&counter, &model, "bn1.num_batches_tracked");
}

/// tests/fixtures/torch_lsk_5cls_gray_w4.safetensors is `BBNResNet32(5, lsk=True, in_ch=1,
/// width=4).state_dict()` saved by PyTorch with safetensors (reference/gen_golden.py): lskbb
/// reads the config from the tensors and loads every tensor strictly.
#[test]
fn a_state_dict_saved_by_pytorch_loads_strictly() {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/torch_lsk_5cls_gray_w4.safetensors"
    ));
    let (model, f) = load_model(&common::gpu(), &p).unwrap();
    assert_eq!(
        model.config,
        ModelConfig {
            classes: 5,
            in_ch: 1,
            backbone: Backbone::LskResnet32,
            bilateral: true,
            width: 4,
            cosine_scale: None,
        }
    );
    let sd = state_dict(&model.store).unwrap();
    assert_eq!(
        sd.tensors.keys().collect::<Vec<_>>(),
        f.tensors.keys().collect::<Vec<_>>()
    );
    assert_eq!(sd.tensors, f.tensors);
}

/// A cosine classifier (LDAM's) has fc.weight alone: on one branch's 4·width features for a
/// single-branch model, on both branches' 8·width for a bilateral one. A state_dict without
/// lskbb metadata gives back that config (the scale, not in the tensors, LDAM's s = 30).
#[test]
fn a_cosine_classifier_state_dict_names_its_config() {
    let gpu = common::gpu();
    let dir = std::env::temp_dir().join(format!("lskbb-cosine-sd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for bilateral in [false, true] {
        let cfg = ModelConfig {
            classes: 3,
            in_ch: 3,
            backbone: Backbone::Resnet32,
            bilateral,
            width: 4,
            cosine_scale: Some(30.0),
        };
        let model = Network::new(&gpu, &cfg, 3).unwrap();
        let sd = state_dict(&model.store).unwrap();
        let fin = if bilateral { 32 } else { 16 };
        assert_eq!(sd.tensors["fc.weight"].shape, vec![3, fin]);
        assert!(!sd.tensors.contains_key("fc.bias"));
        // Cao et al.'s init: unit-norm class vectors.
        let Data::F32(w) = &sd.tensors["fc.weight"].data else {
            panic!("fc.weight is f32");
        };
        for row in w.chunks(fin) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-6, "{norm}");
        }
        let path = dir.join(format!("cosine-{bilateral}.safetensors"));
        sd.save(&path).unwrap();
        let (loaded, _) = load_model(&gpu, &path).unwrap();
        assert_eq!(loaded.config, cfg);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
