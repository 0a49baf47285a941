//! Kernel profiling (GPU timestamps) and the analytic FLOP count of `lskbb bench`.

mod common;

use lskbb::bench::step_flops;
use lskbb::ops::elementwise::{add, relu};
use lskbb::{Tensor, Var};

/// Every dispatch of a profiled run is counted under its kernel family with a positive
/// GPU time, and nothing is recorded once profiling is off again.
#[test]
fn profiling_counts_dispatches() {
    let gpu = common::gpu();
    if !gpu.profiling_supported() {
        eprintln!("adapter has no timestamp queries; skipping");
        return;
    }
    let x = Var::constant(Tensor::from_f32(&gpu, &[1.0, -2.0, 3.0, -4.0], &[4]).unwrap());
    gpu.set_profiling(true).unwrap();
    for _ in 0..3 {
        relu(&add(&x, &x).unwrap()).unwrap();
    }
    let times = gpu.kernel_times().unwrap();
    gpu.set_profiling(false).unwrap();
    let total: u64 = times.iter().map(|t| t.dispatches).sum();
    assert_eq!(total, 6, "{times:?}");
    for t in &times {
        assert_eq!(t.name, "elementwise", "{times:?}");
        assert_eq!(t.dispatches, 3, "{times:?}");
        assert!(t.ns > 0.0, "{times:?}");
    }
    relu(&x).unwrap();
    assert!(gpu.kernel_times().unwrap().is_empty());
}

/// Plain ResNet-32 at 32x32 is about 69 M multiply-adds a forward (He et al.'s CIFAR
/// figure), so a single-branch step at batch 1 is about 3 x 138 MFLOPs; bilateral doubles it.
#[test]
fn resnet32_step_flops() {
    let plain = step_flops(32, 1, 3, 8, false, false);
    assert!((plain / 3.0 / 1e6 - 138.0).abs() < 3.0, "{plain}");
    let two = step_flops(32, 1, 3, 8, false, true);
    assert!((two / plain - 2.0).abs() < 1e-12);
    assert!((step_flops(32, 4, 3, 8, false, false) / plain - 4.0).abs() < 1e-12);
    assert!(step_flops(32, 1, 3, 8, true, false) > plain);
}
