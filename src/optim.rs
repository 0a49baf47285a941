//! SGD with momentum, weight decay and optional Nesterov over a model's parameters (one fused
//! WGSL kernel, `ops::sgd`, per parameter block, see `model::params::ParamBlock`), and
//! learning-rate schedules.

use crate::model::ParamStore;
use crate::ops::sgd::{sgd_step, SgdConfig};
use crate::tensor::Tensor;
use crate::tensor_file::{Data, Entry, TensorFile};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

pub struct Sgd {
    pub cfg: SgdConfig,
    /// One momentum buffer per parameter block, laid out as the block's values.
    /// Zero-initialised: with no dampening, PyTorch's first step (buf = g) equals
    /// momentum·0 + g.
    blocks: Vec<Tensor>,
    /// Each parameter's momentum buffer (a view of its block's), in the store's order.
    bufs: Vec<Tensor>,
}

impl Sgd {
    pub fn new(store: &ParamStore, cfg: SgdConfig) -> Result<Sgd> {
        let mut bufs: Vec<Option<Tensor>> = vec![None; store.params.len()];
        let mut blocks = Vec::new();
        for block in &store.blocks {
            let buf = Tensor::zeros(block.values.gpu(), block.values.shape())?;
            for &(i, start) in &block.members {
                bufs[i] = Some(buf.view(start, store.params[i].1.shape())?);
            }
            blocks.push(buf);
        }
        let bufs = bufs
            .into_iter()
            .zip(&store.params)
            .map(|(b, (name, _))| {
                b.ok_or_else(|| anyhow::anyhow!("parameter {name} is in no parameter block"))
            })
            .collect::<Result<_>>()?;
        Ok(Sgd { cfg, blocks, bufs })
    }

    /// The GPU the buffers live on.
    pub fn gpu(&self) -> Result<&std::sync::Arc<crate::Gpu>> {
        self.blocks
            .first()
            .map(Tensor::gpu)
            .ok_or_else(|| anyhow::anyhow!("optimizer over a model without parameters"))
    }

    /// One update of every parameter that has a gradient: one dispatch for each block whose
    /// parameters all have their gradient in the block's gradient buffer (every step of
    /// training), else one per parameter (some parameters without a gradient, which
    /// PyTorch leaves alone: no weight decay, no momentum). Between and after the
    /// parameters, a block's values, gradients and momentum are zeros and stay zeros.
    pub fn step(&mut self, store: &ParamStore) -> Result<()> {
        for (block, buf) in store.blocks.iter().zip(&self.blocks) {
            let params = || block.members.iter().map(|&(i, _)| (i, &store.params[i].1));
            if params().all(|(_, p)| p.grad_at_home()) {
                let whole = |t: &Tensor| t.view(0, &[block.used]);
                sgd_step(
                    &whole(&block.values)?,
                    &whole(&block.grads)?,
                    &whole(buf)?,
                    &self.cfg,
                )?;
                continue;
            }
            for (i, p) in params() {
                if let Some(g) = p.grad() {
                    sgd_step(p.value(), &g, &self.bufs[i], &self.cfg)?;
                }
            }
        }
        Ok(())
    }

    /// Zeroes every momentum buffer, as a new `torch.optim.SGD` starts (MiSLAS's stage two
    /// builds its own optimizer).
    pub fn reset_momentum(&self) -> Result<()> {
        for b in &self.blocks {
            b.write_f32(&vec![0.0; b.numel()])?;
        }
        Ok(())
    }

    /// Momentum buffers as `optim.<param>.momentum_buffer`.
    pub fn state(&self, store: &ParamStore) -> Result<TensorFile> {
        let mut f = TensorFile::default();
        for ((name, _), b) in store.params.iter().zip(&self.bufs) {
            f.tensors.insert(
                format!("optim.{name}.momentum_buffer"),
                Entry::f32(b.shape(), b.to_f32()?),
            );
        }
        Ok(f)
    }

    pub fn load_state(&self, store: &ParamStore, f: &TensorFile) -> Result<()> {
        for ((name, _), b) in store.params.iter().zip(&self.bufs) {
            let key = format!("optim.{name}.momentum_buffer");
            match f.tensors.get(&key) {
                Some(Entry {
                    shape,
                    data: Data::F32(v),
                }) if shape == b.shape() => b.write_f32(v)?,
                Some(e) => bail!(
                    "optimizer state '{key}' has shape {:?}, expected {:?}",
                    e.shape,
                    b.shape()
                ),
                None => bail!("optimizer state '{key}' is missing"),
            }
        }
        Ok(())
    }
}

/// BBN's warm-up length: 5 epochs, or a tenth of a shorter run.
pub fn default_warmup(epochs: usize) -> usize {
    5.min(epochs / 10)
}

/// Learning-rate schedules, evaluated per epoch (0-based).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LrSchedule {
    /// Linear warm-up over `warmup` epochs, then ×`gamma` at each milestone (BBN: ×0.01 at
    /// epochs 120 and 160 of 200).
    Step {
        base: f32,
        warmup: usize,
        milestones: Vec<usize>,
        gamma: f32,
    },
    /// Linear warm-up, then cosine decay to 0 at `total`.
    Cosine {
        base: f32,
        warmup: usize,
        total: usize,
    },
}

impl LrSchedule {
    /// BBN's recipe scaled to `epochs`: linear warm-up over `warmup` epochs (BBN: 5, see
    /// [`default_warmup`]), then ×0.01 at 60% and 80% of the run.
    pub fn bbn_step(base: f32, epochs: usize, warmup: usize) -> LrSchedule {
        LrSchedule::two_drops(base, epochs, warmup, [3, 4], 5, 0.01)
    }

