//! MiSLAS's two stages in one run (Zhong et al., "Improving Calibration for Long-Tailed
//! Recognition", CVPR 2021; their code github.com/dvlab-research/MiSLAS, `train_stage1.py` and
//! `train_stage2.py`). Stage one trains the whole network with mixup; stage two, the last
//! `stage2_epochs` of the run, retrains the classifier alone with label-aware smoothing on
//! class-balanced batches, the backbone's batch norms collecting the running statistics of
//! those batches (their `shift_bn`) while its weights stay as stage one left them.
//!
//! Every random draw of mixup is a function of (seed, epoch, batch), so a resumed run mixes
//! as the uninterrupted one would; the stage of an epoch follows from its number, so a run
//! resumed in stage two continues stage two.

use super::choices::{drw_epoch, Reweight};
use super::run::TrainConfig;
use super::step::{Mix, Phase};
use crate::data::{BatchLoader, Dataset, Rng, SamplerKind};
use crate::ops::loss::LasShape;
use crate::optim::Sgd;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// MiSLAS's stage-two smoothing of the most and least frequent class, and its classifier's
/// learning-rate factor: their CIFAR-100-LT (imbalance 100) stage-two config
/// (`config/cifar100/cifar100_imb001_stage2_mislas.yaml`: smooth_head 0.4, smooth_tail 0.1,
/// lr_factor 0.2, shift_bn True, 10 epochs); BASELINES.md says why that config.
pub const SMOOTH_HEAD: f64 = 0.4;
pub const SMOOTH_TAIL: f64 = 0.1;
pub const LR_FACTOR: f32 = 0.2;
/// Stage one's mixup α (their CIFAR stage-one configs: `alpha: 1.0`).
pub const MIXUP_ALPHA: f64 = 1.0;
/// Their stage lengths: 200 epochs of stage one, then 10 of stage two.
pub const STAGE1_EPOCHS: usize = 200;
pub const STAGE2_EPOCHS: usize = 10;

/// The settings of a MiSLAS run (`--loss mislas`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mislas {
    /// Stage one's mixup: λ ~ Beta(α, α) per batch; 0 trains stage one without mixup.
    pub mixup_alpha: f64,
    /// The last epochs of the run, which retrain the classifier.
    pub stage2_epochs: usize,
    /// Label-aware smoothing ε of the most and least frequent class, and its shape between.
    pub smooth_head: f64,
    pub smooth_tail: f64,
    pub shape: LasShape,
    /// Stage two's classifier learning rate: this factor times a cosine decay from the base
    /// rate to 0 over stage two (their `adjust_learning_rate` of `train_stage2.py`).
    pub lr_factor: f32,
    /// Stage two's batch norms in training mode, their running statistics following the
    /// class-balanced batches (their `shift_bn`).
    pub shift_bn: bool,
}

/// Stage two's length in a run of `epochs`: their 10 of 210 as the same fraction, rounded,
/// at least 1 and leaving stage one at least 1.
pub fn default_stage2_epochs(epochs: usize) -> usize {
    let share = epochs * STAGE2_EPOCHS;
    let whole = STAGE1_EPOCHS + STAGE2_EPOCHS;
    ((share + whole / 2) / whole).clamp(1, epochs.saturating_sub(1).max(1))
}

impl Mislas {
    /// MiSLAS's settings for a run of `epochs` (see the constants above).
    pub fn paper(epochs: usize) -> Mislas {
        Mislas {
            mixup_alpha: MIXUP_ALPHA,
            stage2_epochs: default_stage2_epochs(epochs),
            smooth_head: SMOOTH_HEAD,
            smooth_tail: SMOOTH_TAIL,
            shape: LasShape::Concave,
            lr_factor: LR_FACTOR,
            shift_bn: true,
        }
    }

    /// The first epoch (0-based) of stage two.
    pub fn stage2_start(&self, epochs: usize) -> usize {
        epochs - self.stage2_epochs
    }
}

/// Whether `epoch` (0-based) retrains the classifier: a MiSLAS run's stage two.
pub fn in_stage2(cfg: &TrainConfig, epoch: usize) -> bool {
    cfg.mislas
        .as_ref()
        .is_some_and(|m| epoch >= m.stage2_start(cfg.epochs))
}

/// The learning rate of `epoch`: the run's schedule (stage one's, over its epochs), and in
/// stage two lr_factor · base · ½(1 + cos(π·e/E₂)), e counting stage two's epochs from 0.
pub fn lr(cfg: &TrainConfig, epoch: usize) -> f32 {
    match &cfg.mislas {
        Some(m) if in_stage2(cfg, epoch) => {
            let e = (epoch - m.stage2_start(cfg.epochs)) as f32;
            let t = e / m.stage2_epochs as f32;
            m.lr_factor * cfg.schedule.base() * 0.5 * (1.0 + (std::f32::consts::PI * t).cos())
        }
        _ => cfg.schedule.lr(epoch),
    }
}

