//! Shared by the subgroup convolution tests (tests/conv_subgroup*.rs).

use super::gpu;
use lskbb::ops::conv::{subgroup, Conv2dParams};

/// A 3×3 convolution's parameters: padding 1 at `stride`.
pub fn params(stride: usize) -> Conv2dParams {
    Conv2dParams {
        stride,
        padding: 1,
        ..Default::default()
    }
}

/// Whether the device runs the subgroup kernels; prints a note when not.
pub fn available() -> bool {
    let ok = subgroup::supported(&gpu());
    if !ok {
        eprintln!("skipped: the adapter lacks wgpu::Features::SUBGROUP with 8+ lane subgroups");
    }
    ok
}
