//! A pool of storage buffers keyed by size class, so that a steady training step creates no
//! new GPU buffers: a tensor's buffer goes back to the pool when its last handle drops.

use super::Gpu;
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Rounds `bytes` up to a size class: powers of two split into 8 steps, so at most 12.5%
/// of a buffer is wasted while tensors of nearby sizes share buffers.
pub fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(256);
    let top = 63 - bytes.leading_zeros();
    let step = 1u64 << top.saturating_sub(3);
    bytes.div_ceil(step) * step
}

/// Buffers by size class. `held` counts every buffer created (in use or cached for reuse),
/// `in_use` those behind live tensors; the gap is what size classes cost.
#[derive(Default)]
pub struct Pool {
    free: BTreeMap<u64, Vec<wgpu::Buffer>>,
    held: u64,
    peak: u64,
    in_use: u64,
    peak_in_use: u64,
}

impl Pool {
    /// A cached buffer of size class `size`, or with `larger`, of the smallest cached class
    /// up to twice that (a lean pool reuses a bigger idle buffer rather than trim and create);
    /// returns the buffer and its class.
    pub fn take(&mut self, size: u64, larger: bool) -> Option<(wgpu::Buffer, u64)> {
        let top = if larger { 2 * size } else { size };
        let (&class, list) = self
            .free
            .range_mut(size..=top)
            .find(|(_, list)| !list.is_empty())?;
        let buf = list.pop()?;
        self.use_bytes(class);
        Some((buf, class))
    }

    pub fn give(&mut self, size: u64, buf: wgpu::Buffer) {
        self.in_use -= size;
        self.free.entry(size).or_default().push(buf);
    }

    pub fn created(&mut self, size: u64) {
        self.held += size;
        self.peak = self.peak.max(self.held);
        self.use_bytes(size);
    }

    fn use_bytes(&mut self, size: u64) {
        self.in_use += size;
        self.peak_in_use = self.peak_in_use.max(self.in_use);
    }

    /// On a miss for `size` bytes while at least that much sits cached in other classes,
    /// drops cached buffers (largest classes first) until `size` bytes are freed, so that
    /// the memory held tracks the live peak instead of the sum of each class's own peak.
    pub fn trim_for(&mut self, size: u64) {
        if !self.can_trim(size) {
            return;
        }
        let classes: Vec<u64> = self
            .free
            .iter()
            .rev()
            .filter(|(_, v)| !v.is_empty())
            .map(|(&c, _)| c)
            .collect();
        let mut freed = 0;
        for c in classes {
            let Some(list) = self.free.get_mut(&c) else {
                continue;
            };
            while freed < size {
                let Some(buf) = list.pop() else { break };
                drop(buf);
                freed += c;
                self.held -= c;
            }
            if freed >= size {
                break;
            }
        }
    }

    /// Whether at least `size` bytes sit cached.
    pub fn can_trim(&self, size: u64) -> bool {
        self.held - self.in_use >= size
    }

    /// Bytes behind live tensors now and at the peak.
    pub fn in_use(&self) -> (u64, u64) {
        (self.in_use, self.peak_in_use)
    }

    pub fn held(&self) -> u64 {
        self.held
    }

    pub fn peak(&self) -> u64 {
        self.peak
    }
}

/// A pooled GPU buffer; returns to its pool on drop. Or a view of a range of one
/// ([`GpuBuffer::view`]): parameters live as views of a few large buffers, so that the
/// optimiser can update all of them in one dispatch.
pub struct GpuBuffer {
    gpu: Arc<Gpu>,
    buf: Option<wgpu::Buffer>,
    size: u64,
    /// Where a view starts in `buf`; 0 for a whole buffer.
    offset: u64,
    /// The buffer a view looks into, kept alive (and in use) as long as the view is.
    parent: Option<Arc<GpuBuffer>>,
}

impl GpuBuffer {
    pub(super) fn new(gpu: Arc<Gpu>, buf: wgpu::Buffer, size: u64) -> Arc<GpuBuffer> {
        Arc::new(GpuBuffer {
            gpu,
            buf: Some(buf),
            size,
            offset: 0,
            parent: None,
        })
    }

    /// Bytes [offset, offset + size) of `parent`. Kernels see a view as a buffer of its own,
    /// so `offset` must be a multiple of the adapter's storage-binding offset alignment
    /// ([`crate::Gpu::view_alignment`]) and `size` of 4.
    pub fn view(parent: &Arc<GpuBuffer>, offset: u64, size: u64) -> Result<Arc<GpuBuffer>> {
        let align = parent.gpu.view_alignment();
        let aligned = offset.is_multiple_of(align) && size.is_multiple_of(4);
        if !aligned || size == 0 || offset + size > parent.size {
            bail!(
                "a view of bytes {offset}..{} of a {}-byte buffer (offsets must be multiples \
                 of {align}, sizes of 4)",
                offset + size,
                parent.size
            );
        }
        Ok(Arc::new(GpuBuffer {
            gpu: parent.gpu.clone(),
            buf: Some(parent.buffer().clone()),
            size,
            offset: parent.offset + offset,
            parent: Some(parent.clone()),
        }))
    }

    pub fn buffer(&self) -> &wgpu::Buffer {
        // Only `drop` takes the buffer out.
        self.buf.as_ref().expect("buffer present until drop")
    }

    /// Bytes of the buffer (its size class) or of the view.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Where this buffer's bytes start in [`GpuBuffer::buffer`].
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// This buffer bound to a kernel: the whole buffer, or exactly the view's range.
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        if self.parent.is_none() {
            return self.buffer().as_entire_binding();
        }
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer(),
            offset: self.offset,
            size: wgpu::BufferSize::new(self.size),
        })
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            if self.parent.is_none() {
                self.gpu.release(b, self.size);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_waste_at_most_an_eighth() {
        for b in [1u64, 255, 256, 257, 1000, 4096, 4097, 123_457, 10_000_000] {
            let c = size_class(b);
            assert!(c >= b);
            assert!(c <= (b.max(256) * 9).div_ceil(8), "{b} -> {c}");
        }
    }
}
