//! Speed and memory benchmarks: `lskbb bench` times the whole training step (both branches
//! forward, DFLCE loss, backward, SGD) on synthetic batches, breaks its GPU time down per
//! kernel family with timestamp queries, and reports the analytic FLOP rate.

use crate::data::rng::Rng;
use crate::gpu::{Gpu, KernelTime, TunedChoice};
use crate::model::{Backbone, ModelConfig, Network};
use crate::ops::sgd::SgdConfig;
use crate::train::choices::{Choices, LossSettings, LDAM_SCALE};
use crate::train::method::Method;
use crate::train::stages::SMOOTH_HEAD;
use crate::train::step::{HostBatch, Phase, StepSettings, Trainer};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// One benchmark shape and its run lengths.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub image_size: usize,
    pub batch: usize,
    /// Backbone, loss and branches (the sampler does not apply: the batches are synthetic).
    pub choices: Choices,
    /// The backbone's base width; None: the backbone's own (`Backbone::default_width`).
    pub width: Option<usize>,
    /// Timed steps.
    pub steps: usize,
    /// Untimed steps first (pipeline compilation, buffer pool growth).
    pub warmup: usize,
    /// Steps of the separate profiled run (0: no per-kernel table).
    pub profile_steps: usize,
    pub channels: usize,
    pub classes: usize,
    /// Recompute each block's activations in backward (`Trainer::set_recompute`).
    pub recompute: bool,
    /// Time the candidate kernels of each conv pass on first use and keep the fastest
    /// (`Gpu::set_autotune`); the tuning happens in the warm-up steps.
    pub autotune: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            image_size: 224,
            batch: 32,
            choices: Method::Lskbb.choices(),
            width: None,
            steps: 10,
            warmup: 2,
            profile_steps: 2,
            channels: 3,
            classes: 8,
            recompute: false,
            autotune: false,
        }
    }
}

/// GPU time of one kernel family per training step.
#[derive(Clone, Debug, Serialize)]
pub struct KernelRow {
    /// `source::entry`.
    pub kernel: String,
    pub dispatches_per_step: f64,
    pub ms_per_step: f64,
    /// Fraction of all timed kernel time.
    pub share: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub adapter: String,
    pub image_size: usize,
    pub batch: usize,
    pub method: String,
    /// `--backbone`'s name.
    pub backbone: String,
    pub width: usize,
    pub bilateral: bool,
    pub recompute: bool,
    pub warmup: usize,
    pub steps: usize,
    pub ms_per_step: f64,
    /// CPU time of the recording thread per step (autograd, kernel recording, submission),
    /// where the OS reports it (Linux); the GPU runs a step while the next one is recorded.
    pub host_ms_per_step: Option<f64>,
    /// Images through the network per second, counting each branch's image (2·B per step
    /// for the bilateral methods).
    pub images_per_s: f64,
    /// Peak bytes of GPU buffers held by the engine's pool (parameters, optimiser state,
    /// activations, gradients; excludes the driver's own allocations).
    pub peak_mem_bytes: u64,
    pub peak_mem_gb: f64,
    /// Peak bytes behind live tensors (without buffers cached in the pool for reuse).
    pub peak_live_gb: f64,
    /// Compute passes per timed step: a copy or clear between two dispatches ends one.
    pub passes_per_step: f64,
    /// Buffer copies and clears per timed step.
    pub transfers_per_step: f64,
    /// Times per timed step that the lean pool (with `--recompute`) returned cached buffers
    /// to the driver, each a wait for the GPU.
    pub pool_trims_per_step: f64,
    /// Analytic forward + backward FLOPs of one step (convolutions and the fc).
    /// None where no FLOP count is written for the backbone ([`step_flops`]).
    pub step_gflop: Option<f64>,
    pub tflops: Option<f64>,
    /// Steps of the profiled run the kernel table comes from (0: the adapter cannot time).
    pub profiled_steps: usize,
    /// Sum of the kernel table: GPU time inside kernels per step.
    pub kernel_ms_per_step: f64,
    pub dispatches_per_step: f64,
    pub kernels: Vec<KernelRow>,
    pub autotune: bool,
    /// The kernels autotuning chose, with every candidate's time.
    pub tuned: Vec<TunedChoice>,
}

