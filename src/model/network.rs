//! The bilateral-branch network (BBN, Zhou et al. 2020) over any backbone: a shared trunk,
//! the conventional branch's last block `cb_block` and the re-balancing branch's `rb_block`,
//! each branch's features (a [`Neck`]) and one classifier. A backbone (`super::resnet32`, …)
//! builds the [`Parts`]; a single-branch model runs the trunk and `cb_block` alone.

use super::config::{Backbone, ModelConfig};
use super::head::{Fc, InferHead};
use super::init::Init;
use super::layers::Pass;
use super::params::ParamStore;
use super::{resnet18, resnet32, vgg};
use crate::autograd::{checkpoint, no_grad, Var};
use crate::gpu::Gpu;
use crate::ops::batch::{slice_batch, stack_batch};
use crate::ops::channels::concat_channels;
use crate::ops::elementwise::scale;
use crate::ops::pool::global_avg_pool;
use anyhow::{bail, Context, Result};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

/// The most classes a model may have (a checkpoint or golden file claiming more is refused
/// before anything is allocated for it).
pub const MAX_CLASSES: usize = 100_000;

/// A unit of the network that runs as one (a residual block, a stem, a conv-BN-ReLU unit).
pub trait Block {
    /// Its PyTorch module name (`layer2.0`, `cb_block`), which prefixes its parameters.
    fn name(&self) -> &str;

    /// Its output, and its LSK module's selection logits [N, 2, h, w] where it has one.
    fn forward_probed(&self, x: &Var, pass: Pass) -> Result<(Var, Option<Var>)>;

    fn forward(&self, x: &Var, pass: Pass) -> Result<Var> {
        Ok(self.forward_probed(x, pass)?.0)
    }
}

/// What turns one branch's last-block output [N, C, h, w] into its features [N, F].
pub trait Neck {
    fn features(&self, x: &Var, pass: Pass) -> Result<Var>;

    /// The same neck with any weights as constants (see [`Network::infer_head`]).
    fn frozen(&self) -> Rc<dyn Neck>;
}

/// The ResNets' neck: global average pooling.
pub struct GlobalAvgPool;

impl Neck for GlobalAvgPool {
    fn features(&self, x: &Var, _pass: Pass) -> Result<Var> {
        global_avg_pool(x)
    }

    fn frozen(&self) -> Rc<dyn Neck> {
        Rc::new(GlobalAvgPool)
    }
}

/// What a backbone builds, its parameters registered in the store under PyTorch's names.
pub struct Parts {
    /// Runs first, never recomputed in backward (its input is the image).
    pub stem: Rc<dyn Block>,
    /// The shared blocks after the stem.
    pub blocks: Vec<Rc<dyn Block>>,
    pub cb_block: Rc<dyn Block>,
    /// The re-balancing branch's block; a single-branch backbone may have none.
    pub rb_block: Option<Rc<dyn Block>>,
    pub neck: Rc<dyn Neck>,
    pub fc: Fc,
    /// The smallest image side the backbone takes.
    pub min_size: usize,
    /// The values per image of the trunk's largest activation for an H×W input.
    pub peak_activation: fn(&ModelConfig, usize, usize) -> usize,
}

/// Runs `b` and adds its LSK selection logits, under its name, to `probe`.
fn probed(b: &dyn Block, x: &Var, pass: Pass, probe: &mut Vec<(String, Var)>) -> Result<Var> {
    let (y, z) = b.forward_probed(x, pass)?;
    probe.extend(z.map(|z| (b.name().to_string(), z)));
    Ok(y)
}

/// What an inference forward passes on to the classifier, and what the LSK modules chose on
/// the way (for explanations, `crate::explain`).
pub struct Probe {
    /// The branch blocks' outputs that the classifier reads: `cb_block`'s and `rb_block`'s
    /// (bilateral), or `cb_block`'s alone (single-branch); for ResNet-32 each
    /// [N, 4w, ⌈H/4⌉, ⌈W/4⌉].
    pub last: Vec<Var>,
    /// Every LSK module's selection logits z [N, 2, h, w] with its block's name, in forward
    /// order (`layer1.0` … `layer3.3`, `cb_block`, then `rb_block` when bilateral); empty
    /// without LSK.
    pub select_logits: Vec<(String, Var)>,
}

