//! A tensor: a shape, an element type and a pooled GPU buffer. Tensors are immutable values
//! from the outside; cloning one shares its buffer.

use crate::gpu::{Gpu, GpuBuffer};
use anyhow::{bail, Result};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    U32,
}

#[derive(Clone)]
pub struct Tensor {
    buf: Arc<GpuBuffer>,
    shape: Vec<usize>,
    dtype: DType,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {:?})", self.shape, self.dtype)
    }
}

impl Tensor {
    /// An uninitialised tensor: every kernel that creates one writes all of it.
    pub fn empty(gpu: &Arc<Gpu>, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        Ok(Tensor {
            buf: gpu.alloc(4 * n as u64)?,
            shape: shape.to_vec(),
            dtype,
        })
    }

    pub fn zeros(gpu: &Arc<Gpu>, shape: &[usize]) -> Result<Tensor> {
        let t = Tensor::empty(gpu, shape, DType::F32)?;
        gpu.zero(&t.buf);
        Ok(t)
    }

    pub fn from_f32(gpu: &Arc<Gpu>, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        check_len(data.len(), shape)?;
        let t = Tensor::empty(gpu, shape, DType::F32)?;
        gpu.write(&t.buf, bytemuck::cast_slice(data))?;
        Ok(t)
    }

    pub fn from_u32(gpu: &Arc<Gpu>, data: &[u32], shape: &[usize]) -> Result<Tensor> {
        check_len(data.len(), shape)?;
        let t = Tensor::empty(gpu, shape, DType::U32)?;
        gpu.write(&t.buf, bytemuck::cast_slice(data))?;
        Ok(t)
    }

    /// A one-element tensor.
    pub fn scalar(gpu: &Arc<Gpu>, v: f32) -> Result<Tensor> {
        Tensor::from_f32(gpu, &[v], &[1])
    }

    /// Overwrites the contents with `data` (same length).
    pub fn write_f32(&self, data: &[f32]) -> Result<()> {
        check_len(data.len(), &self.shape)?;
        self.gpu().write(&self.buf, bytemuck::cast_slice(data))
    }

    pub fn to_f32(&self) -> Result<Vec<f32>> {
        if self.dtype != DType::F32 {
            bail!(
                "to_f32 on a {:?} tensor of shape {:?}",
                self.dtype,
                self.shape
            );
        }
        let bytes = self.gpu().read(&self.buf, 4 * self.numel() as u64)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// [`Tensor::to_f32`] for async code (in a browser, the only readback that completes).
    pub async fn to_f32_async(&self) -> Result<Vec<f32>> {
        if self.dtype != DType::F32 {
            bail!(
                "to_f32_async on a {:?} tensor of shape {:?}",
                self.dtype,
                self.shape
            );
        }
        let bytes = self
            .gpu()
            .read_async(&self.buf, 4 * self.numel() as u64)
            .await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    pub fn to_u32(&self) -> Result<Vec<u32>> {
        if self.dtype != DType::U32 {
            bail!(
                "to_u32 on a {:?} tensor of shape {:?}",
                self.dtype,
                self.shape
            );
        }
        let bytes = self.gpu().read(&self.buf, 4 * self.numel() as u64)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// The same buffer seen with another shape of equal element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if shape.iter().product::<usize>() != self.numel() {
            bail!("cannot reshape {:?} to {:?}", self.shape, shape);
        }
        Ok(Tensor {
            buf: self.buf.clone(),
            shape: shape.to_vec(),
            dtype: self.dtype,
        })
    }

    /// Elements [start, start + numel(shape)) of this tensor as an f32 tensor of `shape` that
    /// shares its buffer (writes through either show in both). `start` must fall on the
    /// adapter's view alignment ([`Gpu::view_alignment`], in bytes).
    pub fn view(&self, start: usize, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if start + n > self.numel() {
            bail!(
                "a view of elements {start}..{} of a tensor of shape {:?}",
                start + n,
                self.shape
            );
        }
        Ok(Tensor {
            buf: GpuBuffer::view(&self.buf, 4 * start as u64, 4 * n.max(1) as u64)?,
            shape: shape.to_vec(),
            dtype: self.dtype,
        })
    }

    /// Whether both tensors are the same buffer (or the same view).
    pub fn same_buffer(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.buf, &other.buf)
    }

    /// Whether both tensors live in one GPU buffer (views of it included): a kernel cannot
    /// write one of them while it reads the other.
    pub fn shares_memory(&self, other: &Tensor) -> bool {
        self.buf.buffer() == other.buf.buffer()
    }

    /// Copies `src` (same element count) into this tensor's buffer, in recording order.
    pub fn assign(&self, src: &Tensor) -> Result<()> {
        if src.numel() != self.numel() {
            bail!("assign {:?} into {:?}", src.shape, self.shape);
        }
        self.gpu()
            .copy(&src.buf, 0, &self.buf, 0, 4 * self.numel() as u64);
        Ok(())
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        self.buf.gpu()
    }

    pub fn buf(&self) -> &GpuBuffer {
        &self.buf
    }

    /// Dimension `i` counted from the end when negative.
    pub fn dim(&self, i: isize) -> usize {
        let r = self.shape.len() as isize;
        self.shape[(if i < 0 { r + i } else { i }) as usize]
    }
}

fn check_len(len: usize, shape: &[usize]) -> Result<()> {
    let n: usize = shape.iter().product();
    if len != n {
        bail!("{len} values do not fill a tensor of shape {shape:?} ({n} elements)");
    }
    Ok(())
}

/// Splits `[N, C, H, W]` into its four sizes, or names the tensor in an error.
pub fn nchw(t: &Tensor, what: &str) -> Result<[usize; 4]> {
    match *t.shape() {
        [n, c, h, w] => Ok([n, c, h, w]),
        ref s => bail!("{what}: expected an [N, C, H, W] tensor, got shape {s:?}"),
    }
}
