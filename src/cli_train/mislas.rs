//! MiSLAS's flags (`--loss mislas`, Zhong et al. 2021): stage one's mixup, stage two's length
//! and label-aware smoothing. Their defaults are MiSLAS's configs (`lskbb::train::stages`).

use super::choices::LossFlag;
use super::UsageError;
use clap::{builder::TypedValueParser, Args};
use lskbb::ops::loss::LasShape;
use lskbb::train::choices::Loss;
use lskbb::train::stages::{default_stage2_epochs, Mislas};

#[derive(Args, Clone)]
pub struct MislasArgs {
    /// Stage one's mixup α: each batch mixed with a permutation of itself by λ ~ Beta(α, α);
    /// 0 turns mixup off (mislas) [default: 1, their CIFAR configs].
    #[arg(long, value_name = "ALPHA", value_parser = super::non_negative)]
    mixup: Option<f32>,
    /// Stage two's epochs, the last of --epochs, retraining the classifier alone (mislas)
    /// [default: their 10 of 210 epochs as the same share of --epochs, at least 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..).map(|v| v as usize))]
    stage2_epochs: Option<usize>,
    /// Label-aware smoothing ε of the most frequent class, 0 <= ε < 1 (mislas) [default: 0.4].
    #[arg(long, value_parser = super::fraction_f64)]
    smooth_head: Option<f64>,
    /// Label-aware smoothing ε of the rarest class, 0 <= ε < 1 (mislas) [default: 0.1].
    #[arg(long, value_parser = super::fraction_f64)]
    smooth_tail: Option<f64>,
    /// How ε falls from head to tail: concave, linear or convex (mislas) [default: concave,
    /// the one their configs use].
    #[arg(long)]
    las_shape: Option<LasShape>,
    /// Stage two's batch norms in eval mode, their running statistics as stage one left them
    /// (their CIFAR-10-LT configs' `shift_bn: False`; mislas) [default: shifted].
    #[arg(long)]
    no_shift_bn: bool,
}

impl MislasArgs {
    /// MiSLAS's settings for a run of `epochs` with these flags in place of the defaults;
    /// None unless the loss is mislas.
    pub fn settings(&self, loss: Loss, epochs: usize) -> Option<Mislas> {
        if loss != Loss::Mislas {
            return None;
        }
        let paper = Mislas::paper(epochs);
        Some(Mislas {
            mixup_alpha: self.mixup.map_or(paper.mixup_alpha, f64::from),
            stage2_epochs: self.stage2_epochs.unwrap_or(default_stage2_epochs(epochs)),
            smooth_head: self.smooth_head.unwrap_or(paper.smooth_head),
            smooth_tail: self.smooth_tail.unwrap_or(paper.smooth_tail),
            shape: self.las_shape.unwrap_or(paper.shape),
            shift_bn: !self.no_shift_bn,
            ..paper
        })
    }

    /// Stage two must leave stage one at least an epoch of `--epochs` (where given; a default
    /// run length is checked when the run starts), and `--patience` must not end a MiSLAS run
    /// before its stage two.
    pub(super) fn check_run(
        &self,
        loss: Loss,
        epochs: Option<usize>,
        patience: Option<usize>,
    ) -> Result<(), UsageError> {
        if loss == Loss::Mislas && patience.is_some() {
            return Err(UsageError(
                "--patience does not apply to --loss mislas: stopping early in stage one would \
                 skip the classifier's retraining; leave it out"
                    .to_string(),
            ));
        }
        match (self.stage2_epochs, epochs) {
            (Some(s), Some(e)) if s >= e => Err(UsageError(format!(
                "--stage2-epochs {s} must be less than --epochs {e}: stage one (mixup) needs at \
                 least one epoch before the classifier retrains"
            ))),
            _ => Ok(()),
        }
    }

    /// Each flag, given or not, as a loss flag that only mislas takes.
    pub(super) fn flags(&self) -> [LossFlag; 6] {
        let only = |c: &lskbb::train::choices::Choices| c.loss == Loss::Mislas;
        let flag = |flag, given, what| LossFlag {
            flag,
            given,
            applies: only,
            what,
        };
        [
            flag(
                "--mixup",
                self.mixup.is_some(),
                "MiSLAS's stage-one mixup, which only mislas has",
            ),
            flag(
                "--stage2-epochs",
                self.stage2_epochs.is_some(),
                "MiSLAS's classifier-retraining stage, which only mislas has",
            ),
            flag(
                "--smooth-head",
                self.smooth_head.is_some(),
                "label-aware smoothing, which only mislas has",
            ),
            flag(
                "--smooth-tail",
                self.smooth_tail.is_some(),
                "label-aware smoothing, which only mislas has",
            ),
            flag(
                "--las-shape",
                self.las_shape.is_some(),
                "label-aware smoothing, which only mislas has",
            ),
            flag(
                "--no-shift-bn",
                self.no_shift_bn,
                "MiSLAS's stage-two batch norms, which only mislas has",
            ),
        ]
    }
}
