//! Datasets for LSKBB training: on-disk loaders (BreaKHis, ChestX-ray, ImageFolder) and a
//! built-in synthetic set, long-tailed training sets, CPU preprocessing, deterministic
//! samplers and a threaded batch loader. See datasets/README.md for the layouts.
//!
//! Typical use:
//! ```no_run
//! # use lskbb::data::*; use std::sync::Arc;
//! # fn main() -> anyhow::Result<()> {
//! let cfg = DataConfig { image_size: 32, imbalance: Some(10.0), ..DataConfig::default() };
//! let ds = Arc::new(Dataset::open(&cfg)?);
//! let uniform = BatchLoader::train(ds.clone(), SamplerKind::Uniform, 16)?;
//! let reversed = BatchLoader::train(ds.clone(), SamplerKind::Reversed, 16)?;
//! for (a, b) in uniform.epoch(0, 0)?.zip(reversed.epoch(0, 0)?) {
//!     let (a, b) = (a?, b?);
//!     // train on a (conventional branch) and b (re-balancing branch)
//! #   let _ = (a, b);
//! }
//! for batch in BatchLoader::eval(ds.clone(), Split::Test, 64)?.epoch(0, 0)? {
//!     let _ = batch?;
//! }
//! # Ok(()) }
//! ```

mod augment;
mod layouts;
mod loader;
mod preprocess;
mod relabel;
pub mod rng;
mod sampler;
mod split;
mod stats;
mod synthetic;

pub use augment::{
    default_augment, default_normalize, legacy_augment, upgrade_saved_data_config, Augment, Draw,
    Normalize, AUGMENT_NAMES,
};
pub use layouts::{
    detect as detect_kind, files_below, image_files, parse_breakhis_name, BreakhisName,
    BREAKHIS_CLASSES, CHEST_CLASSES, EXPECTED_LAYOUTS,
};
pub use loader::{Batch, BatchLoader, EpochIter};
pub use preprocess::{
    decode_image_bytes, file_preprocessor, preprocess_file, Pixels, Preprocessor, IMAGENET_MEAN,
    IMAGENET_STD,
};
pub use rng::Rng;
pub use sampler::{batch_bounds, Sampler, SamplerKind};
pub use split::{class_counts, long_tail_counts, long_tail_counts_capped};
pub use synthetic::synthetic_image;

use crate::tensor_file::write_atomic;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

/// Which dataset layout (and preprocessing pipeline) to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    /// Detect from the layout under `root`; no root means synthetic.
    Auto,
    #[serde(rename = "breakhis")]
    BreaKHis,
    #[serde(rename = "chestxray")]
    ChestXray,
    #[serde(rename = "imagefolder")]
    ImageFolder,
    Synthetic,
}

impl DatasetKind {
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Auto => "auto",
            DatasetKind::BreaKHis => "breakhis",
            DatasetKind::ChestXray => "chestxray",
            DatasetKind::ImageFolder => "imagefolder",
            DatasetKind::Synthetic => "synthetic",
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DatasetKind {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<DatasetKind> {
        Ok(
            match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
                "auto" => DatasetKind::Auto,
                "breakhis" => DatasetKind::BreaKHis,
                "chestxray" | "chest" => DatasetKind::ChestXray,
                "imagefolder" | "folder" => DatasetKind::ImageFolder,
                "synthetic" => DatasetKind::Synthetic,
                _ => bail!(
                "unknown dataset kind '{s}' (auto, breakhis, chestxray, imagefolder, synthetic)"
            ),
            },
        )
    }
}

/// Parses `40`, `100X`, `all`, ... into a BreaKHis magnification filter (None = all).
pub fn parse_magnification(s: &str) -> Result<Option<u32>> {
    let t = s.trim().trim_end_matches(['x', 'X']);
    if t.eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    match t.parse::<u32>() {
        Ok(m) if [40, 100, 200, 400].contains(&m) => Ok(Some(m)),
        _ => bail!("magnification must be 40, 100, 200, 400 or all, got '{s}'"),
    }
}

