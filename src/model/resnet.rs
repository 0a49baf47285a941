//! CIFAR-style ResNet-32 (BBN's resnet_cifar, option-A shortcut), with an LSK module in every
//! basic block when asked, as a bilateral-branch network (SPEC.md "Model").

use super::head::{Fc, InferHead};
use super::init::Init;
use super::layers::{BatchNorm2d, Conv2d, ConvSpec, InitKind, Pass};
use super::lsk::LskBlock;
use super::params::ParamStore;
use crate::autograd::{checkpoint, Var};
use crate::gpu::Gpu;
use crate::ops::batch::{slice_batch, stack_batch};
use crate::ops::channels::{concat_channels, shortcut_a};
use crate::ops::conv::Conv2dParams;
use crate::ops::elementwise::{add_relu, mul_add_relu, scale};
use crate::ops::pool::global_avg_pool;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

/// The most classes a model may have (a checkpoint or golden file claiming more is refused
/// before anything is allocated for it).
pub const MAX_CLASSES: usize = 100_000;

/// What defines the network's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub classes: usize,
    pub in_ch: usize,
    pub lsk: bool,
    /// Trained with both branches (BBN); false for the single-branch baselines, whose
    /// inference uses the conventional branch alone.
    #[serde(default = "yes")]
    pub bilateral: bool,
    /// Channels of the stem and stage 1; stages 2 and 3 have twice and four times as many.
    /// The paper's ResNet-32 has 16 ([`ModelConfig::PAPER_WIDTH`]); narrower networks of the
    /// same depth and wiring keep the golden files of `reference/` small.
    #[serde(default = "paper_width")]
    pub width: usize,
    /// Cao et al.'s cosine classifier (LDAM's) with this logit scale s: logits cos(f, w_k),
    /// the features f and class vectors w_k L2-normalised, no bias, and s·cos at inference.
    /// None: BBN's linear fc with a bias.
    #[serde(default)]
    pub cosine_scale: Option<f32>,
}

impl ModelConfig {
    /// ResNet-32's stage widths 16 / 32 / 64 (He et al. 2016, CIFAR variant).
    pub const PAPER_WIDTH: usize = 16;
}

fn yes() -> bool {
    true
}

fn paper_width() -> usize {
    ModelConfig::PAPER_WIDTH
}

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

/// y = relu(lsk(bn2(conv2(relu(bn1(conv1(x)))))) + shortcut(x)).
pub struct BasicBlock {
    /// PyTorch's module name (`layer2.0`, `cb_block`).
    name: String,
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    lsk: Option<LskBlock>,
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
        lsk: bool,
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
        let lsk = if lsk {
            Some(LskBlock::new(
                gpu,
                store,
                init,
                &format!("{name}.lsk"),
                cout,
            )?)
        } else {
            None
        };
        Ok(BasicBlock {
            name: name.to_string(),
            conv1,
            bn1,
            conv2,
            bn2,
            lsk,
            stride,
            pad_ch: (cout - cin) / 2,
        })
    }

    fn forward(&self, x: &Var, pass: Pass) -> Result<Var> {
        Ok(self.forward_with_logits(x, pass)?.0)
    }

    /// The block's output and its LSK module's selection logits (None without LSK).
    fn forward_with_logits(&self, x: &Var, pass: Pass) -> Result<(Var, Option<Var>)> {
        let out = self.bn1.forward_relu(&self.conv1.forward(x)?, pass)?;
        let out = self.bn2.forward(&self.conv2.forward(&out)?, pass)?;
        let sc = if self.stride != 1 || self.pad_ch > 0 {
            shortcut_a(x, self.stride, self.pad_ch)?
        } else {
            x.clone()
        };
        match &self.lsk {
            // relu(lsk(out) + sc) with lsk(out) = out · attention(out), in one kernel.
            Some(lsk) => {
                let (attention, z) = lsk.attention_with_logits(&out)?;
                Ok((mul_add_relu(&out, &attention, &sc)?, Some(z)))
            }
            None => Ok((add_relu(&out, &sc)?, None)),
        }
    }
}

/// Runs `b` and adds its LSK selection logits, under its name, to `probe`.
fn probed(b: &BasicBlock, x: &Var, pass: Pass, probe: &mut Vec<(String, Var)>) -> Result<Var> {
    let (y, z) = b.forward_with_logits(x, pass)?;
    probe.extend(z.map(|z| (b.name.clone(), z)));
    Ok(y)
}

/// What an inference forward passes on to the classifier, and what the LSK modules chose on
/// the way (for explanations, `crate::explain`).
pub struct Probe {
    /// The last stage's outputs that the classifier pools: `cb_block`'s and `rb_block`'s
    /// (bilateral), or `cb_block`'s alone (single-branch), each [N, 4w, ⌈H/4⌉, ⌈W/4⌉].
    pub last: Vec<Var>,
    /// Every LSK module's selection logits z [N, 2, h, w] with its block's name, in forward
    /// order (`layer1.0` … `layer3.3`, `cb_block`, then `rb_block` when bilateral); empty
    /// without LSK.
    pub select_logits: Vec<(String, Var)>,
}

