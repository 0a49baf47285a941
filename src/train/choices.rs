//! What a run trains, chosen separately: the backbone (`--backbone`), the loss (`--loss`), one
//! or two branches (`--branches`) and the sampler (`--sampler`). `--method` names presets of
//! them (`super::method`).

use crate::data::SamplerKind;
pub use crate::model::Backbone;
use crate::model::ModelConfig;
use crate::ops::loss::LossKind;
use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

/// The value of `flag` named `s` in `table` (case-insensitive), or an error listing the names.
fn parse<T: Copy>(flag: &str, s: &str, table: &[(&str, T)]) -> Result<T> {
    let lower = s.to_ascii_lowercase();
    table
        .iter()
        .find(|(name, _)| *name == lower)
        .map(|&(_, v)| v)
        .ok_or_else(|| {
            let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            anyhow!("{flag} '{s}' is not one of {}", names.join(", "))
        })
}

/// The name of `v` in `table`.
fn name<T: Copy + PartialEq>(v: T, table: &[(&'static str, T)]) -> &'static str {
    table.iter().find(|(_, t)| *t == v).map_or("?", |(n, _)| *n)
}

const BACKBONES: [(&str, Backbone); 6] = [
    ("resnet32", Backbone::Resnet32),
    ("lsk-resnet32", Backbone::LskResnet32),
    ("biformer-resnet32", Backbone::BiformerResnet32),
    ("simam-resnet32", Backbone::SimamResnet32),
    ("resnet18", Backbone::Resnet18),
    ("vgg16", Backbone::Vgg16),
];

/// The training loss (`--loss`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Loss {
    /// Cross-entropy.
    Ce,
    /// Softmax focal loss (γ).
    Focal,
    /// Class-balanced cross-entropy (Cui et al. 2019, β).
    CbCe,
    /// θ·focal + (1−θ)·CE, θ = 1 − (T/T_max)² (the paper's eq. 19).
    Dflce,
    /// θ·focal + (1−θ)·CB-CE (the paper's eq. 20).
    Dflcsce,
    /// Label-distribution-aware margin loss (Cao et al. 2019): CE of s·(z − Δ_y), Δ_j ∝
    /// n_j^(−1/4).
    Ldam,
    /// MiSLAS (Zhong et al. 2021): CE with mixup while the network trains, then label-aware
    /// smoothing while the classifier alone retrains (`super::stages`).
    Mislas,
}

const LOSSES: [(&str, Loss); 7] = [
    ("ce", Loss::Ce),
    ("focal", Loss::Focal),
    ("cb-ce", Loss::CbCe),
    ("dflce", Loss::Dflce),
    ("dflcsce", Loss::Dflcsce),
    ("ldam", Loss::Ldam),
    ("mislas", Loss::Mislas),
];

impl Loss {
    /// Whether the loss has a focal term (and so reads `--gamma`).
    pub fn uses_gamma(self) -> bool {
        matches!(self, Loss::Focal | Loss::Dflce | Loss::Dflcsce)
    }

    /// Whether the loss weights classes class-balanced (and so reads `--cb-beta`).
    pub fn uses_cb_beta(self) -> bool {
        matches!(self, Loss::CbCe | Loss::Dflcsce)
    }

    /// Whether the loss has the dynamic weight θ (and so reads `--theta-per`).
    pub fn uses_theta(self) -> bool {
        matches!(self, Loss::Dflce | Loss::Dflcsce)
    }

    /// Whether deferred re-weighting applies to the loss: CE and LDAM, the two that Cao et
    /// al. (2019) train with DRW (the others weight classes their own way or not at all).
    pub fn takes_drw(self) -> bool {
        matches!(self, Loss::Ce | Loss::Ldam)
    }
}

/// How classes are weighted in the loss over the run (`--reweight`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reweight {
    /// As the loss itself weights them (CB-CE and DFLCSCE class-balanced, the others not).
    None,
    /// Deferred re-weighting (Cao et al. 2019): unweighted until [`drw_epoch`], then
    /// class-balanced weights (Cui et al. 2019, β = `--cb-beta`).
    Drw,
}

const REWEIGHTS: [(&str, Reweight); 2] = [("none", Reweight::None), ("drw", Reweight::Drw)];

/// The 0-based epoch from which DRW weights the classes: 80% of the run, LDAM-DRW's 160 of
/// 200 (Cao et al.'s code, `epoch // 160`); in a short run after at least one epoch.
pub fn drw_epoch(epochs: usize) -> usize {
    (epochs * 4 / 5).max(1)
}

/// LDAM's largest margin (the rarest class's) and logit scale s: Cao et al.'s code's `max_m`
/// and `s`.
pub const LDAM_MAX_MARGIN: f32 = 0.5;
pub const LDAM_SCALE: f32 = 30.0;

/// The constants of a run's loss, from its flags and the training set's class counts.
#[derive(Clone, Debug)]
pub struct LossSettings {
    /// The focal term's γ.
    pub gamma: f32,
    /// Class-balanced weights (CB-CE, DFLCSCE, DRW's second stage).
    pub cb_weights: Vec<f32>,
    /// LDAM's per-class margins Δ_j and logit scale s.
    pub margins: Vec<f32>,
    pub ldam_scale: f32,
    /// Label-aware smoothing's per-class ε (MiSLAS's stage two; empty for other losses).
    pub smoothing: Vec<f32>,
}

/// One branch, or BBN's two (`--branches`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Branches {
    /// The conventional branch alone: one batch per step, inference from that branch.
    Single,
    /// BBN: a conventional branch on uniform batches and a re-balancing branch, mixed by
    /// α = 1 − (epoch/E)².
    Bilateral,
}