/// A bilateral-branch (or single-branch) network over one of the backbones.
pub struct Network {
    pub config: ModelConfig,
    pub store: ParamStore,
    parts: Parts,
    /// Checkpoint every block in training (see [`Network::set_recompute`]).
    recompute: Cell<bool>,
    /// Run both branches through the trunk as one stacked batch where it fits (see
    /// [`Network::forward`]).
    stack: Cell<bool>,
}

impl Network {
    /// A freshly initialised network (seeded).
    pub fn new(gpu: &Arc<Gpu>, config: &ModelConfig, seed: u64) -> Result<Network> {
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
        let mut store = ParamStore::default();
        let mut init = Init::new(seed);
        let parts = match config.backbone {
            Backbone::Resnet32
            | Backbone::LskResnet32
            | Backbone::BiformerResnet32
            | Backbone::SimamResnet32 => resnet32::build(gpu, config, &mut store, &mut init)?,
            Backbone::Resnet18 => resnet18::build(gpu, config, &mut store, &mut init)?,
            Backbone::Vgg16 => vgg::build(gpu, config, &mut store, &mut init)?,
        };
        if config.bilateral && parts.rb_block.is_none() {
            bail!(
                "a bilateral {:?} needs a re-balancing branch block",
                config.backbone
            );
        }
        Ok(Network {
            config: config.clone(),
            store,
            parts,
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

    /// Whether the trunk's largest activation for x_c and x_r stacked fits one storage buffer
    /// of this GPU.
    fn stack_fits(&self, x_c: &Var, x_r: &Var) -> bool {
        match *x_c.shape() {
            [n, _, h, w] if x_r.shape() == x_c.shape() => {
                let per_image = (self.parts.peak_activation)(&self.config, h, w);
                let bytes = (2 * n * per_image * 4) as u64;
                bytes <= x_c.value().gpu().limits.max_storage_buffer_binding_size
            }
            _ => false,
        }
    }

    /// One block, checkpointed when recomputation is on.
    fn block(&self, b: &Rc<dyn Block>, x: &Var, pass: Pass) -> Result<Var> {
        if !(self.recompute.get() && pass.training) {
            return b.forward(x, pass);
        }
        let b = b.clone();
        let training = pass.training;
        checkpoint(
            "block",
            &[x],
            pass.batches,
            Rc::new(move |xs: &[Var], batches| b.forward(&xs[0], Pass { training, batches })),
        )
    }

    fn check_input(&self, x: &Var) -> Result<()> {
        let min = self.parts.min_size;
        match *x.shape() {
            [n, c, h, w] if c == self.config.in_ch && h >= min && w >= min && n >= 1 => Ok(()),
            ref s => bail!(
                "model input: expected [N, {}, H, W] with H, W >= {min} for {:?}, got {s:?}",
                self.config.in_ch,
                self.config.backbone
            ),
        }
    }

    /// The shared trunk: stem and the shared blocks, over `pass.batches` batches stacked
    /// along N.
    pub fn features(&self, x: &Var, pass: Pass) -> Result<Var> {
        self.trunk(x, pass, None)
    }

    /// [`Network::features`], adding each LSK module's selection logits to `probe` where one
    /// is given.
    fn trunk(
        &self,
        x: &Var,
        pass: Pass,
        mut probe: Option<&mut Vec<(String, Var)>>,
    ) -> Result<Var> {
        self.check_input(x)?;
        let mut h = self.parts.stem.forward(x, pass)?;
        for b in &self.parts.blocks {
            h = match probe.as_deref_mut() {
                Some(p) => probed(b.as_ref(), &h, pass, p)?,
                None => self.block(b, &h, pass)?,
            };
        }
        Ok(h)
    }

    fn rb_block(&self) -> Result<&Rc<dyn Block>> {
        self.parts
            .rb_block
            .as_ref()
            .context("this single-branch model has no re-balancing branch")
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
        let rb_block = self.rb_block()?;
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
        let neck = &self.parts.neck;
        let f_c = neck.features(&self.parts.cb_block.forward(&f_c, one)?, one)?;
        let f_r = neck.features(&rb_block.forward(&f_r, one)?, one)?;
        let mixed = concat_channels(&[
            &scale(&f_c, 2.0 * alpha)?,
            &scale(&f_r, 2.0 * (1.0 - alpha))?,
        ])?;
        self.parts.fc.logits(&mixed)
    }

    /// Single-branch forward (the baselines): the trunk and `cb_block`, then the classifier as
    /// [`InferHead`] reads one branch (a cosine classifier's cosines unscaled).
    pub fn forward_single(&self, x: &Var, training: bool) -> Result<Var> {
        let pass = Pass {
            training,
            batches: 1,
        };
        let a_c = self
            .parts
            .cb_block
            .forward(&self.features(x, pass)?, pass)?;
        InferHead {
            bilateral: false,
            pass,
            ..self.infer_head(false)
        }
        .training_logits(&[a_c])
    }

    /// MiSLAS's classifier retraining (Zhong et al. 2021, their `train_stage2.py`): the trunk
    /// and `cb_block` run without recording a gradient, their batch norms in training mode
    /// where `shift_bn` (batch statistics, running statistics updated on these batches: their
    /// `shift_bn`) else in eval mode; only the classifier's forward is recorded, so a backward
    /// gives the classifier's parameters alone a gradient.
    pub fn forward_classifier(&self, x: &Var, shift_bn: bool) -> Result<Var> {
        let pass = Pass {
            training: shift_bn,
            batches: 1,
        };
        let a_c = no_grad(|| self.parts.cb_block.forward(&self.features(x, pass)?, pass))?;
        InferHead {
            bilateral: false,
            pass,
            ..self.infer_head(false)
        }
        .training_logits(&[Var::constant(a_c.value().clone())])
    }

    /// Inference: both branches see the same image; z = fc(cat(f_c, f_r)) (BBN), or the
    /// conventional branch alone for a single-branch model; a cosine classifier's cosines
    /// scaled by its s.
    pub fn infer(&self, x: &Var) -> Result<Var> {
        self.infer_head(false).forward(&self.last_stage(x, None)?)
    }

    /// The inference forward up to the branch blocks ([`Network::infer_head`] takes it from
    /// there), with every LSK module's selection logits.
    pub fn infer_probed(&self, x: &Var) -> Result<Probe> {
        let mut select_logits = Vec::new();
        let last = self.last_stage(x, Some(&mut select_logits))?;
        Ok(Probe {
            last,
            select_logits,
        })
    }

    /// The neck and classifier of [`Network::infer`]. With `frozen` their weights enter as
    /// constants, so that a backward through them leaves the model's gradients as they are.
    pub fn infer_head(&self, frozen: bool) -> InferHead {
        let (neck, classifier) = if frozen {
            (self.parts.neck.frozen(), self.parts.fc.frozen())
        } else {
            (self.parts.neck.clone(), self.parts.fc.clone())
        };
        InferHead {
            neck,
            classifier,
            bilateral: self.config.bilateral,
            pass: Pass {
                training: false,
                batches: 1,
            },
        }
    }

    /// The branch blocks' outputs of the inference forward (eval mode, both branches on `x`
    /// when bilateral), adding the LSK selection logits to `probe` where one is given.
    fn last_stage(&self, x: &Var, mut probe: Option<&mut Vec<(String, Var)>>) -> Result<Vec<Var>> {
        let eval = Pass {
            training: false,
            batches: 1,
        };
        let f = self.trunk(x, eval, probe.as_deref_mut())?;
        let mut branches = vec![&self.parts.cb_block];
        if self.config.bilateral {
            branches.push(self.rb_block()?);
        }
        branches
            .into_iter()
            .map(|b| match probe.as_deref_mut() {
                Some(p) => probed(b.as_ref(), &f, eval, p),
                None => b.forward(&f, eval),
            })
            .collect()
    }
}
