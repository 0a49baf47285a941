//! Explanations of a prediction: where the model looked (Grad-CAM, Selvaraju et al. 2017) and
//! which receptive field each LSK module chose (its spatial selection masks).
//!
//! Split for callers whose readback is asynchronous (a browser): [`forward_with_maps`] and
//! [`grad_cam`] only record GPU work and return GPU tensors; the caller reads them back
//! ([`Tensor::to_f32`], or its own asynchronous readback) and hands plain slices to the CPU
//! presentation in [`render`] (normalising, upsampling, colouring, overlaying) and [`sheet`]
//! (one picture per image).
//!
//! The bilateral network's classifier reads cat(GAP(a_c), GAP(a_r)), the last-stage outputs
//! of both branch blocks (`cb_block`, `rb_block`), so Grad-CAM is taken on that concatenation:
//! the map is ReLU(Σ_k α_k·A_k) over the channels of both branches, the sum of both branches'
//! weighted maps before one ReLU. A single-branch model's map is `cb_block`'s alone.

pub mod font;
pub mod pictures;
pub mod render;
pub mod sheet;

use crate::autograd::{backward, enable_grad, no_grad, Var};
use crate::model::head::InferHead;
use crate::model::Network;
use crate::ops::elementwise::{add_tensors, binary_forward, unary_forward, BinaryOp, UnaryOp};
use crate::ops::reduce::{sum, sum_to, sum_to_scaled};
use crate::ops::softmax::gather_label;
use crate::tensor::{nchw, Tensor};
use anyhow::{bail, Context, Result};

/// One LSK module's spatial selection masks for a batch.
pub struct LskMasks {
    /// Its basic block (`layer1.0` … `layer3.3`, `cb_block`, `rb_block`).
    pub block: String,
    /// [N, 2, h, w], in [0, 1]: channel 0 is σ(z₀), the weight of the 5×5 depthwise branch,
    /// channel 1 is σ(z₁), the weight of the dilated 7×7 branch (dilation 3, applied to the
    /// 5×5 output: a 23×23 receptive field).
    pub masks: Tensor,
}

/// What one inference forward recorded for an explanation (GPU tensors, nothing read back).
pub struct Captured {
    /// [N, classes], the logits of [`Network::infer`].
    pub logits: Tensor,
    /// The last-stage outputs the classifier pools, [N, 4w, ⌈H/4⌉, ⌈W/4⌉] each: `cb_block`'s
    /// and `rb_block`'s (bilateral), or `cb_block`'s alone (single-branch).
    pub last: Vec<Tensor>,
    /// Every LSK module's masks in forward order (`layer1.0` first, `rb_block` last, which a
    /// single-branch model does not run); empty without LSK.
    pub lsk: Vec<LskMasks>,
    head: InferHead,
}

impl Captured {
    /// The masks of one block by name.
    pub fn masks(&self, block: &str) -> Option<&Tensor> {
        self.lsk.iter().find(|m| m.block == block).map(|m| &m.masks)
    }
}

/// Records the inference forward of `x` [N, C, H, W] (eval mode, as [`Network::infer`]),
/// keeping the logits, the last stage's outputs and every LSK module's selection masks. No
/// autograd graph is kept: [`grad_cam`] back-propagates from the last stage on its own.
pub fn forward_with_maps(model: &Network, x: &Var) -> Result<Captured> {
    no_grad(|| {
        let probe = model.infer_probed(x)?;
        let head = model.infer_head(true);
        let logits = head.forward(&probe.last)?.value().clone();
        let lsk = probe
            .select_logits
            .into_iter()
            .map(|(block, z)| {
                let masks = unary_forward(z.value(), UnaryOp::Sigmoid, 0.0)?;
                Ok(LskMasks { block, masks })
            })
            .collect::<Result<_>>()?;
        Ok(Captured {
            logits,
            last: probe.last.iter().map(|v| v.value().clone()).collect(),
            lsk,
            head,
        })
    })
}

/// The Grad-CAM map [N, h, w] (h, w: the last stage's size, ⌈H/4⌉ and ⌈W/4⌉) of class
/// `classes[i]` for image i, on the GPU: the engine's autograd gives d y_c / d A for the
/// last-stage outputs A (through the classifier, whose weights it leaves untouched), each
/// channel's weight is the spatial mean of that gradient, and the map is the ReLU of the
/// weighted channel sum over both branches (see the module's doc). Values are in the units of
/// the logit; [`render::normalize_max`] scales one image's map to [0, 1].
pub fn grad_cam(captured: &Captured, classes: &[usize]) -> Result<Tensor> {
    let [n, num_classes] = *captured.logits.shape() else {
        bail!(
            "grad_cam: logits of shape {:?}, expected [N, classes]",
            captured.logits.shape()
        );
    };
    if classes.len() != n {
        bail!(
            "grad_cam: {} classes given for a batch of {n} images (one per image)",
            classes.len()
        );
    }
    if let Some(&c) = classes.iter().find(|&&c| c >= num_classes) {
        bail!("grad_cam: class {c} of a model with {num_classes} classes");
    }
    let labels: Vec<u32> = classes.iter().map(|&c| c as u32).collect();
    let labels = Tensor::from_u32(captured.logits.gpu(), &labels, &[n])?;
    enable_grad(|| {
        let leaves: Vec<Var> = captured.last.iter().cloned().map(Var::param).collect();
        let logits = captured.head.forward(&leaves)?;
        // Images are independent in eval mode: d(Σ_i y_i,c_i)/d A_i = d y_i,c_i / d A_i.
        backward(&sum(&gather_label(&logits, &labels)?, &[0], true)?)?;
        let mut cam: Option<Tensor> = None;
        for (i, leaf) in leaves.iter().enumerate() {
            let a = leaf.value();
            let [n, c, h, w] = nchw(a, "grad_cam last-stage output")?;
            let g = leaf
                .grad()
                .with_context(|| format!("grad_cam: last-stage output {i} received no gradient"))?;
            let alpha = sum_to_scaled(&g, &[n, c, 1, 1], 1.0 / (h * w) as f32)?;
            let part = sum_to(&binary_forward(a, &alpha, BinaryOp::Mul)?, &[n, 1, h, w])?;
            cam = Some(match cam {
                Some(acc) => add_tensors(&acc, &part)?,
                None => part,
            });
        }
        let cam = cam.context("grad_cam: the model has no last-stage output")?;
        let [n, _, h, w] = nchw(&cam, "grad_cam map")?;
        unary_forward(&cam, UnaryOp::Relu, 0.0)?.reshape(&[n, h, w])
    })
}