/// Parses an imbalance factor (a number >= 1) or `none` (keep the training set as is).
pub fn parse_imbalance(s: &str) -> Result<Option<f64>> {
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 1.0 => Ok(Some(v)),
        _ => bail!("imbalance must be a number >= 1 or 'none', got '{s}'"),
    }
}

/// Everything that defines a dataset and its preprocessing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataConfig {
    pub kind: DatasetKind,
    /// Data folder; None with `Auto` means the synthetic set.
    pub root: Option<PathBuf>,
    /// BreaKHis magnification filter (40, 100, 200, 400); None = all.
    pub magnification: Option<u32>,
    /// Balanced test images per class (BreaKHis and synthetic; the paper uses 80).
    pub test_per_class: usize,
    /// Balanced validation images per class (BreaKHis and synthetic); 0 = no validation set.
    pub val_per_class: usize,
    /// When the data has no validation images (no `val/` folder, `val_per_class` 0): the
    /// fraction of each class's training images (after the long tail; at least 1, never a
    /// class's last) carved out for validation. None (checkpoints from before) carves nothing.
    pub val_fraction: Option<f64>,
    /// BreaKHis: keep each patient in only one of train/test/val (see datasets/breakhis.md).
    pub split_by_patient: bool,
    /// Long-tail imbalance factor IF >= 1 for the training set; None keeps it as is
    /// (the synthetic set then uses its built-in IF 10).
    pub imbalance: Option<f64>,
    /// Cap each long-tail target at the class's count instead of failing
    /// (`long_tail_counts_capped`; needed for BreaKHis).
    pub long_tail_cap: bool,
    pub seed: u64,
    /// Final side length S of the square network input (224 in the paper).
    pub image_size: usize,
    /// Channels the model wants (1 or 3).
    pub channels: usize,
    /// Training augmentation; None = the dataset's default ([`default_augment`]).
    pub augment: Option<Augment>,
    /// Input normalisation; None = the dataset's default ([`default_normalize`]).
    pub normalize: Option<Normalize>,
    /// Per-channel mean and std; when set they are used whatever `normalize` says (`dataset`
    /// statistics are stored here when a dataset is opened, so checkpoints keep them).
    pub mean: Option<Vec<f32>>,
    pub std: Option<Vec<f32>>,
    /// Skip (and count) unreadable images instead of failing.
    pub skip_bad_images: bool,
    /// Synthetic set: number of classes and training images per class before the long tail.
    pub synthetic_classes: usize,
    pub synthetic_train_per_class: usize,
    /// Worker threads; None = available cores.
    pub workers: Option<usize>,
    /// Batches prepared ahead of the consumer.
    pub prefetch_batches: usize,
    /// Budget of the decoded-image cache in MiB (images beyond it are decoded every time).
    pub cache_mb: usize,
}

impl Default for DataConfig {
    fn default() -> DataConfig {
        DataConfig {
            kind: DatasetKind::Auto,
            root: None,
            magnification: None,
            test_per_class: 80,
            val_per_class: 0,
            val_fraction: None,
            split_by_patient: false,
            imbalance: None,
            long_tail_cap: false,
            seed: 0,
            image_size: 224,
            channels: 3,
            augment: None,
            normalize: None,
            mean: None,
            std: None,
            skip_bad_images: false,
            synthetic_classes: 4,
            synthetic_train_per_class: 120,
            workers: None,
            prefetch_batches: 3,
            cache_mb: 8192,
        }
    }
}

/// Where an image comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImageSource {
    File(PathBuf),
    Synthetic { class: usize, index: u64 },
}

impl ImageSource {
    /// The file path, or `synthetic:<class>:<index>`.
    pub fn describe(&self) -> String {
        match self {
            ImageSource::File(p) => p.display().to_string(),
            ImageSource::Synthetic { class, index } => format!("synthetic:{class}:{index}"),
        }
    }
}

