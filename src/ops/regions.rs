//! BiFormer's region routing (Zhu et al., CVPR 2023, `BiLevelRoutingAttention`;
//! `shaders/regions.wgsl`): an [N, C, H, W] map as a g×g grid of regions, the gather of each
//! region's routed regions' pixels (and its transpose), the region means and the top-k
//! routing between them.

use crate::autograd::Var;
use crate::gpu::{grid, Gpu, Kernel};
use crate::tensor::{DType, Tensor};
use anyhow::{bail, Result};
use std::sync::Arc;

const SRC: &str = include_str!("../../shaders/regions.wgsl");

const fn kernel(entry: &'static str) -> Kernel {
    Kernel {
        name: "regions",
        source: SRC,
        entry,
    }
}

const GATHER: Kernel = kernel("gather");
const SCATTER: Kernel = kernel("scatter");
const INVERT: Kernel = kernel("invert");
const MEANS: Kernel = kernel("means");
const ROUTE: Kernel = kernel("route");

/// The most regions one region may be routed to (the routing kernel's sorted list).
pub const MAX_TOPK: usize = 16;

/// How a map is cut into regions and its channels into heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Regions {
    /// Regions per side (BiFormer's n_win).
    pub grid: usize,
    pub heads: usize,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    g: u32,
    heads: u32,
    k: u32,
    scale: f32,
    own: u32,
    pad: [u32; 3],
}

/// The params of `x_shape` cut as `r`, with k routed regions, checked.
fn params(x_shape: &[usize], r: Regions, k: usize, scale: f32, what: &str) -> Result<Params> {
    let &[n, c, h, w] = x_shape else {
        bail!("{what}: expected an [N, C, H, W] map, got shape {x_shape:?}");
    };
    let g = r.grid;
    if g == 0 || h % g != 0 || w % g != 0 {
        bail!("{what}: a {g}x{g} grid of regions does not divide the {h}x{w} map");
    }
    if r.heads == 0 || c % r.heads != 0 {
        bail!("{what}: {} heads do not divide {c} channels", r.heads);
    }
    if k == 0 || k > g * g {
        bail!("{what}: {k} routed regions of {} (1 to all of them)", g * g);
    }
    Ok(Params {
        n: n as u32,
        c: c as u32,
        h: h as u32,
        w: w as u32,
        g: g as u32,
        heads: r.heads as u32,
        k: k as u32,
        scale,
        own: 0,
        pad: [0; 3],
    })
}

/// Pixels per region.
fn region_pixels(p: &Params) -> usize {
    ((p.h / p.g) * (p.w / p.g)) as usize
}

/// The regions each region of a batch reads: indices [N, R, k] (u32), and whether they are
/// every region's own (the queries' layout), which the transpose reads without a search.
#[derive(Clone)]
pub struct Routes {
    idx: Tensor,
    own: bool,
}

impl Routes {
    /// Routing indices [N, R, k] of u32, each region's k routes distinct (as top-k's are).
    pub fn from_indices(idx: Tensor) -> Routes {
        Routes { idx, own: false }
    }

    /// The identity routing [N, R, 1] of a batch of n maps: every region its own.
    pub fn own(gpu: &Arc<Gpu>, n: usize, r: Regions) -> Result<Routes> {
        let regions = r.grid * r.grid;
        let idx: Vec<u32> = (0..n).flat_map(|_| 0..regions as u32).collect();
        Ok(Routes {
            idx: Tensor::from_u32(gpu, &idx, &[n, regions, 1])?,
            own: true,
        })
    }

    pub fn indices(&self) -> &Tensor {
        &self.idx
    }

    /// The params of gathering `x_shape` by these routes.
    fn params(&self, x_shape: &[usize], r: Regions, what: &str) -> Result<Params> {
        let k = self.idx.shape().get(2).copied().unwrap_or(0);
        let mut p = params(x_shape, r, k, 0.0, what)?;
        check_idx(&self.idx, &p, what)?;
        p.own = self.own as u32;
        Ok(p)
    }
}

/// Checks that idx is [N, R, k] routing indices.
fn check_idx(idx: &Tensor, p: &Params, what: &str) -> Result<()> {
    let want = [p.n as usize, (p.g * p.g) as usize, p.k as usize];
    if idx.shape() != want || idx.dtype() != DType::U32 {
        bail!(
            "{what}: routing indices of shape {:?} ({:?}), expected {want:?} of u32",
            idx.shape(),
            idx.dtype()
        );
    }
    Ok(())
}

/// x [N, C, H, W] -> [N·R·heads, k·w2, C/heads]: for every region r of image n, the pixels of
/// its routed regions idx[n, r, ..] [N, R, k], head by head.
pub fn gather_regions_forward(x: &Tensor, routes: &Routes, r: Regions) -> Result<Tensor> {
    let p = routes.params(x.shape(), r, "gather_regions")?;
    let k = p.k as usize;
    let rows = (p.n * p.g * p.g * p.heads) as usize;
    let shape = [rows, k * region_pixels(&p), (p.c / p.heads) as usize];
    let y = Tensor::empty(x.gpu(), &shape, DType::F32)?;
    x.gpu().dispatch(
        &GATHER,
        bytemuck::bytes_of(&p),
        &[x.buf(), routes.idx.buf()],
        &[y.buf()],
        grid(y.numel()),
    )?;
    Ok(y)
}

