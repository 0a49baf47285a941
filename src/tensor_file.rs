//! Reading and writing named tensors in the safetensors format (what PyTorch, candle and Burn
//! read). Writes go to a temporary file that is renamed over the target, so a crash never
//! leaves a half-written file in place of a good one.

use anyhow::{anyhow, bail, Context, Result};
use safetensors::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Tensor contents as stored.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// One named tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub shape: Vec<usize>,
    pub data: Data,
}

impl Entry {
    pub fn f32(shape: &[usize], data: Vec<f32>) -> Entry {
        Entry {
            shape: shape.to_vec(),
            data: Data::F32(data),
        }
    }

    pub fn i64(shape: &[usize], data: Vec<i64>) -> Entry {
        Entry {
            shape: shape.to_vec(),
            data: Data::I64(data),
        }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A whole file: tensors by name and the string metadata.
#[derive(Clone, Debug, Default)]
pub struct TensorFile {
    pub tensors: BTreeMap<String, Entry>,
    pub metadata: HashMap<String, String>,
}

impl TensorFile {
    pub fn load(path: &Path) -> Result<TensorFile> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        TensorFile::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses a safetensors file held in memory; `what` names it in errors.
    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<TensorFile> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| anyhow!("{what} is not a safetensors file: {e}"))?;
        let (_, meta) = SafeTensors::read_metadata(bytes)
            .map_err(|e| anyhow!("{what}: bad safetensors header: {e}"))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            let shape = view.shape().to_vec();
            let raw = view.data();
            let data = match view.dtype() {
                Dtype::F32 => Data::F32(bytemuck::pod_collect_to_vec(raw)),
                Dtype::F64 => Data::F32(
                    bytemuck::pod_collect_to_vec::<u8, f64>(raw)
                        .into_iter()
                        .map(|v| v as f32)
                        .collect(),
                ),
                Dtype::I64 => Data::I64(bytemuck::pod_collect_to_vec(raw)),
                Dtype::I32 => Data::I64(
                    bytemuck::pod_collect_to_vec::<u8, i32>(raw)
                        .into_iter()
                        .map(i64::from)
                        .collect(),
                ),
                other => bail!(
                    "{what}: tensor '{name}' has dtype {other:?}; lskbb reads F32, F64, I64 and I32"
                ),
            };
            tensors.insert(name, Entry { shape, data });
        }
        Ok(TensorFile {
            tensors,
            metadata: meta.metadata().clone().unwrap_or_default(),
        })
    }

    /// The f32 tensor `name`, or an error naming the file and tensor.
    pub fn f32(&self, name: &str) -> Result<(&[usize], &[f32])> {
        match self.tensors.get(name) {
            Some(Entry {
                shape,
                data: Data::F32(d),
            }) => Ok((shape, d)),
            Some(_) => bail!("tensor '{name}' is not a float tensor"),
            None => bail!("tensor '{name}' is missing"),
        }
    }

    /// The integer tensor `name`.
    pub fn i64(&self, name: &str) -> Result<(&[usize], &[i64])> {
        match self.tensors.get(name) {
            Some(Entry {
                shape,
                data: Data::I64(d),
            }) => Ok((shape, d)),
            Some(_) => bail!("tensor '{name}' is not an integer tensor"),
            None => bail!("tensor '{name}' is missing"),
        }
    }

    pub fn meta(&self, key: &str) -> Result<&str> {
        self.metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("metadata key '{key}' is missing"))
    }

    /// Writes the file atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let views: Vec<(&String, EntryView)> = self
            .tensors
            .iter()
            .map(|(k, e)| (k, EntryView(e)))
            .collect();
        let meta = if self.metadata.is_empty() {
            None
        } else {
            Some(self.metadata.clone())
        };
        let bytes = safetensors::serialize(views, meta)
            .map_err(|e| anyhow!("serialising {}: {e}", path.display()))?;
        write_atomic(path, &bytes)
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let written = std::fs::write(&tmp, bytes)
        .with_context(|| format!("writing {}", tmp.display()))
        .and_then(|()| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
        });
    if written.is_err() {
        // A full disk leaves no half-written temporary file behind; `path` is untouched.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

struct EntryView<'a>(&'a Entry);

impl View for EntryView<'_> {
    fn dtype(&self) -> Dtype {
        match self.0.data {
            Data::F32(_) => Dtype::F32,
            Data::I64(_) => Dtype::I64,
        }
    }

    fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        match &self.0.data {
            Data::F32(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
            Data::I64(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
        }
    }

    fn data_len(&self) -> usize {
        match &self.0.data {
            Data::F32(v) => 4 * v.len(),
            Data::I64(v) => 8 * v.len(),
        }
    }
}
