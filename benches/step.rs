//! `cargo bench --bench step`: the training step at small shapes, then kernel micro-benchmarks
//! for the convolution and batch-norm shapes of ResNet-32 (3x3 convs at 16/32/64 channels,
//! the LSK module's depthwise 5x5 and 7x7 dilation-3 convs and its 1x1 convs, batch norm).
//!
//! Sizes: on a CPU adapter (lavapipe) tiny shapes so that the run takes a few minutes; on a
//! real GPU the shapes. `LSKBB_BENCH_SIZE` (the largest map side; the stages use it,
//! /2 and /4) and `LSKBB_BENCH_BATCH` override the kernel shapes, `LSKBB_BENCH_STEP=0` skips the
//! step benchmark.

use anyhow::Result;
use lskbb::bench::{run_bench, time_op, BenchConfig};
use lskbb::gpu::KernelTime;
use lskbb::ops::batchnorm::{batch_norm_backward, batch_norm_forward};
use lskbb::ops::conv::{conv2d_backward, conv2d_forward, Conv2dParams};
use lskbb::train::method::Method;
use lskbb::{AdapterChoice, Gpu, Tensor};
use std::sync::Arc;

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn filled(gpu: &Arc<Gpu>, shape: &[usize]) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    Tensor::from_f32(gpu, &data, shape)
}

/// GPU ms of the kernel entries whose name starts with `prefix`, or the wall time without
/// timestamps.
fn gpu_ms(times: &[KernelTime], prefix: &str, wall_ms: f64) -> f64 {
    if times.is_empty() {
        return wall_ms;
    }
    times
        .iter()
        .filter(|t| t.entry.starts_with(prefix))
        .map(|t| t.ns / 1e6)
        .sum()
}

fn row(what: &str, ms: f64, flops: f64) {
    println!(
        "  {what:<52} {ms:>10.3} ms {:>10.2} GFLOP/s",
        flops / (ms * 1e-3) / 1e9
    );
}

struct ConvCase {
    what: String,
    n: usize,
    cin: usize,
    cout: usize,
    k: usize,
    size: usize,
    p: Conv2dParams,
}

fn conv_case(gpu: &Arc<Gpu>, c: &ConvCase, iters: usize) -> Result<()> {
    let x = filled(gpu, &[c.n, c.cin, c.size, c.size])?;
    let w = filled(gpu, &[c.cout, c.cin / c.p.groups, c.k, c.k])?;
    let y = conv2d_forward(&x, &w, None, c.p)?;
    let o = y.shape()[2];
    let flops = 2.0 * (c.n * c.cout * o * o * (c.cin / c.p.groups) * c.k * c.k) as f64;
    let (fwd_wall, fwd) = time_op(gpu, iters, || conv2d_forward(&x, &w, None, c.p).map(drop))?;
    let (bwd_wall, bwd) = time_op(gpu, iters, || {
        conv2d_backward(&x, &w, false, &y, c.p).map(drop)
    })?;
    row(
        &format!("{} forward", c.what),
        gpu_ms(&fwd, "forward", fwd_wall),
        flops,
    );
    if bwd.is_empty() {
        row(
            &format!("{} backward (grad_x+grad_w)", c.what),
            bwd_wall,
            2.0 * flops,
        );
    } else {
        row(
            &format!("{} grad_x", c.what),
            gpu_ms(&bwd, "grad_x", 0.0),
            flops,
        );
        row(
            &format!("{} grad_w", c.what),
            gpu_ms(&bwd, "grad_w", 0.0),
            flops,
        );
    }
    Ok(())
}

