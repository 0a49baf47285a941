//! Read-only arrays of vec4s held in 2-D textures (rgba32float, rows of [`TEXEL_ROW`] texels)
//! for kernels on CPU drivers. Mesa's lavapipe (22.3) reads a storage buffer at a
//! per-invocation index in a loop over the lanes, with a branch per lane and per component
//! (about 35 instructions per lane for a vec4, seen in its JIT code under perf), and fetches a
//! texel without that loop: the row Winograd kernels' weight loads took about 1.2x less time
//! from a texture (`crate::ops::conv::winograd_rows`). A kernel reads texel i at
//! (i % TEXEL_ROW, i / TEXEL_ROW) of the texture bound at [`TEXEL_BINDING`] (the first; the
//! next ones follow).

use super::recorder::Command;
use super::{lock, Gpu, GpuBuffer};
use anyhow::{bail, Result};

/// Texels per texture row: 16 KiB, a multiple of the 256 bytes a buffer-to-texture copy
/// needs between rows.
pub const TEXEL_ROW: usize = 1024;

/// The binding of a kernel's first texture (after any number of buffers).
pub const TEXEL_BINDING: u32 = 16;

/// A texture holding a copy of a buffer's vec4s.
pub struct Texels {
    view: wgpu::TextureView,
}

impl Texels {
    pub(super) fn view(&self) -> &wgpu::TextureView {
        &self.view
    }
}

/// Floats a buffer must hold to fill the rows of a texture of `vec4s` texels.
pub fn texel_floats(vec4s: usize) -> usize {
    vec4s.div_ceil(TEXEL_ROW).max(1) * TEXEL_ROW * 4
}

impl Gpu {
    /// Records a copy of the first `vec4s` vec4s of `src` into a new texture, read by kernels
    /// bound with [`Gpu::dispatch_with`]. `src` holds whole rows: at least
    /// [`texel_floats`]`(vec4s)` floats, those past `vec4s` copied too.
    pub fn texels(&self, src: &GpuBuffer, vec4s: usize) -> Result<Texels> {
        let rows = vec4s.div_ceil(TEXEL_ROW).max(1);
        let max = self.limits.max_texture_dimension_2d as usize;
        if rows > max {
            bail!("{vec4s} texels need {rows} texture rows, over this adapter's {max}");
        }
        let bytes = (texel_floats(vec4s) * 4) as u64;
        if src.size() < bytes || !src.offset().is_multiple_of(16) {
            bail!(
                "texels: the source buffer must hold {bytes} bytes from a 16-byte boundary, \
                 it holds {} from offset {}",
                src.size(),
                src.offset()
            );
        }
        let texture = self.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("texels"),
            size: wgpu::Extent3d {
                width: TEXEL_ROW as u32,
                height: rows as u32,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Float,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let view = texture.create_view(&Default::default());
        lock(&self.rec).push(Command::ToTexture {
            src: src.buffer().clone(),
            src_off: src.offset(),
            texture,
            rows: rows as u32,
        });
        Ok(Texels { view })
    }
}