impl BenchReport {
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).context("serialising the benchmark report")
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "adapter: {}", self.adapter)?;
        writeln!(
            f,
            "method {} ({} width {}, {}{}), images {}x{}, batch {}, {} timed steps after {} warmup",
            self.method,
            self.backbone,
            self.width,
            if self.bilateral {
                "bilateral"
            } else {
                "single branch"
            },
            if self.recompute {
                ", blocks recomputed in backward"
            } else {
                ""
            },
            self.image_size,
            self.image_size,
            self.batch,
            self.steps,
            self.warmup
        )?;
        writeln!(f, "  {:<28} {:>12.2}", "ms/step", self.ms_per_step)?;
        if let Some(host) = self.host_ms_per_step {
            writeln!(f, "  {:<28} {:>12.2}", "  host CPU ms/step", host)?;
        }
        writeln!(
            f,
            "  {:<28} {:>12.1}",
            "  compute passes/step", self.passes_per_step
        )?;
        writeln!(
            f,
            "  {:<28} {:>12.1}",
            "  copies and clears/step", self.transfers_per_step
        )?;
        writeln!(f, "  {:<28} {:>12.1}", "images/s", self.images_per_s)?;
        writeln!(
            f,
            "  {:<28} {:>12.3}",
            "peak GPU memory (GB)", self.peak_mem_gb
        )?;
        writeln!(
            f,
            "  {:<28} {:>12.3}",
            "  of it behind live tensors", self.peak_live_gb
        )?;
        if self.recompute {
            writeln!(
                f,
                "  {:<28} {:>12.1}",
                "pool trims (GPU waits)/step", self.pool_trims_per_step
            )?;
        }
        if let (Some(gflop), Some(tflops)) = (self.step_gflop, self.tflops) {
            writeln!(f, "  {:<28} {:>12.2}", "GFLOP/step (analytic)", gflop)?;
            writeln!(f, "  {:<28} {:>12.4}", "TFLOP/s", tflops)?;
        }
        if !self.tuned.is_empty() {
            writeln!(f, "\nautotuned kernels: chosen <- GPU ms of each candidate")?;
            for t in &self.tuned {
                let times: Vec<String> = t
                    .candidates
                    .iter()
                    .map(|(name, ms)| format!("{name} {ms:.3}"))
                    .collect();
                writeln!(f, "  {}: {} <- {}", t.key, t.chosen, times.join(", "))?;
            }
        }
        if self.profiled_steps == 0 {
            return writeln!(
                f,
                "  (no per-kernel GPU times: --profile-steps 0, or the adapter has no timestamps)"
            );
        }
        writeln!(
            f,
            "\nGPU time per kernel family ({} profiled steps; {:.2} ms/step in {:.0} dispatches)",
            self.profiled_steps, self.kernel_ms_per_step, self.dispatches_per_step
        )?;
        writeln!(
            f,
            "  {:<36} {:>10} {:>10} {:>7}",
            "kernel", "disp/step", "ms/step", "share"
        )?;
        for k in &self.kernels {
            writeln!(
                f,
                "  {:<36} {:>10.0} {:>10.3} {:>6.1}%",
                k.kernel,
                k.dispatches_per_step,
                k.ms_per_step,
                100.0 * k.share
            )?;
        }
        Ok(())
    }
}

/// CPU time this thread has run, in ns (Linux: /proc/thread-self/schedstat), or None.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Output side of a convolution along one axis.
fn conv_out(size: usize, k: usize, stride: usize, pad: usize, dil: usize) -> usize {
    (size + 2 * pad - dil * (k - 1) - 1) / stride + 1
}

/// Multiply-add FLOPs of one forward convolution on one image: 2·Cout·Ho·Wo·(Cin/g)·k².
fn conv_flops(cin: usize, cout: usize, g: usize, k: usize, out: usize) -> f64 {
    2.0 * (cout * out * out * (cin / g) * k * k) as f64
}

/// Forward FLOPs of the LSK module on one `dim`-channel map of side `s`.
fn lsk_flops(dim: usize, s: usize) -> f64 {
    conv_flops(dim, dim, dim, 5, s)
        + conv_flops(dim, dim, dim, 7, s)
        + 2.0 * conv_flops(dim, dim / 2, 1, 1, s)
        + conv_flops(2, 2, 1, 7, s)
        + conv_flops(dim / 2, dim, 1, 1, s)
}

/// Forward FLOPs of a basic block on one image of side `s`; returns them and the output side.
fn block_flops(cin: usize, cout: usize, stride: usize, s: usize, lsk: bool) -> (f64, usize) {
    let o = conv_out(s, 3, stride, 1, 1);
    let f = conv_flops(cin, cout, 1, 3, o)
        + conv_flops(cout, cout, 1, 3, o)
        + if lsk { lsk_flops(cout, o) } else { 0.0 };
    (f, o)
}