fn batch_norm_case(gpu: &Arc<Gpu>, n: usize, c: usize, size: usize, iters: usize) -> Result<()> {
    let x = filled(gpu, &[n, c, size, size])?;
    let gamma = filled(gpu, &[c])?;
    let beta = filled(gpu, &[c])?;
    let rm = Tensor::zeros(gpu, &[c])?;
    let rv = filled(gpu, &[c])?;
    let (y, mean, var) = batch_norm_forward(&x, &gamma, &beta, &rm, &rv, true, 0.1, 1e-5)?;
    let (fwd, _) = time_op(gpu, iters, || {
        batch_norm_forward(&x, &gamma, &beta, &rm, &rv, true, 0.1, 1e-5).map(drop)
    })?;
    let (bwd, _) = time_op(gpu, iters, || {
        batch_norm_backward(&x, &gamma, &mean, &var, &y, true, 1e-5).map(drop)
    })?;
    // Memory-bound, so bandwidth rather than FLOP/s: the bytes the kernels must move (forward
    // reads x twice and writes y; backward reads x and gy twice and writes gx).
    let elems = x.numel() as f64;
    let what = format!("batchnorm {c}ch {size}x{size} n{n}");
    println!(
        "  {:<52} {fwd:>10.3} ms {:>10.2} GB/s",
        format!("{what} forward"),
        12.0 * elems / (fwd * 1e-3) / 1e9
    );
    println!(
        "  {:<52} {bwd:>10.3} ms {:>10.2} GB/s",
        format!("{what} backward"),
        20.0 * elems / (bwd * 1e-3) / 1e9
    );
    Ok(())
}

fn main() -> Result<()> {
    let gpu = Gpu::new(&AdapterChoice::default())?;
    let cpu = gpu.info.device_type == wgpu::DeviceType::Cpu;
    println!("adapter: {}", gpu.describe());
    if env_usize("LSKBB_BENCH_STEP") != Some(0) {
        let (size, batch, steps) = if cpu { (16, 2, 1) } else { (32, 8, 2) };
        for method in [Method::Lskbb, Method::Bbn] {
            // A fresh GPU per shape, so that each peak memory is its own.
            let gpu = Gpu::new(&AdapterChoice::default())?;
            let cfg = BenchConfig {
                image_size: size,
                batch,
                choices: method.choices(),
                steps,
                warmup: 1,
                profile_steps: 1,
                ..Default::default()
            };
            println!("\n{}", run_bench(&gpu, &cfg)?);
        }
    }
    let size = env_usize("LSKBB_BENCH_SIZE").unwrap_or(if cpu { 32 } else { 224 });
    let n = env_usize("LSKBB_BENCH_BATCH").unwrap_or(if cpu { 1 } else { 32 });
    let iters = if cpu { 1 } else { 10 };
    println!("\nkernels (batch {n}; GPU time per call from timestamps when present)");
    let same = |padding, dilation, groups| Conv2dParams {
        stride: 1,
        padding,
        dilation,
        groups,
    };
    for (c, s) in [(16, size), (32, size / 2), (64, size / 4)] {
        let mut cases = vec![
            ConvCase {
                what: format!("conv3x3 {c}->{c} {s}x{s}"),
                n,
                cin: c,
                cout: c,
                k: 3,
                size: s,
                p: same(1, 1, 1),
            },
            ConvCase {
                what: format!("dw5x5 {c} {s}x{s}"),
                n,
                cin: c,
                cout: c,
                k: 5,
                size: s,
                p: same(2, 1, c),
            },
            ConvCase {
                what: format!("dw7x7 dil3 {c} {s}x{s}"),
                n,
                cin: c,
                cout: c,
                k: 7,
                size: s,
                p: same(9, 3, c),
            },
            ConvCase {
                what: format!("conv1x1 {c}->{} {s}x{s}", c / 2),
                n,
                cin: c,
                cout: c / 2,
                k: 1,
                size: s,
                p: same(0, 1, 1),
            },
        ];
        if c > 16 {
            // The stage's first block: stride 2 from the previous width.
            cases.push(ConvCase {
                what: format!("conv3x3 s2 {}->{c} {}x{}", c / 2, 2 * s, 2 * s),
                n,
                cin: c / 2,
                cout: c,
                k: 3,
                size: 2 * s,
                p: Conv2dParams {
                    stride: 2,
                    ..same(1, 1, 1)
                },
            });
        }
        for case in &cases {
            conv_case(&gpu, case, iters)?;
        }
        batch_norm_case(&gpu, n, c, s, iters)?;
    }
    Ok(())
}
