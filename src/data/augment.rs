//! Training augmentation (`--augment`) and input normalisation (`--normalize`): what a user
//! can choose, the random decisions for one image ([`Draw`]), and the pixel loop that turns a
//! pre-crop image into the normalised C·S·S network input.
//!
//! The transforms, in the order they are applied:
//! - `crop`: the pre-crop image has a margin around S (BreaKHis: 350×230·S/224 as the paper;
//!   the others: shorter side S·256/224) and training reads a uniformly random S×S window of
//!   it; evaluation reads the centre window. Without `crop` the pre-crop image has no margin
//!   (shorter side S) and training reads the centre window too.
//! - `flip`: left-right mirror with probability ½.
//! - `vflip`: top-bottom mirror with probability ½.
//! - `rot90`: k quarter turns clockwise, k uniform in 0..4.
//! - `color`: brightness factor b and contrast factor c, each uniform in [0.8, 1.2], on the
//!   [0, 1] values after channel conversion: v ← clamp(v·b, 0, 1), then
//!   v ← clamp(μ + c·(v − μ), 0, 1) with μ the mean of the brightness-adjusted window over all
//!   pixels and channels.
//!
//! Every decision comes from the [`Rng`] the loader seeds with (seed, sampler, epoch, batch,
//! position), drawn in the order above, so `--resume` reproduces them exactly.

use super::preprocess::Pixels;
use super::rng::Rng;
use super::DatasetKind;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Weights of ITU-R BT.601 luma, used for RGB → 1 channel.
pub(crate) const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// The names `--augment` accepts, in the order the transforms apply.
pub const AUGMENT_NAMES: [&str; 5] = ["crop", "flip", "vflip", "rot90", "color"];

/// Which random transforms training applies (evaluation applies none of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Augment {
    pub crop: bool,
    pub flip: bool,
    pub vflip: bool,
    pub rot90: bool,
    pub color: bool,
}

impl Augment {
    /// No augmentation.
    pub const NONE: Augment = Augment {
        crop: false,
        flip: false,
        vflip: false,
        rot90: false,
        color: false,
    };

    fn flags(self) -> [bool; 5] {
        [self.crop, self.flip, self.vflip, self.rot90, self.color]
    }
}

impl fmt::Display for Augment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on: Vec<&str> = AUGMENT_NAMES
            .iter()
            .zip(self.flags())
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect();
        if on.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&on.join(","))
        }
    }
}

impl FromStr for Augment {
    type Err = anyhow::Error;

    /// A comma list of `crop`, `flip`, `vflip`, `rot90`, `color`, or `none` alone.
    fn from_str(s: &str) -> Result<Augment> {
        let mut a = Augment::NONE;
        let words: Vec<String> = s.split(',').map(|w| w.trim().to_lowercase()).collect();
        for w in &words {
            match w.as_str() {
                "none" if words.len() == 1 => {}
                "none" => bail!("'none' cannot be combined with other augmentations in '{s}'"),
                "crop" => a.crop = true,
                "flip" => a.flip = true,
                "vflip" => a.vflip = true,
                "rot90" => a.rot90 = true,
                "color" => a.color = true,
                _ => bail!(
                    "unknown augmentation '{w}' (a comma list of {}, or none)",
                    AUGMENT_NAMES.join(", ")
                ),
            }
        }
        Ok(a)
    }
}

impl From<Augment> for String {
    fn from(a: Augment) -> String {
        a.to_string()
    }
}

impl TryFrom<String> for Augment {
    type Error = anyhow::Error;

    fn try_from(s: String) -> Result<Augment> {
        s.parse()
    }
}

/// Per-channel statistics the inputs are normalised with: (v − mean) / std.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    /// ImageNet's mean and std (luma-weighted for 1 channel).
    Imagenet,
    /// Mean and std of the training split, computed when a run starts and stored with it.
    Dataset,
    /// No normalisation: values stay in [0, 1].
    None,
}

impl Normalize {
    pub fn name(self) -> &'static str {
        match self {
            Normalize::Imagenet => "imagenet",
            Normalize::Dataset => "dataset",
            Normalize::None => "none",
        }
    }
}

impl fmt::Display for Normalize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The random decisions for one image; [`Draw::centre`] is the evaluation transform.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Draw {
    /// Top-left corner of the S×S window in the pre-crop image.
    pub x0: usize,
    pub y0: usize,
    pub flip: bool,
    pub vflip: bool,
    /// Quarter turns clockwise (0..4).
    pub quarter_turns: u8,
    /// Brightness and contrast factors (1 = unchanged).
    pub brightness: f32,
    pub contrast: f32,
}

impl Draw {
    /// The centre S×S window of a w×h image, nothing else changed.
    pub fn centre(w: usize, h: usize, s: usize) -> Draw {
        Draw {
            x0: (w - s) / 2,
            y0: (h - s) / 2,
            flip: false,
            vflip: false,
            quarter_turns: 0,
            brightness: 1.0,
            contrast: 1.0,
        }
    }

