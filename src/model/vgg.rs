//! torchvision's VGG16 with batch norm (`torchvision.models.vgg16_bn`, Simonyan & Zisserman
//! 2015, configuration D): thirteen 3x3 conv + BN + ReLU units in five stages of 64 / 128 /
//! 256 / 512 / 512 channels (at width 64), each stage ending in 2x2 max pooling, then
//! AdaptiveAvgPool2d((7, 7)) and the classifier Linear(512·49, 4096), ReLU, Dropout(0.5),
//! Linear(4096, 4096), ReLU, Dropout(0.5), Linear(4096, classes); widths scale with the
//! model's width (hidden 4096·width/64). Parameters are named as torchvision's `features.<i>`
//! (conv i, its BN i + 1) and `classifier.<i>`.
//!
//! Single-branch, the state_dict is torchvision's exactly. Bilateral (BBN has no VGG; this is
//! lskbb's reading, experiments/README.md): as BBN duplicates a ResNet's last residual block,
//! the last conv unit (`features.40`-`42`) is duplicated per branch as `cb_block.0` (conv) /
//! `cb_block.1` (BN) and `rb_block.*`; each branch then runs the last max pooling, the average
//! pooling and the shared `classifier.0` / `classifier.3` layers (its features), and
//! `classifier.6` reads BBN's 2·cat(α·f_c, (1−α)·f_r).

use super::config::ModelConfig;
use super::head::Fc;
use super::init::Init;
use super::layers::{BatchNorm2d, Conv2d, Linear, Pass};
use super::network::{Block, Neck, Parts};
use super::params::{Counter, ParamStore};
use super::resnet18::tv_conv;
use crate::autograd::Var;
use crate::gpu::Gpu;
use crate::ops::adaptive_pool::{adaptive_avg_pool2d, flatten};
use crate::ops::dropout::dropout;
use crate::ops::elementwise::relu;
use crate::ops::linear::linear;
use crate::ops::maxpool::{max_pool2d, MaxPool};
use anyhow::{bail, Result};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

/// Configuration D's output channels per conv at width 64; `None` is a 2x2 max pooling.
const CFG_D: [Option<usize>; 18] = [
    Some(64),
    Some(64),
    None,
    Some(128),
    Some(128),
    None,
    Some(256),
    Some(256),
    Some(256),
    None,
    Some(512),
    Some(512),
    Some(512),
    None,
    Some(512),
    Some(512),
    Some(512),
    None,
];

const POOL: MaxPool = MaxPool {
    k: 2,
    stride: 2,
    padding: 0,
};

/// The average pooling's output side, and the classifier's dropout probability.
const AVG_SIDE: usize = 7;
const DROP: f32 = 0.5;

/// relu(bn(conv(x))), then the stage's 2x2 max pooling where one follows.
struct ConvUnit {
    name: String,
    conv: Conv2d,
    bn: BatchNorm2d,
    pool: bool,
}

impl Block for ConvUnit {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward_probed(&self, x: &Var, pass: Pass) -> Result<(Var, Option<Var>)> {
        let h = self.bn.forward_relu(&self.conv.forward(x)?, pass)?;
        Ok((if self.pool { max_pool2d(&h, POOL)? } else { h }, None))
    }
}

/// Each branch's features: the last max pooling, the 7x7 average pooling, and the shared
/// hidden layers `classifier.0` and `classifier.3`, each followed by ReLU and dropout.
struct VggNeck {
    fc0: (Var, Var),
    fc3: (Var, Var),
    /// `features.1.num_batches_tracked`, which counts the training forwards (and travels in
    /// checkpoints): the dropout masks' seeds derive from it, so a run replays exactly.
    step: Counter,
    /// The step the last training call saw, and the calls made in it (both branches' necks
    /// run in one step and get masks of their own).
    calls: Cell<(i64, u64)>,
}

impl VggNeck {
    /// The seeds of this call's two dropout layers.
    fn seeds(&self) -> [u64; 2] {
        let step = self.step.get();
        let (last, calls) = self.calls.get();
        let call = if last == step { calls } else { 0 };
        self.calls.set((step, call + 1));
        let base = ((step as u64) << 16) | (call << 2);
        [base, base | 1]
    }
}

impl Neck for VggNeck {
    fn features(&self, x: &Var, pass: Pass) -> Result<Var> {
        let h = adaptive_avg_pool2d(&max_pool2d(x, POOL)?, AVG_SIDE, AVG_SIDE)?;
        let seeds = if pass.training { self.seeds() } else { [0; 2] };
        let mut h = flatten(&h)?;
        for ((w, b), seed) in [&self.fc0, &self.fc3].into_iter().zip(seeds) {
            h = dropout(&relu(&linear(&h, w, Some(b))?)?, DROP, seed, pass.training)?;
        }
        Ok(h)
    }

