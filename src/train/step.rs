//! One training step on the GPU: both branches forward, the bilateral loss, backward and the
//! fused SGD update, recorded without any readback (statistics stay on the GPU).

use super::choices::{Choices, LossSettings};
use crate::autograd::{backward, Var};
use crate::model::Network;
use crate::ops::elementwise::{add, scale};
use crate::ops::loss::loss;
use crate::ops::metrics::RunningStats;
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

/// Per-step settings from the schedules.
#[derive(Clone, Copy, Debug)]
pub struct StepSettings {
    /// BBN's α (weight of the conventional branch).
    pub alpha: f32,
    /// DFLCE's θ.
    pub theta: f32,
    pub lr: f32,
    /// DRW's class weights are on (from its epoch; only where the run re-weights).
    pub reweighted: bool,
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
    /// α·L(z, y_c) + (1−α)·L(z, y_r), backward, SGD.
    pub fn step(
        &mut self,
        conv: &HostBatch,
        rebal: Option<&HostBatch>,
        s: StepSettings,
    ) -> Result<()> {
        let gpu = self.opt.gpu()?.clone();
        let classes = self.model.config.classes;
        let kind = self.choices.loss_kind(&self.loss, s.theta, s.reweighted);
        let (xc, yc) = conv.upload(&gpu, classes)?;
        let total = match (self.choices.bilateral(), rebal) {
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
            (false, _) => {
                let z = self.model.forward_single(&xc, true)?;
                self.stats.add_correct(z.value(), &yc, 1.0)?;
                loss(&z, &yc, &kind)?
            }
        };
        self.stats.add_loss(total.value(), 1.0)?;
        backward(&total)?;
        self.opt.cfg.lr = s.lr;
        self.opt.step(&self.model.store)?;
        self.model.store.zero_grad();
        Ok(())
    }
}
