//! BBNResNet32 of `reference/lskbb_torch.py` in Burn: a CIFAR ResNet-32 (3 stages of 5 basic
//! blocks, widths w / 2w / 4w, option-A shortcuts), an LSK module in every basic block when
//! `lsk` is set, and the bilateral head (`cb_block`, `rb_block`, one `fc`).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor, s};

/// BBN's init for the ResNet's convs and the fc weight: PyTorch's `kaiming_normal_` (fan_in,
/// gain sqrt(2)).
fn kaiming_normal() -> Initializer {
    Initializer::KaimingNormal {
        gain: 2f64.sqrt(),
        fan_out_only: false,
    }
}

/// A `k`x`k` convolution, `pad` zeros on every side, with a bias and Burn's default init
/// (PyTorch's default Conv2d init: uniform, bound 1/sqrt(fan_in), for weight and bias).
fn lsk_conv(
    cin: usize,
    cout: usize,
    k: usize,
    pad: usize,
    dilation: usize,
    groups: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([cin, cout], [k, k])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_dilation([dilation, dilation])
        .with_groups(groups)
        .init(device)
}

/// Li et al. 2023 LSK module: 5x5 depthwise, then 7x7 depthwise with dilation 3, a 1x1 conv on
/// each, a spatial selection (7x7 conv on the channel mean and max, sigmoid), a 1x1 conv back to
/// `dim` channels, and the input gated by the result.
#[derive(Module, Debug)]
pub struct LskBlock {
    conv0: Conv2d,
    conv_spatial: Conv2d,
    conv1: Conv2d,
    conv2: Conv2d,
    conv_squeeze: Conv2d,
    conv: Conv2d,
}

impl LskBlock {
    fn new(dim: usize, device: &Device) -> Self {
        Self {
            conv0: lsk_conv(dim, dim, 5, 2, 1, dim, device),
            conv_spatial: lsk_conv(dim, dim, 7, 9, 3, dim, device),
            conv1: lsk_conv(dim, dim / 2, 1, 0, 1, 1, device),
            conv2: lsk_conv(dim, dim / 2, 1, 0, 1, 1, device),
            conv_squeeze: lsk_conv(2, 2, 7, 3, 1, 1, device),
            conv: lsk_conv(dim / 2, dim, 1, 0, 1, 1, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let attn1 = self.conv0.forward(x.clone());
        let attn2 = self.conv_spatial.forward(attn1.clone());
        let attn1 = self.conv1.forward(attn1);
        let attn2 = self.conv2.forward(attn2);
        let attn = Tensor::cat(vec![attn1.clone(), attn2.clone()], 1);
        let avg_attn = attn.clone().mean_dim(1);
        let max_attn = attn.max_dim(1);
        let agg = Tensor::cat(vec![avg_attn, max_attn], 1);
        let sig = sigmoid(self.conv_squeeze.forward(agg));
        let attn = attn1 * sig.clone().slice(s![.., 0..1]) + attn2 * sig.slice(s![.., 1..2]);
        x * self.conv.forward(attn)
    }
}

/// CIFAR ResNet basic block (option-A shortcut), the LSK module where the residual branch meets
/// the skip connection: y = relu(lsk(bn2(conv2(relu(bn1(conv1(x)))))) + shortcut(x)).
#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    lsk: Option<LskBlock>,
    stride: usize,
    pad_ch: usize,
}

fn conv3x3(cin: usize, cout: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .with_initializer(kaiming_normal())
        .init(device)
}

impl BasicBlock {
    fn new(cin: usize, cout: usize, stride: usize, lsk: bool, device: &Device) -> Self {
        Self {
            conv1: conv3x3(cin, cout, stride, device),
            bn1: BatchNormConfig::new(cout).init(device),
            conv2: conv3x3(cout, cout, 1, device),
            bn2: BatchNormConfig::new(cout).init(device),
            lsk: lsk.then(|| LskBlock::new(cout, device)),
            stride,
            pad_ch: (cout - cin) / 2,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let mut out = self.bn2.forward(self.conv2.forward(out));
        if let Some(lsk) = &self.lsk {
            out = lsk.forward(out);
        }
        let sc = if self.stride != 1 || self.pad_ch != 0 {
            // Option A: subsample, zero-pad the channels.
            let st = self.stride as isize;
            x.slice(s![.., .., ..;st, ..;st]).pad(
                [(self.pad_ch, self.pad_ch), (0, 0), (0, 0)],
                PadMode::Constant(0.0),
            )
        } else {
            x
        };
        relu(out + sc)
    }
}

/// ResNet-32 with the bilateral head: the last block of stage 3 is two blocks, `cb_block`
/// (conventional branch) and `rb_block` (re-balancing branch).
#[derive(Module, Debug)]
pub struct Network {
    conv1: Conv2d,
    bn1: BatchNorm,
    blocks: Vec<BasicBlock>,
    cb_block: BasicBlock,
    rb_block: BasicBlock,
    fc: Linear,
}

impl Network {
    pub fn new(num_classes: usize, lsk: bool, in_ch: usize, width: usize, device: &Device) -> Self {
        let w = width;
        let mut blocks = Vec::new();
        // layer1, layer2, layer3 (its fifth block is cb_block / rb_block).
        for (cin, cout, stride, n) in [(w, w, 1, 5), (w, 2 * w, 2, 5), (2 * w, 4 * w, 2, 4)] {
            blocks.push(BasicBlock::new(cin, cout, stride, lsk, device));
            for _ in 1..n {
                blocks.push(BasicBlock::new(cout, cout, 1, lsk, device));
            }
        }
        let mut fc = LinearConfig::new(8 * w, num_classes)
            .with_initializer(kaiming_normal())
            .init(device);
        // PyTorch's default Linear bias: uniform, bound 1/sqrt(fan_in).
        fc.bias = Some(
            Initializer::Uniform {
                min: -1.0 / ((8 * w) as f64).sqrt(),
                max: 1.0 / ((8 * w) as f64).sqrt(),
            }
            .init([num_classes], device),
        );
        Self {
            conv1: Conv2dConfig::new([in_ch, w], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .with_initializer(kaiming_normal())
                .init(device),
            bn1: BatchNormConfig::new(w).init(device),
            blocks,
            cb_block: BasicBlock::new(4 * w, 4 * w, 1, lsk, device),
            rb_block: BasicBlock::new(4 * w, 4 * w, 1, lsk, device),
            fc,
        }
    }

    fn features(&self, x: Tensor<4>) -> Tensor<4> {
        let x = relu(self.bn1.forward(self.conv1.forward(x)));
        self.blocks.iter().fold(x, |x, block| block.forward(x))
    }

    /// Bilateral forward: x_c from the uniform sampler, x_r from the reversed sampler, each
    /// through the shared trunk. Logits z = fc(2 * cat(alpha * f_c, (1 - alpha) * f_r)).
    pub fn forward(&self, x_c: Tensor<4>, x_r: Tensor<4>, alpha: f64) -> Tensor<2> {
        let gap = |x: Tensor<4>| adaptive_avg_pool2d(x, [1, 1]).flatten::<2>(1, 3);
        let f_c = gap(self.cb_block.forward(self.features(x_c)));
        let f_r = gap(self.rb_block.forward(self.features(x_r)));
        let f = Tensor::cat(vec![f_c.mul_scalar(alpha), f_r.mul_scalar(1.0 - alpha)], 1);
        self.fc.forward(f.mul_scalar(2.0))
    }
}
