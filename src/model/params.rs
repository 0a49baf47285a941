//! The named parameters, buffers and counters of a model, in PyTorch `state_dict` order and
//! with PyTorch's names, so checkpoints move between lskbb and PyTorch both ways.

use crate::autograd::Var;
use crate::gpu::Gpu;
use crate::tensor::Tensor;
use anyhow::{bail, Result};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

/// A BatchNorm's `num_batches_tracked` (an int64 scalar in PyTorch).
pub type Counter = Rc<Cell<i64>>;

/// Elements of the first parameter block; each further block is twice the last (or as big as
/// the parameter that opens it), so a model's parameters take a few blocks and at most about
/// half of the last one is unused; no block is larger than one storage buffer can be.
const FIRST_BLOCK: usize = 1 << 18;

/// Parameters packed one after another into one buffer, with their gradients at the same
/// places in a second one: the optimiser updates a whole block in one dispatch.
pub struct ParamBlock {
    /// Every parameter's values, as a flat f32 tensor (zeros between and after them).
    pub values: Tensor,
    /// Every parameter's gradient, where backward writes it ([`Var::param_with_grad_home`]).
    pub grads: Tensor,
    /// (index in [`ParamStore::params`], first element) of the block's parameters.
    pub members: Vec<(usize, usize)>,
    /// Elements in use, up to the end of the last parameter.
    pub used: usize,
}

#[derive(Default)]
pub struct ParamStore {
    pub params: Vec<(String, Var)>,
    pub buffers: Vec<(String, Tensor)>,
    pub counters: Vec<(String, Counter)>,
    pub blocks: Vec<ParamBlock>,
}

impl ParamStore {
    /// A new parameter with initial values `data`, placed in the last block (or a new one).
    pub fn param(
        &mut self,
        gpu: &Arc<Gpu>,
        name: String,
        data: &[f32],
        shape: &[usize],
    ) -> Result<Var> {
        let n = data.len();
        let bytes = 4 * n as u64;
        if bytes > gpu.limits.max_storage_buffer_binding_size {
            bail!(
                "parameter {name} {shape:?} takes {bytes} bytes, more than this adapter's largest \
                 storage buffer ({} bytes on '{}'); a smaller --width makes the network narrower",
                gpu.limits.max_storage_buffer_binding_size,
                gpu.info.name
            );
        }
        // Each parameter starts where a view can.
        let fits = |b: &ParamBlock| gpu.view_start(b.used) + n <= b.values.numel();
        if !self.blocks.last().is_some_and(fits) {
            let last = self
                .blocks
                .last()
                .map_or(FIRST_BLOCK / 2, |b| b.values.numel());
            // n fits one buffer (checked above), so the cap keeps room for it.
            let largest = (gpu.limits.max_storage_buffer_binding_size / 4) as usize;
            let cap = (2 * last).max(gpu.view_start(n)).min(largest);
            self.blocks.push(ParamBlock {
                values: Tensor::zeros(gpu, &[cap])?,
                grads: Tensor::zeros(gpu, &[cap])?,
                members: Vec::new(),
                used: 0,
            });
        }
        let index = self.params.len();
        let block = self.blocks.last_mut().expect("a block was just ensured");
        let start = gpu.view_start(block.used);
        let value = block.values.view(start, shape)?;
        value.write_f32(data)?;
        let v = Var::param_with_grad_home(value, block.grads.view(start, shape)?)?;
        block.members.push((index, start));
        block.used = start + n;
        self.params.push((name, v.clone()));
        Ok(v)
    }

    pub fn buffer(&mut self, name: String, t: Tensor) -> Tensor {
        self.buffers.push((name, t.clone()));
        t
    }

    pub fn counter(&mut self, name: String) -> Counter {
        let c = Rc::new(Cell::new(0));
        self.counters.push((name, c.clone()));
        c
    }

    /// Clears every parameter's gradient.
    pub fn zero_grad(&self) {
        for (_, p) in &self.params {
            p.set_grad(None);
        }
    }

    /// Number of scalar parameters.
    pub fn count(&self) -> usize {
        self.params.iter().map(|(_, p)| p.value().numel()).sum()
    }
}
