//! `lskbb train`, `lskbb eval` and `lskbb predict`: flags, defaults (the paper's recipe) and
//! output formatting around the library's training loop and inference.

use anyhow::{Context, Result};
use clap::builder::TypedValueParser;
use clap::{Args, ValueEnum};
use lskbb::data::parse_imbalance;
use lskbb::gpu::AdapterChoice;
use lskbb::optim::{default_warmup, LrSchedule};
use lskbb::train::choices::{Reweight, Sampler, LDAM_MAX_MARGIN, LDAM_SCALE};
use lskbb::train::progress::ProgressStyle;
use lskbb::train::run::run_name;
use lskbb::train::{self, Outcome, SgdSettings, ThetaPer, TrainConfig, TrainOptions};
use lskbb::Gpu;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

mod choices;
mod data;
mod explain;
mod infer;
mod mislas;
mod table;

pub use choices::ChoiceArgs;
use data::DataArgs;
pub use infer::{eval, predict, EvalArgs, PredictArgs};

/// A command line whose flags do not fit together in a way clap cannot see (they depend on a
/// file, such as a checkpoint): reported like clap's usage errors, with exit status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

#[derive(Clone, Copy, ValueEnum)]
pub enum Schedule {
    /// Linear warm-up, then ×0.01 at 60% and 80% of the epochs (BBN: 120 and 160 of 200).
    Step,
    /// Linear warm-up, then cosine decay.
    Cosine,
    /// Linear warm-up, then ×0.01 at 80% and 90% of the epochs (LDAM-DRW: 160 and 180 of
    /// 200), DRW's re-weighting starting with the first drop.
    Ldam,
    /// Linear warm-up, then ×0.1 at 80% and 90% of stage one's epochs (MiSLAS: 160 and 180 of
    /// 200).
    Mislas,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ThetaArg {
    Iteration,
    Epoch,
}

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Long-tail imbalance factor of the training set (10, 50, 100, any number >= 1) or none.
    #[arg(long, value_name = "IF", default_value = "none")]
    imbalance: String,
    /// Cap each long-tail target at the class's count instead of failing (needed for BreaKHis).
    #[arg(long)]
    long_tail_cap: bool,
    #[command(flatten)]
    choices: ChoiceArgs,
    /// uniform, class-balanced or reversed: the batches of a single branch, or of the
    /// re-balancing branch of two (the conventional branch always draws uniformly). Default:
    /// uniform for a single branch, reversed for bilateral, whatever the --method preset.
    #[arg(long)]
    sampler: Option<Sampler>,
    /// none (classes weighted as the loss itself does) or drw (deferred re-weighting, Cao et
    /// al. 2019: unweighted, then class-balanced weights of β = --cb-beta from 80% of the
    /// epochs on; ce and ldam). Default: the --method preset's (drw for ldam-drw).
    #[arg(long)]
    reweight: Option<Reweight>,
    /// Epochs (default: the paper's 200; a short schedule when the adapter is a CPU).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..).map(|v| v as usize))]
    epochs: Option<usize>,
    /// Images per branch per step (default: the paper's 32; fewer when the adapter is a CPU).
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..).map(|v| v as usize))]
    batch_size: Option<usize>,
    /// Base learning rate (> 0).
    #[arg(long, default_value_t = 0.05, value_parser = positive)]
    lr: f32,
    /// SGD momentum, 0 <= m < 1.
    #[arg(long, default_value_t = 0.9, value_parser = fraction)]
    momentum: f32,
    /// L2 weight decay (>= 0).
    #[arg(long, default_value_t = 2e-4, value_parser = non_negative)]
    weight_decay: f32,
    #[arg(long)]
    nesterov: bool,
    /// The learning-rate schedule [default: ldam with --reweight drw (ldam-drw), mislas with
    /// --loss mislas (over stage one), else step].
    #[arg(long, value_enum)]
    schedule: Option<Schedule>,
    /// Warm-up epochs (default: 5, or a tenth of a shorter run).
    #[arg(long)]
    warmup: Option<usize>,
    /// Focal loss γ (>= 0; focal, dflce and dflcsce) [default: 2].
    #[arg(long, value_parser = non_negative)]
    gamma: Option<f32>,
    /// Class-balanced loss β, 0 <= β < 1 (cb-ce, dflcsce and --reweight drw) [default: 0.9999].
    #[arg(long, value_parser = fraction_f64)]
    cb_beta: Option<f64>,
    /// The dynamic losses' θ = 1 − (T/T_max)² counts iterations or epochs (dflce and
    /// dflcsce) [default: iteration].
    #[arg(long, value_enum)]
    theta_per: Option<ThetaArg>,
    /// LDAM's largest margin, the rarest class's (> 0; ldam) [default: 0.5].
    #[arg(long, value_parser = positive)]
    ldam_max_margin: Option<f32>,
    /// LDAM's logit scale s (> 0; ldam) [default: 30].
    #[arg(long, value_parser = positive)]
    ldam_scale: Option<f32>,
    #[command(flatten)]
    mislas: mislas::MislasArgs,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The backbone's base width: channels of ResNet-32's first stage [default: 16], of
    /// ResNet-18's and VGG16's first stage [default: 64, torchvision's]; later stages scale
    /// with it (VGG16's hidden layers are 4096·width/64).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=512).map(|v| v as usize))]
    width: Option<usize>,
    /// Without validation images in the data (no val/ folder, --val-per-class 0): the fraction
    /// of each class's training images carved out for validation (at least 1, never a
    /// class's last); the best epoch is chosen on validation. 0: none (chosen on test).
    #[arg(long, default_value_t = 0.1, value_parser = fraction_f64)]
    val_fraction: f64,
    /// Stop when validation balanced accuracy has not improved for N epochs.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..).map(|v| v as usize))]
    patience: Option<usize>,
    /// Run folder (default: runs/<method>-<dataset>-<date>, the method being
    /// backbone+loss+branches where the choices are no preset's; with --resume, the latest run).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in --out (or the latest under runs/) exactly where it stopped.
    #[arg(long)]
    resume: bool,
    /// Read the running loss back every N steps (progress bar and non-finite check).
    #[arg(long, default_value_t = 10)]
    log_every: usize,
    /// Recompute each block's activations in backward: a fraction of the activation memory
    /// (to fit 224×224 training in a 6 GB card) for one more forward pass per step.
    #[arg(long)]
    recompute: bool,
    /// Time each conv pass's candidate kernels on this GPU on first use and run the fastest
    /// from then on (as cuDNN's benchmark mode): faster, but two runs may round differently.
    /// The checkpoint keeps the choices; --resume goes on with the same kernels.
    #[arg(long)]
    autotune: bool,
    /// Stop as Ctrl-C does after N steps (for time-boxed jobs).
    #[arg(long, value_name = "N")]
    stop_after_steps: Option<u64>,
}

