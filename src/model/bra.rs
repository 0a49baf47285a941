//! BiFormer's bi-level routing attention (Zhu et al., "BiFormer: Vision Transformer with
//! Bi-Level Routing Attention", CVPR 2023; their `BiLevelRoutingAttention`, ops/bra_legacy.py,
//! with kv_downsample 'identity', no parametric or differentiable routing, and gathered keys
//! and values left unweighted, as their released models run it), on [N, C, H, W] maps:
//!
//! q, k, v = qkv(x) (C channels each: qk_dim = dim); the map is cut into a g×g grid of regions;
//! each region r routes to the top-k regions of largest (scale·q̄_r)·k̄_ρ over the region means;
//! every pixel of r attends, head by head, to all pixels of its k routed regions:
//! o = softmax(scale·q Kᵀ) V; out = wo(o + lepe(v)), lepe a 5×5 depthwise conv (their
//! side_dwconv), scale = dim^(−1/2) (theirs: qk_dim, not the head width).
//!
//! BiFormer's token-wise Linear layers are 1×1 convolutions here. Their n_win = 7 regions per
//! side pads maps that 7 does not divide; here the grid is the largest g <= 7 that divides
//! both sides ([`grid_for`]): 7×7 at the paper's 224×224 input, whose ResNet-32 last stage is
//! 56×56 (BiFormer's own 56×56 stage), and smaller grids on smaller maps with no padding.

use super::init::Init;
use super::layers::{Conv2d, ConvSpec, InitKind};
use super::params::ParamStore;
use crate::autograd::Var;
use crate::gpu::Gpu;
use crate::ops::attention::{attention, MAX_DIM};
use crate::ops::channels::slice_channels;
use crate::ops::conv::Conv2dParams;
use crate::ops::elementwise::add;
use crate::ops::regions::{gather_regions, route_topk, ungather_regions, Regions, Routes};
use crate::tensor::Tensor;
use anyhow::{bail, Result};
use std::sync::Arc;

/// Channels per head: BiFormer's head width (dims 64/128/256/512 with 2/4/8/16 heads).
pub const HEAD_DIM: usize = 32;

/// Regions each region attends to: BiFormer-T's top-k of its 28×28 stage (1, 4, 16 and all
/// regions from its first stage to its last); its 56×56 stage routes to one region only,
/// which would make the module local attention within one region.
pub const TOPK: usize = 4;

/// The largest number of regions per side, at most BiFormer's n_win = 7, that divides both
/// sides of an h×w map.
pub fn grid_for(h: usize, w: usize) -> usize {
    (1..=7)
        .rev()
        .find(|g| h.is_multiple_of(*g) && w.is_multiple_of(*g))
        .unwrap_or(1)
}

pub struct Bra {
    dim: usize,
    heads: usize,
    topk: usize,
    qkv: Conv2d,
    lepe: Conv2d,
    wo: Conv2d,
}

impl Bra {
    /// The module over `dim` channels in `heads` heads, routing to `topk` regions; its convs
    /// keep PyTorch's default init (as the LSK module's).
    pub fn new(
        gpu: &Arc<Gpu>,
        store: &mut ParamStore,
        init: &mut Init,
        name: &str,
        dim: usize,
        heads: usize,
        topk: usize,
    ) -> Result<Bra> {
        if heads == 0 || !dim.is_multiple_of(heads) || dim / heads > MAX_DIM {
            bail!("{name}: {heads} heads of {dim} channels (heads must divide them, at most {MAX_DIM} channels a head)");
        }
        let mut conv = |n: &str, cout, k, groups| {
            Conv2d::new(
                gpu,
                store,
                init,
                &format!("{name}.{n}"),
                ConvSpec {
                    cin: dim,
                    cout,
                    k,
                    p: Conv2dParams {
                        stride: 1,
                        padding: k / 2,
                        dilation: 1,
                        groups,
                    },
                    bias: true,
                    init: InitKind::TorchDefault,
                },
            )
        };
        Ok(Bra {
            dim,
            heads,
            topk,
            qkv: conv("qkv", 3 * dim, 1, 1)?,
            lepe: conv("lepe", dim, 5, dim)?,
            wo: conv("wo", dim, 1, 1)?,
        })
    }

    /// scale = dim^(−1/2), BiFormer's for the routing and the attention.
    fn scale(&self) -> f32 {
        (self.dim as f32).powf(-0.5)
    }

    /// q, k and v of x [N, dim, H, W], and its grid of regions.
    fn project(&self, x: &Var) -> Result<([Var; 3], usize)> {
        let &[_, _, h, w] = x.shape() else {
            bail!(
                "bi-level routing attention: expected an [N, C, H, W] map, got {:?}",
                x.shape()
            );
        };
        let c = self.dim;
        let qkv = self.qkv.forward(x)?;
        let qkv = [
            slice_channels(&qkv, 0, c)?,
            slice_channels(&qkv, c, c)?,
            slice_channels(&qkv, 2 * c, c)?,
        ];
        Ok((qkv, grid_for(h, w)))
    }

    /// The regions [N, R, k] each region of q routes to, largest affinity first.
    fn route(&self, q: &Var, k: &Var, g: usize) -> Result<Routes> {
        let routing = Regions { grid: g, heads: 1 };
        let topk = self.topk.min(g * g);
        route_topk(q.value(), k.value(), routing, topk, self.scale())
    }

    /// The regions [N, R, k] that each region of x's map routes to (what [`Bra::forward`]
    /// gathers keys and values from).
    pub fn routes(&self, x: &Var) -> Result<Tensor> {
        let ([q, k, _], g) = self.project(x)?;
        Ok(self.route(&q, &k, g)?.indices().clone())
    }

    /// BRA(x) for x [N, dim, H, W].
    pub fn forward(&self, x: &Var) -> Result<Var> {
        let ([q, k, v], g) = self.project(x)?;
        let r = Regions {
            grid: g,
            heads: self.heads,
        };
        let scale = self.scale();
        let idx = self.route(&q, &k, g)?;
        let own = Routes::own(q.value().gpu(), x.shape()[0], r)?;
        let o = attention(
            &gather_regions(&q, &own, r)?,
            &gather_regions(&k, &idx, r)?,
            &gather_regions(&v, &idx, r)?,
            scale,
        )?;
        let o = ungather_regions(&o, x.shape(), r)?;
        self.wo.forward(&add(&o, &self.lepe.forward(&v)?)?)
    }
}
