//! Kernel profiling (GPU timestamps), the analytic FLOP count and the report of `lskbb bench`.

mod common;

use lskbb::bench::step_flops;
use lskbb::model::Backbone;
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
        // elementwise_map, or elementwise_map_vec4 on a CPU driver
        assert!(t.name.starts_with("elementwise_map"), "{times:?}");
        assert_eq!(t.dispatches, 3, "{times:?}");
        assert!(t.ns > 0.0, "{times:?}");
    }
    relu(&x).unwrap();
    assert!(gpu.kernel_times().unwrap().is_empty());
}

/// Consecutive dispatches share a compute pass; a copy between two runs of them ends one
/// (the counts `lskbb bench` reports per step). On a device of its own, so that only this
/// test's commands count.
#[test]
fn copies_split_compute_passes() {
    let gpu = lskbb::Gpu::new(&lskbb::AdapterChoice::default()).expect("a GPU adapter");
    let x = Var::constant(Tensor::from_f32(&gpu, &[1.0, -2.0, 3.0, -4.0], &[4]).unwrap());
    gpu.finish().unwrap();
    let (passes, transfers) = gpu.command_counts();
    let y = relu(&add(&x, &x).unwrap()).unwrap();
    // An upload is no command; the assignment is one copy.
    let z = Tensor::from_f32(&gpu, &[0.0; 4], &[4]).unwrap();
    z.assign(y.value()).unwrap();
    relu(&Var::constant(z)).unwrap();
    gpu.finish().unwrap();
    let (p, t) = gpu.command_counts();
    assert_eq!((p - passes, t - transfers), (2, 1));
}

/// Plain ResNet-32 at 32x32 is about 69 M multiply-adds a forward (He et al.'s CIFAR
/// figure), so a single-branch step at batch 1 is about 3 x 138 MFLOPs; bilateral doubles it.
#[test]
fn resnet32_step_flops() {
    let flops =
        |backbone, batch, bilateral| step_flops(backbone, 16, 32, batch, 3, 8, bilateral).unwrap();
    let plain = flops(Backbone::Resnet32, 1, false);
    assert!((plain / 3.0 / 1e6 - 138.0).abs() < 3.0, "{plain}");
    let two = flops(Backbone::Resnet32, 1, true);
    assert!((two / plain - 2.0).abs() < 1e-12);
    assert!((flops(Backbone::Resnet32, 4, false) / plain - 4.0).abs() < 1e-12);
    assert!(flops(Backbone::LskResnet32, 1, false) > plain);
}

/// `lskbb bench` end to end on a tiny LSK step with recomputation: a timed step, the
/// memory figures in order (live <= held), a trim count, and the JSON report with the fields
/// the BENCHMARKS tables read. Run on a device of its own so
/// that the pool's figures are this step's.
#[test]
fn bench_reports_a_recomputed_step() {
    use lskbb::bench::run_bench;
    let gpu = lskbb::Gpu::new(&lskbb::AdapterChoice::default()).expect("a GPU adapter");
    let r = run_bench(&gpu, &tiny_recomputed_step()).unwrap();
    assert!(r.ms_per_step > 0.0 && r.images_per_s > 0.0, "{r:?}");
    assert!(
        r.peak_live_gb > 0.0 && r.peak_live_gb <= r.peak_mem_gb,
        "{r:?}"
    );
    assert!(r.pool_trims_per_step >= 0.0, "{r:?}");
    // The step uploads its batches (copies) and runs dispatches around them.
    assert!(
        r.passes_per_step >= 1.0 && r.transfers_per_step >= 1.0,
        "{r:?}"
    );
    let json = r.to_json().unwrap();
    for key in [
        "ms_per_step",
        "peak_mem_gb",
        "peak_live_gb",
        "pool_trims_per_step",
        "host_ms_per_step",
        "passes_per_step",
        "transfers_per_step",
    ] {
        assert!(
            json.contains(&format!("\"{key}\"")),
            "{key} missing from {json}"
        );
    }
}

/// `--autotune` through a whole recomputed LSK step (tuning also inside the checkpointed
/// blocks' backward): every conv pass of the model is tuned, the choice is one of the timed
/// candidates, and the JSON report lists them.
#[test]
fn bench_autotunes_every_conv_pass() {
    use lskbb::bench::{run_bench, BenchConfig};
    let gpu = lskbb::Gpu::new(&lskbb::AdapterChoice::default()).expect("a GPU adapter");
    let cfg = BenchConfig {
        autotune: true,
        ..tiny_recomputed_step()
    };
    let r = run_bench(&gpu, &cfg).unwrap();
    for pass in ["forward", "grad_x", "grad_w"] {
        assert!(
            r.tuned
                .iter()
                .any(|t| t.key.starts_with(&format!("conv2d {pass}"))),
            "no {pass} tuned: {:?}",
            r.tuned
        );
    }
    for t in &r.tuned {
        assert!(
            t.candidates.iter().any(|(name, _)| *name == t.chosen),
            "{t:?}"
        );
    }
    assert!(r.to_json().unwrap().contains("\"tuned\""));
}

/// One timed step of the LSK model at 8×8, batch 2, with recomputation.
fn tiny_recomputed_step() -> lskbb::bench::BenchConfig {
    lskbb::bench::BenchConfig {
        image_size: 8,
        batch: 2,
        steps: 1,
        warmup: 1,
        profile_steps: 0,
        channels: 1,
        classes: 3,
        recompute: true,
        ..lskbb::bench::BenchConfig::default()
    }
}
