//! The named parameters, buffers and counters of a model, in PyTorch `state_dict` order and
//! with PyTorch's names, so checkpoints move between lskbb and PyTorch both ways.

use crate::autograd::Var;
use crate::tensor::Tensor;
use std::cell::Cell;
use std::rc::Rc;

/// A BatchNorm's `num_batches_tracked` (an int64 scalar in PyTorch).
pub type Counter = Rc<Cell<i64>>;

#[derive(Default)]
pub struct ParamStore {
    pub params: Vec<(String, Var)>,
    pub buffers: Vec<(String, Tensor)>,
    pub counters: Vec<(String, Counter)>,
}

impl ParamStore {
    pub fn param(&mut self, name: String, v: Var) -> Var {
        self.params.push((name, v.clone()));
        v
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
