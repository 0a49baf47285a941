//! Conv2d, BatchNorm2d and Linear layers over the autograd ops, registering their tensors
//! under PyTorch's names.

use super::init::Init;
use super::params::{Counter, ParamStore};
use crate::autograd::{recomputing, Var};
use crate::gpu::Gpu;
use crate::ops::batchnorm::{batch_norm_with, BnMode};
use crate::ops::conv::{conv2d, Conv2dParams};
use crate::ops::linear::linear;
use crate::tensor::Tensor;
use anyhow::Result;
use std::sync::Arc;

/// How a layer's weights are drawn.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum InitKind {
    /// kaiming_normal_ weight (BBN's ResNet convs and fc); bias, if any, PyTorch default.
    KaimingNormal,
    /// PyTorch's default Conv2d init (the LSK module's convs).
    TorchDefault,
}

pub struct Conv2d {
    pub weight: Var,
    pub bias: Option<Var>,
    pub p: Conv2dParams,
}

/// A square-kernel convolution layer.
pub struct ConvSpec {
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub p: Conv2dParams,
    pub bias: bool,
    pub init: InitKind,
}

impl Conv2d {
    pub fn new(
        gpu: &Arc<Gpu>,
        store: &mut ParamStore,
        init: &mut Init,
        name: &str,
        s: ConvSpec,
    ) -> Result<Conv2d> {
        let cin_g = s.cin / s.p.groups;
        let fan_in = cin_g * s.k * s.k;
        let shape = [s.cout, cin_g, s.k, s.k];
        let n = shape.iter().product();
        let w = match s.init {
            InitKind::KaimingNormal => init.kaiming_normal(n, fan_in),
            InitKind::TorchDefault => init.torch_default(n, fan_in),
        };
        let weight = store.param(gpu, format!("{name}.weight"), &w, &shape)?;
        let bias = if s.bias {
            let b = init.torch_default(s.cout, fan_in);
            Some(store.param(gpu, format!("{name}.bias"), &b, &[s.cout])?)
        } else {
            None
        };
        Ok(Conv2d {
            weight,
            bias,
            p: s.p,
        })
    }

    pub fn forward(&self, x: &Var) -> Result<Var> {
        conv2d(x, &self.weight, self.bias.as_ref(), self.p)
    }
}

/// How a forward pass runs: in training (batch statistics) or eval, over how many independent
/// batches stacked along N. The BBN branches share the trunk's weights but not its batch
/// statistics, so their stacked batches are normalised each on its own ([`BnMode::groups`]).
#[derive(Clone, Copy, Debug)]
pub struct Pass {
    pub training: bool,
    pub batches: usize,
}

/// BatchNorm2d with PyTorch's defaults: momentum 0.1, eps 1e-5, unbiased running variance.
pub struct BatchNorm2d {
    pub weight: Var,
    pub bias: Var,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub batches: Counter,
}

pub const BN_MOMENTUM: f32 = 0.1;
pub const BN_EPS: f32 = 1e-5;

impl BatchNorm2d {
    pub fn new(
        gpu: &Arc<Gpu>,
        store: &mut ParamStore,
        name: &str,
        c: usize,
    ) -> Result<BatchNorm2d> {
        let weight = store.param(gpu, format!("{name}.weight"), &vec![1.0; c], &[c])?;
        let bias = store.param(gpu, format!("{name}.bias"), &vec![0.0; c], &[c])?;
        let running_mean = store.buffer(format!("{name}.running_mean"), Tensor::zeros(gpu, &[c])?);
        let running_var = store.buffer(
            format!("{name}.running_var"),
            Tensor::from_f32(gpu, &vec![1.0; c], &[c])?,
        );
        let batches = store.counter(format!("{name}.num_batches_tracked"));
        Ok(BatchNorm2d {
            weight,
            bias,
            running_mean,
            running_var,
            batches,
        })
    }

    pub fn forward(&self, x: &Var, pass: Pass) -> Result<Var> {
        self.run(x, pass, false)
    }

    /// relu(bn(x)) in one op (`ops::batchnorm::batch_norm_with`).
    pub fn forward_relu(&self, x: &Var, pass: Pass) -> Result<Var> {
        self.run(x, pass, true)
    }

    fn run(&self, x: &Var, pass: Pass, relu: bool) -> Result<Var> {
        // A checkpointed block's second run must not count the batch twice: momentum 0
        // leaves the running statistics as they are.
        let again = recomputing();
        if pass.training && !again {
            self.batches.set(self.batches.get() + pass.batches as i64);
        }
        let mode = BnMode {
            training: pass.training,
            momentum: if again { 0.0 } else { BN_MOMENTUM },
            eps: BN_EPS,
            groups: pass.batches,
        };
        let running = [&self.running_mean, &self.running_var];
        batch_norm_with(x, &self.weight, &self.bias, running, mode, relu)
    }
}

pub struct Linear {
    pub weight: Var,
    pub bias: Var,
}

impl Linear {
    /// kaiming_normal_ weight (BBN), PyTorch-default bias.
    pub fn new(
        gpu: &Arc<Gpu>,
        store: &mut ParamStore,
        init: &mut Init,
        name: &str,
        fin: usize,
        fout: usize,
    ) -> Result<Linear> {
        let w = init.kaiming_normal(fout * fin, fin);
        let b = init.torch_default(fout, fin);
        Ok(Linear {
            weight: store.param(gpu, format!("{name}.weight"), &w, &[fout, fin])?,
            bias: store.param(gpu, format!("{name}.bias"), &b, &[fout])?,
        })
    }

    pub fn forward(&self, x: &Var) -> Result<Var> {
        linear(x, &self.weight, Some(&self.bias))
    }
}
