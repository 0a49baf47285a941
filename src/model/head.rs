//! The classifier over the last stage's outputs (both branch blocks' for the bilateral
//! network, the conventional one's for a single-branch model): BBN's fc, or Cao et al.'s
//! cosine classifier (LDAM's).

use super::config::ModelConfig;
use super::init::Init;
use super::layers::Linear;
use super::layers::Pass;
use super::network::Neck;
use super::params::ParamStore;
use crate::autograd::Var;
use crate::gpu::Gpu;
use crate::ops::channels::concat_channels;
use crate::ops::elementwise::scale;
use crate::ops::linear::linear;
use crate::ops::normalize::normalize_rows;
use crate::tensor::Tensor;
use anyhow::{bail, Result};
use std::rc::Rc;
use std::sync::Arc;

/// The classifier's parameters, named `fc.*` as the PyTorch reference's.
#[derive(Clone)]
pub enum Fc {
    /// BBN's fc: z = W f + b.
    Linear { weight: Var, bias: Var },
    /// z_k = cos(f, w_k), features and class vectors L2-normalised, no bias (Cao et al.'s
    /// `NormedLinear`); the inference logits are s·cos, as LDAM's loss scales them.
    Cosine { weight: Var, scale: f32 },
}

impl Fc {
    /// A freshly initialised classifier `name` of `config` over `fin` features.
    pub(super) fn new(
        gpu: &Arc<Gpu>,
        store: &mut ParamStore,
        init: &mut Init,
        name: &str,
        fin: usize,
        config: &ModelConfig,
    ) -> Result<Fc> {
        let classes = config.classes;
        let Some(scale) = config.cosine_scale else {
            let fc = Linear::new(gpu, store, init, name, fin, classes)?;
            return Ok(Fc::Linear {
                weight: fc.weight,
                bias: fc.bias,
            });
        };
        if !(scale > 0.0 && scale.is_finite()) {
            bail!("the cosine classifier's scale must be finite and positive, got {scale}");
        }
        // Cao et al.'s init: U(−1, 1), then each class vector scaled to unit norm.
        let mut v = init.torch_default(classes * fin, 1);
        for row in v.chunks_mut(fin) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            row.iter_mut().for_each(|x| *x /= norm);
        }
        let weight = store.param(gpu, format!("{name}.weight"), &v, &[classes, fin])?;
        Ok(Fc::Cosine { weight, scale })
    }

    /// The features it takes per image.
    fn inputs(&self) -> usize {
        match self {
            Fc::Linear { weight, .. } | Fc::Cosine { weight, .. } => weight.shape()[1],
        }
    }

    /// The logits the loss sees of features f [N, F]: W f + b, or the cosines unscaled
    /// (LDAM's loss scales them).
    pub fn logits(&self, f: &Var) -> Result<Var> {
        match self {
            Fc::Linear { weight, bias } => linear(f, weight, Some(bias)),
            Fc::Cosine { weight, .. } => {
                linear(&normalize_rows(f)?, &normalize_rows(weight)?, None)
            }
        }
    }

    /// The inference logits: as [`Fc::logits`], a cosine classifier's scaled by s.
    pub fn infer(&self, f: &Var) -> Result<Var> {
        match self {
            Fc::Linear { .. } => self.logits(f),
            Fc::Cosine { scale: s, .. } => scale(&self.logits(f)?, *s),
        }
    }

    /// The same classifier with its weights as constants, so that a backward through it
    /// leaves the model's gradients as they are.
    pub(super) fn frozen(&self) -> Fc {
        let take = |v: &Var| Var::constant(v.value().clone());
        match self {
            Fc::Linear { weight, bias } => Fc::Linear {
                weight: take(weight),
                bias: take(bias),
            },
            Fc::Cosine { weight, scale } => Fc::Cosine {
                weight: take(weight),
                scale: *scale,
            },
        }
    }
}

/// The inference neck and classifier over the branch blocks' outputs
/// ([`super::network::Probe::last`]).
#[derive(Clone)]
pub struct InferHead {
    pub(super) neck: Rc<dyn Neck>,
    pub(super) classifier: Fc,
    pub(super) bilateral: bool,
    /// How the neck runs: eval, except in single-branch training.
    pub(super) pass: Pass,
}

impl InferHead {
    /// z = fc(cat(f_c, f_r)) (bilateral), or fc(cat(2·f_c, 0)) (the single-branch combiner at
    /// α = 1; f_c alone for a classifier that takes one branch's features), with f = the
    /// neck's features (global average pooling for the ResNets); a cosine classifier's scaled
    /// by s.
    pub fn forward(&self, last: &[Var]) -> Result<Var> {
        self.classifier.infer(&self.join(last)?)
    }

    /// The logits the loss sees (a cosine classifier's unscaled), for single-branch training.
    pub(super) fn training_logits(&self, last: &[Var]) -> Result<Var> {
        self.classifier.logits(&self.join(last)?)
    }

    /// The features the classifier takes from the last stage's outputs.
    fn join(&self, last: &[Var]) -> Result<Var> {
        match (self.bilateral, last) {
            (true, [c, r]) => concat_channels(&[
                &self.neck.features(c, self.pass)?,
                &self.neck.features(r, self.pass)?,
            ]),
            (false, [c]) => {
                let f_c = self.neck.features(c, self.pass)?;
                if self.classifier.inputs() == f_c.shape()[1] {
                    return Ok(f_c);
                }
                let zeros = Var::constant(Tensor::zeros(f_c.value().gpu(), f_c.shape())?);
                concat_channels(&[&scale(&f_c, 2.0)?, &zeros])
            }
            _ => bail!(
                "the classifier of a {} model takes {} last-stage outputs, got {}",
                if self.bilateral {
                    "bilateral"
                } else {
                    "single-branch"
                },
                if self.bilateral { 2 } else { 1 },
                last.len()
            ),
        }
    }
}
