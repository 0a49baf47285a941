//! Training: methods, the GPU step, the `lskbb train` loop, evaluation and prediction,
//! metrics and plots.

pub mod choices;
pub mod eval;
pub mod method;
pub mod metrics;
pub mod plot;
pub mod progress;
pub mod run;
pub mod stages;
pub mod step;

pub use run::{train, EpochRecord, Outcome, SgdSettings, ThetaPer, TrainConfig, TrainOptions};