/// Set by Ctrl-C (SIGINT) or SIGTERM; the training loop checks it after every step.
static STOP: AtomicBool = AtomicBool::new(false);
/// The signal that set STOP (0: none), for the exit status 128 + signal.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// The exit status of a training run that a signal stopped after its clean save: 130 for
/// Ctrl-C, 143 for SIGTERM (as shells report them); `None` when no signal came.
pub fn interrupted_status() -> Option<u8> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some((128 + s) as u8),
    }
}

/// Ctrl-C or SIGTERM has asked the run to stop.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// The first signal finishes the step and saves a checkpoint; a second exits at once.
fn on_stop_signal(sig: i32, name: &str) {
    if STOP.swap(true, Ordering::SeqCst) {
        eprintln!("\nsecond {name}: exiting without saving");
        std::process::exit(128 + sig);
    }
    SIGNAL.store(sig, Ordering::SeqCst);
    eprintln!("\n{name}: finishing this step and saving a checkpoint ({name} again to quit now)");
}

/// Catches Ctrl-C and SIGTERM (a scheduler's stop, `docker stop`) on a thread of its own,
/// which may print and exit, unlike a signal handler.
#[cfg(unix)]
pub fn catch_stop_signals() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing the SIGINT and SIGTERM handlers")?;
    std::thread::spawn(move || {
        for sig in signals.forever() {
            on_stop_signal(sig, if sig == SIGINT { "Ctrl-C" } else { "SIGTERM" });
        }
    });
    Ok(())
}

/// Catches Ctrl-C (Windows has no SIGTERM).
#[cfg(not(unix))]
pub fn catch_stop_signals() -> Result<()> {
    ctrlc::set_handler(|| on_stop_signal(2, "Ctrl-C")).context("installing the Ctrl-C handler")
}

fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = (secs / 86400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let t = secs % 86400;
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// The run under `runs/` whose last checkpoint is newest.
fn latest_run() -> Result<PathBuf> {
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for e in std::fs::read_dir("runs").context("--resume without --out: no runs/ folder here")? {
        let dir = e?.path();
        if let Ok(t) = std::fs::metadata(dir.join("last.safetensors")).and_then(|m| m.modified()) {
            if best.as_ref().is_none_or(|(bt, _)| t > *bt) {
                best = Some((t, dir));
            }
        }
    }
    best.map(|(_, d)| d)
        .context("--resume without --out: no run under runs/ has a last.safetensors")
}

/// Flags that `--resume` accepts: where the run is and how this invocation runs it (memory,
/// kernels, progress, loading), none of which changes the saved run.
pub const RESUME_FLAGS: [&str; 9] = [
    "out",
    "resume",
    "log_every",
    "stop_after_steps",
    "workers",
    "cache_mb",
    "recompute",
    "autotune",
    "skip_bad_images",
];

/// `--resume` continues the saved run with the settings it was started with; flags on the
/// command line that would change them are a usage error rather than silently ignored.
pub fn check_resume_flags(train: &clap::ArgMatches) -> std::result::Result<(), String> {
    if !train.get_flag("resume") {
        return Ok(());
    }
    let given: Vec<String> = train
        .ids()
        .map(|id| id.as_str())
        .filter(|id| {
            !RESUME_FLAGS.contains(id)
                && train.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
        })
        .map(|id| format!("--{}", id.replace('_', "-")))
        .collect();
    if given.is_empty() {
        return Ok(());
    }
    Err(format!(
        "--resume continues the saved run with the settings it was started with, so {} \
         would be ignored; leave them out, or start a new run with another --out",
        given.join(", ")
    ))
}

/// A finite number, or the reason it is not one (for clap's usage errors).
fn finite(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(v) => Err(format!("{v} is not a finite number")),
        Err(e) => Err(format!("'{s}' is not a number: {e}")),
    }
}

fn positive(s: &str) -> Result<f32, String> {
    let v = finite(s)?;
    if v > 0.0 {
        Ok(v as f32)
    } else {
        Err(format!("{v} must be greater than 0"))
    }
}

fn non_negative(s: &str) -> Result<f32, String> {
    let v = finite(s)?;
    if v >= 0.0 {
        Ok(v as f32)
    } else {
        Err(format!("{v} must be at least 0"))
    }
}

fn fraction_f64(s: &str) -> Result<f64, String> {
    let v = finite(s)?;
    if (0.0..1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} must be at least 0 and less than 1"))
    }
}

fn fraction(s: &str) -> Result<f32, String> {
    fraction_f64(s).map(|v| v as f32)
}

/// The focal term's γ (Lin et al. 2017's best) and the class-balanced β of Cui et al. 2019's
/// weights (the value Cao et al.'s LDAM-DRW code uses; BASELINES.md).
const DEFAULT_GAMMA: f32 = 2.0;
const DEFAULT_CB_BETA: f64 = 0.9999;

/// The paper's recipe: 200 epochs of batch 32 per branch.
const PAPER_EPOCHS: usize = 200;
const PAPER_BATCH: usize = 32;

/// The schedule a CPU adapter (lavapipe) trains when the user names no epochs, batch size or
/// image size: small images and batches, a few epochs, so that `bash run.sh` on a 2-core
/// machine ends within minutes with a rising accuracy curve (6.5 min on lavapipe, 2 cores,
/// BENCHMARKS.md). The paper's recipe stays one flag away (printed when this is chosen).
const CPU_EPOCHS: usize = 10;
const CPU_BATCH: usize = 8;
const CPU_IMAGE: usize = 16;

impl TrainArgs {
    /// The checks of `train`'s flags that need neither a GPU nor the data, which `lskbb
    /// experiment` makes on every run it plans before the first one starts.
    pub fn check(&self) -> Result<()> {
        choices::resolve_train(self)?;
        parse_imbalance(&self.imbalance).context("--imbalance")?;
        self.data.source.check()
    }
}

pub fn train(choice: &AdapterChoice, a: TrainArgs) -> Result<bool> {
    // A flag that does not fit is an error before the GPU is asked for.
    a.check()?;
    let gpu = Gpu::new(choice)?;
    println!("adapter: {}", gpu.describe());
    catch_stop_signals()?;
    let time_boxed = a.stop_after_steps.is_some();
    let outcome = train_on(&gpu, a)?;
    Ok(outcome == Outcome::Finished || stop_requested() || time_boxed)
}

