//! Kernel lab for CPU-class adapters (lavapipe): times every variant of `ops::conv::cpu`
//! side by side with the engine's default kernels (`ConvAlgo::Auto`) on the model's dense
//! convolutions at training batch (32 images: both branches of 16), in one run.
//!
//! For each shape, each pass (forward, grad_x, grad_w) prints ms per call (the fastest of the
//! repetitions) of the default and of every variant that applies with its speed-up over the default (default ms / variant ms), and a last
//! line with the best variant per pass. Each variant's result is also compared with the
//! default's; a difference over 1e-3 of the largest value is flagged with `MISMATCH`.
//!
//! The LSK module's depthwise convolutions (5×5, 7×7 dilation 3) are timed the same way
//! against `ops::conv::depthwise_cpu`'s variants (labels `dw C HxW ...`).
//!
//! `cargo run --release --example conv_cpu_lab` runs every shape; `-- FILTER` only the shapes
//! whose label contains FILTER (e.g. `-- 3x3`, `-- 16->16`); `-- reps=N` sets the repetitions
//! per timing (default 3, after one warm-up call).

use anyhow::Result;
use lskbb::ops::conv::cpu::{self, VARIANTS, W_VARIANTS};
use lskbb::ops::conv::depthwise_cpu::{self, VARIANTS as DW_VARIANTS};
use lskbb::ops::conv::{
    conv2d_forward_with, conv2d_grad_w_with, conv2d_grad_x_with, Conv2dParams, ConvAlgo,
};
use lskbb::{AdapterChoice, Gpu, Tensor};
use std::sync::Arc;
use std::time::Instant;

/// cin, cout, input hw, kernel, stride, padding, bias.
type Shape = (usize, usize, usize, usize, usize, usize, bool);

const N: usize = 32;

const SHAPES: &[Shape] = &[
    (16, 16, 32, 3, 1, 1, false),
    (32, 32, 16, 3, 1, 1, false),
    (64, 64, 8, 3, 1, 1, false),
    (16, 32, 32, 3, 2, 1, false),
    (32, 64, 16, 3, 2, 1, false),
    (3, 16, 32, 3, 1, 1, false),
    (1, 16, 32, 3, 1, 1, false),
    (16, 8, 32, 1, 1, 0, true),
    (8, 16, 32, 1, 1, 0, true),
    (32, 16, 16, 1, 1, 0, true),
    (16, 32, 16, 1, 1, 0, true),
    (64, 32, 8, 1, 1, 0, true),
    (32, 64, 8, 1, 1, 0, true),
    (2, 2, 32, 7, 1, 3, true),
    (2, 2, 16, 7, 1, 3, true),
    (2, 2, 8, 7, 1, 3, true),
];

/// Depthwise (the LSK module's): channels, input hw, kernel, dilation ("same" padding).
const DW_SHAPES: &[(usize, usize, usize, usize)] = &[
    (16, 32, 5, 1),
    (32, 16, 5, 1),
    (64, 8, 5, 1),
    (16, 32, 7, 3),
    (32, 16, 7, 3),
    (64, 8, 7, 3),
];

/// Seconds per call of `f` over `reps` calls after one warm-up call, with the GPU idle
/// before and finished after; and the warm-up's result.
fn time(
    gpu: &Arc<Gpu>,
    reps: usize,
    mut f: impl FnMut() -> Result<Tensor>,
) -> Result<(f64, Tensor)> {
    let first = f()?;
    gpu.finish()?;
    let start = Instant::now();
    for _ in 0..reps {
        drop(f()?);
    }
    gpu.finish()?;
    Ok((start.elapsed().as_secs_f64() / reps as f64, first))
}

/// The largest |a − b| over the largest |b|.
fn diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    let (a, b) = (a.to_f32()?, b.to_f32()?);
    let max = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    let d = a.iter().zip(&b).fold(0f32, |m, (x, y)| {
        if (x - y).abs().is_nan() {
            f32::INFINITY
        } else {
            m.max((x - y).abs())
        }
    });
    Ok(f64::from(d / max))
}

