//! Tensor ops. Each file holds one op family: its GPU forward and backward functions over
//! plain tensors and the autograd wrapper over [`crate::autograd::Var`], next to its WGSL
//! source in `shaders/`.

pub mod batch;
pub mod batchnorm;
pub mod channels;
pub mod chanpool;
pub mod conv;
pub mod elementwise;
pub mod linear;
pub mod loss;
pub mod metrics;
pub mod normalize;
pub mod pool;
pub mod reduce;
pub mod select;
pub mod sgd;
pub mod softmax;

/// The most f32 partial sums one split reduction keeps in scratch (32 MiB): the split-K and
/// chunked weight gradients of the `conv` kernels size their splits by it.
pub(crate) const SCRATCH: usize = 1 << 23;