/// One labelled image.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub source: ImageSource,
    pub label: usize,
    /// Patient / slide id where the dataset has one (BreaKHis `<yy>-<slide>`).
    pub patient: Option<String>,
    /// Magnification where known (BreaKHis).
    pub magnification: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Test,
    Val,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
            Split::Val => "val",
        }
    }
}

/// A resolved dataset: classes, the three sets and the preprocessing pipeline.
pub struct Dataset {
    /// Resolved kind (never `Auto`).
    pub kind: DatasetKind,
    pub config: DataConfig,
    pub classes: Vec<String>,
    pub train: Vec<Sample>,
    pub test: Vec<Sample>,
    pub val: Vec<Sample>,
    /// Per-class training counts before the long-tail subsampling.
    pub original_train_counts: Vec<usize>,
    /// The imbalance factor applied (None: kept as is).
    pub imbalance: Option<f64>,
    /// Human-readable remarks (ignored files, patient-split counts, ...).
    pub notes: Vec<String>,
    pre: Preprocessor,
    skipped: Mutex<BTreeMap<String, String>>,
}

/// "the classes by index: 0 adenosis, 1 fibroadenoma, …" (the first 20), so that an error
/// about class k names it.
fn class_index_names(classes: &[String]) -> String {
    let named: Vec<String> = classes
        .iter()
        .take(20)
        .enumerate()
        .map(|(k, name)| format!("{k} {name}"))
        .collect();
    let more = classes.len().saturating_sub(20);
    let rest = if more > 0 {
        format!(", and {more} more")
    } else {
        String::new()
    };
    format!("the classes by index: {}{rest}", named.join(", "))
}

fn check_nonempty(classes: &[String], samples: &[Sample], split: &str) -> Result<()> {
    if samples.is_empty() {
        return Ok(());
    }
    let counts = class_counts(samples, classes.len());
    let empty: Vec<&str> = classes
        .iter()
        .zip(&counts)
        .filter(|(_, &n)| n == 0)
        .map(|(c, _)| c.as_str())
        .collect();
    if !empty.is_empty() {
        let table: Vec<String> = classes
            .iter()
            .zip(&counts)
            .map(|(c, n)| format!("{c}={n}"))
            .collect();
        bail!(
            "the {split} set has no images of class {} (counts: {})",
            empty.join(", "),
            table.join(", ")
        );
    }
    Ok(())
}

fn synthetic_split(cfg: &DataConfig) -> Result<(Vec<String>, [Vec<Sample>; 3])> {
    let c = cfg.synthetic_classes;
    if c < 2 {
        bail!("the synthetic set needs at least 2 classes, got {c}");
    }
    let n = cfg.synthetic_train_per_class as u64;
    let (t, v) = (cfg.test_per_class as u64, cfg.val_per_class as u64);
    let make = |range: std::ops::Range<u64>| -> Vec<Sample> {
        (0..c)
            .flat_map(|class| {
                range.clone().map(move |index| Sample {
                    source: ImageSource::Synthetic { class, index },
                    label: class,
                    patient: None,
                    magnification: None,
                })
            })
            .collect()
    };
    let classes = (0..c).map(|k| format!("class_{k}")).collect();
    Ok((
        classes,
        [make(0..n), make(n..n + t), make(n + t..n + t + v)],
    ))
}

