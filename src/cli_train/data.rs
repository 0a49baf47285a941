//! The data flags of `train`, `eval` and `predict` (each takes the groups that apply to it),
//! and the data config an `eval` or `predict` of a checkpoint uses.

use anyhow::{Context, Result};
use clap::builder::TypedValueParser;
use clap::{Args, ValueEnum};
use lskbb::data::{
    detect_kind, legacy_augment, parse_magnification, Augment, DataConfig, DatasetKind, Normalize,
};
use lskbb::tensor_file::TensorFile;
use lskbb::train::run::saved_config;
use std::path::{Path, PathBuf};

use super::UsageError;

fn parse_augment(s: &str) -> Result<Augment, String> {
    s.parse().map_err(|e| format!("{e}"))
}

/// `--normalize`.
#[derive(Clone, Copy, ValueEnum)]
pub(super) enum NormalizeArg {
    Imagenet,
    Dataset,
    None,
}

impl From<NormalizeArg> for Normalize {
    fn from(n: NormalizeArg) -> Normalize {
        match n {
            NormalizeArg::Imagenet => Normalize::Imagenet,
            NormalizeArg::Dataset => Normalize::Dataset,
            NormalizeArg::None => Normalize::None,
        }
    }
}

/// Where the images are and how they are split (train and eval; an `lskbb train` checkpoint
/// stores all but the folder).
#[derive(Args, Clone)]
pub struct SourceArgs {
    /// Data folder (BreaKHis, ChestX-ray or ImageFolder layout); none = the built-in synthetic set.
    #[arg(long, value_name = "ROOT")]
    pub(super) data: Option<PathBuf>,
    /// BreaKHis magnification: 40, 100, 200, 400 or all (default all).
    #[arg(long)]
    magnification: Option<String>,
    /// Balanced test images per class (BreaKHis and synthetic; default 80, the paper's).
    #[arg(long)]
    test_per_class: Option<usize>,
    /// Balanced validation images per class (BreaKHis and synthetic; default 80 for BreaKHis,
    /// the paper's split, else 0: train then carves --val-fraction of train for validation).
    #[arg(long)]
    val_per_class: Option<usize>,
    /// BreaKHis: keep every patient in one set only.
    #[arg(long)]
    split_by_patient: bool,
    /// Synthetic set: number of classes (default 4).
    #[arg(long)]
    synthetic_classes: Option<usize>,
    /// Synthetic set: training images per class before the long tail (IF 10 by default;
    /// default 120).
    #[arg(long)]
    synthetic_per_class: Option<usize>,
}

/// How images become network inputs (train; eval and predict of a checkpoint that does not
/// store them).
#[derive(Args, Clone)]
pub struct PipelineArgs {
    /// auto, folder, breakhis, chestxray or synthetic (default auto: the layout under --data,
    /// or the ImageFolder pipeline without one).
    #[arg(long)]
    dataset: Option<DatasetKind>,
    /// Network input side S, 8 to 2048 (default 224; 32 for the synthetic set).
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u32).range(8..=2048).map(|v| v as usize))]
    pub(super) image_size: Option<usize>,
    /// Training augmentation, a comma list of crop (random SxS window of a larger image),
    /// flip (left-right, p 1/2), vflip (top-bottom, p 1/2), rot90 (0-3 quarter turns) and
    /// color (brightness and contrast x U[0.8, 1.2]), or none. Default: crop for BreaKHis
    /// (the paper's), none for the others. eval and predict of a checkpoint from `lskbb
    /// train` use its own; evaluation never augments (centre window where training cropped).
    #[arg(long, value_name = "LIST", value_parser = parse_augment)]
    augment: Option<Augment>,
    /// Input normalisation: dataset (per-channel mean and std of the training split, stored
    /// in the checkpoint; the default), imagenet or none.
    #[arg(long, value_enum)]
    normalize: Option<NormalizeArg>,
}

/// How images are read (train and eval).
#[derive(Args, Clone)]
pub struct LoadArgs {
    /// Skip unreadable images (counted in summary.json) instead of stopping.
    #[arg(long)]
    pub(super) skip_bad_images: bool,
    /// CPU threads decoding and augmenting images (default: all cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Memory budget of the decoded-image cache, MiB.
    #[arg(long, default_value_t = 8192)]
    cache_mb: usize,
}

