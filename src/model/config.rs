//! What defines a network's shape, as checkpoints store it.

use serde::{Deserialize, Serialize};

/// The network's trunk and blocks (`--backbone`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backbone {
    /// The CIFAR ResNet-32 of He et al. (2016), as BBN uses it.
    Resnet32,
    /// ResNet-32 with a Large Selective Kernel module in every basic block (the paper's).
    LskResnet32,
    /// ResNet-32 with BiFormer's bi-level routing attention in the last stage's blocks
    /// (`super::bra`).
    BiformerResnet32,
    /// ResNet-32 with SimAM (Yang et al., ICML 2021), a parameter-free attention, in every
    /// basic block (the paper's table 4).
    SimamResnet32,
    /// torchvision's ResNet-18 (He et al. 2016, ImageNet layout), `super::resnet18`.
    Resnet18,
    /// torchvision's VGG16 with batch norm (Simonyan & Zisserman 2015, cfg D), `super::vgg`.
    Vgg16,
}

impl Backbone {
    /// The width a run trains it at: the paper's 16 for the ResNet-32s, torchvision's 64
    /// (its exact layer sizes) for ResNet-18 and VGG16.
    pub fn default_width(self) -> usize {
        match self {
            Backbone::Resnet32
            | Backbone::LskResnet32
            | Backbone::BiformerResnet32
            | Backbone::SimamResnet32 => ModelConfig::PAPER_WIDTH,
            Backbone::Resnet18 | Backbone::Vgg16 => 64,
        }
    }

    /// The smallest image side it takes: VGG16's five 2x2 poolings need 32; the ResNets' 8
    /// is what `--image-size` allows at all.
    pub fn min_image_size(self) -> usize {
        match self {
            Backbone::Vgg16 => 32,
            _ => 8,
        }
    }
}

/// What defines the network's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredModelConfig")]
pub struct ModelConfig {
    pub classes: usize,
    pub in_ch: usize,
    pub backbone: Backbone,
    /// Trained with both branches (BBN); false for the single-branch baselines, whose
    /// inference uses the conventional branch alone.
    pub bilateral: bool,
    /// The backbone's base width: for ResNet-32 the channels of the stem and stage 1 (stages
    /// 2 and 3 have twice and four times as many). The paper's ResNet-32 has 16
    /// ([`ModelConfig::PAPER_WIDTH`]); narrower networks of the same depth and wiring keep the
    /// golden files of `reference/` small.
    pub width: usize,
    /// Cao et al.'s cosine classifier (LDAM's) with this logit scale s: logits cos(f, w_k),
    /// the features f and class vectors w_k L2-normalised, no bias, and s·cos at inference.
    /// None: BBN's linear fc with a bias.
    pub cosine_scale: Option<f32>,
}

impl ModelConfig {
    /// ResNet-32's stage widths 16 / 32 / 64 (He et al. 2016, CIFAR variant).
    pub const PAPER_WIDTH: usize = 16;
}

/// A stored config, as any version of lskbb wrote it: before there were backbones to choose
/// from, `lsk` told ResNet-32 from LSK-ResNet-32; before single-branch models, every model
/// was bilateral; before widths, every model had the paper's.
#[derive(Deserialize)]
struct StoredModelConfig {
    classes: usize,
    in_ch: usize,
    #[serde(default)]
    backbone: Option<Backbone>,
    #[serde(default)]
    lsk: bool,
    #[serde(default = "yes")]
    bilateral: bool,
    #[serde(default = "paper_width")]
    width: usize,
    #[serde(default)]
    cosine_scale: Option<f32>,
}

fn yes() -> bool {
    true
}

fn paper_width() -> usize {
    ModelConfig::PAPER_WIDTH
}

impl From<StoredModelConfig> for ModelConfig {
    fn from(s: StoredModelConfig) -> ModelConfig {
        let backbone = s.backbone.unwrap_or(if s.lsk {
            Backbone::LskResnet32
        } else {
            Backbone::Resnet32
        });
        ModelConfig {
            classes: s.classes,
            in_ch: s.in_ch,
            backbone,
            bilateral: s.bilateral,
            width: s.width,
            cosine_scale: s.cosine_scale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_lsk_flag_of_an_older_checkpoint_reads_as_its_backbone() {
        let old: ModelConfig =
            serde_json::from_str(r#"{"classes": 3, "in_ch": 1, "lsk": true}"#).unwrap();
        assert_eq!(old.backbone, Backbone::LskResnet32);
        assert!(old.bilateral);
        assert_eq!(old.width, ModelConfig::PAPER_WIDTH);
        let plain: ModelConfig =
            serde_json::from_str(r#"{"classes": 3, "in_ch": 1, "lsk": false}"#).unwrap();
        assert_eq!(plain.backbone, Backbone::Resnet32);
        let new = ModelConfig {
            backbone: Backbone::LskResnet32,
            bilateral: false,
            ..plain
        };
        let again: ModelConfig =
            serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
        assert_eq!(again, new);
    }
}