    fn frozen(&self) -> Rc<dyn Neck> {
        let take = |(w, b): &(Var, Var)| {
            (
                Var::constant(w.value().clone()),
                Var::constant(b.value().clone()),
            )
        };
        Rc::new(VggNeck {
            fc0: take(&self.fc0),
            fc3: take(&self.fc3),
            step: self.step.clone(),
            calls: Cell::new(self.calls.get()),
        })
    }
}

/// A linear layer as torchvision's VGG initialises it: weight N(0, 0.01²), bias 0.
fn vgg_linear(
    gpu: &Arc<Gpu>,
    s: &mut ParamStore,
    i: &mut Init,
    name: &str,
    fin: usize,
    fout: usize,
) -> Result<Linear> {
    let w = i.normal_std(fout * fin, 0.01);
    Ok(Linear {
        weight: s.param(gpu, format!("{name}.weight"), &w, &[fout, fin])?,
        bias: s.param(gpu, format!("{name}.bias"), &vec![0.0; fout], &[fout])?,
    })
}

/// VGG16-BN at `config.width` (64: torchvision's).
pub fn build(
    gpu: &Arc<Gpu>,
    config: &ModelConfig,
    s: &mut ParamStore,
    i: &mut Init,
) -> Result<Parts> {
    let w = config.width;
    if !(1..=512).contains(&w) {
        bail!("the VGG16's width must be in 1..=512 (64 is torchvision's), got {w}");
    }
    let mut units: Vec<ConvUnit> = Vec::new();
    let (mut cin, mut index, mut bn_counter) = (config.in_ch, 0, None);
    for (k, c) in CFG_D.iter().enumerate() {
        let Some(c) = c else {
            index += 1;
            continue;
        };
        let cout = c * w / 64;
        let last = k == CFG_D.len() - 2;
        let name = match (last, config.bilateral) {
            (true, true) => "cb_block".to_string(),
            _ => format!("features.{index}"),
        };
        let (conv_name, bn_name) = if last && config.bilateral {
            ("cb_block.0".to_string(), "cb_block.1".to_string())
        } else {
            (
                format!("features.{index}"),
                format!("features.{}", index + 1),
            )
        };
        let conv = tv_conv(gpu, s, i, &conv_name, (cin, cout, 3), 1, 1, true)?;
        let bn = BatchNorm2d::new(gpu, s, &bn_name, cout)?;
        bn_counter.get_or_insert_with(|| bn.batches.clone());
        let pool = CFG_D[k + 1].is_none() && !last;
        units.push(ConvUnit {
            name,
            conv,
            bn,
            pool,
        });
        (cin, index) = (cout, index + 3);
    }
    let f = cin;
    let rb_block: Option<Rc<dyn Block>> = if config.bilateral {
        Some(Rc::new(ConvUnit {
            name: "rb_block".to_string(),
            conv: tv_conv(gpu, s, i, "rb_block.0", (f, f, 3), 1, 1, true)?,
            bn: BatchNorm2d::new(gpu, s, "rb_block.1", f)?,
            pool: false,
        }))
    } else {
        None
    };
    let hidden = 4096 * w / 64;
    let fc0 = vgg_linear(gpu, s, i, "classifier.0", f * AVG_SIDE * AVG_SIDE, hidden)?;
    let fc3 = vgg_linear(gpu, s, i, "classifier.3", hidden, hidden)?;
    let fin = if config.bilateral { 2 * hidden } else { hidden };
    let fc = if config.cosine_scale.is_some() {
        Fc::new(gpu, s, i, "classifier.6", fin, config)?
    } else {
        let l = vgg_linear(gpu, s, i, "classifier.6", fin, config.classes)?;
        Fc::Linear {
            weight: l.weight,
            bias: l.bias,
        }
    };
    let neck = VggNeck {
        fc0: (fc0.weight, fc0.bias),
        fc3: (fc3.weight, fc3.bias),
        step: bn_counter.expect("configuration D has convs"),
        calls: Cell::new((-1, 0)),
    };
    let cb_block: Rc<dyn Block> = Rc::new(units.pop().expect("configuration D has convs"));
    let mut blocks = units.into_iter().map(|u| Rc::new(u) as Rc<dyn Block>);
    let stem = blocks.next().expect("configuration D has convs");
    Ok(Parts {
        stem,
        blocks: blocks.collect(),
        cb_block,
        rb_block,
        neck: Rc::new(neck),
        fc,
        min_size: config.backbone.min_image_size(),
        // The first stage's w channels at full resolution.
        peak_activation: |c, h, w| c.width * h * w,
    })
}
