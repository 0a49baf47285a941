//! Tensor ops. Each file holds one op family: its GPU forward and backward functions over
//! plain tensors and the autograd wrapper over [`crate::autograd::Var`], next to its WGSL
//! source in `shaders/`.

pub mod adaptive_pool;
pub mod attention;
pub mod batch;
pub mod batchnorm;
pub mod channels;
pub mod chanpool;
pub mod conv;
pub mod dropout;
pub mod elementwise;
pub mod linear;
pub mod loss;
pub mod maxpool;
pub mod metrics;
pub mod mixup;
pub mod normalize;
pub mod pool;
pub mod reduce;
pub mod regions;
pub mod select;
pub mod sgd;
pub mod simam;
pub mod softmax;

use crate::gpu::Kernel;
use crate::tensor::Tensor;
use std::sync::LazyLock;

/// A kernel family written over `alias V = f32;` (one value per invocation) and its four-wide
/// twin (`vec4<f32>`): CPU drivers load a storage buffer lane by lane, a vec4 at the cost of an
/// f32, so there four adjacent values per invocation run faster (lavapipe: 1.4-5.5x for the
/// elementwise maps, the LSK selection and its channel pooling). GPUs keep the one-value
/// kernels they were measured with.
pub(crate) struct FourWide {
    pub name: &'static str,
    pub source: &'static str,
    pub name4: &'static str,
    /// `source` with V (and any alias of a matching vector type) four wide.
    pub source4: &'static LazyLock<String>,
}

impl FourWide {
    /// The kernel `entry` for runs of `run` adjacent values (a tensor, or a plane of one) on
    /// `t`'s device, and the values each invocation takes: 4 on a CPU driver where `run` is a
    /// multiple of 4, else 1.
    pub(crate) fn kernel(&self, t: &Tensor, run: usize, entry: &'static str) -> (Kernel, usize) {
        if t.gpu().cpu_threads().is_some() && run.is_multiple_of(4) {
            let k = Kernel {
                name: self.name4,
                source: self.source4.as_str(),
                entry,
            };
            (k, 4)
        } else {
            let k = Kernel {
                name: self.name,
                source: self.source,
                entry,
            };
            (k, 1)
        }
    }
}

/// The most f32 partial sums one split reduction keeps in scratch (32 MiB): the split-K and
/// chunked weight gradients of the `conv` kernels size their splits by it.
pub(crate) const SCRATCH: usize = 1 << 23;