    /// The decisions of `aug` for a w×h pre-crop image, drawn from `rng` in the module's order.
    pub fn random(aug: Augment, rng: &mut Rng, w: usize, h: usize, s: usize) -> Draw {
        let mut d = Draw::centre(w, h, s);
        if aug.crop {
            d.x0 = rng.below(w - s + 1);
            d.y0 = rng.below(h - s + 1);
        }
        let mut coin = |on: bool| on && rng.next_u64() >> 63 == 1;
        d.flip = coin(aug.flip);
        d.vflip = coin(aug.vflip);
        if aug.rot90 {
            d.quarter_turns = rng.below(4) as u8;
        }
        if aug.color {
            d.brightness = 0.8 + 0.4 * rng.next_f64() as f32;
            d.contrast = 0.8 + 0.4 * rng.next_f64() as f32;
        }
        d
    }
}

/// Writes the S·S window of `px` that `d` selects, transformed, as C planes of [0, 1] values
/// (C = `channels`: grey is replicated to 3, RGB becomes luma for 1), then normalises each
/// channel with `mean`/`std`. The caller checks the sizes.
pub(crate) fn fill(px: &Pixels, d: &Draw, s: usize, mean: &[f32], std: &[f32], out: &mut [f32]) {
    let channels = mean.len();
    let plane = s * s;
    for y in 0..s {
        for x in 0..s {
            // output (y, x) ← rotated ← vflipped ← flipped ← window coordinates
            let (mut wy, mut wx) = (y, x);
            for _ in 0..d.quarter_turns {
                // one clockwise turn maps (r, c) to (c, s-1-r); undo it
                (wy, wx) = (s - 1 - wx, wy);
            }
            if d.vflip {
                wy = s - 1 - wy;
            }
            if d.flip {
                wx = s - 1 - wx;
            }
            let p = ((d.y0 + wy) * px.w + d.x0 + wx) * px.c;
            let o = y * s + x;
            let v = |c: usize| px.data[p + c] as f32 / 255.0;
            match (px.c, channels) {
                (1, 1) => out[o] = v(0),
                (1, _) => {
                    for c in 0..3 {
                        out[c * plane + o] = v(0);
                    }
                }
                (_, 1) => out[o] = LUMA[0] * v(0) + LUMA[1] * v(1) + LUMA[2] * v(2),
                _ => {
                    for c in 0..3 {
                        out[c * plane + o] = v(c);
                    }
                }
            }
        }
    }
    if d.brightness != 1.0 || d.contrast != 1.0 {
        let vals = &mut out[..channels * plane];
        for v in vals.iter_mut() {
            *v = (*v * d.brightness).clamp(0.0, 1.0);
        }
        let mu = (vals.iter().map(|&v| v as f64).sum::<f64>() / vals.len() as f64) as f32;
        for v in vals.iter_mut() {
            *v = (mu + d.contrast * (*v - mu)).clamp(0.0, 1.0);
        }
    }
    for c in 0..channels {
        let (m, inv) = (mean[c], 1.0 / std[c]);
        for v in &mut out[c * plane..(c + 1) * plane] {
            *v = (*v - m) * inv;
        }
    }
}

/// The augmentation a dataset trains with unless `--augment` says otherwise:
/// - BreaKHis: `crop`, the paper's (350×230, random 224 window). Slides have no up, down,
///   left or right, so `flip,vflip,rot90` are label-preserving there and a common addition,
///   but they are not in the paper, whose recipe the default reproduces.
/// - ChestX-ray: `none`, the paper's (¼ scale, centre crop, ½): no flips, as the heart is on
///   the left.
/// - ImageFolder and the synthetic set: `none`. A folder may hold anything (digits, text,
///   X-rays) and every transform assumes an invariance of its content; the synthetic classes
///   differ by stripe orientation and blob position, which flips, turns and crops change.
pub fn default_augment(kind: DatasetKind) -> Augment {
    match kind {
        DatasetKind::BreaKHis => Augment {
            crop: true,
            ..Augment::NONE
        },
        _ => Augment::NONE,
    }
}

/// The normalisation a dataset trains with unless `--normalize` says otherwise: the training
/// split's own statistics for every dataset. The paper names none, and the model is trained
/// from scratch, so ImageNet's statistics (which matter for ImageNet-pretrained weights) have
/// no claim on H&E slides, X-rays or a user's folder.
pub fn default_normalize(_kind: DatasetKind) -> Normalize {
    Normalize::Dataset
}

/// The augmentation every run had before it was a choice (issue 17): random crops where the
/// pre-crop image had a margin (BreaKHis, ImageFolder; the ChestX-ray and synthetic pre-crop
/// images were S×S already) and left-right flips.
pub fn legacy_augment(kind: DatasetKind) -> Augment {
    Augment {
        crop: matches!(kind, DatasetKind::BreaKHis | DatasetKind::ImageFolder),
        flip: true,
        ..Augment::NONE
    }
}

/// Brings the JSON of a `DataConfig` saved before `augment` and `normalize` existed to the
/// pipeline it was trained with: [`legacy_augment`] of its (resolved) kind, ImageNet
/// statistics.
pub fn upgrade_saved_data_config(data: &mut serde_json::Value) {
    let kind = serde_json::from_value(data["kind"].clone()).unwrap_or(DatasetKind::ImageFolder);
    let Some(obj) = data.as_object_mut() else {
        return;
    };
    if !obj.contains_key("augment") {
        let old = legacy_augment(kind);
        obj.insert("augment".into(), old.to_string().into());
    }
    if !obj.contains_key("normalize") {
        obj.insert("normalize".into(), Normalize::Imagenet.name().into());
    }
}
