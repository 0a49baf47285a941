//! The `lskbb` command line.

mod cli_experiment;
mod cli_train;

use anyhow::Result;
use clap::builder::TypedValueParser;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use cli_experiment::ExperimentArgs;
use cli_train::{ChoiceArgs, EvalArgs, PredictArgs, TrainArgs};
use lskbb::gpu::{list_adapters, AdapterChoice};
use lskbb::tensor_file::write_atomic;
use lskbb::verify::{error_start, verify_file};
use lskbb::Gpu;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "lskbb",
    version,
    about = "Train and run the LSKBB long-tailed medical image classifier on any GPU (wgpu + WGSL)"
)]
struct Cli {
    #[command(flatten)]
    gpu: GpuArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct GpuArgs {
    /// Use the adapter whose name contains NAME (case-insensitive); see `lskbb devices`.
    #[arg(long, global = true, env = "LSKBB_ADAPTER", value_name = "NAME")]
    adapter: Option<String>,
    /// Graphics API: vulkan, metal, dx12 or gl (default: the best available).
    #[arg(long, global = true, env = "LSKBB_BACKEND", value_name = "API")]
    backend: Option<String>,
}

impl GpuArgs {
    fn choice(&self) -> AdapterChoice {
        AdapterChoice {
            name: self.adapter.clone(),
            backend: self.backend.clone(),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Train a model (default: the paper's LSKBB recipe on the built-in synthetic set).
    Train(Box<TrainArgs>),
    /// Train a table of runs (rows × columns × seeds, from a TOML file), resumably, and
    /// write its mean ± std beside the paper's numbers (table.md, table.csv) and the figures.
    Experiment(ExperimentArgs),
    /// Evaluate a checkpoint on a dataset's balanced test set.
    Eval(EvalArgs),
    /// Classify image files (or every image under folders) with a checkpoint.
    Predict(PredictArgs),
    /// List every GPU adapter with its backend, type, driver, limits and features.
    Devices,
    /// Run golden files from the PyTorch reference and compare every tensor.
    Verify {
        /// Golden safetensors files (kind model_step or ops).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print only the tensors that fail, and a summary per file.
        #[arg(long)]
        failures_only: bool,
    },
    /// Time the training step on synthetic data: ms/step, images/s, peak GPU memory, TFLOP/s
    /// and GPU time per kernel family.
    Bench(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// Image side in pixels.
    #[arg(long, default_value_t = 224)]
    image_size: usize,
    /// Images per branch per step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[command(flatten)]
    choices: ChoiceArgs,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Steps of the separate run timed per kernel (0: none).
    #[arg(long, default_value_t = 2)]
    profile_steps: usize,
    /// Recompute each block's activations in backward (less memory, one more forward).
    #[arg(long)]
    recompute: bool,
    /// The backbone's base width (as `train --width`) [default: the backbone's own].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=512).map(|v| v as usize))]
    width: Option<usize>,
    /// Time each conv pass's candidate kernels on first use and run the fastest after.
    #[arg(long)]
    autotune: bool,
    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

fn devices(choice: &AdapterChoice) -> Result<()> {
    for (i, a) in list_adapters(choice)?.iter().enumerate() {
        println!("[{i}] {} ({}, {})", a.name, a.backend, a.device_type);
        println!("    driver: {}", a.driver);
        println!(
            "    max storage binding {} MiB, max buffer {} MiB, workgroup memory {} KiB, {} invocations/workgroup",
            a.max_storage_buffer_binding_size >> 20,
            a.max_buffer_size >> 20,
            a.max_compute_workgroup_storage_size >> 10,
            a.max_compute_invocations_per_workgroup
        );
        println!(
            "    timestamp queries: {}, subgroups: {}, f16: {}",
            a.timestamp_query, a.subgroups, a.shader_f16
        );
    }
    Ok(())
}

fn verify(choice: &AdapterChoice, files: &[PathBuf], failures_only: bool) -> Result<bool> {
    let gpu = Gpu::new(choice)?;
    println!("adapter: {}", gpu.describe());
    let mut all_pass = true;
    for path in files {
        let rows = verify_file(&gpu, path)?;
        let failed = rows.iter().filter(|r| !r.pass()).count();
        println!("\n{}", path.display());
        println!(
            "{:<48} {:>8} {:>12} {:>12} {:>12}  result",
            "tensor", "n", "rel L2 err", "L2 err", "bound"
        );
        for r in &rows {
            if failures_only && r.pass() {
                continue;
            }
            println!(
                "{:<48} {:>8} {:>12.3e} {:>12.3e} {:>12.3e}  {}",
                r.name,
                r.n,
                r.rel,
                r.err,
                r.bound,
                if r.pass() { "pass" } else { "FAIL" }
            );
        }
        if let Some(start) = error_start(&rows) {
            println!("{start}");
        }
        // A NaN error counts as the worst (f64::max would drop it).
        let worst = rows
            .iter()
            .map(|r| r.rel)
            .fold(0.0, |m: f64, e| if e.is_nan() || e > m { e } else { m });
        println!(
            "{}: {} tensors, {} failed, worst relative error {worst:.3e}",
            path.display(),
            rows.len(),
            failed
        );
        all_pass &= failed == 0;
    }
    Ok(all_pass)
}

#[allow(clippy::too_many_arguments)]
fn bench(choice: &AdapterChoice, a: BenchArgs) -> Result<()> {
    let cfg = lskbb::bench::BenchConfig {
        image_size: a.image_size,
        batch: a.batch_size,
        choices: a.choices.resolved(),
        width: a.width,
        steps: a.steps,
        warmup: a.warmup,
        profile_steps: a.profile_steps,
        recompute: a.recompute,
        autotune: a.autotune,
        ..Default::default()
    };
    let report = lskbb::bench::run_bench(&Gpu::new(choice)?, &cfg)?;
    println!("{report}");
    if let Some(path) = a.json {
        write_atomic(&path, (report.to_json()? + "\n").as_bytes())?;
    }
    Ok(())
}

fn run(cli: Cli) -> Result<bool> {
    let choice = cli.gpu.choice();
    match cli.command {
        Command::Train(a) => cli_train::train(&choice, *a),
        Command::Experiment(a) => cli_experiment::experiment(&choice, a),
        Command::Eval(a) => cli_train::eval(&choice, a),
        Command::Predict(a) => cli_train::predict(&choice, a),
        Command::Devices => devices(&choice).map(|_| true),
        Command::Verify {
            files,
            failures_only,
        } => verify(&choice, &files, failures_only),
        Command::Bench(a) => bench(&choice, a).map(|_| true),
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    if let Some(("train", train)) = matches.subcommand() {
        if let Err(msg) = cli_train::check_resume_flags(train) {
            eprintln!("error: {msg}");
            return ExitCode::from(2);
        }
    }
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match run(cli) {
        // A training run (or experiment) that a signal stopped after its clean save: 130 or 143.
        Ok(true) => cli_train::interrupted_status().map_or(ExitCode::SUCCESS, ExitCode::from),
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<cli_train::UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
