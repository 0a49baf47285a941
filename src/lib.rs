//! lskbb: a tensor and autograd engine whose math runs in WGSL compute shaders through wgpu,
//! and the LSKBB long-tailed medical image classifier built on it.

pub mod autograd;
pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod gpu;
pub mod model;
pub mod ops;
pub mod optim;
pub mod reference;
pub mod tensor;
pub mod tensor_file;
pub mod train;
pub mod verify;

pub use autograd::{backward, no_grad, Var};
pub use gpu::{AdapterChoice, Gpu};
pub use tensor::{DType, Tensor};
