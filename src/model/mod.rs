//! The networks: layers, the LSK module, the backbones and the bilateral-branch network over
//! them, with PyTorch-compatible parameter names (`reference/lskbb_torch.py`).

pub mod bra;
pub mod config;
pub mod head;
pub mod init;
pub mod layers;
pub mod lsk;
pub mod network;
pub mod params;
pub mod resnet18;
pub mod resnet32;
pub mod vgg;

pub use config::{Backbone, ModelConfig};
pub use network::{Network, MAX_CLASSES};
pub use params::ParamStore;
