//! Kernel lab for the subgroup-sharing convolutions (`ops::conv::subgroup`, `subgroup_w`,
//! `pointwise_subgroup`, `depthwise_subgroup`): times each variant side by side with the
//! engine's default kernels (`ConvAlgo::Auto`) on the model's dense 3×3, 1×1, depthwise and
//! 7×7 squeeze convolutions (forward, grad_x and grad_w) at training batch (32 images), in one
//! run. Once a variant is the default, `auto` runs it too: the speed-ups are then against
//! the variant chosen.
//!
//! Per shape and pass: ms per call of the default (fastest of the repetitions after one
//! warm-up call), then of every variant with its speed-up (default ms / variant ms), and the
//! warm-up call's seconds (with a cold shader cache, e.g. `MESA_SHADER_CACHE_DIR` set to an
//! empty folder, mostly the kernel's compilation); a
//! variant whose result differs from the default's by over 1e-3 of the largest value is
//! flagged `MISMATCH`. The device must offer `wgpu::Features::SUBGROUP` (lavapipe does).
//!
//! `cargo run --release --example conv_subgroup_lab` runs every shape; `-- FILTER` only the
//! shapes whose label contains FILTER (e.g. `-- 32->32`, `-- 1x1`, `-- dw`, `-- dense`);
//! `-- pass=grad_w` (forward, grad_x) only that pass of the dense 3×3 shapes; `-- reps=N` the
//! repetitions
//! (default 3).

use anyhow::{bail, Result};
use lskbb::ops::conv::depthwise_subgroup::{self, DW_SG_VARIANTS};
use lskbb::ops::conv::pointwise_subgroup::{self, PW_VARIANTS, PW_W_VARIANTS};
use lskbb::ops::conv::subgroup::{self, FWD_VARIANTS};
use lskbb::ops::conv::subgroup_rows::{self, ROWS_VARIANTS, ROWS_W_VARIANTS};
use lskbb::ops::conv::subgroup_w::{self, W_VARIANTS};
use lskbb::ops::conv::winograd_rows;
use lskbb::ops::conv::{
    conv2d_forward_with, conv2d_grad_w_with, conv2d_grad_x_with, Conv2dParams, ConvAlgo,
};
use lskbb::{AdapterChoice, Gpu, Tensor};
use std::sync::Arc;
use std::time::Instant;

const N: usize = 32;

/// cin, cout, input hw, stride (3×3, padding 1).
const SHAPES: &[(usize, usize, usize, usize)] = &[
    (32, 32, 16, 1),
    (16, 16, 32, 1),
    (64, 64, 8, 1),
    (16, 32, 32, 2),
    (32, 64, 16, 2),
    (16, 16, 64, 1),
];

/// The LSK module's depthwise layers and its dense 2→2 squeeze: channels, hw, kernel size,
/// dilation ("same" padding), whether depthwise.
const DW_SHAPES: &[(usize, usize, usize, usize, bool)] = &[
    (16, 32, 5, 1, true),
    (32, 16, 5, 1, true),
    (64, 8, 5, 1, true),
    (16, 32, 7, 3, true),
    (32, 16, 7, 3, true),
    (64, 8, 7, 3, true),
    (2, 32, 7, 1, false),
    (2, 16, 7, 1, false),
    (2, 8, 7, 1, false),
];

/// The LSK module's 1×1 layers: cin, cout, hw.
const PW_SHAPES: &[(usize, usize, usize)] = &[
    (16, 8, 32),
    (8, 16, 32),
    (32, 16, 16),
    (16, 32, 16),
    (64, 32, 8),
    (32, 64, 8),
];

/// The fastest of `reps` calls of `f` (each waited for) after one warm-up call, in seconds,
/// the warm-up call's seconds (with the kernel's compilation where the driver's shader cache
/// lacks it) and its result.
fn time(
    gpu: &Arc<Gpu>,
    reps: usize,
    mut f: impl FnMut() -> Result<Tensor>,
) -> Result<(f64, f64, Tensor)> {
    let start = Instant::now();
    let first = f()?;
    gpu.finish()?;
    let first_secs = start.elapsed().as_secs_f64();
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let start = Instant::now();
        drop(f()?);
        gpu.finish()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok((best, first_secs, first))
}