/// The transpose of [`gather_regions_forward`]: gx [x_shape], each element the sum of the
/// gy entries that read it.
pub fn gather_regions_backward(
    gy: &Tensor,
    routes: &Routes,
    x_shape: &[usize],
    r: Regions,
) -> Result<Tensor> {
    let p = routes.params(x_shape, r, "gather_regions backward")?;
    let k = p.k as usize;
    let rows = (p.n * p.g * p.g * p.heads) as usize;
    let want = [rows, k * region_pixels(&p), (p.c / p.heads) as usize];
    if gy.shape() != want {
        bail!(
            "gather_regions backward: grad_y of shape {:?}, expected {want:?}",
            gy.shape()
        );
    }
    let gpu = gy.gpu();
    let bytes = bytemuck::bytes_of(&p);
    // Where each region's pixels went: the identity routing says it itself; other routes are
    // inverted first ([N, R, R]), so that an element reads one entry per region, not k.
    let lookup = if routes.own {
        routes.idx.clone()
    } else {
        let regions = (p.g * p.g) as usize;
        let inverse = Tensor::empty(gpu, &[p.n as usize, regions, regions], DType::U32)?;
        gpu.dispatch(
            &INVERT,
            bytes,
            &[routes.idx.buf()],
            &[inverse.buf()],
            grid(inverse.numel()),
        )?;
        inverse
    };
    let gx = Tensor::empty(gpu, x_shape, DType::F32)?;
    gpu.dispatch(
        &SCATTER,
        bytes,
        &[gy.buf(), lookup.buf()],
        &[gx.buf()],
        grid(gx.numel()),
    )?;
    Ok(gx)
}

/// The region means of x [N, C, H, W]: [N, R, C] (no gradient: they only route).
pub fn region_means(x: &Tensor, r: Regions) -> Result<Tensor> {
    let p = params(x.shape(), r, 1, 0.0, "region_means")?;
    let shape = [p.n as usize, (p.g * p.g) as usize, p.c as usize];
    let y = Tensor::empty(x.gpu(), &shape, DType::F32)?;
    x.gpu().dispatch(
        &MEANS,
        bytemuck::bytes_of(&p),
        &[x.buf()],
        &[y.buf()],
        grid(y.numel()),
    )?;
    Ok(y)
}

/// For every region of q [N, C, H, W], the `topk` regions ρ of k [N, C, H, W] with the largest
/// (scale·q̄_r)·k̄_ρ over the region means, largest first (ties to the lower index):
/// [N, R, topk] u32. BiFormer routes on detached means (diff_routing off), so this has no
/// gradient.
pub fn route_topk(q: &Tensor, k: &Tensor, r: Regions, topk: usize, scale: f32) -> Result<Routes> {
    if q.shape() != k.shape() {
        bail!(
            "route_topk: queries {:?} and keys {:?} differ in shape",
            q.shape(),
            k.shape()
        );
    }
    if topk > MAX_TOPK {
        bail!("route_topk: at most {MAX_TOPK} routed regions, got {topk}");
    }
    let p = params(q.shape(), r, topk, scale, "route_topk")?;
    let (qm, km) = (region_means(q, r)?, region_means(k, r)?);
    let regions = (p.g * p.g) as usize;
    let top = Tensor::empty(q.gpu(), &[p.n as usize, regions, topk], DType::U32)?;
    q.gpu().dispatch(
        &ROUTE,
        bytemuck::bytes_of(&p),
        &[qm.buf(), km.buf()],
        &[top.buf()],
        grid(p.n as usize * regions),
    )?;
    Ok(Routes::from_indices(top))
}

/// x [N, C, H, W] -> [N·R·heads, k·w2, C/heads] gathered by `routes`
/// ([`gather_regions_forward`]).
pub fn gather_regions(x: &Var, routes: &Routes, r: Regions) -> Result<Var> {
    let y = gather_regions_forward(x.value(), routes, r)?;
    let (idx, shape) = (routes.clone(), x.shape().to_vec());
    Ok(Var::from_op(
        "gather_regions",
        y,
        &[x],
        Box::new(move |gy| Ok(vec![Some(gather_regions_backward(gy, &idx, &shape, r)?)])),
    ))
}

/// The inverse of gathering every region's own pixels: y [N·R·heads, w2, C/heads] back to the
/// map [N, C, H, W] (`x_shape`), each pixel written once.
pub fn ungather_regions(y: &Var, x_shape: &[usize], r: Regions) -> Result<Var> {
    let &[n, ..] = x_shape else {
        bail!("ungather_regions: expected an [N, C, H, W] map shape, got {x_shape:?}");
    };
    let idx = Routes::own(y.value().gpu(), n, r)?;
    let x = gather_regions_backward(y.value(), &idx, x_shape, r)?;
    Ok(Var::from_op(
        "ungather_regions",
        x,
        &[y],
        Box::new(move |gx| Ok(vec![Some(gather_regions_forward(gx, &idx, r)?)])),
    ))
}
