//! The Large Selective Kernel module (Li et al. 2023, `LSKblock`; SPEC.md "LSK module").

use super::init::Init;
use super::layers::{Conv2d, ConvSpec, InitKind};
use super::params::ParamStore;
use crate::autograd::Var;
use crate::gpu::Gpu;
use crate::ops::chanpool::channel_mean_max_pair;
use crate::ops::conv::Conv2dParams;
use crate::ops::select::lsk_select;
use anyhow::Result;
use std::sync::Arc;

pub struct LskBlock {
    conv0: Conv2d,
    conv_spatial: Conv2d,
    conv1: Conv2d,
    conv2: Conv2d,
    conv_squeeze: Conv2d,
    conv: Conv2d,
}

impl LskBlock {
    pub fn new(
        gpu: &Arc<Gpu>,
        store: &mut ParamStore,
        init: &mut Init,
        name: &str,
        dim: usize,
    ) -> Result<LskBlock> {
        let mut conv = |n: &str, cin, cout, k, padding, dilation, groups| {
            Conv2d::new(
                gpu,
                store,
                init,
                &format!("{name}.{n}"),
                ConvSpec {
                    cin,
                    cout,
                    k,
                    p: Conv2dParams {
                        stride: 1,
                        padding,
                        dilation,
                        groups,
                    },
                    bias: true,
                    init: InitKind::TorchDefault,
                },
            )
        };
        Ok(LskBlock {
            conv0: conv("conv0", dim, dim, 5, 2, 1, dim)?,
            conv_spatial: conv("conv_spatial", dim, dim, 7, 9, 3, dim)?,
            conv1: conv("conv1", dim, dim / 2, 1, 0, 1, 1)?,
            conv2: conv("conv2", dim, dim / 2, 1, 0, 1, 1)?,
            conv_squeeze: conv("conv_squeeze", 2, 2, 7, 3, 1, 1)?,
            conv: conv("conv", dim / 2, dim, 1, 0, 1, 1)?,
        })
    }

    /// The module's attention map: LSK(x) = x · attention(x). The basic block multiplies it
    /// in its residual join (`ops::elementwise::mul_add_relu`), so the product is never a
    /// tensor of its own.
    pub fn attention(&self, x: &Var) -> Result<Var> {
        Ok(self.attention_with_logits(x)?.0)
    }

    /// [`LskBlock::attention`] and the spatial selection logits z [N, 2, H, W] it weighs its
    /// branches with: σ(z₀) the 5×5 depthwise branch's map, σ(z₁) the dilated 7×7 one's
    /// (which sees the 5×5 output, a 23×23 receptive field in all).
    pub fn attention_with_logits(&self, x: &Var) -> Result<(Var, Var)> {
        let a1 = self.conv0.forward(x)?;
        let a2 = self.conv_spatial.forward(&a1)?;
        let a1 = self.conv1.forward(&a1)?;
        let a2 = self.conv2.forward(&a2)?;
        // agg = [mean; max] over cat(a1, a2); attn = a1·σ(z₀) + a2·σ(z₁) with z the squeezed
        // logits (the sigmoid fused in, see ops::select).
        let agg = channel_mean_max_pair(&a1, &a2)?;
        let z = self.conv_squeeze.forward(&agg)?;
        let attn = lsk_select(&a1, &a2, &z)?;
        Ok((self.conv.forward(&attn)?, z))
    }
}
