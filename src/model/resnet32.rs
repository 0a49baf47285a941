//! CIFAR-style ResNet-32 (BBN's resnet_cifar, option-A shortcut), with an LSK module in every
//! basic block for LSK-ResNet-32 (SPEC.md "Model"), or SimAM in every basic block for
//! SimAM-ResNet-32: the backbones of [`super::Network`].

use super::bra::{Bra, HEAD_DIM, TOPK};
use super::config::{Backbone, ModelConfig};
use super::head::Fc;
use super::init::Init;
use super::layers::{BatchNorm2d, Conv2d, ConvSpec, InitKind, Pass};
use super::lsk::LskBlock;
use super::network::{Block, GlobalAvgPool, Parts};
use super::params::ParamStore;
use crate::autograd::Var;
use crate::gpu::Gpu;
use crate::ops::channels::shortcut_a;
use crate::ops::conv::Conv2dParams;
use crate::ops::elementwise::{add, add_relu, mul_add_relu};
use crate::ops::simam::simam;
use anyhow::{bail, Result};
use std::rc::Rc;
use std::sync::Arc;

fn conv3x3(
    gpu: &Arc<Gpu>,
    store: &mut ParamStore,
    init: &mut Init,
    name: &str,
    cin: usize,
    cout: usize,
    stride: usize,
) -> Result<Conv2d> {
    Conv2d::new(
        gpu,
        store,
        init,
        name,
        ConvSpec {
            cin,
            cout,
            k: 3,
            p: Conv2dParams {
                stride,
                padding: 1,
                dilation: 1,
                groups: 1,
            },
            bias: false,
            init: InitKind::KaimingNormal,
        },
    )
}

/// The module a basic block carries: where its residual branch meets the skip connection
/// (LSK, BRA), or after conv2 (SimAM).
#[derive(Clone, Copy, PartialEq, Eq)]
enum ModuleKind {
    None,
    Lsk,
    Bra,
    Simam,
}

enum Module {
    None,
    /// out · attention(out) (SPEC.md "LSK module").
    Lsk(Box<LskBlock>),
    /// out + BRA(out): BiFormer's attention as a residual sub-layer, as its blocks add it
    /// (x + attn(norm(x))), the block's bn2 in place of their LayerNorm.
    Bra(Box<Bra>),
    /// SimAM between conv2 and bn2, where the official CIFAR ResNet puts it
    /// (github.com/ZjjConan/SimAM, networks/cifar/block.py: `conv2 = Sequential(conv2,
    /// simam)` in BasicBlock, unlike its other attention modules, which follow bn2).
    Simam,
}

/// y = relu(module(bn2(conv2(relu(bn1(conv1(x)))))) + shortcut(x)), or with SimAM
/// y = relu(bn2(simam(conv2(relu(bn1(conv1(x)))))) + shortcut(x)).
pub struct BasicBlock {
    /// PyTorch's module name (`layer2.0`, `cb_block`).
    name: String,
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    module: Module,
    stride: usize,
    pad_ch: usize,
}

impl BasicBlock {
    #[allow(clippy::too_many_arguments)]
    fn new(
        gpu: &Arc<Gpu>,
        store: &mut ParamStore,
        init: &mut Init,
        name: &str,
        cin: usize,
        cout: usize,
        stride: usize,
        module: ModuleKind,
    ) -> Result<BasicBlock> {
        let conv1 = conv3x3(
            gpu,
            store,
            init,
            &format!("{name}.conv1"),
            cin,
            cout,
            stride,
        )?;
        let bn1 = BatchNorm2d::new(gpu, store, &format!("{name}.bn1"), cout)?;
        let conv2 = conv3x3(gpu, store, init, &format!("{name}.conv2"), cout, cout, 1)?;
        let bn2 = BatchNorm2d::new(gpu, store, &format!("{name}.bn2"), cout)?;
        let module = match module {
            ModuleKind::None => Module::None,
            ModuleKind::Simam => Module::Simam,
            ModuleKind::Lsk => {
                let lsk = LskBlock::new(gpu, store, init, &format!("{name}.lsk"), cout)?;
                Module::Lsk(Box::new(lsk))
            }
            ModuleKind::Bra => {
                let heads = (cout / HEAD_DIM).max(1);
                let bra_name = format!("{name}.bra");
                let bra = Bra::new(gpu, store, init, &bra_name, cout, heads, TOPK)?;
                Module::Bra(Box::new(bra))
            }
        };
        Ok(BasicBlock {
            name: name.to_string(),
            conv1,
            bn1,
            conv2,
            bn2,
            module,
            stride,
            pad_ch: (cout - cin) / 2,
        })
    }
}

