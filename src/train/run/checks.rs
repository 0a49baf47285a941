//! Checks before a run starts: the settings are usable and a resumed run's images are the
//! ones it started with.

use super::{last_path, Run, TrainConfig};
use crate::train::choices::{Branches, Loss};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// A resumed run must train and test on the images it started with: the image lists of its
/// saved split.json against the dataset as it reads now (a run from before split.json was
/// written has nothing to compare).
pub(super) fn same_images(saved: &Path, now: &serde_json::Value) -> Result<()> {
    let Ok(bytes) = std::fs::read(saved) else {
        return Ok(());
    };
    let before: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not the JSON lskbb wrote", saved.display()))?;
    for set in ["train", "test", "val"] {
        if before.get(set) != now.get(set) {
            bail!(
                "the {set} images differ from the ones this run started with ({}): the data \
                 changed since; restore it to resume, or start a new run with another --out",
                saved.display()
            );
        }
    }
    Ok(())
}

pub(super) fn validate(cfg: &TrainConfig) -> Result<()> {
    if cfg.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    if cfg.batch_size < 2 {
        bail!(
            "--batch-size must be at least 2 (batch norm needs two images), got {}",
            cfg.batch_size
        );
    }
    if cfg.schedule.lr(0).is_nan() || cfg.schedule.lr(0) <= 0.0 {
        bail!("--lr must be positive");
    }
    let mislas_loss = cfg.choices.loss == Loss::Mislas;
    match &cfg.mislas {
        Some(_) if !mislas_loss => bail!("MiSLAS's stages are set for a run whose loss is not mislas"),
        None if mislas_loss => bail!("--loss mislas needs MiSLAS's stage settings"),
        Some(_) if cfg.choices.branches != Branches::Single => bail!(
            "--loss mislas takes --branches single: MiSLAS mixes and retrains one branch"
        ),
        Some(m) if m.stage2_epochs == 0 || m.stage2_epochs >= cfg.epochs => bail!(
            "--stage2-epochs must be at least 1 and leave stage one an epoch of --epochs {}, got {}",
            cfg.epochs,
            m.stage2_epochs
        ),
        _ => {}
    }
    let min = cfg.choices.backbone.min_image_size();
    if cfg.data.image_size < min {
        bail!(
            "--image-size must be at least {min} for --backbone {}, got {}",
            cfg.choices.backbone.name(),
            cfg.data.image_size
        );
    }
    Ok(())
}

impl Run<'_> {
    pub(super) fn check_finite(&self, loss_sum: f64) -> Result<()> {
        if loss_sum.is_finite() {
            return Ok(());
        }
        let last = last_path(&self.opts.out);
        let kept = if last.exists() {
            format!(
                "the last good checkpoint {} (after epoch {}) is intact",
                last.display(),
                self.state.epoch
            )
        } else {
            "no checkpoint had been written yet".to_string()
        };
        bail!(
            "the training loss became non-finite ({loss_sum}) in epoch {} by batch {}; training stopped and {kept}. Try a lower --lr.",
            self.state.epoch + 1,
            self.state.next_batch
        )
    }
}