    /// Cao et al.'s LDAM-DRW recipe scaled to `epochs`: linear warm-up, then ×0.01 at 80%
    /// and again at 90% of the run (their CIFAR code: epochs 160 and 180 of 200), DRW's
    /// re-weighting starting with the first drop.
    pub fn ldam_step(base: f32, epochs: usize, warmup: usize) -> LrSchedule {
        LrSchedule::two_drops(base, epochs, warmup, [8, 9], 10, 0.01)
    }

    /// MiSLAS's stage-one recipe (their `train_stage1.py` without `cos`) scaled to `epochs`:
    /// linear warm-up, then ×0.1 at 80% and again at 90% of the epochs (160 and 180 of 200).
    pub fn mislas_step(base: f32, epochs: usize, warmup: usize) -> LrSchedule {
        LrSchedule::two_drops(base, epochs, warmup, [8, 9], 10, 0.1)
    }

    /// ×`gamma` at `at[0]`/`per` and `at[1]`/`per` of the run; in short runs each drop comes
    /// after at least one epoch at the rate before it (1 epoch: none; 2: one, before epoch 2).
    fn two_drops(
        base: f32,
        epochs: usize,
        warmup: usize,
        at: [usize; 2],
        per: usize,
        gamma: f32,
    ) -> LrSchedule {
        let first = (epochs * at[0] / per).max(1);
        let second = (epochs * at[1] / per).max(first + 1);
        LrSchedule::Step {
            base,
            warmup,
            milestones: [first, second]
                .into_iter()
                .filter(|&m| m < epochs)
                .collect(),
            gamma,
        }
    }

    /// The rate the schedule starts from after its warm-up.
    pub fn base(&self) -> f32 {
        match self {
            LrSchedule::Step { base, .. } | LrSchedule::Cosine { base, .. } => *base,
        }
    }

    pub fn lr(&self, epoch: usize) -> f32 {
        match self {
            LrSchedule::Step {
                base,
                warmup,
                milestones,
                gamma,
            } => {
                if epoch < *warmup {
                    return base * (epoch + 1) as f32 / *warmup as f32;
                }
                let k = milestones.iter().filter(|&&m| epoch >= m).count();
                base * gamma.powi(k as i32)
            }
            LrSchedule::Cosine {
                base,
                warmup,
                total,
            } => {
                if epoch < *warmup {
                    return base * (epoch + 1) as f32 / *warmup as f32;
                }
                let span = total.saturating_sub(*warmup).max(1) as f32;
                let t = (epoch - warmup) as f32 / span;
                base * 0.5 * (1.0 + (std::f32::consts::PI * t.min(1.0)).cos())
            }
        }
    }
}

/// The parabolic decay 1 − (t/T)² used for BBN's α (per epoch) and DFLCE's θ (eq. 18).
pub fn parabolic(t: f64, t_max: f64) -> f64 {
    if t_max <= 0.0 {
        return 0.0;
    }
    1.0 - (t / t_max).powi(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bbn_schedule_warms_up_then_steps_at_120_and_160() {
        let s = LrSchedule::bbn_step(0.05, 200, default_warmup(200));
        assert!((s.lr(0) - 0.01).abs() < 1e-7);
        assert!((s.lr(4) - 0.05).abs() < 1e-7);
        assert!((s.lr(119) - 0.05).abs() < 1e-7);
        assert!((s.lr(120) - 0.0005).abs() < 1e-9);
        assert!((s.lr(160) - 0.000005).abs() < 1e-11);
    }

    #[test]
    fn short_step_schedules_drop_only_after_an_epoch_at_the_base_rate() {
        let drops = |epochs| match LrSchedule::bbn_step(0.05, epochs, 0) {
            LrSchedule::Step { milestones, .. } => milestones,
            other => panic!("{other:?}"),
        };
        assert_eq!(drops(1), Vec::<usize>::new());
        assert_eq!(drops(2), vec![1]);
        assert_eq!(drops(3), vec![1, 2]);
        assert_eq!(drops(5), vec![3, 4]);
        assert_eq!(drops(200), vec![120, 160]);
        let one = LrSchedule::bbn_step(0.05, 1, default_warmup(1));
        assert!((one.lr(0) - 0.05).abs() < 1e-7, "{}", one.lr(0));
    }

    #[test]
    fn ldam_schedule_steps_at_160_and_180_with_drw() {
        let s = LrSchedule::ldam_step(0.1, 200, default_warmup(200));
        assert!((s.lr(159) - 0.1).abs() < 1e-7);
        assert!((s.lr(160) - 0.001).abs() < 1e-9);
        assert!((s.lr(180) - 0.00001).abs() < 1e-11);
        for epochs in [1, 2, 3, 10, 200] {
            let LrSchedule::Step { milestones, .. } = LrSchedule::ldam_step(0.1, epochs, 0) else {
                panic!("a step schedule");
            };
            // DRW starts with the first drop (where the run is long enough to have one).
            let drw = crate::train::choices::drw_epoch(epochs);
            assert_eq!(milestones.first().copied().unwrap_or(drw), drw, "{epochs}");
        }
    }

    #[test]
    fn cosine_schedule_ends_at_zero() {
        let s = LrSchedule::Cosine {
            base: 0.1,
            warmup: 2,
            total: 12,
        };
        assert!((s.lr(2) - 0.1).abs() < 1e-7);
        assert!(s.lr(12).abs() < 1e-7);
    }

    #[test]
    fn parabolic_decay_matches_eq_18() {
        assert_eq!(parabolic(0.0, 200.0), 1.0);
        assert!((parabolic(100.0, 200.0) - 0.75).abs() < 1e-12);
        assert_eq!(parabolic(200.0, 200.0), 0.0);
    }
}