/// Analytic FLOPs of one training step of BBN ResNet-32, LSK-ResNet-32 or SimAM-ResNet-32 at the paper's width
/// (None for other backbones and widths): forward and backward of every convolution and the fc, elementwise work ignored. A convolution's backward is counted as
/// twice its forward (grad_x and grad_w), except the stem's, whose input needs no gradient.
/// Bilateral steps run the trunk on both batches, each followed by its own branch block.
pub fn step_flops(
    backbone: Backbone,
    width: usize,
    image_size: usize,
    batch: usize,
    channels: usize,
    classes: usize,
    bilateral: bool,
) -> Option<f64> {
    let lsk = match backbone {
        // SimAM has no convolution: elementwise work, which the count leaves out.
        Backbone::Resnet32 | Backbone::SimamResnet32 => false,
        Backbone::LskResnet32 => true,
        Backbone::BiformerResnet32 | Backbone::Resnet18 | Backbone::Vgg16 => return None,
    };
    if width != ModelConfig::PAPER_WIDTH {
        return None;
    }
    let stem = conv_flops(channels, 16, 1, 3, image_size);
    let mut trunk = 0.0;
    let mut s = image_size;
    for (cin, cout, stride, n) in [(16, 16, 1, 5), (16, 32, 2, 5), (32, 64, 2, 5)] {
        for b in 0..n {
            let (ci, st) = if b == 0 { (cin, stride) } else { (cout, 1) };
            let (f, o) = block_flops(ci, cout, st, s, lsk);
            trunk += f;
            s = o;
        }
    }
    let fc = 2.0 * (128 * classes) as f64;
    let per_image = 2.0 * stem + 3.0 * (trunk + fc);
    let images = if bilateral { 2 * batch } else { batch };
    Some(per_image * images as f64)
}

/// Kernel times as a per-step table.
fn kernel_rows(times: &[KernelTime], steps: usize) -> Vec<KernelRow> {
    let total: f64 = times.iter().map(|t| t.ns).sum();
    let per = steps.max(1) as f64;
    times
        .iter()
        .map(|t| KernelRow {
            kernel: format!("{}::{}", t.name, t.entry),
            dispatches_per_step: t.dispatches as f64 / per,
            ms_per_step: t.ns / per / 1e6,
            share: if total > 0.0 { t.ns / total } else { 0.0 },
        })
        .collect()
}