/// One pass's timings: the default's, then (label, seconds, mismatch) per variant.
struct Pass {
    name: &'static str,
    default: f64,
    runs: Vec<(String, f64, bool)>,
}

impl Pass {
    fn print(&self) {
        println!("  {:<7} default {:>9.3} ms", self.name, self.default * 1e3);
        for (label, t, bad) in &self.runs {
            println!(
                "    {label:<18} {:>9.3} ms {:>6.2}x{}",
                t * 1e3,
                self.default / t,
                if *bad { "  MISMATCH" } else { "" }
            );
        }
    }

    fn best(&self) -> String {
        let (label, t, _) = self
            .runs
            .iter()
            .filter(|r| !r.2)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .cloned()
            .unwrap_or(("none".into(), f64::NAN, true));
        format!(
            "{}: {label} {:.3} ms vs {:.3} ({:.2}x)",
            self.name,
            t * 1e3,
            self.default * 1e3,
            self.default / t
        )
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reps = args
        .iter()
        .find_map(|a| a.strip_prefix("reps=")?.parse().ok())
        .unwrap_or(3);
    let filter: Vec<&String> = args.iter().filter(|a| !a.starts_with("reps=")).collect();
    let gpu = Gpu::new(&AdapterChoice::default())?;
    println!(
        "{} — batch {N}, {reps} reps after a warm-up",
        gpu.describe()
    );
    let started = Instant::now();
    let mut summary = Vec::new();
    for &(cin, cout, hw, k, stride, padding, bias) in SHAPES {
        let label = format!("{cin}->{cout} {hw}x{hw} {k}x{k} s{stride} p{padding}");
        if !filter.is_empty() && !filter.iter().any(|f| label.contains(f.as_str())) {
            continue;
        }
        let p = Conv2dParams {
            stride,
            padding,
            ..Default::default()
        };
        let fill = |shape: &[usize], seed: usize| {
            let len: usize = shape.iter().product();
            let data: Vec<f32> = (0..len)
                .map(|i| ((i * 7919 + seed * 104729) % 2001) as f32 / 1000.0 - 1.0)
                .collect();
            Tensor::from_f32(&gpu, &data, shape)
        };
        let x = fill(&[N, cin, hw, hw], 1)?;
        let w = fill(&[cout, cin, k, k], 2)?;
        let b = bias.then(|| fill(&[cout], 4)).transpose()?;
        let y = conv2d_forward_with(&x, &w, b.as_ref(), p, ConvAlgo::Auto)?;
        let gy = fill(y.shape(), 3)?;
        let flops = 2.0 * (y.numel() * cin * k * k) as f64;
        println!(
            "{label}{} ({:.0} MFLOP per pass)",
            if bias { " bias" } else { "" },
            flops / 1e6
        );
        let auto = ConvAlgo::Auto;
        let (t, want) = time(&gpu, reps, || {
            conv2d_forward_with(&x, &w, b.as_ref(), p, auto)
        })?;
        let mut fwd = Pass {
            name: "forward",
            default: t,
            runs: Vec::new(),
        };
        for &v in VARIANTS.iter().filter(|v| v.applies(&x, &w, p)) {
            let (t, got) = time(&gpu, reps, || cpu::forward(&x, &w, b.as_ref(), p, v))?;
            fwd.runs.push((v.to_string(), t, diff(&got, &want)? > 1e-3));
        }
        fwd.print();
        let (t, want) = time(&gpu, reps, || {
            conv2d_grad_x_with(&x, &w, &gy, None, p, auto)
        })?;
        let mut gx = Pass {
            name: "grad_x",
            default: t,
            runs: Vec::new(),
        };
        for &v in VARIANTS.iter().filter(|v| v.applies(&x, &w, p)) {
            let (t, got) = time(&gpu, reps, || cpu::grad_x(&x, &w, &gy, None, p, v))?;
            gx.runs.push((v.to_string(), t, diff(&got, &want)? > 1e-3));
        }
        gx.print();
        let (t, want) = time(&gpu, reps, || conv2d_grad_w_with(&x, &w, &gy, p, auto))?;
        let mut gw = Pass {
            name: "grad_w",
            default: t,
            runs: Vec::new(),
        };
        for &v in W_VARIANTS {
            let (t, got) = time(&gpu, reps, || Ok(cpu::grad_w(&x, &w, &gy, false, p, v)?.0))?;
            gw.runs.push((v.to_string(), t, diff(&got, &want)? > 1e-3));
        }
        gw.print();
        summary.push(format!(
            "{label:<24} {} | {} | {}",
            fwd.best(),
            gx.best(),
            gw.best()
        ));
    }
    for &(c, hw, ks, dil) in DW_SHAPES {
        let label = format!("dw {c} {hw}x{hw} {ks}x{ks} d{dil}");
        if !filter.is_empty() && !filter.iter().any(|f| label.contains(f.as_str())) {
            continue;
        }
        let p = Conv2dParams {
            padding: (ks - 1) * dil / 2,
            dilation: dil,
            groups: c,
            ..Default::default()
        };
        let fill = |shape: &[usize], seed: usize| {
            let len: usize = shape.iter().product();
            let data: Vec<f32> = (0..len)
                .map(|i| ((i * 7919 + seed * 104729) % 2001) as f32 / 1000.0 - 1.0)
                .collect();
            Tensor::from_f32(&gpu, &data, shape)
        };
        let x = fill(&[N, c, hw, hw], 1)?;
        let w = fill(&[c, 1, ks, ks], 2)?;
        let b = fill(&[c], 4)?;
        let gy = fill(x.shape(), 3)?;
        println!("{label} bias");
        let auto = ConvAlgo::Auto;
        let variants: Vec<_> = DW_VARIANTS
            .iter()
            .filter(|v| v.applies(&x, &w, p))
            .copied()
            .collect();
        let (t, want) = time(&gpu, reps, || {
            conv2d_forward_with(&x, &w, Some(&b), p, auto)
        })?;
        let mut fwd = Pass {
            name: "forward",
            default: t,
            runs: Vec::new(),
        };
        for &v in &variants {
            let (t, got) = time(&gpu, reps, || {
                depthwise_cpu::forward(&x, &w, Some(&b), p, v)
            })?;
            fwd.runs.push((v.to_string(), t, diff(&got, &want)? > 1e-3));
        }
        fwd.print();
        let (t, want) = time(&gpu, reps, || {
            conv2d_grad_x_with(&x, &w, &gy, None, p, auto)
        })?;
        let mut gx = Pass {
            name: "grad_x",
            default: t,
            runs: Vec::new(),
        };
        for &v in &variants {
            let (t, got) = time(&gpu, reps, || {
                depthwise_cpu::grad_x(&x, &w, &gy, None, p, v)
            })?;
            gx.runs.push((v.to_string(), t, diff(&got, &want)? > 1e-3));
        }
        gx.print();
        let (t, want) = time(&gpu, reps, || conv2d_grad_w_with(&x, &w, &gy, p, auto))?;
        let mut gw = Pass {
            name: "grad_w",
            default: t,
            runs: Vec::new(),
        };
        for &v in &variants {
            let (t, got) = time(&gpu, reps, || {
                Ok(depthwise_cpu::grad_wb(&x, &w, &gy, false, p, v)?.0)
            })?;
            gw.runs.push((v.to_string(), t, diff(&got, &want)? > 1e-3));
        }
        gw.print();
        summary.push(format!(
            "{label:<24} {} | {} | {}",
            fwd.best(),
            gx.best(),
            gw.best()
        ));
    }
    println!("\nbest per pass (variant, ms, default ms, speed-up):");
    for line in summary {
        println!("{line}");
    }
    println!("total {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
