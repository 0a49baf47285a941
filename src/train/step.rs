//! One training step on the GPU: both branches forward, the bilateral loss, backward and the
//! fused SGD update, recorded without any readback (statistics stay on the GPU). A MiSLAS run
//! (`super::stages`) mixes its batches in stage one and trains the classifier alone in stage
//! two.

use super::choices::{Choices, LossSettings};
use crate::autograd::{backward, Var};
use crate::model::Network;
use crate::ops::elementwise::{add, scale};
use crate::ops::loss::loss;
use crate::ops::metrics::RunningStats;
use crate::ops::mixup::mixup;
use crate::ops::sgd::SgdConfig;
use crate::optim::Sgd;
use crate::tensor::Tensor;
use anyhow::{bail, Result};

/// A batch as uploaded: images [B, C, H, W] and labels.
pub struct HostBatch<'a> {
    pub x: &'a [f32],
    pub y: &'a [u32],
    pub shape: [usize; 4],
}

impl HostBatch<'_> {
    fn upload(&self, gpu: &std::sync::Arc<crate::Gpu>, classes: usize) -> Result<(Var, Tensor)> {
        if self.shape[0] < 2 {
            bail!(
                "a training batch needs at least 2 images (batch norm), got {}",
                self.shape[0]
            );
        }
        if let Some(&bad) = self.y.iter().find(|&&l| l as usize >= classes) {
            bail!("label {bad} is outside the model's {classes} classes");
        }
        let x = Var::constant(Tensor::from_f32(gpu, self.x, &self.shape)?);
        let y = Tensor::from_u32(gpu, self.y, &[self.y.len()])?;
        Ok((x, y))
    }
}

/// One batch's mixup (Zhang et al. 2018, as MiSLAS's `mixup_data`): λ and the permutation
/// whose images and labels are mixed in with weight 1 − λ.
#[derive(Clone, Debug, PartialEq)]
pub struct Mix {
    pub lambda: f32,
    pub perm: Vec<u32>,
}

/// What a step trains.
#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    /// Every parameter on the batch as drawn.
    Joint,
    /// Every parameter on the mixed batch λ·x + (1 − λ)·x[perm], with the loss
    /// λ·L(z, y) + (1 − λ)·L(z, y[perm]) (their `mixup_criterion`); one branch only.
    Mixup(Mix),
    /// The classifier alone (MiSLAS's stage two): the backbone runs without a gradient, its
    /// batch norms in training mode where `shift_bn` (their running statistics follow the
    /// batches), else in eval mode; the loss is the stage-two loss. One branch only.
    Classifier { shift_bn: bool },
}

/// Per-step settings from the schedules.
#[derive(Clone, Debug)]
pub struct StepSettings {
    /// BBN's α (weight of the conventional branch).
    pub alpha: f32,
    /// DFLCE's θ.
    pub theta: f32,
    pub lr: f32,
    /// DRW's class weights are on (from its epoch; only where the run re-weights).
    pub reweighted: bool,
    pub phase: Phase,
}

pub struct Trainer {
    pub model: Network,
    pub opt: Sgd,
    pub stats: RunningStats,
    pub choices: Choices,
    /// The loss's constants (γ, class-balanced weights, LDAM's margins and scale).
    pub loss: LossSettings,
}

impl Trainer {
    pub fn new(
        model: Network,
        sgd: SgdConfig,
        choices: Choices,
        loss: LossSettings,
    ) -> Result<Trainer> {
        let opt = Sgd::new(&model.store, sgd)?;
        let gpu = opt.gpu()?.clone();
        Ok(Trainer {
            stats: RunningStats::new(&gpu)?,
            model,
            opt,
            choices,
            loss,
        })
    }

    /// Low-memory training: recompute each block in backward and keep the buffer pool's
    /// cache near the live peak (`Network::set_recompute`, `Gpu::set_lean_pool`).
    pub fn set_recompute(&self, on: bool) -> Result<()> {
        self.model.set_recompute(on);
        self.opt.gpu()?.set_lean_pool(on);
        Ok(())
    }

    /// Records one step: forward of both branches (or the conventional one alone), the loss
    /// α·L(z, y_c) + (1−α)·L(z, y_r), backward, SGD. SGD updates the parameters that got a
    /// gradient: in [`Phase::Classifier`], the classifier's alone.
    pub fn step(
        &mut self,
        conv: &HostBatch,
        rebal: Option<&HostBatch>,
        s: StepSettings,
    ) -> Result<()> {
        let gpu = self.opt.gpu()?.clone();
        let classes = self.model.config.classes;
        let stage2 = matches!(s.phase, Phase::Classifier { .. });
        let kind = self
            .choices
            .loss_kind(&self.loss, s.theta, s.reweighted, stage2);
        let (xc, yc) = conv.upload(&gpu, classes)?;
        let total = match (self.choices.bilateral(), rebal) {
            (true, _) if s.phase != Phase::Joint => {
                bail!("mixup and classifier retraining take one branch")
            }
            (true, Some(rb)) => {
                let (xr, yr) = rb.upload(&gpu, classes)?;
                let z = self.model.forward(&xc, &xr, s.alpha, true)?;
                let lc = loss(&z, &yc, &kind)?;
                let lr = loss(&z, &yr, &kind)?;
                self.stats.add_correct(z.value(), &yc, s.alpha)?;
                self.stats.add_correct(z.value(), &yr, 1.0 - s.alpha)?;
                add(&scale(&lc, s.alpha)?, &scale(&lr, 1.0 - s.alpha)?)?
            }
            (true, None) => bail!("two branches need a re-balancing batch"),
            (false, _) => match &s.phase {
                Phase::Joint => {
                    let z = self.model.forward_single(&xc, true)?;
                    self.stats.add_correct(z.value(), &yc, 1.0)?;
                    loss(&z, &yc, &kind)?
                }
                Phase::Mixup(m) => {
                    let mixed = Var::constant(mixup(xc.value(), &m.perm, m.lambda)?);
                    let z = self.model.forward_single(&mixed, true)?;
                    let y_b: Vec<u32> = m.perm.iter().map(|&j| conv.y[j as usize]).collect();
                    let yb = Tensor::from_u32(&gpu, &y_b, &[y_b.len()])?;
                    self.stats.add_correct(z.value(), &yc, m.lambda)?;
                    self.stats.add_correct(z.value(), &yb, 1.0 - m.lambda)?;
                    let la = loss(&z, &yc, &kind)?;
                    let lb = loss(&z, &yb, &kind)?;
                    add(&scale(&la, m.lambda)?, &scale(&lb, 1.0 - m.lambda)?)?
                }
                Phase::Classifier { shift_bn } => {
                    let z = self.model.forward_classifier(&xc, *shift_bn)?;
                    self.stats.add_correct(z.value(), &yc, 1.0)?;
                    loss(&z, &yc, &kind)?
                }
            },
        };
        self.stats.add_loss(total.value(), 1.0)?;
        backward(&total)?;
        self.opt.cfg.lr = s.lr;
        self.opt.step(&self.model.store)?;
        self.model.store.zero_grad();
        Ok(())
    }
}
