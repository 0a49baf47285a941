//! torchvision's ResNet-18 (`torchvision.models.resnet18`, He et al. 2016): a 7x7 stride-2
//! stem with 3/2/1 max pooling, four stages of two basic blocks (64 / 128 / 256 / 512
//! channels at width 64, the first block of stages 2-4 striding by 2 with a 1x1 conv + BN
//! `downsample`), global average pooling and `fc`. Parameter names are torchvision's.
//! Single-branch, `layer4.1` is the conventional branch's block, so the state_dict is
//! torchvision's exactly; bilateral, BBN's convention for its ResNet-50 (the last block of the
//! last stage duplicated per branch) makes `layer4.1` into `cb_block` and `rb_block`.

use super::config::ModelConfig;
use super::head::Fc;
use super::init::Init;
use super::layers::{BatchNorm2d, Conv2d, Pass};
use super::network::{Block, GlobalAvgPool, Parts};
use super::params::ParamStore;
use crate::autograd::Var;
use crate::gpu::Gpu;
use crate::ops::conv::Conv2dParams;
use crate::ops::elementwise::add_relu;
use crate::ops::maxpool::{max_pool2d, MaxPool};
use anyhow::{bail, Result};
use std::rc::Rc;
use std::sync::Arc;

/// A k×k convolution initialised as torchvision's ResNet and VGG do: kaiming_normal_ with
/// mode fan_out (N(0, 2/(cout·k²))), bias (VGG's) zero.
#[allow(clippy::too_many_arguments)]
pub(super) fn tv_conv(
    gpu: &Arc<Gpu>,
    store: &mut ParamStore,
    init: &mut Init,
    name: &str,
    (cin, cout, k): (usize, usize, usize),
    stride: usize,
    padding: usize,
    bias: bool,
) -> Result<Conv2d> {
    let shape = [cout, cin, k, k];
    let w = init.kaiming_normal(shape.iter().product(), cout * k * k);
    let weight = store.param(gpu, format!("{name}.weight"), &w, &shape)?;
    let bias = if bias {
        Some(store.param(gpu, format!("{name}.bias"), &vec![0.0; cout], &[cout])?)
    } else {
        None
    };
    Ok(Conv2d {
        weight,
        bias,
        p: Conv2dParams {
            stride,
            padding,
            dilation: 1,
            groups: 1,
        },
    })
}

/// torchvision's BasicBlock: y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), the
/// shortcut x itself or bn(conv1x1(x)) (`downsample.0`, `downsample.1`) where it strides or
/// widens.
struct BasicBlock {
    name: String,
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    downsample: Option<(Conv2d, BatchNorm2d)>,
}

impl BasicBlock {
    fn new(
        gpu: &Arc<Gpu>,
        s: &mut ParamStore,
        i: &mut Init,
        name: &str,
        (cin, cout, stride): (usize, usize, usize),
    ) -> Result<BasicBlock> {
        let conv1 = tv_conv(
            gpu,
            s,
            i,
            &format!("{name}.conv1"),
            (cin, cout, 3),
            stride,
            1,
            false,
        )?;
        let bn1 = BatchNorm2d::new(gpu, s, &format!("{name}.bn1"), cout)?;
        let conv2 = tv_conv(
            gpu,
            s,
            i,
            &format!("{name}.conv2"),
            (cout, cout, 3),
            1,
            1,
            false,
        )?;
        let bn2 = BatchNorm2d::new(gpu, s, &format!("{name}.bn2"), cout)?;
        let downsample = if stride != 1 || cin != cout {
            let d = format!("{name}.downsample");
            Some((
                tv_conv(
                    gpu,
                    s,
                    i,
                    &format!("{d}.0"),
                    (cin, cout, 1),
                    stride,
                    0,
                    false,
                )?,
                BatchNorm2d::new(gpu, s, &format!("{d}.1"), cout)?,
            ))
        } else {
            None
        };
        Ok(BasicBlock {
            name: name.to_string(),
            conv1,
            bn1,
            conv2,
            bn2,
            downsample,
        })
    }
}

