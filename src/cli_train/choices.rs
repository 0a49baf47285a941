//! The flags that choose what trains (`train` and `bench`): a `--method` preset, and the
//! backbone, loss and branches that override it; the loss's own flags must apply to it.

use super::UsageError;
use clap::Args;
use lskbb::train::choices::{Backbone, Branches, Choices, Loss, Sampler};
use lskbb::train::method::{resolve, Method};

/// A flag of the loss's own: whether it was given, whether it applies to a run's choices and
/// what it sets (and for which losses).
pub(super) struct LossFlag {
    pub flag: &'static str,
    pub given: bool,
    pub applies: fn(&Choices) -> bool,
    pub what: &'static str,
}

#[derive(Args, Clone)]
pub struct ChoiceArgs {
    /// A preset of backbone, loss and branches: lskbb (lsk-resnet32, dflce, bilateral: the
    /// paper's method), bbn (resnet32, ce, bilateral), ce, focal and cb-ce (resnet32, that
    /// loss, single), dflce (the same as lskbb) or dflcsce (lsk-resnet32, dflcsce,
    /// bilateral). --backbone, --loss and --branches, where given, override the preset's
    /// choice (--sampler's default follows the branches).
    #[arg(long, default_value = "lskbb")]
    pub(super) method: Method,
    /// resnet32 (He et al.'s CIFAR ResNet-32) or lsk-resnet32 (with an LSK module in every
    /// basic block); the only two backbones so far. Default: the --method preset's.
    #[arg(long)]
    backbone: Option<Backbone>,
    /// ce, focal, cb-ce, dflce or dflcsce. Default: the --method preset's.
    #[arg(long)]
    loss: Option<Loss>,
    /// single (one branch, one batch per step) or bilateral (BBN's conventional and
    /// re-balancing branches). Default: the --method preset's.
    #[arg(long)]
    branches: Option<Branches>,
}

impl ChoiceArgs {
    /// The resolved choices with `sampler`, and the preset they are (the one given where it
    /// is, else the first that is; none where they are no preset's).
    pub(super) fn resolve(&self, sampler: Option<Sampler>) -> (Option<Method>, Choices) {
        let c = resolve(
            self.method,
            self.backbone,
            self.loss,
            self.branches,
            sampler,
        );
        (Method::matching(&c, self.method), c)
    }

    /// The resolved backbone, loss and branches (for `bench`, whose batches are synthetic:
    /// the sampler is the branches' default and draws nothing).
    pub fn resolved(&self) -> Choices {
        self.resolve(None).1
    }

    /// The flag that chose the loss: `--loss X`, or `--method M` whose loss it is.
    fn loss_source(&self, loss: Loss) -> String {
        match self.loss {
            Some(_) => format!("--loss {}", loss.name()),
            None => format!(
                "--method {} (whose loss is {})",
                self.method.name(),
                loss.name()
            ),
        }
    }

    /// Each of `flags` that was given must apply to the choices `c`.
    pub(super) fn check_loss_flags(
        &self,
        c: &Choices,
        flags: &[LossFlag],
    ) -> Result<(), UsageError> {
        match flags.iter().find(|f| f.given && !(f.applies)(c)) {
            Some(f) => Err(UsageError(format!(
                "{} does not apply to {}: it sets {}; leave it out or choose such a loss with \
                 --loss",
                f.flag,
                self.loss_source(c.loss),
                f.what
            ))),
            None => Ok(()),
        }
    }
}
