//! Times conv2d on the direct kernels against the implicit-GEMM and tiled depthwise kernels
//! (same run, same adapter): forward, grad_x and grad_w of the model's convolution shapes;
//! prints ms old (ConvAlgo::Direct) / new (ConvAlgo::Auto: GEMM when dense, tiled when
//! depthwise), the old/new ratio and the new kernels' GFLOP/s. Dense stride-1 layers with
//! 3×3 or 1×1 kernels also get a line for the windowed kernels (ConvAlgo::Window): forward
//! and grad_x (and grad_w for 3×3) in ms, their speed-up over Auto, and GFLOP/s; depthwise
//! ones a line for the one-output tiled kernels (ConvAlgo::Tiled) and one for the strips of 4
//! outputs or taps per thread staged in workgroup memory (where they fit, else the tiled
//! kernels); Auto runs them in columns of 4 per thread read straight from memory.
//!
//! `cargo run --release --example conv_bench` uses small shapes (lavapipe, a few seconds);
//! `-- full` the model's training shapes (batch 32, 224 down to 56) for a real GPU.

use anyhow::Result;
use lskbb::ops::conv::depthwise::Depthwise;
use lskbb::ops::conv::{
    conv2d_forward_with, conv2d_grad_w_with, conv2d_grad_x_with, Conv2dParams, ConvAlgo,
};
use lskbb::{AdapterChoice, Gpu, Tensor};
use std::sync::Arc;
use std::time::Instant;

/// n, cin, hw, cout, k, stride, padding, dilation, groups.
type Shape = (
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);

const SMALL: &[Shape] = &[
    (4, 32, 56, 32, 3, 1, 1, 1, 1),
    (4, 16, 56, 16, 3, 1, 1, 1, 1),
    (4, 32, 56, 64, 3, 2, 1, 1, 1),
    (4, 32, 56, 32, 1, 1, 0, 1, 1),
    (4, 2, 56, 2, 7, 1, 3, 1, 1),
    (4, 16, 56, 16, 5, 1, 2, 1, 16),
    (4, 16, 56, 16, 7, 1, 9, 3, 16),
    (16, 64, 8, 64, 7, 1, 9, 3, 64),
];

const FULL: &[Shape] = &[
    (32, 16, 224, 16, 3, 1, 1, 1, 1),
    (32, 16, 224, 32, 3, 2, 1, 1, 1),
    (32, 32, 112, 32, 3, 1, 1, 1, 1),
    (32, 64, 56, 64, 3, 1, 1, 1, 1),
    (32, 64, 56, 64, 1, 1, 0, 1, 1),
    (32, 3, 224, 16, 3, 1, 1, 1, 1),
    (32, 2, 224, 2, 7, 1, 3, 1, 1),
    (32, 16, 224, 16, 5, 1, 2, 1, 16),
    (32, 16, 224, 16, 7, 1, 9, 3, 16),
    (32, 64, 56, 64, 5, 1, 2, 1, 64),
    (128, 64, 8, 64, 7, 1, 9, 3, 64),
];

/// One line of a kernel variant under a shape's line: per pass its ms, its speed-up over
/// ConvAlgo::Auto's time `auto` and its GFLOP/s.
fn variant_line(label: &str, times: &[f64], auto: &[f64], flops: f64) -> String {
    let mut line = format!("  {label:<22}");
    for (t, base) in times.iter().zip(auto) {
        line += &format!(
            " {:>15.3} {:>4.2}x {:>6.1}",
            t * 1e3,
            base / t,
            flops / t / 1e9
        );
    }
    line
}

/// Seconds per call of `f`, after one warm-up call (pipeline builds), waiting for the GPU.
fn time(gpu: &Arc<Gpu>, reps: usize, mut f: impl FnMut() -> Result<Tensor>) -> Result<f64> {
    let sync = |t: &Tensor| gpu.read(t.buf(), 4).map(drop);
    sync(&f()?)?;
    let start = Instant::now();
    let mut last = None;
    for _ in 0..reps {
        last = Some(f()?);
    }
    if let Some(t) = &last {
        sync(t)?;
    }
    Ok(start.elapsed().as_secs_f64() / reps as f64)
}