/// Stage two's loader: class-balanced batches (their `ClassAwareSampler` loader), as many per
/// epoch as stage one's; None for a run without stages.
pub fn stage2_loader(cfg: &TrainConfig, ds: &Arc<Dataset>) -> Result<Option<BatchLoader>> {
    cfg.mislas
        .as_ref()
        .map(|_| BatchLoader::train(ds.clone(), SamplerKind::ClassBalanced, cfg.batch_size))
        .transpose()
}

/// What changes as `epoch` begins (at its first batch): DRW's class weights come on, or
/// MiSLAS's stage two starts with a fresh optimizer (their `train_stage2.py` builds a new SGD
/// over the classifier: momentum from zero).
pub fn begin_epoch(cfg: &TrainConfig, epoch: usize, opt: &Sgd) -> Result<()> {
    if cfg.choices.reweight == Reweight::Drw && epoch == drw_epoch(cfg.epochs) {
        println!(
            "epoch {}: deferred re-weighting starts (class-balanced weights, β = {})",
            epoch + 1,
            cfg.cb_beta
        );
    }
    if let Some(m) = &cfg.mislas {
        if epoch == m.stage2_start(cfg.epochs) {
            opt.reset_momentum()?;
            println!(
                "epoch {}: MiSLAS stage two: the classifier alone retrains for {} epoch(s) on \
                 class-balanced batches with label-aware smoothing (ε {} to {}){}",
                epoch + 1,
                m.stage2_epochs,
                m.smooth_head,
                m.smooth_tail,
                if m.shift_bn {
                    ", batch-norm statistics shifting to them"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

/// How the step of `batch` of `epoch` trains, for a batch of `n` images.
pub fn phase(cfg: &TrainConfig, epoch: usize, batch: usize, n: usize) -> Phase {
    let Some(m) = &cfg.mislas else {
        return Phase::Joint;
    };
    if in_stage2(cfg, epoch) {
        return Phase::Classifier {
            shift_bn: m.shift_bn,
        };
    }
    if m.mixup_alpha <= 0.0 {
        return Phase::Joint;
    }
    // Their `mixup_data`: λ ~ Beta(α, α), then a random permutation of the batch.
    let mut rng = Rng::from_parts(&[cfg.seed, 0x4D49_5855, epoch as u64, batch as u64]);
    let lambda = beta(&mut rng, m.mixup_alpha) as f32;
    let mut perm: Vec<u32> = (0..n as u32).collect();
    rng.shuffle(&mut perm);
    Phase::Mixup(Mix { lambda, perm })
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut Rng) -> f64 {
    let u = 1.0 - rng.next_f64(); // in (0, 1]
    let v = rng.next_f64();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// A Gamma(a, 1) draw, a > 0: Marsaglia and Tsang (2000) for a >= 1, and for a < 1 their
/// boost Gamma(a + 1)·U^(1/a).
fn gamma(rng: &mut Rng, a: f64) -> f64 {
    if a < 1.0 {
        let u = 1.0 - rng.next_f64();
        return gamma(rng, a + 1.0) * u.powf(1.0 / a);
    }
    let d = a - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = 1.0 - rng.next_f64();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A Beta(a, a) draw as X/(X + Y) of two Gamma(a, 1) draws (NumPy's `beta` for these).
fn beta(rng: &mut Rng, a: f64) -> f64 {
    let x = gamma(rng, a);
    let y = gamma(rng, a);
    if x + y > 0.0 {
        x / (x + y)
    } else {
        0.5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Beta(a, a) has mean 1/2 and variance 1/(4(2a + 1)); 20000 draws put the sample mean
    /// within 5 standard errors (≈ 5·0.29/141 = 0.01) and the variance within 10%.
    #[test]
    fn beta_draws_have_the_beta_moments() {
        for a in [0.2, 1.0, 4.0] {
            let mut rng = Rng::new(7);
            let n = 20_000;
            let v: Vec<f64> = (0..n).map(|_| beta(&mut rng, a)).collect();
            assert!(v.iter().all(|x| (0.0..=1.0).contains(x)), "a = {a}");
            let mean = v.iter().sum::<f64>() / n as f64;
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
            let want = 1.0 / (4.0 * (2.0 * a + 1.0));
            assert!((mean - 0.5).abs() < 0.01, "a = {a}: mean {mean}");
            assert!(
                (var / want - 1.0).abs() < 0.1,
                "a = {a}: var {var} vs {want}"
            );
        }
    }

    #[test]
    fn stage_two_is_their_share_of_the_run() {
        assert_eq!(default_stage2_epochs(210), 10);
        assert_eq!(default_stage2_epochs(200), 10);
        assert_eq!(default_stage2_epochs(50), 2);
        assert_eq!(default_stage2_epochs(10), 1);
        assert_eq!(default_stage2_epochs(2), 1);
        assert_eq!(default_stage2_epochs(1), 1);
    }
}
