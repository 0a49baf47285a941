//! The classifier of inference over the last stage's outputs (both branch blocks' for the
//! bilateral network, the conventional one's for a single-branch model).

use crate::autograd::Var;
use crate::ops::channels::concat_channels;
use crate::ops::elementwise::scale;
use crate::ops::linear::linear;
use crate::ops::pool::global_avg_pool;
use crate::tensor::Tensor;
use anyhow::{bail, Result};

/// The inference classifier over the last stage's outputs ([`super::resnet::Probe::last`]).
#[derive(Clone)]
pub struct InferHead {
    pub(super) weight: Var,
    pub(super) bias: Var,
    pub(super) bilateral: bool,
}

impl InferHead {
    /// z = fc(cat(GAP(a_c), GAP(a_r))) (bilateral), or fc(cat(2·GAP(a_c), 0)) (the
    /// single-branch combiner at α = 1).
    pub fn forward(&self, last: &[Var]) -> Result<Var> {
        let joined = match (self.bilateral, last) {
            (true, [c, r]) => concat_channels(&[&global_avg_pool(c)?, &global_avg_pool(r)?])?,
            (false, [c]) => {
                let f_c = global_avg_pool(c)?;
                let zeros = Var::constant(Tensor::zeros(f_c.value().gpu(), f_c.shape())?);
                concat_channels(&[&scale(&f_c, 2.0)?, &zeros])?
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
        };
        linear(&joined, &self.weight, Some(&self.bias))
    }
}