/// The data flags of `train`.
#[derive(Args, Clone)]
pub struct DataArgs {
    #[command(flatten)]
    pub(super) source: SourceArgs,
    #[command(flatten)]
    pub(super) pipeline: PipelineArgs,
    /// Input channels of the model: 3 (grey images are replicated) or 1.
    #[arg(long, default_value_t = 3, value_parser = one_or_three)]
    channels: usize,
    #[command(flatten)]
    pub(super) load: LoadArgs,
}

fn one_or_three(s: &str) -> Result<usize, String> {
    match s.trim() {
        "1" => Ok(1),
        "3" => Ok(3),
        _ => Err(format!("'{s}' is not 1 or 3")),
    }
}

/// The names of the flags that were given, of `(flag, given)` pairs.
fn given(flags: &[(&'static str, bool)]) -> Vec<&'static str> {
    flags.iter().filter(|(_, g)| *g).map(|(f, _)| *f).collect()
}

impl SourceArgs {
    /// The flags that can be checked before the data is read (`--magnification`).
    pub(super) fn check(&self) -> Result<()> {
        parse_magnification(self.magnification.as_deref().unwrap_or("all"))
            .context("--magnification")
            .map(drop)
    }

    /// The flags given besides --data (which a stored split decides).
    pub(super) fn split_flags_given(&self) -> Vec<&'static str> {
        given(&[
            ("--magnification", self.magnification.is_some()),
            ("--test-per-class", self.test_per_class.is_some()),
            ("--val-per-class", self.val_per_class.is_some()),
            ("--split-by-patient", self.split_by_patient),
            ("--synthetic-classes", self.synthetic_classes.is_some()),
            ("--synthetic-per-class", self.synthetic_per_class.is_some()),
        ])
    }
}

impl PipelineArgs {
    /// The flags given (which a stored pipeline decides).
    pub(super) fn given(&self) -> Vec<&'static str> {
        given(&[
            ("--dataset", self.dataset.is_some()),
            ("--image-size", self.image_size.is_some()),
            ("--augment", self.augment.is_some()),
            ("--normalize", self.normalize.is_some()),
        ])
    }
}

impl DataArgs {
    pub(super) fn config(&self, seed: u64) -> Result<DataConfig> {
        data_config(
            &self.source,
            &self.pipeline,
            &self.load,
            self.channels,
            seed,
        )
    }
}

/// The data config the flags describe.
pub(super) fn data_config(
    source: &SourceArgs,
    pipeline: &PipelineArgs,
    load: &LoadArgs,
    channels: usize,
    seed: u64,
) -> Result<DataConfig> {
    let kind = pipeline.dataset.unwrap_or(DatasetKind::Auto);
    let synthetic = source.data.is_none() || kind == DatasetKind::Synthetic;
    // Absolute, so that a checkpoint resumes or evaluates from any working directory.
    let root = source
        .data
        .as_ref()
        .map(|d| {
            std::fs::canonicalize(d)
                .with_context(|| format!("--data {}: no such folder", d.display()))
        })
        .transpose()?;
    // BreaKHis defaults to the paper's split: 80 validation images per class.
    let val_per_class = match source.val_per_class {
        Some(n) => n,
        None => {
            let breakhis = match (kind, &root) {
                (DatasetKind::BreaKHis, _) => true,
                (DatasetKind::Auto, Some(r)) => {
                    detect_kind(r).is_ok_and(|k| k == DatasetKind::BreaKHis)
                }
                _ => false,
            };
            if breakhis {
                80
            } else {
                0
            }
        }
    };
    let defaults = DataConfig::default();
    Ok(DataConfig {
        kind,
        root,
        magnification: parse_magnification(source.magnification.as_deref().unwrap_or("all"))
            .context("--magnification")?,
        test_per_class: source.test_per_class.unwrap_or(defaults.test_per_class),
        val_per_class,
        split_by_patient: source.split_by_patient,
        seed,
        image_size: pipeline
            .image_size
            .unwrap_or(if synthetic { 32 } else { 224 }),
        channels,
        augment: pipeline.augment,
        normalize: pipeline.normalize.map(Normalize::from),
        skip_bad_images: load.skip_bad_images,
        workers: load.workers,
        cache_mb: load.cache_mb,
        synthetic_classes: source
            .synthetic_classes
            .unwrap_or(defaults.synthetic_classes),
        synthetic_train_per_class: source
            .synthetic_per_class
            .unwrap_or(defaults.synthetic_train_per_class),
        ..defaults
    })
}

/// A usage error naming the `flags` given to `command` (eval or predict) of the checkpoint at
/// `path`, which stores `what` they would set.
fn refuse_stored(command: &str, path: &Path, what: &str, flags: &[&str]) -> Result<()> {
    if flags.is_empty() {
        return Ok(());
    }
    let (verb, them) = if flags.len() == 1 {
        ("does", "it")
    } else {
        ("do", "them")
    };
    Err(UsageError(format!(
        "{} {verb} not apply to {command} of {}: it was written by `lskbb train` and stores \
         {what} it was trained with, which {command} uses; leave {them} out",
        flags.join(", "),
        path.display()
    ))
    .into())
}

/// A checkpoint from elsewhere (a PyTorch state_dict) gets the model's input channels and the
/// pipeline this program had before it had choices (crop geometry, ImageNet statistics)
/// unless the flags say otherwise.
fn foreign(mut d: DataConfig, in_ch: usize) -> Result<DataConfig> {
    d.channels = in_ch;
    if d.augment.is_none() {
        let kind = match (d.kind, &d.root) {
            (DatasetKind::Auto, Some(root)) => detect_kind(root)?,
            (DatasetKind::Auto, None) => DatasetKind::ImageFolder,
            (k, _) => k,
        };
        d.augment = Some(legacy_augment(kind));
    }
    d.normalize = d.normalize.or(Some(Normalize::Imagenet));
    Ok(d)
}

/// The data config `eval` of the checkpoint `ckpt` (at `path`) uses: the one it was trained
/// with, on the command line's data folder (the data may have moved), or for a checkpoint
/// from elsewhere the flags'. Flags that a stored config decides are a usage error.
pub(super) fn eval_data(
    ckpt: &TensorFile,
    path: &Path,
    source: &SourceArgs,
    pipeline: &PipelineArgs,
    load: &LoadArgs,
    in_ch: usize,
) -> Result<DataConfig> {
    let Some(cfg) = saved_config(ckpt, path)? else {
        return foreign(data_config(source, pipeline, load, in_ch, 0)?, in_ch);
    };
    let given = [source.split_flags_given(), pipeline.given()].concat();
    refuse_stored(
        "eval",
        path,
        "the dataset kind, split and preprocessing",
        &given,
    )?;
    let mut d = cfg.data;
    if let Some(root) = &source.data {
        if d.kind == DatasetKind::Synthetic {
            return Err(UsageError(format!(
                "--data does not apply to eval of {}: it was trained on the built-in synthetic \
                 set, which eval generates again; leave it out",
                path.display()
            ))
            .into());
        }
        d.root = Some(root.clone());
    }
    d.skip_bad_images |= load.skip_bad_images;
    d.workers = load.workers.or(d.workers);
    d.cache_mb = load.cache_mb;
    Ok(d)
}

/// The data config `predict` of the checkpoint `ckpt` (at `path`) uses: the preprocessing it
/// was trained with, or for a checkpoint from elsewhere the flags'. Flags that a stored
/// config decides are a usage error.
pub(super) fn predict_data(
    ckpt: &TensorFile,
    path: &Path,
    pipeline: &PipelineArgs,
    skip_bad_images: bool,
    in_ch: usize,
) -> Result<DataConfig> {
    let mut d = match saved_config(ckpt, path)? {
        Some(cfg) => {
            refuse_stored("predict", path, "the preprocessing", &pipeline.given())?;
            cfg.data
        }
        None => {
            let kind = pipeline.dataset.unwrap_or(DatasetKind::Auto);
            let synthetic = kind == DatasetKind::Synthetic;
            foreign(
                DataConfig {
                    kind,
                    image_size: pipeline
                        .image_size
                        .unwrap_or(if synthetic { 32 } else { 224 }),
                    augment: pipeline.augment,
                    normalize: pipeline.normalize.map(Normalize::from),
                    ..DataConfig::default()
                },
                in_ch,
            )?
        }
    };
    // Prediction needs no data root: the saved kind fixes the preprocessing (without a
    // kind, the generic ImageFolder pipeline).
    d.root = None;
    d.skip_bad_images = skip_bad_images;
    Ok(d)
}