/// Runs `f` `iters` times after one untimed call and returns the wall milliseconds per call
/// (waiting for the GPU at the end) and, when the adapter can time kernels, the GPU time per
/// kernel family over one further profiled call.
pub fn time_op(
    gpu: &Arc<Gpu>,
    iters: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<(f64, Vec<KernelTime>)> {
    f()?;
    gpu.finish()?;
    let t = Instant::now();
    for _ in 0..iters {
        f()?;
    }
    gpu.finish()?;
    let ms = t.elapsed().as_secs_f64() * 1e3 / iters.max(1) as f64;
    if !gpu.profiling_supported() {
        return Ok((ms, Vec::new()));
    }
    gpu.set_profiling(true)?;
    let timed = f().and_then(|_| gpu.kernel_times());
    gpu.set_profiling(false)?;
    Ok((ms, timed?))
}

/// Benchmarks the training step of `cfg.choices` at one shape on synthetic data.
pub fn run_bench(gpu: &Arc<Gpu>, cfg: &BenchConfig) -> Result<BenchReport> {
    if cfg.batch < 2 {
        bail!(
            "bench: the batch size must be at least 2 (batch norm), got {}",
            cfg.batch
        );
    }
    let min = cfg.choices.backbone.min_image_size();
    if cfg.image_size < min {
        bail!(
            "bench: the image size (--image-size) must be at least {min} for {}, got {}",
            cfg.choices.backbone.name(),
            cfg.image_size
        );
    }
    if cfg.steps == 0 {
        bail!("bench: at least one timed step is needed");
    }
    let mut model_cfg = cfg
        .choices
        .model_config(cfg.classes, cfg.channels, LDAM_SCALE);
    model_cfg.width = cfg.width.unwrap_or(model_cfg.width);
    let (backbone, bilateral) = (model_cfg.backbone, model_cfg.bilateral);
    let model = Network::new(gpu, &model_cfg, 0)?;
    let sgd = SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 2e-4,
        nesterov: false,
    };
    // Balanced classes: every class weight 1, every LDAM margin LDAM's largest and every
    // label-aware smoothing the head's (MiSLAS's stage two, which a bench step never is).
    let loss = LossSettings {
        gamma: 2.0,
        cb_weights: vec![1.0; cfg.classes],
        margins: vec![0.5; cfg.classes],
        ldam_scale: LDAM_SCALE,
        smoothing: vec![SMOOTH_HEAD as f32; cfg.classes],
    };
    let mut trainer = Trainer::new(model, sgd, cfg.choices, loss)?;
    trainer.set_recompute(cfg.recompute)?;
    gpu.set_autotune(cfg.autotune);
    let shape = [cfg.batch, cfg.channels, cfg.image_size, cfg.image_size];
    let mut rng = Rng::new(1);
    let mut images = || -> Vec<f32> {
        (0..shape.iter().product::<usize>())
            .map(|_| (2.0 * rng.next_f64() - 1.0) as f32)
            .collect()
    };
    let (xc, xr) = (images(), images());
    let mut rng = Rng::new(2);
    let mut labels = || -> Vec<u32> {
        (0..cfg.batch)
            .map(|_| rng.below(cfg.classes) as u32)
            .collect()
    };
    let (yc, yr) = (labels(), labels());
    let conv = HostBatch {
        x: &xc,
        y: &yc,
        shape,
    };
    let rebal = HostBatch {
        x: &xr,
        y: &yr,
        shape,
    };
    let settings = StepSettings {
        alpha: 0.5,
        theta: 0.5,
        lr: 0.05,
        reweighted: false,
        phase: Phase::Joint,
    };
    let mut step = |n: usize| -> Result<()> {
        for _ in 0..n {
            trainer.step(&conv, bilateral.then_some(&rebal), settings.clone())?;
        }
        gpu.finish()
    };
    step(cfg.warmup)?;
    let (t, trims, cpu) = (Instant::now(), gpu.trims(), thread_cpu_ns());
    let (passes, transfers) = gpu.command_counts();
    step(cfg.steps)?;
    let (passes_after, transfers_after) = gpu.command_counts();
    let per_step = |before: u64, after: u64| (after - before) as f64 / cfg.steps as f64;
    let ms_per_step = t.elapsed().as_secs_f64() * 1e3 / cfg.steps as f64;
    let host_ms_per_step = cpu
        .zip(thread_cpu_ns())
        .map(|(a, b)| (b - a) as f64 / 1e6 / cfg.steps as f64);
    let pool_trims_per_step = per_step(trims, gpu.trims());
    let (_, peak) = gpu.memory();
    let (_, peak_live) = gpu.memory_in_use();
    let profiled_steps = if gpu.profiling_supported() {
        cfg.profile_steps
    } else {
        0
    };
    let mut times = Vec::new();
    if profiled_steps > 0 {
        gpu.set_profiling(true)?;
        let run = step(profiled_steps).and_then(|_| gpu.kernel_times());
        gpu.set_profiling(false)?;
        times = run?;
    }
    let kernels = kernel_rows(&times, profiled_steps);
    let images = if bilateral { 2 * cfg.batch } else { cfg.batch };
    let flops = step_flops(
        backbone,
        model_cfg.width,
        cfg.image_size,
        cfg.batch,
        cfg.channels,
        cfg.classes,
        bilateral,
    );
    Ok(BenchReport {
        adapter: gpu.describe(),
        image_size: cfg.image_size,
        batch: cfg.batch,
        method: Method::matching(&cfg.choices, Method::Lskbb)
            .map_or_else(|| cfg.choices.describe(), |m| m.name().to_string()),
        backbone: backbone.name().to_string(),
        width: model_cfg.width,
        bilateral,
        recompute: cfg.recompute,
        warmup: cfg.warmup,
        steps: cfg.steps,
        ms_per_step,
        host_ms_per_step,
        images_per_s: images as f64 * 1e3 / ms_per_step,
        peak_mem_bytes: peak,
        peak_mem_gb: peak as f64 / 1e9,
        peak_live_gb: peak_live as f64 / 1e9,
        passes_per_step: per_step(passes, passes_after),
        transfers_per_step: per_step(transfers, transfers_after),
        pool_trims_per_step,
        step_gflop: flops.map(|f| f / 1e9),
        tflops: flops.map(|f| f / (ms_per_step * 1e-3) / 1e12),
        profiled_steps,
        kernel_ms_per_step: kernels.iter().map(|k| k.ms_per_step).sum(),
        dispatches_per_step: kernels.iter().map(|k| k.dispatches_per_step).sum(),
        kernels,
        autotune: cfg.autotune,
        tuned: gpu.tuned_choices(),
    })
}