impl Block for BasicBlock {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward_probed(&self, x: &Var, pass: Pass) -> Result<(Var, Option<Var>)> {
        let out = self.bn1.forward_relu(&self.conv1.forward(x)?, pass)?;
        let mut out = self.conv2.forward(&out)?;
        if let Module::Simam = self.module {
            out = simam(&out)?;
        }
        let out = self.bn2.forward(&out, pass)?;
        let sc = if self.stride != 1 || self.pad_ch > 0 {
            shortcut_a(x, self.stride, self.pad_ch)?
        } else {
            x.clone()
        };
        match &self.module {
            // relu(lsk(out) + sc) with lsk(out) = out · attention(out), in one kernel.
            Module::Lsk(lsk) => {
                let (attention, z) = lsk.attention_with_logits(&out)?;
                Ok((mul_add_relu(&out, &attention, &sc)?, Some(z)))
            }
            Module::Bra(bra) => Ok((add_relu(&add(&out, &bra.forward(&out)?)?, &sc)?, None)),
            Module::None | Module::Simam => Ok((add_relu(&out, &sc)?, None)),
        }
    }
}

/// The stem: relu(bn1(conv1(x))).
struct Stem {
    conv1: Conv2d,
    bn1: BatchNorm2d,
}

impl Block for Stem {
    fn name(&self) -> &str {
        "conv1"
    }

    fn forward_probed(&self, x: &Var, pass: Pass) -> Result<(Var, Option<Var>)> {
        Ok((self.bn1.forward_relu(&self.conv1.forward(x)?, pass)?, None))
    }
}

/// BBN ResNet-32: stem, the shared blocks of three stages (stage 3's fifth block is the two
/// branch blocks), unshared `cb_block` / `rb_block` (both built for single-branch models
/// too, as checkpoints have always held them), global average pooling and one fc.
pub fn build(
    gpu: &Arc<Gpu>,
    config: &ModelConfig,
    s: &mut ParamStore,
    i: &mut Init,
) -> Result<Parts> {
    let w = config.width;
    if !(2..=512).contains(&w) || !w.is_multiple_of(2) {
        bail!("the model's width must be even and in 2..=512 (the LSK module halves it, the shortcut pads by half), got {w}");
    }
    // LSK-ResNet-32: an LSK module in every block; BiFormer-ResNet-32: bi-level routing
    // attention in the last stage's blocks (its shared blocks and both branch blocks);
    // SimAM-ResNet-32: SimAM in every block.
    let module = |stage: usize| match config.backbone {
        Backbone::LskResnet32 => ModuleKind::Lsk,
        Backbone::BiformerResnet32 if stage == 3 => ModuleKind::Bra,
        Backbone::SimamResnet32 => ModuleKind::Simam,
        _ => ModuleKind::None,
    };
    let stem = Stem {
        conv1: conv3x3(gpu, s, i, "conv1", config.in_ch, w, 1)?,
        bn1: BatchNorm2d::new(gpu, s, "bn1", w)?,
    };
    let mut blocks: Vec<Rc<dyn Block>> = Vec::new();
    // (stage, in, out, first stride, shared blocks)
    for (stage, cin, cout, stride, n) in [
        (1, w, w, 1, 5),
        (2, w, 2 * w, 2, 5),
        (3, 2 * w, 4 * w, 2, 4),
    ] {
        for b in 0..n {
            let (ci, st) = if b == 0 { (cin, stride) } else { (cout, 1) };
            let name = format!("layer{stage}.{b}");
            blocks.push(Rc::new(BasicBlock::new(
                gpu,
                s,
                i,
                &name,
                ci,
                cout,
                st,
                module(stage),
            )?));
        }
    }
    let cb_block = Rc::new(BasicBlock::new(
        gpu,
        s,
        i,
        "cb_block",
        4 * w,
        4 * w,
        1,
        module(3),
    )?);
    let rb_block = Rc::new(BasicBlock::new(
        gpu,
        s,
        i,
        "rb_block",
        4 * w,
        4 * w,
        1,
        module(3),
    )?);
    // BBN's fc reads both branches' 4w features; a single-branch linear one reads cat(2·f_c,
    // 0), the combiner at α = 1; the single-branch cosine classifier reads f_c alone.
    let fin = if config.cosine_scale.is_some() && !config.bilateral {
        4 * w
    } else {
        8 * w
    };
    let fc = Fc::new(gpu, s, i, "fc", fin, config)?;
    Ok(Parts {
        stem: Rc::new(stem),
        blocks,
        cb_block,
        rb_block: Some(rb_block),
        neck: Rc::new(GlobalAvgPool),
        fc,
        min_size: 8,
        // The stem's and stage 1's w channels at full resolution.
        peak_activation: |c, h, w| c.width * h * w,
    })
}