impl Dataset {
    /// Reads (or generates) the dataset `cfg` describes, splits and long-tails it.
    pub fn open(cfg: &DataConfig) -> Result<Dataset> {
        let kind = match (cfg.kind, &cfg.root) {
            (DatasetKind::Synthetic, _) | (DatasetKind::Auto, None) => DatasetKind::Synthetic,
            (DatasetKind::Auto, Some(root)) => layouts::detect(root)?,
            (kind, None) => bail!("dataset kind {kind} needs a data root"),
            (kind, Some(_)) => kind,
        };
        if cfg.magnification.is_some() && kind != DatasetKind::BreaKHis {
            bail!("the magnification filter applies to BreaKHis only, not {kind}");
        }
        let root = cfg.root.as_deref().unwrap_or(Path::new(""));
        let mut notes = Vec::new();
        let (classes, train, test, val) = match kind {
            DatasetKind::BreaKHis => {
                let classes: Vec<String> = BREAKHIS_CLASSES
                    .iter()
                    .map(|(_, n)| n.to_string())
                    .collect();
                let (all, ignored) = layouts::load_breakhis(root, cfg.magnification)?;
                if ignored > 0 {
                    notes.push(format!(
                        "{ignored} image files under the BreaKHis root have names that are not SOB_<B|M>_<type>-<yy>-<slide>-<mag>-<seq>.png and were ignored"
                    ));
                }
                check_nonempty(&classes, &all, "BreaKHis")?;
                let s = split::balanced_split(
                    all,
                    &classes,
                    cfg.test_per_class,
                    cfg.val_per_class,
                    cfg.split_by_patient,
                    cfg.seed,
                )
                .with_context(|| format!("BreaKHis under {}", root.display()))?;
                notes.extend(s.notes);
                (classes, s.train, s.test, s.val)
            }
            DatasetKind::ChestXray => {
                let (train, test, val) = layouts::load_chest(root)?;
                let classes = CHEST_CLASSES.iter().map(|c| c.to_string()).collect();
                (classes, train, test, val)
            }
            DatasetKind::ImageFolder => {
                let (classes, (train, test, val)) = layouts::load_imagefolder(root)?;
                (classes, train, test, val)
            }
            DatasetKind::Synthetic | DatasetKind::Auto => {
                let (classes, [train, test, val]) = synthetic_split(cfg)?;
                (classes, train, test, val)
            }
        };
        for (set, name) in [(&train, "train"), (&test, "test"), (&val, "val")] {
            check_nonempty(&classes, set, name)?;
        }
        if train.is_empty() || test.is_empty() {
            bail!(
                "{} has {} training and {} test images; both must be non-empty",
                root.display(),
                train.len(),
                test.len()
            );
        }
        let original_train_counts = class_counts(&train, classes.len());
        let imbalance = match (cfg.imbalance, kind) {
            (None, DatasetKind::Synthetic) => Some(10.0),
            (i, _) => i,
        };
        let train = match imbalance {
            Some(factor) => {
                let targets = if cfg.long_tail_cap {
                    long_tail_counts_capped(&original_train_counts, factor)
                } else {
                    long_tail_counts(&original_train_counts, factor)
                }
                .map_err(|e| anyhow!("{e:#} ({})", class_index_names(&classes)))?;
                let (max, min) = (
                    targets.iter().copied().max().unwrap_or(0),
                    targets.iter().copied().min().unwrap_or(0),
                );
                notes.push(format!(
                    "long tail IF {factor}: training counts {targets:?} (n_max/n_min = {:.2})",
                    max as f64 / min.max(1) as f64
                ));
                split::subsample(train, &targets, cfg.seed)
            }
            None => train,
        };
        let (train, val) = match cfg.val_fraction {
            Some(f) if f > 0.0 && val.is_empty() => {
                let (train, val) = split::carve_validation(train, classes.len(), f, cfg.seed);
                notes.push(format!(
                    "no validation images in the data: {} carved from train ({}% of each class, at least 1, never a class's last), validation counts {:?}",
                    val.len(),
                    100.0 * f,
                    class_counts(&val, classes.len())
                ));
                (train, val)
            }
            _ => (train, val),
        };
        let pre = Preprocessor::new(kind, cfg, classes.len())?;
        let mut config = cfg.clone();
        config.kind = kind;
        config.augment = Some(pre.augment());
        config.normalize = Some(pre.normalize());
        let mut ds = Dataset {
            kind,
            config,
            classes,
            train,
            test,
            val,
            original_train_counts,
            imbalance,
            notes,
            pre,
            skipped: Mutex::new(BTreeMap::new()),
        };
        if ds.pre.normalize() == Normalize::Dataset && cfg.mean.is_none() {
            let (mean, std) = stats::training_statistics(&ds)?;
            ds.pre.set_statistics(mean.clone(), std.clone())?;
            ds.config.mean = Some(mean);
            ds.config.std = Some(std);
        }
        Ok(ds)
    }

    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    pub fn split(&self, split: Split) -> &[Sample] {
        match split {
            Split::Train => &self.train,
            Split::Test => &self.test,
            Split::Val => &self.val,
        }
    }