impl Block for BasicBlock {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward_probed(&self, x: &Var, pass: Pass) -> Result<(Var, Option<Var>)> {
        let out = self.bn1.forward_relu(&self.conv1.forward(x)?, pass)?;
        let out = self.bn2.forward(&self.conv2.forward(&out)?, pass)?;
        let sc = match &self.downsample {
            Some((conv, bn)) => bn.forward(&conv.forward(x)?, pass)?,
            None => x.clone(),
        };
        Ok((add_relu(&out, &sc)?, None))
    }
}

/// The stem: maxpool(relu(bn1(conv1(x)))), conv1 7x7 stride 2 padding 3, pooling 3/2/1.
struct Stem {
    conv1: Conv2d,
    bn1: BatchNorm2d,
}

const STEM_POOL: MaxPool = MaxPool {
    k: 3,
    stride: 2,
    padding: 1,
};

impl Block for Stem {
    fn name(&self) -> &str {
        "conv1"
    }

    fn forward_probed(&self, x: &Var, pass: Pass) -> Result<(Var, Option<Var>)> {
        let h = self.bn1.forward_relu(&self.conv1.forward(x)?, pass)?;
        Ok((max_pool2d(&h, STEM_POOL)?, None))
    }
}

/// ResNet-18 at `config.width` (64: torchvision's; stage c has width·2^(c−1) channels).
pub fn build(
    gpu: &Arc<Gpu>,
    config: &ModelConfig,
    s: &mut ParamStore,
    i: &mut Init,
) -> Result<Parts> {
    let w = config.width;
    if !(1..=512).contains(&w) {
        bail!("the ResNet-18's width must be in 1..=512 (64 is torchvision's), got {w}");
    }
    let stem = Stem {
        conv1: tv_conv(gpu, s, i, "conv1", (config.in_ch, w, 7), 2, 3, false)?,
        bn1: BatchNorm2d::new(gpu, s, "bn1", w)?,
    };
    let mut blocks: Vec<Rc<dyn Block>> = Vec::new();
    for (stage, cin, cout, stride) in [
        (1, w, w, 1),
        (2, w, 2 * w, 2),
        (3, 2 * w, 4 * w, 2),
        (4, 4 * w, 8 * w, 2),
    ] {
        blocks.push(Rc::new(BasicBlock::new(
            gpu,
            s,
            i,
            &format!("layer{stage}.0"),
            (cin, cout, stride),
        )?));
        if stage < 4 {
            let name = format!("layer{stage}.1");
            blocks.push(Rc::new(BasicBlock::new(gpu, s, i, &name, (cout, cout, 1))?));
        }
    }
    let f = 8 * w;
    let cb_name = if config.bilateral {
        "cb_block"
    } else {
        "layer4.1"
    };
    let cb_block = Rc::new(BasicBlock::new(gpu, s, i, cb_name, (f, f, 1))?);
    let rb_block: Option<Rc<dyn Block>> = if config.bilateral {
        Some(Rc::new(BasicBlock::new(gpu, s, i, "rb_block", (f, f, 1))?))
    } else {
        None
    };
    let fin = if config.bilateral { 2 * f } else { f };
    let fc = torch_default_fc(gpu, s, i, "fc", fin, config)?;
    Ok(Parts {
        stem: Rc::new(stem),
        blocks,
        cb_block,
        rb_block,
        neck: Rc::new(GlobalAvgPool),
        fc,
        min_size: config.backbone.min_image_size(),
        // The stem conv's w channels at half resolution.
        peak_activation: |c, h, w| c.width * h.div_ceil(2) * w.div_ceil(2),
    })
}

/// A linear classifier with PyTorch's default nn.Linear init (which torchvision's ResNet
/// keeps), or the cosine classifier where the config asks for it.
pub(super) fn torch_default_fc(
    gpu: &Arc<Gpu>,
    s: &mut ParamStore,
    i: &mut Init,
    name: &str,
    fin: usize,
    config: &ModelConfig,
) -> Result<Fc> {
    if config.cosine_scale.is_some() {
        return Fc::new(gpu, s, i, name, fin, config);
    }
    let c = config.classes;
    let w = i.torch_default(c * fin, fin);
    let b = i.torch_default(c, fin);
    Ok(Fc::Linear {
        weight: s.param(gpu, format!("{name}.weight"), &w, &[c, fin])?,
        bias: s.param(gpu, format!("{name}.bias"), &b, &[c])?,
    })
}