/// The largest |a − b| over the largest |b|.
fn diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    let (a, b) = (a.to_f32()?, b.to_f32()?);
    let max = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    let d = a.iter().zip(&b).fold(0f32, |m, (x, y)| {
        let e = (x - y).abs();
        if e.is_nan() {
            f32::INFINITY
        } else {
            m.max(e)
        }
    });
    Ok(f64::from(d / max))
}

/// Times the default kernels (`auto`) and every variant of one pass side by side and prints
/// ms per call, the speed-up over the default, and `MISMATCH` where a variant's result
/// differs from the default's by over 1e-3 of its largest value.
fn compare<V: std::fmt::Display + Copy>(
    gpu: &Arc<Gpu>,
    reps: usize,
    name: &str,
    auto: impl FnMut() -> Result<Tensor>,
    variants: &[V],
    mut run: impl FnMut(V) -> Result<Tensor>,
) -> Result<()> {
    let (default, first, want) = time(gpu, reps, auto)?;
    println!(
        "  {name:<7} auto    {:>9.3} ms          first call {first:.2} s",
        default * 1e3
    );
    for &v in variants {
        let (t, first, got) = time(gpu, reps, || run(v))?;
        println!(
            "    {:<12} {:>9.3} ms {:>6.2}x  first call {first:.2} s{}",
            v.to_string(),
            t * 1e3,
            default / t,
            if diff(&got, &want)? > 1e-3 {
                "  MISMATCH"
            } else {
                ""
            }
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reps = args
        .iter()
        .find_map(|a| a.strip_prefix("reps=")?.parse().ok())
        .unwrap_or(3);
    let passes: Vec<&str> = args
        .iter()
        .filter_map(|a| a.strip_prefix("pass="))
        .collect();
    let pass = |name: &str| passes.is_empty() || passes.contains(&name);
    let filter: Vec<&String> = args
        .iter()
        .filter(|a| !a.starts_with("reps=") && !a.starts_with("pass="))
        .collect();
    let wanted =
        |label: &str| filter.is_empty() || filter.iter().any(|f| label.contains(f.as_str()));
    let gpu = Gpu::new(&AdapterChoice::default())?;
    println!(
        "{} — batch {N}, fastest of {reps} after a warm-up",
        gpu.describe()
    );
    if !subgroup::supported(&gpu) {
        bail!("this device lacks wgpu::Features::SUBGROUP with subgroups of at least 8 lanes");
    }
    let fill = |shape: &[usize], seed: usize| {
        let len: usize = shape.iter().product();
        let data: Vec<f32> = (0..len)
            .map(|i| ((i * 7919 + seed * 104729) % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        Tensor::from_f32(&gpu, &data, shape)
    };
    let auto = ConvAlgo::Auto;
    for &(cin, cout, hw, stride) in SHAPES {
        let label = format!("{cin}->{cout} {hw}x{hw} 3x3 s{stride}");
        if !wanted(&label) {
            continue;
        }
        let p = Conv2dParams {
            stride,
            padding: 1,
            ..Default::default()
        };
        let x = fill(&[N, cin, hw, hw], 1)?;
        let w = fill(&[cout, cin, 3, 3], 2)?;
        let gy = fill(&[N, cout, hw.div_ceil(stride), hw.div_ceil(stride)], 3)?;
        let flops = 2.0 * (gy.numel() * cin * 9) as f64;
        println!("{label} ({:.0} MFLOP per pass)", flops / 1e6);
        if pass("forward") {
            let fwd = || conv2d_forward_with(&x, &w, None, p, auto);
            compare(&gpu, reps, "forward", fwd, FWD_VARIANTS, |v| {
                subgroup::forward(&x, &w, None, p, v)
            })?;
            if subgroup_rows::applies(&x, &w, p) {
                compare(&gpu, reps, "forward", fwd, ROWS_VARIANTS, |v| {
                    subgroup_rows::forward(&x, &w, None, p, v)
                })?;
            }
            if winograd_rows::applies(&x, &w, p) {
                compare(&gpu, reps, "forward winograd", fwd, ROWS_VARIANTS, |v| {
                    winograd_rows::forward(&x, &w, None, p, v)
                })?;
            }
        }
        let gx = || conv2d_grad_x_with(&x, &w, &gy, None, p, auto);
        if pass("grad_x") && subgroup::grad_x_applies(&x, &w, p) {
            compare(&gpu, reps, "grad_x", gx, FWD_VARIANTS, |v| {
                subgroup::grad_x(&x, &w, &gy, None, p, v)
            })?;
        }
        if pass("grad_x") && subgroup_rows::grad_x_applies(&x, &w, p) {
            {
                compare(&gpu, reps, "grad_x", gx, ROWS_VARIANTS, |v| {
                    subgroup_rows::grad_x(&x, &w, &gy, None, p, v)
                })?;
            }
            if winograd_rows::grad_x_applies(&x, &w, p) {
                compare(&gpu, reps, "grad_x winograd", gx, ROWS_VARIANTS, |v| {
                    winograd_rows::grad_x(&x, &w, &gy, None, p, v)
                })?;
            }
        }
        if pass("grad_w") {
            let gw = || conv2d_grad_w_with(&x, &w, &gy, p, auto);
            compare(&gpu, reps, "grad_w", gw, W_VARIANTS, |v| {
                subgroup_w::grad_w(&x, &w, &gy, p, v)
            })?;
            if subgroup_rows::applies(&x, &w, p) {
                compare(&gpu, reps, "grad_w", gw, ROWS_W_VARIANTS, |v| {
                    subgroup_rows::grad_w(&x, &w, &gy, p, v)
                })?;
            }
        }
    }
    for &(cin, cout, hw) in PW_SHAPES {
        let label = format!("1x1 {cin}->{cout} {hw}x{hw}");
        if !wanted(&label) {
            continue;
        }
        let p = Conv2dParams {
            padding: 0,
            ..Default::default()
        };
        let x = fill(&[N, cin, hw, hw], 1)?;
        let w = fill(&[cout, cin, 1, 1], 2)?;
        let gy = fill(&[N, cout, hw, hw], 3)?;
        println!("{label}");
        let fwd = || conv2d_forward_with(&x, &w, None, p, auto);
        compare(&gpu, reps, "forward", fwd, PW_VARIANTS, |v| {
            pointwise_subgroup::forward(&x, &w, None, p, v)
        })?;
        let gx = || conv2d_grad_x_with(&x, &w, &gy, None, p, auto);
        compare(&gpu, reps, "grad_x", gx, PW_VARIANTS, |v| {
            pointwise_subgroup::grad_x(&x, &w, &gy, None, p, v)
        })?;
        let gw = || conv2d_grad_w_with(&x, &w, &gy, p, auto);
        compare(&gpu, reps, "grad_w", gw, PW_W_VARIANTS, |v| {
            Ok(pointwise_subgroup::grad_wb(&x, &w, &gy, false, p, v)?.0)
        })?;
    }
    for &(c, hw, ks, dil, depthwise) in DW_SHAPES {
        let kind = if depthwise { "dw" } else { "dense" };
        let label = format!("{kind} {c}ch {hw}x{hw} {ks}x{ks} d{dil}");
        if !wanted(&label) {
            continue;
        }
        let p = Conv2dParams {
            padding: (ks - 1) * dil / 2,
            dilation: dil,
            groups: if depthwise { c } else { 1 },
            ..Default::default()
        };
        let x = fill(&[N, c, hw, hw], 1)?;
        let w = fill(&[c, c / p.groups, ks, ks], 2)?;
        let gy = fill(&[N, c, hw, hw], 3)?;
        println!("{label}");
        let fwd = || conv2d_forward_with(&x, &w, None, p, auto);
        compare(&gpu, reps, "forward", fwd, DW_SG_VARIANTS, |v| {
            depthwise_subgroup::forward(&x, &w, None, p, v)
        })?;
        let gx = || conv2d_grad_x_with(&x, &w, &gy, None, p, auto);
        compare(&gpu, reps, "grad_x", gx, DW_SG_VARIANTS, |v| {
            depthwise_subgroup::grad_x(&x, &w, &gy, None, p, v)
        })?;
        let gw = || conv2d_grad_w_with(&x, &w, &gy, p, auto);
        compare(&gpu, reps, "grad_w", gw, DW_SG_VARIANTS, |v| {
            Ok(depthwise_subgroup::grad_wb(&x, &w, &gy, false, p, v, 8)?.0)
        })?;
    }
    Ok(())
}