fn main() -> Result<()> {
    let full = std::env::args().any(|a| a == "full");
    let (shapes, reps) = if full { (FULL, 20) } else { (SMALL, 3) };
    let gpu = Gpu::new(&AdapterChoice::default())?;
    println!("{}", gpu.describe());
    println!(
        "{:<24} {:>25} {:>25} {:>25}",
        "n,cin,hw,cout,k,s,p,d,g", "forward", "grad_x", "grad_w"
    );
    for &(n, cin, hw, cout, k, stride, padding, dilation, groups) in shapes {
        let p = Conv2dParams {
            stride,
            padding,
            dilation,
            groups,
        };
        let fill = |shape: &[usize], seed: usize| {
            let len: usize = shape.iter().product();
            let data: Vec<f32> = (0..len)
                .map(|i| ((i * 7919 + seed * 104729) % 2001) as f32 / 1000.0 - 1.0)
                .collect();
            Tensor::from_f32(&gpu, &data, shape)
        };
        let x = fill(&[n, cin, hw, hw], 1)?;
        let w = fill(&[cout, cin / groups, k, k], 2)?;
        let y = conv2d_forward_with(&x, &w, None, p, ConvAlgo::Auto)?;
        let gy = fill(y.shape(), 3)?;
        let flops = 2.0 * (y.shape().iter().product::<usize>() * cin / groups * k * k) as f64;
        let fwd = |algo| time(&gpu, reps, || conv2d_forward_with(&x, &w, None, p, algo));
        let gx = |algo| {
            time(&gpu, reps, || {
                conv2d_grad_x_with(&x, &w, &gy, None, p, algo)
            })
        };
        let gw = |algo| time(&gpu, reps, || conv2d_grad_w_with(&x, &w, &gy, p, algo));
        let mut line = format!("{n},{cin},{hw},{cout},{k},{stride},{padding},{dilation},{groups}");
        let mut auto = Vec::new();
        for f in [&fwd as &dyn Fn(ConvAlgo) -> Result<f64>, &gx, &gw] {
            let (old, new) = (f(ConvAlgo::Direct)?, f(ConvAlgo::Auto)?);
            line += &format!(
                " {:>7.3}/{:<7.3} {:>4.2}x {:>6.1}",
                old * 1e3,
                new * 1e3,
                old / new,
                flops / new / 1e9
            );
            auto.push(new);
        }
        println!("{line}");
        let all = [&fwd as &dyn Fn(ConvAlgo) -> Result<f64>, &gx, &gw];
        if groups == 1 && stride == 1 && (k - 1) * dilation < 3 {
            // grad_w has a windowed kernel for 3×3 only (ConvAlgo::Window runs GEMM else).
            let passes = if k == 3 && dilation == 1 { 3 } else { 2 };
            let times = all[..passes]
                .iter()
                .map(|f| f(ConvAlgo::Window))
                .collect::<Result<Vec<_>>>()?;
            println!("{}", variant_line("window", &times, &auto, flops));
        }
        if groups == cin && cin == cout && stride == 1 {
            let times = all
                .iter()
                .map(|f| f(ConvAlgo::Tiled))
                .collect::<Result<Vec<_>>>()?;
            println!("{}", variant_line("tiled", &times, &auto, flops));
            let dw = Depthwise::plan(
                n,
                cin,
                (hw, hw),
                (y.shape()[2], y.shape()[3]),
                (k, k),
                padding,
                dilation,
            );
            if let Some(dw) = dw {
                let times = [
                    time(&gpu, reps, || dw.forward_strip(&x, &w, None))?,
                    time(&gpu, reps, || dw.grad_x_strip(&w, &gy, None))?,
                    time(&gpu, reps, || Ok(dw.grad_wb_strip(&x, &gy, false)?.0))?,
                ];
                println!("{}", variant_line("strips", &times, &auto, flops));
            }
        }
    }
    Ok(())
}