    /// Per-class image counts of a set.
    pub fn counts(&self, split: Split) -> Vec<usize> {
        class_counts(self.split(split), self.classes.len())
    }

    /// Per-class training counts (for the reversed sampler and class-balanced loss weights).
    pub fn train_counts(&self) -> Vec<usize> {
        self.counts(Split::Train)
    }

    pub fn preprocessor(&self) -> &Preprocessor {
        &self.pre
    }

    /// [C, S, S] of one preprocessed image.
    pub fn image_shape(&self) -> [usize; 3] {
        [self.pre.channels(), self.pre.size(), self.pre.size()]
    }

    /// Preprocesses one sample of a set the evaluation way (centre window, no augmentation).
    pub fn eval_image(&self, split: Split, index: usize) -> Result<Vec<f32>> {
        let Some(s) = self.split(split).get(index) else {
            bail!(
                "{} set has {} images, no index {index}",
                split.name(),
                self.split(split).len()
            );
        };
        let mut out = vec![0.0; self.pre.image_len()];
        self.pre.prepare(&s.source, None, &mut out)?;
        Ok(out)
    }

    /// Preprocesses an image file the way evaluation images of this dataset are.
    pub fn preprocess_file(&self, path: &Path) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.pre.image_len()];
        self.pre
            .prepare(&ImageSource::File(path.to_path_buf()), None, &mut out)?;
        Ok(out)
    }

    pub(crate) fn record_skipped(&self, what: String, err: &anyhow::Error) {
        if let Ok(mut m) = self.skipped.lock() {
            m.entry(what).or_insert_with(|| format!("{err:#}"));
        }
    }

    /// Distinct images skipped as unreadable so far (with `skip_bad_images`), with the errors.
    pub fn skipped_images(&self) -> Vec<(String, String)> {
        self.skipped
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// The content of `split.json`: kind, root, classes, options, per-class counts and the
    /// file lists of the three sets.
    pub fn split_json(&self) -> Value {
        let list = |set: &[Sample]| -> Vec<Value> {
            set.iter()
                .map(|s| {
                    let mut v = json!({
                        "file": s.source.describe(),
                        "label": s.label,
                        "class": self.classes[s.label],
                    });
                    if let Some(p) = &s.patient {
                        v["patient"] = json!(p);
                    }
                    if let Some(m) = s.magnification {
                        v["magnification"] = json!(m);
                    }
                    v
                })
                .collect()
        };
        json!({
            "kind": self.kind.name(),
            "root": self.config.root.as_ref().map(|r| r.display().to_string()),
            "classes": self.classes,
            "seed": self.config.seed,
            "imbalance": self.imbalance,
            "long_tail_cap": self.config.long_tail_cap,
            "magnification": self.config.magnification,
            "split_by_patient": self.config.split_by_patient,
            "image_size": self.config.image_size,
            "channels": self.config.channels,
            "preprocessing": self.pre.describe(),
            "counts": {
                "train": self.counts(Split::Train),
                "train_before_long_tail": self.original_train_counts,
                "test": self.counts(Split::Test),
                "val": self.counts(Split::Val),
            },
            "notes": self.notes,
            "train": list(&self.train),
            "test": list(&self.test),
            "val": list(&self.val),
        })
    }

    /// Writes `split_json()` to `path` atomically.
    pub fn write_split_json(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.split_json())?;
        write_atomic(path, &bytes)
    }
}
