//! Training: methods, the GPU step, metrics and plots, and the `lskbb train` loop.

pub mod method;
pub mod metrics;
pub mod plot;
pub mod step;
