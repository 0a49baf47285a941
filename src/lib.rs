//! lskbb: a tensor and autograd engine whose math runs in WGSL compute shaders through wgpu,
//! and the LSKBB long-tailed medical image classifier built on it.

// In a browser wgpu's handles are neither Send nor Sync (there is one thread), yet the engine
// shares them through `Arc` as it does natively.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

pub mod app;
pub mod autograd;
pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod explain;
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
