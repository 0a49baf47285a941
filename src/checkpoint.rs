//! Checkpoints: the model as a safetensors file holding exactly the PyTorch reference's
//! `state_dict` (so `load_state_dict(strict=True)` takes it), with the model config and run
//! state in the header metadata; the optimizer's momentum buffers and the sampler/RNG state
//! beside it in `<name>.optim.safetensors`. Both are written to a temp file, then renamed.

use crate::model::{Backbone, ModelConfig, Network, ParamStore};
use crate::tensor_file::{Data, Entry, TensorFile};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The model's `state_dict` in PyTorch's names (parameters, running stats, num_batches_tracked).
pub fn state_dict(store: &ParamStore) -> Result<TensorFile> {
    let mut f = TensorFile::default();
    for (name, p) in &store.params {
        f.tensors
            .insert(name.clone(), Entry::f32(p.shape(), p.value().to_f32()?));
    }
    for (name, b) in &store.buffers {
        f.tensors
            .insert(name.clone(), Entry::f32(b.shape(), b.to_f32()?));
    }
    for (name, c) in &store.counters {
        f.tensors
            .insert(name.clone(), Entry::i64(&[], vec![c.get()]));
    }
    Ok(f)
}

/// Loads tensors named `prefix + <state_dict name>` from `file` into the model. With
/// `strict`, a missing or extra tensor is an error; a wrong shape always is. Returns the
/// number of tensors loaded.
pub fn load_state_dict(
    store: &ParamStore,
    file: &TensorFile,
    prefix: &str,
    strict: bool,
    source: &Path,
) -> Result<usize> {
    let src = source.display();
    let mut expected = BTreeSet::new();
    let mut loaded = 0;
    let tensors = store
        .params
        .iter()
        .map(|(n, p)| (n, p.value()))
        .chain(store.buffers.iter().map(|(n, b)| (n, b)));
    for (name, t) in tensors {
        let key = format!("{prefix}{name}");
        expected.insert(key.clone());
        let Some(e) = file.tensors.get(&key) else {
            if strict {
                bail!(
                    "{src}: tensor '{key}' is missing (expected shape {:?})",
                    t.shape()
                );
            }
            continue;
        };
        if e.shape != t.shape() {
            bail!(
                "{src}: tensor '{key}' has shape {:?}, the model expects {:?}",
                e.shape,
                t.shape()
            );
        }
        match &e.data {
            Data::F32(v) => t.write_f32(v)?,
            Data::I64(_) => bail!("{src}: tensor '{key}' is an integer tensor, expected float"),
        }
        loaded += 1;
    }
    for (name, c) in &store.counters {
        let key = format!("{prefix}{name}");
        expected.insert(key.clone());
        match file.tensors.get(&key) {
            Some(Entry {
                data: Data::I64(v), ..
            }) if v.len() == 1 => {
                c.set(v[0]);
                loaded += 1;
            }
            Some(_) => bail!("{src}: tensor '{key}' must be an int64 scalar"),
            None if strict => bail!("{src}: tensor '{key}' is missing (an int64 scalar)"),
            None => {}
        }
    }
    if strict {
        let extra: Vec<&String> = file
            .tensors
            .keys()
            .filter(|k| k.starts_with(prefix) && !expected.contains(*k))
            .collect();
        if let Some(k) = extra.first() {
            bail!(
                "{src}: tensor '{k}' is not part of this model ({} unexpected tensors)",
                extra.len()
            );
        }
    }
    Ok(loaded)
}

/// The class names a checkpoint stores (None when it names none, as a PyTorch state_dict),
/// which must be one per output.
pub fn class_names(f: &TensorFile, path: &Path, outputs: usize) -> Result<Option<Vec<String>>> {
    let Some(c) = f.metadata.get("classes") else {
        return Ok(None);
    };
    let classes: Vec<String> = serde_json::from_str(c)
        .with_context(|| format!("{}: bad 'classes' metadata", path.display()))?;
    if classes.len() != outputs {
        bail!(
            "{}: its 'classes' metadata names {} classes but the model has {outputs} outputs",
            path.display(),
            classes.len(),
        );
    }
    Ok(Some(classes))
}

/// The names of a checkpoint's outputs: those it stores ([`class_names`]), else `class_<k>`.
pub fn output_names(f: &TensorFile, path: &Path, outputs: usize) -> Result<Vec<String>> {
    Ok(class_names(f, path, outputs)?
        .unwrap_or_else(|| (0..outputs).map(|k| format!("class_{k}")).collect()))
}

/// The optimizer side file of a checkpoint.
pub fn optim_path(path: &Path) -> PathBuf {
    path.with_extension("optim.safetensors")
}

