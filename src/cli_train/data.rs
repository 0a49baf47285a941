//! The data flags shared by `train`, `eval` and `predict`, and the data config an `eval` or
//! `predict` of a checkpoint uses.

use anyhow::{Context, Result};
use clap::builder::TypedValueParser;
use clap::{Args, ValueEnum};
use lskbb::data::{
    detect_kind, legacy_augment, parse_magnification, Augment, DataConfig, DatasetKind, Normalize,
};
use lskbb::train::run::saved_config;
use std::path::{Path, PathBuf};

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

/// Which images to read and how to prepare them (shared by train and eval).
#[derive(Args, Clone)]
pub struct DataArgs {
    /// Data folder (BreaKHis, ChestX-ray or ImageFolder layout); none = the built-in synthetic set.
    #[arg(long, value_name = "ROOT")]
    data: Option<PathBuf>,
    /// auto, folder, breakhis, chestxray or synthetic.
    #[arg(long, default_value = "auto")]
    dataset: DatasetKind,
    /// Network input side S, 8 to 2048 (default 224; 32 for the synthetic set).
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u32).range(8..=2048).map(|v| v as usize))]
    pub(super) image_size: Option<usize>,
    /// Input channels of the model: 3 (grey images are replicated) or 1.
    #[arg(long, default_value_t = 3)]
    channels: usize,
    /// BreaKHis magnification: 40, 100, 200, 400 or all.
    #[arg(long, default_value = "all")]
    magnification: String,
    /// Balanced test images per class (BreaKHis and synthetic; the paper uses 80).
    #[arg(long, default_value_t = 80)]
    test_per_class: usize,
    /// Balanced validation images per class (BreaKHis and synthetic; default 80 for BreaKHis,
    /// the paper's split, else 0: train then carves --val-fraction of train for validation).
    #[arg(long)]
    val_per_class: Option<usize>,
    /// BreaKHis: keep every patient in one set only.
    #[arg(long)]
    split_by_patient: bool,
    /// Skip unreadable images (counted in summary.json) instead of stopping.
    #[arg(long)]
    pub(super) skip_bad_images: bool,
    /// Synthetic set: number of classes.
    #[arg(long, default_value_t = 4)]
    synthetic_classes: usize,
    /// Synthetic set: training images per class before the long tail (IF 10 by default).
    #[arg(long, default_value_t = 120)]
    synthetic_per_class: usize,
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
    /// CPU threads decoding and augmenting images (default: all cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Memory budget of the decoded-image cache, MiB.
    #[arg(long, default_value_t = 8192)]
    cache_mb: usize,
}

impl DataArgs {
    pub(super) fn config(&self, seed: u64) -> Result<DataConfig> {
        let synthetic = self.data.is_none() || self.dataset == DatasetKind::Synthetic;
        // Absolute, so that a checkpoint resumes or evaluates from any working directory.
        let root = self
            .data
            .as_ref()
            .map(|d| {
                std::fs::canonicalize(d)
                    .with_context(|| format!("--data {}: no such folder", d.display()))
            })
            .transpose()?;
        // BreaKHis defaults to the paper's split: 80 validation images per class.
        let val_per_class = match self.val_per_class {
            Some(n) => n,
            None => {
                let breakhis = match (self.dataset, &root) {
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
        Ok(DataConfig {
            kind: self.dataset,
            root,
            magnification: parse_magnification(&self.magnification).context("--magnification")?,
            test_per_class: self.test_per_class,
            val_per_class,
            split_by_patient: self.split_by_patient,
            seed,
            image_size: self.image_size.unwrap_or(if synthetic { 32 } else { 224 }),
            channels: self.channels,
            augment: self.augment,
            normalize: self.normalize.map(Normalize::from),
            skip_bad_images: self.skip_bad_images,
            workers: self.workers,
            cache_mb: self.cache_mb,
            synthetic_classes: self.synthetic_classes,
            synthetic_train_per_class: self.synthetic_per_class,
            ..DataConfig::default()
        })
    }
}

/// The data config a checkpoint was trained with, with the command line's data root (the
/// data may have moved); a checkpoint from elsewhere takes the command line's settings.
pub(super) fn checkpoint_data(
    ckpt: &lskbb::tensor_file::TensorFile,
    path: &Path,
    args: &DataArgs,
    in_ch: usize,
) -> Result<DataConfig> {
    Ok(match saved_config(ckpt, path)? {
        Some(cfg) => {
            let mut d = cfg.data;
            if args.data.is_some() {
                d.root = args.data.clone();
            }
            if args.skip_bad_images {
                d.skip_bad_images = true;
            }
            if args.workers.is_some() {
                d.workers = args.workers;
            }
            d
        }
        None => {
            // Not from `lskbb train`: the pipeline this program had before it had choices
            // (crop geometry, ImageNet statistics) unless the flags say otherwise.
            let mut d = args.config(0)?;
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
            d
        }
    })
}