/// BBN ResNet-32: shared stem and stages, unshared `cb_block` / `rb_block`, one fc.
pub struct BbnResNet32 {
    pub config: ModelConfig,
    pub store: ParamStore,
    conv1: Conv2d,
    bn1: BatchNorm2d,
    blocks: Vec<Rc<BasicBlock>>,
    cb_block: Rc<BasicBlock>,
    rb_block: Rc<BasicBlock>,
    fc: Fc,
    /// Checkpoint every block in training (see [`BbnResNet32::set_recompute`]).
    recompute: Cell<bool>,
    /// Run both branches through the trunk as one stacked batch where it fits (see
    /// [`BbnResNet32::forward`]).
    stack: Cell<bool>,
}

impl BbnResNet32 {
    /// A freshly initialised network (seeded).
    pub fn new(gpu: &Arc<Gpu>, config: &ModelConfig, seed: u64) -> Result<BbnResNet32> {
        if !(2..=MAX_CLASSES).contains(&config.classes) {
            bail!(
                "the model needs 2 to {MAX_CLASSES} classes, got {}",
                config.classes
            );
        }
        if config.in_ch != 1 && config.in_ch != 3 {
            bail!(
                "the model takes 1 or 3 input channels, got {}",
                config.in_ch
            );
        }
        let w = config.width;
        if !(2..=512).contains(&w) || !w.is_multiple_of(2) {
            bail!("the model's width must be even and in 2..=512 (the LSK module halves it, the shortcut pads by half), got {w}");
        }
        let mut store = ParamStore::default();
        let mut init = Init::new(seed);
        let s = &mut store;
        let i = &mut init;
        let conv1 = conv3x3(gpu, s, i, "conv1", config.in_ch, w, 1)?;
        let bn1 = BatchNorm2d::new(gpu, s, "bn1", w)?;
        let mut blocks = Vec::new();
        // (stage, in, out, first stride, shared blocks): stage 3's fifth block is the two
        // branch blocks.
        for (stage, cin, cout, stride, n) in [
            (1, w, w, 1, 5),
            (2, w, 2 * w, 2, 5),
            (3, 2 * w, 4 * w, 2, 4),
        ] {
            for b in 0..n {
                let (ci, st) = if b == 0 { (cin, stride) } else { (cout, 1) };
                let name = format!("layer{stage}.{b}");
                blocks.push(Rc::new(BasicBlock::new(
                    gpu, s, i, &name, ci, cout, st, config.lsk,
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
            config.lsk,
        )?);
        let rb_block = Rc::new(BasicBlock::new(
            gpu,
            s,
            i,
            "rb_block",
            4 * w,
            4 * w,
            1,
            config.lsk,
        )?);
        let fc = Fc::new(gpu, s, i, config)?;
        Ok(BbnResNet32 {
            config: config.clone(),
            store,
            conv1,
            bn1,
            blocks,
            cb_block,
            rb_block,
            fc,
            recompute: Cell::new(false),
            stack: Cell::new(true),
        })
    }

    /// With `on`, training keeps only each block's input alive for backward and recomputes
    /// the block's activations (convs, batch norms, the LSK module) during backward: about a
    /// fifth of the activation memory for one more forward pass of the blocks.
    pub fn set_recompute(&self, on: bool) {
        self.recompute.set(on);
    }

    /// With `on` (the default), the bilateral forward stacks both branches' batches through
    /// the shared trunk when they fit; off, each branch runs the trunk on its own (as BBN).
    /// Both give the same values and gradients.
    pub fn set_stack_branches(&self, on: bool) {
        self.stack.set(on);
    }

    /// Whether the trunk's largest activation for x_c and x_r stacked (the stem's and stage
    /// 1's channels at full resolution) fits one storage buffer of this GPU.
    fn stack_fits(&self, x_c: &Var, x_r: &Var) -> bool {
        match *x_c.shape() {
            [n, _, h, w] if x_r.shape() == x_c.shape() => {
                let bytes = (2 * n * self.config.width * h * w * 4) as u64;
                bytes <= x_c.value().gpu().limits.max_storage_buffer_binding_size
            }
            _ => false,
        }
    }

    /// One block, checkpointed when recomputation is on.
    fn block(&self, b: &Rc<BasicBlock>, x: &Var, pass: Pass) -> Result<Var> {
        if !(self.recompute.get() && pass.training) {
            return b.forward(x, pass);
        }
        let b = b.clone();
        let training = pass.training;
        checkpoint(
            "basic_block",
            &[x],
            pass.batches,
            Rc::new(move |xs: &[Var], batches| b.forward(&xs[0], Pass { training, batches })),
        )
    }

    fn check_input(&self, x: &Var) -> Result<()> {
        match *x.shape() {
            [n, c, h, w] if c == self.config.in_ch && h >= 8 && w >= 8 && n >= 1 => Ok(()),
            ref s => bail!(
                "model input: expected [N, {}, H, W] with H, W >= 8, got {s:?}",
                self.config.in_ch
            ),
        }
    }

    /// The shared trunk: stem and the shared blocks of the three stages, over `pass.batches`
    /// batches stacked along N.
    pub fn features(&self, x: &Var, pass: Pass) -> Result<Var> {
        self.trunk(x, pass, None)
    }

    /// [`BbnResNet32::features`], adding each LSK module's selection logits to `probe` where
    /// one is given.
    fn trunk(
        &self,
        x: &Var,
        pass: Pass,
        mut probe: Option<&mut Vec<(String, Var)>>,
    ) -> Result<Var> {
        self.check_input(x)?;
        let mut h = self.bn1.forward_relu(&self.conv1.forward(x)?, pass)?;
        for b in &self.blocks {
            h = match probe.as_deref_mut() {
                Some(p) => probed(b, &h, pass, p)?,
                None => self.block(b, &h, pass)?,
            };
        }
        Ok(h)
    }

    /// Bilateral training forward: z = fc(2·cat(α·f_c, (1−α)·f_r)) (BBN's combiner), with
    /// x_c from the uniform sampler and x_r from the reversed one.
    ///
    /// BBN runs the shared trunk once per branch. Here both batches go through it stacked
    /// as one, each with its own BatchNorm statistics: the same values and gradients, with half
    /// the kernel launches, twice the work per launch, and no second gradient to add for
    /// every trunk weight. Batches of different shapes, or stacked activations larger than
    /// the GPU's largest storage buffer, take the trunk one branch at a time.
    pub fn forward(&self, x_c: &Var, x_r: &Var, alpha: f32, training: bool) -> Result<Var> {
        let one = Pass {
            training,
            batches: 1,
        };
        let (f_c, f_r) = if self.stack.get() && self.stack_fits(x_c, x_r) {
            let n = x_c.shape()[0];
            let both = Pass {
                training,
                batches: 2,
            };
            let f = self.features(&stack_batch(&[x_c, x_r])?, both)?;
            (slice_batch(&f, 0, n)?, slice_batch(&f, n, n)?)
        } else {
            (self.features(x_c, one)?, self.features(x_r, one)?)
        };
        let f_c = global_avg_pool(&self.cb_block.forward(&f_c, one)?)?;
        let f_r = global_avg_pool(&self.rb_block.forward(&f_r, one)?)?;
        let mixed = concat_channels(&[
            &scale(&f_c, 2.0 * alpha)?,
            &scale(&f_r, 2.0 * (1.0 - alpha))?,
        ])?;
        self.fc.logits(&mixed)
    }

    /// Single-branch forward (the baselines): the bilateral combiner at α = 1,
    /// z = fc(cat(2·f_c, 0)); a single-branch cosine classifier's cos(f_c, w_k), unscaled.
    pub fn forward_single(&self, x: &Var, training: bool) -> Result<Var> {
        let pass = Pass {
            training,
            batches: 1,
        };
        let a_c = self.cb_block.forward(&self.features(x, pass)?, pass)?;
        InferHead {
            bilateral: false,
            ..self.infer_head(false)
        }
        .training_logits(&[a_c])
    }

    /// Inference: both branches see the same image; z = fc(cat(f_c, f_r)) (BBN), or the
    /// conventional branch alone for a single-branch model; a cosine classifier's cosines
    /// scaled by its s.
    pub fn infer(&self, x: &Var) -> Result<Var> {
        self.infer_head(false).forward(&self.last_stage(x, None)?)
    }

    /// The inference forward up to the classifier ([`BbnResNet32::infer_head`] takes it from
    /// there), with every LSK module's selection logits.
    pub fn infer_probed(&self, x: &Var) -> Result<Probe> {
        let mut select_logits = Vec::new();
        let last = self.last_stage(x, Some(&mut select_logits))?;
        Ok(Probe {
            last,
            select_logits,
        })
    }

    /// The classifier of [`BbnResNet32::infer`]. With `frozen` its weights enter as constants,
    /// so that a backward through it leaves the model's gradients as they are.
    pub fn infer_head(&self, frozen: bool) -> InferHead {
        InferHead {
            classifier: if frozen {
                self.fc.frozen()
            } else {
                self.fc.clone()
            },
            bilateral: self.config.bilateral,
        }
    }

    /// The last stage's outputs of the inference forward (eval mode, both branches on `x`
    /// when bilateral), adding the LSK selection logits to `probe` where one is given.
    fn last_stage(&self, x: &Var, mut probe: Option<&mut Vec<(String, Var)>>) -> Result<Vec<Var>> {
        let eval = Pass {
            training: false,
            batches: 1,
        };
        let f = self.trunk(x, eval, probe.as_deref_mut())?;
        let branches = if self.config.bilateral {
            vec![&self.cb_block, &self.rb_block]
        } else {
            vec![&self.cb_block]
        };
        branches
            .into_iter()
            .map(|b| match probe.as_deref_mut() {
                Some(p) => probed(b, &f, eval, p),
                None => b.forward(&f, eval),
            })
            .collect()
    }
}