/// Saves the model (state_dict + metadata) and, if given, the optimizer/run state file.
pub fn save(
    path: &Path,
    model: &Network,
    metadata: HashMap<String, String>,
    optim: Option<TensorFile>,
) -> Result<()> {
    let mut f = state_dict(&model.store)?;
    f.metadata = metadata;
    f.metadata
        .insert("model".into(), serde_json::to_string(&model.config)?);
    f.metadata
        .insert("format".into(), "lskbb-checkpoint-1".into());
    if let Some(o) = optim {
        o.save(&optim_path(path))?;
    }
    f.save(path)
}

/// Reads a checkpoint's model config and builds the model with its weights.
pub fn load_model(gpu: &std::sync::Arc<crate::Gpu>, path: &Path) -> Result<(Network, TensorFile)> {
    model_from(gpu, TensorFile::load(path)?, path)
}

/// Builds the model a checkpoint already read into memory describes, with its weights;
/// `path` names it in errors.
pub fn model_from(
    gpu: &std::sync::Arc<crate::Gpu>,
    f: TensorFile,
    path: &Path,
) -> Result<(Network, TensorFile)> {
    let config: ModelConfig = match f.metadata.get("model") {
        Some(m) => serde_json::from_str(m)
            .with_context(|| format!("{}: bad 'model' metadata", path.display()))?,
        None => infer_config(&f).with_context(|| {
            format!(
                "{}: no 'model' metadata and the tensors do not name the model",
                path.display()
            )
        })?,
    };
    let model = Network::new(gpu, &config, 0).with_context(|| path.display().to_string())?;
    load_state_dict(&model.store, &f, "", true, path)?;
    Ok((model, f))
}

/// The config of a state_dict written by PyTorch (no lskbb metadata): a torchvision layout
/// (ResNet-18, VGG16-BN) as [`infer_torchvision_config`] reads it; else ResNet-32 with
/// classes from fc.weight,
/// input channels and width from conv1.weight, LSK from the presence of `layer1.0.lsk.*` (SimAM
/// has no parameters: a SimAM-ResNet-32's state_dict reads as ResNet-32's). An
/// fc without a bias is the cosine classifier, on one branch's features where fc.weight has
/// 4·width inputs; its scale, not in the tensors, is LDAM's s = 30 (Cao et al.'s code).
fn infer_config(f: &TensorFile) -> Result<ModelConfig> {
    if let Some(config) = infer_torchvision_config(f)? {
        return Ok(config);
    }
    let (fc, _) = f.f32("fc.weight")?;
    let (c1, _) = f.f32("conv1.weight")?;
    let cosine = !f.tensors.contains_key("fc.bias");
    let (&[classes, fin], &[width, in_ch, _, _]) = (fc, c1) else {
        bail!("fc.weight must be [classes, 8·width] and conv1.weight [width, in_ch, 3, 3], got {fc:?} and {c1:?}");
    };
    if fin != 8 * width && !(cosine && fin == 4 * width) {
        bail!(
            "fc.weight has {fin} inputs for conv1's width {width}: expected 8·width (or 4·width \
             for a single-branch cosine classifier, without fc.bias)"
        );
    }
    Ok(ModelConfig {
        classes,
        in_ch,
        backbone: if f.tensors.contains_key("layer1.0.lsk.conv0.weight") {
            Backbone::LskResnet32
        } else if f.tensors.contains_key("layer3.0.bra.qkv.weight") {
            Backbone::BiformerResnet32
        } else {
            Backbone::Resnet32
        },
        bilateral: fin == 8 * width,
        width,
        cosine_scale: cosine.then_some(30.0),
    })
}

/// The config of a torchvision-layout state_dict: VGG16-BN where `features.0.weight` is there
/// (its classifier `classifier.6`), ResNet-18 where conv1 is 7x7 (`fc`); the width from the
/// first conv's channels, bilateral where `cb_block` tensors are there. None for other
/// layouts.
fn infer_torchvision_config(f: &TensorFile) -> Result<Option<ModelConfig>> {
    let (backbone, conv, fc, cb) = if f.tensors.contains_key("features.0.weight") {
        (
            Backbone::Vgg16,
            "features.0.weight",
            "classifier.6",
            "cb_block.0.weight",
        )
    } else if f
        .f32("conv1.weight")
        .is_ok_and(|(s, _)| s.len() == 4 && s[2..] == [7, 7])
    {
        (
            Backbone::Resnet18,
            "conv1.weight",
            "fc",
            "cb_block.conv1.weight",
        )
    } else {
        return Ok(None);
    };
    let (c1, _) = f.f32(conv)?;
    let (w, _) = f.f32(&format!("{fc}.weight"))?;
    let (&[width, in_ch, _, _], &[classes, _]) = (c1, w) else {
        bail!("{conv} must be [width, in_ch, k, k] and {fc}.weight [classes, features], got {c1:?} and {w:?}");
    };
    Ok(Some(ModelConfig {
        classes,
        in_ch,
        backbone,
        bilateral: f.tensors.contains_key(cb),
        width,
        cosine_scale: (!f.tensors.contains_key(&format!("{fc}.bias"))).then_some(30.0),
    }))
}