const BRANCHES: [(&str, Branches); 2] = [
    ("single", Branches::Single),
    ("bilateral", Branches::Bilateral),
];

/// How training batches are drawn (`--sampler`): for one branch, that branch's batches; for
/// two, the re-balancing branch's (the conventional branch always draws uniformly).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sampler {
    /// A shuffled permutation of the training set each epoch (instance-balanced).
    Uniform,
    /// A class uniformly, then an image of it (with replacement).
    ClassBalanced,
    /// Class i with probability ∝ N_max/N_i, then an image of it (BBN's reversed sampler).
    Reversed,
}

const SAMPLERS: [(&str, Sampler); 3] = [
    ("uniform", Sampler::Uniform),
    ("class-balanced", Sampler::ClassBalanced),
    ("reversed", Sampler::Reversed),
];

impl Sampler {
    /// The sampler a run with `branches` draws from when `--sampler` is not given: uniform
    /// for one branch, reversed for BBN's re-balancing branch.
    pub fn default_for(branches: Branches) -> Sampler {
        match branches {
            Branches::Single => Sampler::Uniform,
            Branches::Bilateral => Sampler::Reversed,
        }
    }

    pub fn kind(self) -> SamplerKind {
        match self {
            Sampler::Uniform => SamplerKind::Uniform,
            Sampler::ClassBalanced => SamplerKind::ClassBalanced,
            Sampler::Reversed => SamplerKind::Reversed,
        }
    }
}

macro_rules! named {
    ($t:ty, $table:ident, $flag:literal) => {
        impl std::str::FromStr for $t {
            type Err = anyhow::Error;
            fn from_str(s: &str) -> Result<$t> {
                parse($flag, s, &$table)
            }
        }

        impl $t {
            /// The name on the command line.
            pub fn name(self) -> &'static str {
                name(self, &$table)
            }

            /// Every value, in the order the help lists them.
            pub fn all() -> impl Iterator<Item = $t> {
                $table.into_iter().map(|(_, v)| v)
            }
        }
    };
}

named!(Backbone, BACKBONES, "--backbone");
named!(Loss, LOSSES, "--loss");
named!(Branches, BRANCHES, "--branches");
named!(Sampler, SAMPLERS, "--sampler");
named!(Reweight, REWEIGHTS, "--reweight");

/// Everything that decides the network and the objective of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choices {
    pub backbone: Backbone,
    pub loss: Loss,
    pub branches: Branches,
    pub sampler: Sampler,
    pub reweight: Reweight,
}

impl Choices {
    pub fn bilateral(&self) -> bool {
        self.branches == Branches::Bilateral
    }

    /// The network for `classes` classes and `in_ch` input channels. LDAM trains the cosine
    /// classifier it was made for (Cao et al.'s `NormedLinear`), its logits scaled by
    /// `ldam_scale` at inference as in the loss.
    pub fn model_config(&self, classes: usize, in_ch: usize, ldam_scale: f32) -> ModelConfig {
        ModelConfig {
            classes,
            in_ch,
            backbone: self.backbone,
            bilateral: self.bilateral(),
            width: self.backbone.default_width(),
            cosine_scale: (self.loss == Loss::Ldam).then_some(ldam_scale),
        }
    }

    /// The loss at dynamic-loss weight θ, with DRW's class weights where `deferred_on` (the
    /// run has reached [`drw_epoch`]); MiSLAS's label-aware smoothing in its `stage2`.
    pub fn loss_kind(
        &self,
        s: &LossSettings,
        theta: f32,
        deferred_on: bool,
        stage2: bool,
    ) -> LossKind {
        let (gamma, cbw) = (s.gamma, &s.cb_weights);
        let drw = (self.reweight == Reweight::Drw && deferred_on).then(|| cbw.to_vec());
        match (self.loss, drw) {
            (Loss::Ce, None) => LossKind::Ce,
            // CE-DRW's second stage is CB-CE.
            (Loss::Ce, Some(weights)) => LossKind::CbCe { weights },
            (Loss::CbCe, _) => LossKind::CbCe {
                weights: cbw.to_vec(),
            },
            (Loss::Focal, _) => LossKind::Focal { gamma, alpha: None },
            (Loss::Dflce, _) => LossKind::Dflce { theta, gamma },
            (Loss::Dflcsce, _) => LossKind::Dflcsce {
                theta,
                gamma,
                weights: cbw.to_vec(),
            },
            (Loss::Ldam, weights) => LossKind::Ldam {
                margins: s.margins.clone(),
                scale: s.ldam_scale,
                weights,
            },
            (Loss::Mislas, _) if stage2 => LossKind::Las {
                smoothing: s.smoothing.clone(),
            },
            (Loss::Mislas, _) => LossKind::Ce,
        }
    }

    /// The samplers of the conventional (or only) branch and of the re-balancing branch.
    pub fn samplers(&self) -> (SamplerKind, Option<SamplerKind>) {
        match self.branches {
            Branches::Single => (self.sampler.kind(), None),
            Branches::Bilateral => (SamplerKind::Uniform, Some(self.sampler.kind())),
        }
    }

    /// `backbone+loss+branches[+sampler][+drw]`, the sampler only where it is not the
    /// default.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{}+{}+{}",
            self.backbone.name(),
            self.loss.name(),
            self.branches.name()
        );
        if self.sampler != Sampler::default_for(self.branches) {
            s += "+";
            s += self.sampler.name();
        }
        if self.reweight == Reweight::Drw {
            s += "+drw";
        }
        s
    }
}
