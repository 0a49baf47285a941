//! The LSKBB model: layers, the LSK module and the bilateral-branch ResNet-32, with
//! PyTorch-compatible parameter names (`reference/lskbb_torch.py`).

pub mod head;
pub mod init;
pub mod layers;
pub mod lsk;
pub mod params;
pub mod resnet;

pub use params::ParamStore;
pub use resnet::{BbnResNet32, ModelConfig};