/// The run `a` describes on `gpu` (`lskbb train`'s, and each run of `lskbb experiment`);
/// Ctrl-C and SIGTERM stop it once [`catch_stop_signals`] has installed their handlers.
pub fn train_on(gpu: &Arc<Gpu>, mut a: TrainArgs) -> Result<Outcome> {
    let (method, choices) = choices::resolve_train(&a)?;
    let untouched =
        a.epochs.is_none() && a.batch_size.is_none() && a.data.pipeline.image_size.is_none();
    if gpu.cpu_threads().is_some() && untouched && !a.resume {
        a.epochs = Some(CPU_EPOCHS);
        a.batch_size = Some(CPU_BATCH);
        a.data.pipeline.image_size = Some(CPU_IMAGE);
        println!(
            "the adapter is a CPU driver: training a short schedule that fits it ({CPU_EPOCHS} \
             epochs, batch {CPU_BATCH}, {CPU_IMAGE}x{CPU_IMAGE} images); for the paper's recipe \
             pass --epochs {PAPER_EPOCHS} --batch-size {PAPER_BATCH} (and --image-size)"
        );
    }
    let epochs = a.epochs.unwrap_or(PAPER_EPOCHS);
    let mut data = a.data.config(a.seed)?;
    data.imbalance = parse_imbalance(&a.imbalance).context("--imbalance")?;
    data.long_tail_cap = a.long_tail_cap;
    data.val_fraction = Some(a.val_fraction);
    // MiSLAS's schedule spans stage one; stage two has its own (`train::stages`).
    let mislas = a.mislas.settings(choices.loss, epochs);
    let scheduled = epochs - mislas.as_ref().map_or(0, |m| m.stage2_epochs.min(epochs));
    let warmup = a.warmup.unwrap_or(default_warmup(scheduled));
    let schedule = match a.schedule.unwrap_or(match (choices.reweight, &mislas) {
        (_, Some(_)) => Schedule::Mislas,
        (Reweight::Drw, _) => Schedule::Ldam,
        (Reweight::None, _) => Schedule::Step,
    }) {
        Schedule::Step => LrSchedule::bbn_step(a.lr, scheduled, warmup),
        Schedule::Ldam => LrSchedule::ldam_step(a.lr, scheduled, warmup),
        Schedule::Mislas => LrSchedule::mislas_step(a.lr, scheduled, warmup),
        Schedule::Cosine => LrSchedule::Cosine {
            base: a.lr,
            warmup,
            total: scheduled,
        },
    };
    let cfg = TrainConfig {
        data,
        method,
        choices,
        epochs,
        batch_size: a.batch_size.unwrap_or(PAPER_BATCH),
        sgd: SgdSettings {
            momentum: a.momentum,
            weight_decay: a.weight_decay,
            nesterov: a.nesterov,
        },
        schedule,
        gamma: a.gamma.unwrap_or(DEFAULT_GAMMA),
        cb_beta: a.cb_beta.unwrap_or(DEFAULT_CB_BETA),
        theta_per: match a.theta_per {
            None | Some(ThetaArg::Iteration) => ThetaPer::Iteration,
            Some(ThetaArg::Epoch) => ThetaPer::Epoch,
        },
        ldam_max_margin: a.ldam_max_margin.unwrap_or(LDAM_MAX_MARGIN),
        ldam_scale: a.ldam_scale.unwrap_or(LDAM_SCALE),
        seed: a.seed,
        patience: a.patience,
        mislas,
        width: a.width,
    };
    let out = match (a.out, a.resume) {
        (Some(o), _) => o,
        (None, true) => latest_run()?,
        (None, false) => {
            let name = match &cfg.data.root {
                Some(r) => r
                    .file_name()
                    .map_or("data".into(), |n| n.to_string_lossy().into_owned()),
                None => "synthetic".into(),
            };
            PathBuf::from("runs").join(format!("{}-{name}-{}", run_name(&cfg), utc_stamp()))
        }
    };
    let opts = TrainOptions {
        out,
        resume: a.resume,
        log_every: a.log_every,
        stop_after_steps: a.stop_after_steps,
        progress: if std::io::stderr().is_terminal() {
            ProgressStyle::Bar
        } else {
            ProgressStyle::Lines
        },
        recompute: a.recompute,
        autotune: a.autotune,
    };
    train::train(gpu, cfg, &opts, &STOP)
}
