//! Side-by-side timing of the dense 3×3 row kernels' variants on one shape, for a machine whose
//! speed drifts (a shared VM): the candidates run in turn, one call each per round, and each
//! call's wall time and the CPU time the process's threads (lavapipe's among them) spent on it
//! are kept, the latter read from /proc/self/task/*/schedstat on Linux (time another process
//! or the hypervisor took is not counted; elsewhere it repeats the wall time). Prints the
//! fastest and the median of the rounds of each.
//!
//! `cargo run --release --example conv_rows_ab -- CIN HW PASS ROUNDS CANDIDATE..`
//! PASS is forward, grad_x or grad_w; a CANDIDATE is `rows:K,P` or `winograd:K,P` (forward,
//! grad_x) or `rows:KO,CI` (grad_w). Batch 32, CIN → CIN channels, HW × HW, stride 1. E.g.
//! `cargo run --release --example conv_rows_ab -- 16 32 forward 11 rows:8,16 winograd:16,4`.

use anyhow::{bail, Context, Result};
use lskbb::ops::conv::subgroup_rows::{self, RowsVariant, RowsWVariant};
use lskbb::ops::conv::{winograd_rows, Conv2dParams};
use lskbb::{AdapterChoice, Tensor};
use std::time::Instant;

const N: usize = 32;

/// Seconds of CPU the process's threads have run, or None where /proc does not say.
fn cpu_seconds() -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 * 1e-9)
}

type Run<'a> = Box<dyn Fn() -> Result<Tensor> + 'a>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [cin, hw, pass, rounds, candidates @ ..] = args.as_slice() else {
        bail!("usage: conv_rows_ab CIN HW PASS ROUNDS CANDIDATE.. (see the file's doc)");
    };
    let (cin, hw): (usize, usize) = (cin.parse()?, hw.parse()?);
    let rounds: usize = rounds.parse()?;
    let gpu = lskbb::Gpu::new(&AdapterChoice::default())?;
    let fill = |shape: &[usize], seed: usize| {
        let len: usize = shape.iter().product();
        let data: Vec<f32> = (0..len)
            .map(|i| ((i * 7919 + seed * 104729) % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        Tensor::from_f32(&gpu, &data, shape)
    };
    let p = Conv2dParams {
        padding: 1,
        ..Default::default()
    };
    let (x, w, gy) = (
        fill(&[N, cin, hw, hw], 1)?,
        fill(&[cin, cin, 3, 3], 2)?,
        fill(&[N, cin, hw, hw], 3)?,
    );
    let (x, w, gy) = (&x, &w, &gy);
    let mut runs: Vec<(&str, Run)> = Vec::new();
    for spec in candidates {
        let (algo, numbers) = spec
            .split_once(':')
            .with_context(|| format!("candidate {spec}: expected ALGO:A,B"))?;
        let [a, b] = numbers
            .split(',')
            .map(str::parse)
            .collect::<Result<Vec<usize>, _>>()
            .ok()
            .and_then(|v| <[usize; 2]>::try_from(v).ok())
            .with_context(|| format!("candidate {spec}: expected two numbers after ':'"))?;
        let v = RowsVariant { k: a, p: b };
        let wv = RowsWVariant {
            ko: a,
            ci: b,
            target: 8,
        };
        let run: Run = match (pass.as_str(), algo) {
            ("forward", "rows") => Box::new(move || subgroup_rows::forward(x, w, None, p, v)),
            ("forward", "winograd") => Box::new(move || winograd_rows::forward(x, w, None, p, v)),
            ("grad_x", "rows") => Box::new(move || subgroup_rows::grad_x(x, w, gy, None, p, v)),
            ("grad_x", "winograd") => Box::new(move || winograd_rows::grad_x(x, w, gy, None, p, v)),
            ("grad_w", "rows") => Box::new(move || subgroup_rows::grad_w(x, w, gy, p, wv)),
            _ => bail!("candidate {spec}: no {algo} kernel for pass {pass}"),
        };
        runs.push((spec, run));
    }
    for (_, run) in &runs {
        drop(run()?);
        gpu.finish()?;
    }
    // Per candidate, each round's (wall ms, CPU ms; wall where /proc does not say).
    let mut ms = vec![(Vec::with_capacity(rounds), Vec::with_capacity(rounds)); runs.len()];
    for _ in 0..rounds {
        for (i, (_, run)) in runs.iter().enumerate() {
            let (wall, cpu) = (Instant::now(), cpu_seconds());
            drop(run()?);
            gpu.finish()?;
            let wall = wall.elapsed().as_secs_f64();
            let cpu = match (cpu, cpu_seconds()) {
                (Some(a), Some(b)) => b - a,
                _ => wall,
            };
            ms[i].0.push(wall * 1e3);
            ms[i].1.push(cpu * 1e3);
        }
    }
    println!(
        "{} — {cin}->{cin} {hw}x{hw} {pass}, batch {N}",
        gpu.describe()
    );
    for ((spec, _), (wall, cpu)) in runs.iter().zip(&mut ms) {
        wall.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        let mid = rounds / 2;
        println!(
            "  {spec:<14} wall ms: fastest {:8.3} median {:8.3}   CPU ms: fastest {:8.3} median {:8.3}",
            wall[0], wall[mid], cpu[0], cpu[mid]
        );
    }
    Ok(())
}
