//! The training methods of `lskbb train --method`: the paper's LSKBB and its baselines.

use crate::model::ModelConfig;
use crate::ops::loss::LossKind;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    /// LSK-ResNet-32, bilateral branches, DFLCE (the paper's method).
    Lskbb,
    /// Plain ResNet-32, bilateral branches, CE (BBN).
    Bbn,
    /// Plain ResNet-32, one branch (uniform sampler), CE.
    Ce,
    /// Plain ResNet-32, one branch, softmax focal loss.
    Focal,
    /// Plain ResNet-32, one branch, class-balanced softmax CE.
    CbCe,
    /// LSK-ResNet-32, bilateral, DFLCE (= lskbb; the loss ablation's name).
    Dflce,
    /// LSK-ResNet-32, bilateral, DFLCSCE.
    Dflcsce,
}

impl std::str::FromStr for Method {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Method> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "lskbb" => Method::Lskbb,
            "bbn" => Method::Bbn,
            "ce" => Method::Ce,
            "focal" => Method::Focal,
            "cb-ce" | "cbce" => Method::CbCe,
            "dflce" => Method::Dflce,
            "dflcsce" => Method::Dflcsce,
            other => bail!(
                "--method '{other}' is not one of lskbb, bbn, ce, focal, cb-ce, dflce, dflcsce"
            ),
        })
    }
}

impl Method {
    /// Whether the backbone carries LSK modules (before any --backbone override).
    pub fn lsk(self) -> bool {
        matches!(self, Method::Lskbb | Method::Dflce | Method::Dflcsce)
    }

    /// Whether both branches train (conventional + re-balancing).
    pub fn bilateral(self) -> bool {
        matches!(
            self,
            Method::Lskbb | Method::Bbn | Method::Dflce | Method::Dflcsce
        )
    }

    /// The network this method trains for `classes` classes and `in_ch` input channels.
    pub fn model_config(self, classes: usize, in_ch: usize) -> ModelConfig {
        ModelConfig {
            classes,
            in_ch,
            lsk: self.lsk(),
            bilateral: self.bilateral(),
            width: ModelConfig::PAPER_WIDTH,
        }
    }

    /// The loss at dynamic-loss weight θ (eq. 19-20); `cbw` are class-balanced weights.
    pub fn loss(self, theta: f32, gamma: f32, cbw: &[f32]) -> LossKind {
        match self {
            Method::Bbn | Method::Ce => LossKind::Ce,
            Method::Focal => LossKind::Focal { gamma, alpha: None },
            Method::CbCe => LossKind::CbCe {
                weights: cbw.to_vec(),
            },
            Method::Lskbb | Method::Dflce => LossKind::Dflce { theta, gamma },
            Method::Dflcsce => LossKind::Dflcsce {
                theta,
                gamma,
                weights: cbw.to_vec(),
            },
        }
    }
}
