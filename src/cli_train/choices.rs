//! The flags that choose what trains (`train` and `bench`): a `--method` preset, and the
//! backbone, loss and branches that override it; the loss's own flags must apply to it.

use super::{TrainArgs, UsageError};
use clap::Args;
use lskbb::train::choices::{Backbone, Branches, Choices, Loss, Reweight, Sampler};
use lskbb::train::method::{resolve, Given, Method};

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
    /// loss, single), dflce (the same as lskbb), dflcsce (lsk-resnet32, dflcsce, bilateral)
    /// ldam-drw (resnet32, ldam, single, with --reweight drw) or mislas (resnet32, mislas,
    /// single: mixup, then the classifier retrained with label-aware smoothing). --backbone, --loss,
    /// --branches and (train's) --reweight, where given, override the preset's choice;
    /// --sampler's default follows the branches. BASELINES.md lists every hyper-parameter.
    #[arg(long, default_value = "lskbb")]
    pub(super) method: Method,
    /// resnet32 (He et al.'s CIFAR ResNet-32), lsk-resnet32 (with an LSK module in every
    /// basic block), biformer-resnet32 (BiFormer's bi-level routing attention in the last
    /// stage's blocks), simam-resnet32 (SimAM, Yang et al. 2021, in every basic block),
    /// resnet18 or vgg16 (torchvision's ResNet-18 and VGG16-BN; images of at least 32 pixels
    /// for vgg16). Default: the --method preset's.
    #[arg(long)]
    backbone: Option<Backbone>,
    /// ce, focal, cb-ce, dflce, dflcsce, ldam or mislas. Default: the --method preset's.
    #[arg(long)]
    loss: Option<Loss>,
    /// single (one branch, one batch per step) or bilateral (BBN's conventional and
    /// re-balancing branches). Default: the --method preset's.
    #[arg(long)]
    branches: Option<Branches>,
}

impl ChoiceArgs {
    /// The resolved choices with `train`'s sampler and re-weighting (None: the defaults), and
    /// the preset they are (the one given where it is, else the first that is; none where
    /// they are no preset's).
    fn resolve(
        &self,
        sampler: Option<Sampler>,
        reweight: Option<Reweight>,
    ) -> (Option<Method>, Choices) {
        let given = Given {
            backbone: self.backbone,
            loss: self.loss,
            branches: self.branches,
            sampler,
            reweight,
        };
        let c = resolve(self.method, given);
        (Method::matching(&c, self.method), c)
    }

    /// The resolved backbone, loss and branches (for `bench`, whose batches are synthetic:
    /// the sampler draws nothing, and a step with DRW's weights costs as one without).
    pub fn resolved(&self) -> Choices {
        self.resolve(None, None).1
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

    /// The choices fit together, and each of `flags` that was given applies to them;
    /// `reweight_given` says whether --reweight was.
    fn check(
        &self,
        c: &Choices,
        reweight_given: bool,
        flags: &[LossFlag],
    ) -> Result<(), UsageError> {
        if c.reweight == Reweight::Drw && !c.loss.takes_drw() {
            let drw = if reweight_given {
                "--reweight drw".to_string()
            } else {
                format!(
                    "--method {} (which re-weights with drw)",
                    self.method.name()
                )
            };
            return Err(UsageError(format!(
                "{drw} does not apply to {}: deferred re-weighting is defined for ce and ldam \
                 (Cao et al.'s CE-DRW and LDAM-DRW); choose one of them with --loss, or \
                 --reweight none",
                self.loss_source(c.loss)
            )));
        }
        if c.loss == Loss::Mislas && c.bilateral() {
            return Err(UsageError(format!(
                "{} takes --branches single: MiSLAS mixes the images of one branch and \
                 retrains its classifier",
                self.loss_source(c.loss)
            )));
        }
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

/// The choices of `train`'s flags and the preset they are, once they are found to fit
/// together and every loss flag given applies to them.
pub(super) fn resolve_train(a: &TrainArgs) -> Result<(Option<Method>, Choices), UsageError> {
    let (method, c) = a.choices.resolve(a.sampler, a.reweight);
    let flags = [
        LossFlag {
            flag: "--gamma",
            given: a.gamma.is_some(),
            applies: |c| c.loss.uses_gamma(),
            what: "the focal term's γ, which only focal, dflce and dflcsce have",
        },
        LossFlag {
            flag: "--cb-beta",
            given: a.cb_beta.is_some(),
            applies: |c| c.loss.uses_cb_beta() || c.reweight == Reweight::Drw,
            what: "the class-balanced weights' β, which only cb-ce, dflcsce and --reweight drw \
                   have",
        },
        LossFlag {
            flag: "--theta-per",
            given: a.theta_per.is_some(),
            applies: |c| c.loss.uses_theta(),
            what: "how the dynamic weight θ decays, which only dflce and dflcsce have",
        },
        LossFlag {
            flag: "--ldam-max-margin",
            given: a.ldam_max_margin.is_some(),
            applies: |c| c.loss == Loss::Ldam,
            what: "LDAM's largest margin, which only ldam has",
        },
        LossFlag {
            flag: "--ldam-scale",
            given: a.ldam_scale.is_some(),
            applies: |c| c.loss == Loss::Ldam,
            what: "LDAM's logit scale, which only ldam has",
        },
    ];
    let flags: Vec<LossFlag> = flags.into_iter().chain(a.mislas.flags()).collect();
    a.choices.check(&c, a.reweight.is_some(), &flags)?;
    a.mislas.check_run(c.loss, a.epochs, a.patience)?;
    Ok((method, c))
}
