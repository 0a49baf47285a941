//! `lskbb train`: the epoch loop of the paper's recipe. Each step draws a conventional batch
//! from the uniform sampler and (two branches) a re-balancing batch from the reversed (or the
//! chosen) sampler, mixes them with α = 1 − (epoch/E)² (BBN) and weights the dynamic loss with
//! θ = 1 − (T/T_max)² (eq. 18). After every epoch the validation and test sets are evaluated,
//! the best epoch is chosen by validation balanced accuracy (`--patience` stops early when it
//! stops improving) and the run folder is brought up to date; `last.safetensors` always holds a state that `--resume`
//! continues exactly (same weights, momentum, sampler epoch and batch, RNG streams).

use super::choices::{drw_epoch, Choices, LossSettings, Reweight, LDAM_MAX_MARGIN, LDAM_SCALE};
use super::eval::evaluate;
use super::method::{upgrade_saved_choices, Method};
use super::metrics::Metrics;
use super::progress::{Progress, ProgressStyle};
use super::stages::{self, Mislas};
use super::step::{HostBatch, StepSettings, Trainer};
use crate::checkpoint;
use crate::data::{upgrade_saved_data_config, BatchLoader, DataConfig, Dataset, Split};
use crate::model::Network;
use crate::ops::loss::{cb_weights, las_smoothing, ldam_margins};
use crate::ops::sgd::SgdConfig;
use crate::optim::{parabolic, LrSchedule};
use crate::tensor_file::{write_atomic, TensorFile};
use crate::Gpu;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// When DFLCE's θ decays: per iteration (T counts steps) or per epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ThetaPer {
    Iteration,
    Epoch,
}

/// Everything that defines a run; saved in every checkpoint so that `--resume` and `eval`
/// rebuild the same data and model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    pub data: DataConfig,
    /// The `--method` preset whose choices these are; none where explicit choices made them
    /// another combination.
    pub method: Option<Method>,
    /// Backbone, loss, branches, sampler and re-weighting (saved beside the other settings).
    #[serde(flatten)]
    pub choices: Choices,
    pub epochs: usize,
    pub batch_size: usize,
    pub sgd: SgdSettings,
    pub schedule: LrSchedule,
    /// Focal γ (focal, DFLCE, DFLCSCE).
    pub gamma: f32,
    /// Class-balanced β (CB-CE, DFLCSCE, DRW).
    pub cb_beta: f64,
    /// LDAM's largest margin and logit scale s (Cao et al. 2019: 0.5 and 30).
    #[serde(default = "ldam_max_margin")]
    pub ldam_max_margin: f32,
    #[serde(default = "ldam_scale")]
    pub ldam_scale: f32,
    pub theta_per: ThetaPer,
    pub seed: u64,
    /// Stop when validation balanced accuracy has not improved for this many epochs.
    #[serde(default)]
    pub patience: Option<usize>,
    /// MiSLAS's stages (`--loss mislas` alone).
    #[serde(default)]
    pub mislas: Option<Mislas>,
    /// The backbone's base width (`--width`); None: the backbone's own
    /// ([`crate::model::Backbone::default_width`]).
    #[serde(default)]
    pub width: Option<usize>,
}

fn ldam_max_margin() -> f32 {
    LDAM_MAX_MARGIN
}

fn ldam_scale() -> f32 {
    LDAM_SCALE
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct SgdSettings {
    pub momentum: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
}

/// How a run is driven (not part of the run's identity).
pub struct TrainOptions {
    pub out: PathBuf,
    pub resume: bool,
    /// Read the running loss back (progress, non-finite check) every this many steps, and at
    /// least every [`READ_BACK_EVERY`] on a slow device.
    pub log_every: usize,
    /// Behave as if interrupted after this many steps of this invocation.
    pub stop_after_steps: Option<u64>,
    /// How per-step progress is shown.
    pub progress: ProgressStyle,
    /// Recompute each block's activations in backward (less GPU memory, one more forward).
    pub recompute: bool,
    /// Autotune the conv kernels (`Gpu::set_autotune`).
    pub autotune: bool,
}

/// The longest time between two read-backs of the running loss: a device that takes seconds
/// per step (a CPU driver) shows progress after every step instead of every `log_every`.
pub const READ_BACK_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub lr: f32,
    pub alpha: f32,
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_acc: f64,
    pub test_precision: f64,
    pub test_sensitivity: f64,
    /// Validation accuracy and balanced accuracy (None without validation images).
    #[serde(default)]
    pub val_acc: Option<f64>,
    #[serde(default)]
    pub val_balanced_acc: Option<f64>,
    #[serde(default)]
    pub test_balanced_acc: f64,
    #[serde(default)]
    pub test_auc: Option<f64>,
    pub images_per_s: f64,
    pub seconds: f64,
}

/// Where a run stands; saved as checkpoint metadata `run`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct RunState {
    /// The epoch in progress (0-based) and its next batch.
    epoch: usize,
    next_batch: usize,
    /// Steps taken so far (T of θ).
    step: u64,
    /// Running sums of the epoch in progress (loss, correct, rows) and its images and seconds.
    sums: [f32; 3],
    images: u64,
    seconds: f64,
    /// Steps taken in the epoch in progress (the running loss sum's divisor).
    epoch_steps: u64,
    /// Test accuracy at the best epoch.
    best_acc: f64,
    best_epoch: usize,
    history: Vec<EpochRecord>,
    /// The selection score of the best epoch: validation balanced accuracy (test balanced
    /// accuracy when the run has no validation images).
    #[serde(default)]
    best_score: f64,
    /// Validation and test metrics of the best epoch.
    #[serde(default)]
    best_val: Option<Metrics>,
    #[serde(default)]
    best_test: Option<Metrics>,
    /// --patience ended the run before its last epoch.
    #[serde(default)]
    stopped_early: bool,
}

/// How a call of [`train`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Finished,
    /// Stopped on request (Ctrl-C or `stop_after_steps`) with a resumable checkpoint.
    Interrupted,
}

struct Run<'a> {
    gpu: Arc<Gpu>,
    cfg: TrainConfig,
    opts: &'a TrainOptions,
    ds: Arc<Dataset>,
    trainer: Trainer,
    state: RunState,
    /// Images --skip-bad-images skipped that a warning has named.
    skipped_reported: BTreeSet<String>,
}

mod checks;
mod outputs;

use checks::{same_images, validate};

fn last_path(out: &Path) -> PathBuf {
    out.join("last.safetensors")
}

/// The run config saved in a checkpoint written by `lskbb train`; one saved before the
/// augmentation and normalisation were choices gets the pipeline it was trained with, and one
/// saved with a method alone gets the method's backbone, loss, branches and sampler.
pub fn saved_config(f: &TensorFile, path: &Path) -> Result<Option<TrainConfig>> {
    f.metadata
        .get("train")
        .map(|s| -> Result<TrainConfig> {
            let mut v: serde_json::Value = serde_json::from_str(s)?;
            if let Some(data) = v.get_mut("data") {
                upgrade_saved_data_config(data);
            }
            upgrade_saved_choices(&mut v)?;
            Ok(serde_json::from_value(v)?)
        })
        .transpose()
        .with_context(|| format!("{}: bad 'train' metadata", path.display()))
}

/// Trains (or resumes) a run in `opts.out`; `stop` is raised by Ctrl-C.
pub fn train(
    gpu: &Arc<Gpu>,
    cfg: TrainConfig,
    opts: &TrainOptions,
    stop: &AtomicBool,
) -> Result<Outcome> {
    // A run that fails before it has written anything leaves no empty folder behind.
    let fresh = !opts.out.exists();
    let outcome = Run::start(gpu, cfg, opts).and_then(|mut run| run.go(stop));
    if outcome.is_err() && fresh {
        let _ = std::fs::remove_dir(&opts.out);
    }
    outcome
}

impl<'a> Run<'a> {
    fn start(gpu: &Arc<Gpu>, cfg: TrainConfig, opts: &'a TrainOptions) -> Result<Run<'a>> {
        let last = last_path(&opts.out);
        let resumed = if opts.resume {
            let f = TensorFile::load(&last).with_context(|| {
                format!("--resume: no run to continue in {}", opts.out.display())
            })?;
            let saved = saved_config(&f, &last)?
                .with_context(|| format!("{}: not written by `lskbb train`", last.display()))?;
            let state: RunState = serde_json::from_str(f.meta("run")?)
                .with_context(|| format!("{}: bad 'run' metadata", last.display()))?;
            Some((f, saved, state))
        } else {
            if last.exists() {
                bail!(
                    "{} already holds a run ({}); continue it with --resume or choose another --out",
                    opts.out.display(),
                    last.display()
                );
            }
            None
        };
        let mut cfg = match &resumed {
            Some((_, saved, _)) => saved.clone(),
            None => cfg,
        };
        validate(&cfg)?;
        std::fs::create_dir_all(&opts.out)
            .with_context(|| format!("creating the run folder {}", opts.out.display()))?;
        let ds = Arc::new(Dataset::open(&cfg.data)?);
        // Save the resolved kind, augmentation and normalisation (with the statistics of
        // `--normalize dataset`) so that eval/predict never re-detect or recompute them.
        cfg.data = ds.config.clone();
        // The resolved settings, written before the first step, so that a run that fails in
        // its first epoch still says what it was.
        write_atomic(
            &opts.out.join("config.json"),
            &serde_json::to_vec_pretty(&cfg)?,
        )?;
        let split = opts.out.join("split.json");
        if resumed.is_some() {
            same_images(&split, &ds.split_json())?;
        }
        ds.write_split_json(&split)?;
        let counts = ds.train_counts();
        if ds.train.len() < 2 {
            bail!(
                "the training set has {} image(s); a step needs at least 2",
                ds.train.len()
            );
        }
        let mut model_cfg =
            cfg.choices
                .model_config(ds.num_classes(), cfg.data.channels, cfg.ldam_scale);
        model_cfg.width = cfg.width.unwrap_or(model_cfg.width);
        let model = Network::new(gpu, &model_cfg, cfg.seed)?;
        let sgd = SgdConfig {
            lr: cfg.schedule.lr(0),
            momentum: cfg.sgd.momentum,
            weight_decay: cfg.sgd.weight_decay,
            nesterov: cfg.sgd.nesterov,
        };
        let settings = LossSettings {
            gamma: cfg.gamma,
            cb_weights: cb_weights(&counts, cfg.cb_beta),
            margins: ldam_margins(&counts, cfg.ldam_max_margin as f64),
            ldam_scale: cfg.ldam_scale,
            smoothing: cfg.mislas.as_ref().map_or_else(Vec::new, |m| {
                las_smoothing(&counts, m.smooth_head, m.smooth_tail, m.shape)
            }),
        };
        let trainer = Trainer::new(model, sgd, cfg.choices, settings)?;
        trainer.set_recompute(opts.recompute)?;
        gpu.set_autotune(opts.autotune);
        let state = match resumed {
            Some((f, _, state)) => {
                checkpoint::load_state_dict(&trainer.model.store, &f, "", true, &last)?;
                // The kernels autotuning chose before the interruption, so that the run goes
                // on rounding as it did.
                if let Some(t) = f.metadata.get("tuning") {
                    let choices = serde_json::from_str(t)
                        .with_context(|| format!("{}: bad 'tuning' metadata", last.display()))?;
                    gpu.preset_tuning(choices);
                }
                let opt_path = checkpoint::optim_path(&last);
                let o = TensorFile::load(&opt_path)?;
                trainer
                    .opt
                    .load_state(&trainer.model.store, &o)
                    .with_context(|| opt_path.display().to_string())?;
                trainer.stats.restore(state.sums)?;
                state
            }
            None => RunState::default(),
        };
        Ok(Run {
            gpu: gpu.clone(),
            cfg,
            opts,
            ds,
            trainer,
            state,
            skipped_reported: BTreeSet::new(),
        })
    }

    fn go(&mut self, stop: &AtomicBool) -> Result<Outcome> {
        let b = self.cfg.batch_size;
        let (conv_sampler, rebal_sampler) = self.cfg.choices.samplers();
        let conv = BatchLoader::train(self.ds.clone(), conv_sampler, b)?;
        let rebal = rebal_sampler
            .map(|s| BatchLoader::train(self.ds.clone(), s, b))
            .transpose()?;
        let stage2 = stages::stage2_loader(&self.cfg, &self.ds)?;
        let test = BatchLoader::eval(self.ds.clone(), Split::Test, b)?;
        let val = if self.ds.val.is_empty() {
            println!("no validation images: the best epoch is chosen on the test set");
            None
        } else {
            Some(BatchLoader::eval(self.ds.clone(), Split::Val, b)?)
        };
        let per_epoch = conv.num_batches();
        let t_max = (self.cfg.epochs * per_epoch) as f64;
        let mut taken = 0u64;
        let mut last_read = Instant::now();
        if self.state.epoch == 0 && self.state.next_batch == 0 {
            println!(
                "training {} on {} ({} classes, train counts {:?}, test counts {:?}), {} epochs of {per_epoch} steps, batch {b}, image {}px; run folder {}",
                run_name(&self.cfg),
                self.ds.kind.name(),
                self.ds.num_classes(),
                self.ds.train_counts(),
                self.ds.counts(Split::Test),
                self.cfg.epochs,
                self.cfg.data.image_size,
                self.opts.out.display()
            );
        } else {
            println!(
                "resuming {} at epoch {} batch {}",
                self.opts.out.display(),
                self.state.epoch + 1,
                self.state.next_batch
            );
        }
        while self.state.epoch < self.cfg.epochs && !self.state.stopped_early {
            let epoch = self.state.epoch;
            let lr = stages::lr(&self.cfg, epoch);
            let alpha = parabolic(epoch as f64, self.cfg.epochs as f64) as f32;
            let reweighted =
                self.cfg.choices.reweight == Reweight::Drw && epoch >= drw_epoch(self.cfg.epochs);
            if self.state.next_batch == 0 {
                stages::begin_epoch(&self.cfg, epoch, &self.trainer.opt)?;
            }
            let start = Instant::now();
            let mut progress = Progress::new(epoch, self.cfg.epochs, per_epoch, self.opts.progress);
            let loader = match &stage2 {
                Some(l) if stages::in_stage2(&self.cfg, epoch) => l,
                _ => &conv,
            };
            let mut batches = loader.epoch(epoch as u64, self.state.next_batch)?;
            let mut rebatches = match &rebal {
                Some(r) => Some(r.epoch(epoch as u64, self.state.next_batch)?),
                None => None,
            };
            while let Some(xc) = batches.next() {
                let mut xc = xc?;
                let mut xr = match rebatches.as_mut().and_then(|r| r.next()) {
                    Some(r) => Some(r?),
                    None => None,
                };
                self.report_skipped();
                // With --skip-bad-images a branch's batch may come back short; BBN mixes the
                // branches' features pairwise, so both keep only as many images as the shorter.
                if let Some(r) = xr.as_mut() {
                    let n = xc.y.len().min(r.y.len());
                    xc.truncate(n);
                    r.truncate(n);
                }
                let usable = xc.y.len() >= 2 && xr.as_ref().is_none_or(|r| r.y.len() >= 2);
                if usable {
                    let theta = match self.cfg.theta_per {
                        ThetaPer::Iteration => parabolic(self.state.step as f64, t_max),
                        ThetaPer::Epoch => parabolic(epoch as f64, self.cfg.epochs as f64),
                    } as f32;
                    let conv_b = host(&xc);
                    let rebal_b = xr.as_ref().map(host);
                    self.trainer.step(
                        &conv_b,
                        rebal_b.as_ref(),
                        StepSettings {
                            alpha,
                            theta,
                            lr,
                            reweighted,
                            phase: stages::phase(&self.cfg, epoch, xc.index, xc.y.len()),
                        },
                    )?;
                    self.state.step += 1;
                    self.state.epoch_steps += 1;
                    self.state.images += (xc.y.len() + xr.as_ref().map_or(0, |r| r.y.len())) as u64;
                }
                self.state.next_batch = xc.index + 1;
                taken += 1;
                let last_of_epoch = self.state.next_batch == per_epoch;
                let interrupt = self.stop_requested(stop, taken);
                let read_back = taken.is_multiple_of(self.opts.log_every.max(1) as u64)
                    || last_read.elapsed() >= READ_BACK_EVERY
                    || last_of_epoch
                    || interrupt;
                let mut sums = [0.0; 3];
                if read_back {
                    let (l, c, n) = self.trainer.stats.peek()?;
                    last_read = Instant::now();
                    self.check_finite(l)?;
                    sums = [l as f32, c as f32, n as f32];
                    let seconds = self.state.seconds + start.elapsed().as_secs_f64();
                    progress.update(
                        self.state.next_batch,
                        l / self.state.epoch_steps.max(1) as f64,
                        100.0 * c / n.max(1.0),
                        self.state.images as f64 / seconds.max(1e-9),
                    );
                }
                if interrupt && !last_of_epoch {
                    drop(batches);
                    drop(rebatches);
                    self.state.seconds += start.elapsed().as_secs_f64();
                    // `interrupt` forces the read-back above: these are the current sums.
                    self.state.sums = sums;
                    self.save_last()?;
                    progress.finish();
                    println!(
                        "stopped at epoch {} batch {}; checkpoint {} written, continue with `lskbb train --out {} --resume`",
                        epoch + 1,
                        self.state.next_batch,
                        last_path(&self.opts.out).display(),
                        self.opts.out.display()
                    );
                    return Ok(Outcome::Interrupted);
                }
            }
            drop(batches);
            drop(rebatches);
            progress.finish();
            let (l, c, n) = self.trainer.stats.take()?;
            self.check_finite(l)?;
            let seconds = self.state.seconds + start.elapsed().as_secs_f64();
            let train_loss = l / self.state.epoch_steps.max(1) as f64;
            let images_per_s = self.state.images as f64 / seconds.max(1e-9);
            let ev = evaluate(&self.trainer.model, &test, &self.ds)?;
            let m = &ev.metrics;
            let vev = val
                .as_ref()
                .map(|v| evaluate(&self.trainer.model, v, &self.ds))
                .transpose()?;
            let vm = vev.as_ref().map(|e| &e.metrics);
            let rec = EpochRecord {
                epoch: epoch + 1,
                lr,
                alpha,
                train_loss,
                train_acc: 100.0 * c / n.max(1.0),
                test_acc: m.accuracy,
                test_precision: m.precision,
                test_sensitivity: m.sensitivity,
                val_acc: vm.map(|v| v.accuracy),
                val_balanced_acc: vm.map(|v| v.balanced_accuracy),
                test_balanced_acc: m.balanced_accuracy,
                test_auc: m.auc,
                images_per_s,
                seconds,
            };
            let val_text = vm.map_or(String::new(), |v| {
                format!(
                    " val acc {:.2}% (balanced {:.2}%)",
                    v.accuracy, v.balanced_accuracy
                )
            });
            println!(
                "epoch {}/{}: lr {:.4} α {:.3} loss {:.4} train acc {:.2}%{val_text} test acc {:.2}% (balanced {:.2}%) precision {:.2}% sensitivity {:.2}% ({:.0} img/s, {:.1}s)",
                rec.epoch, self.cfg.epochs, rec.lr, rec.alpha, rec.train_loss, rec.train_acc,
                rec.test_acc, rec.test_balanced_acc, rec.test_precision, rec.test_sensitivity, rec.images_per_s, rec.seconds
            );
            self.state.history.push(rec);
            self.state.epoch += 1;
            self.state.next_batch = 0;
            self.state.sums = [0.0; 3];
            self.state.images = 0;
            self.state.seconds = 0.0;
            self.state.epoch_steps = 0;
            let score = vm.map_or(m.balanced_accuracy, |v| v.balanced_accuracy);
            let improved = score > self.state.best_score || self.state.history.len() == 1;
            if improved {
                self.state.best_score = score;
                self.state.best_acc = m.accuracy;
                self.state.best_epoch = epoch + 1;
                self.state.best_val = vm.cloned();
                self.state.best_test = Some(m.clone());
            }
            let patience_out = self
                .cfg
                .patience
                .is_some_and(|p| self.state.epoch - self.state.best_epoch >= p);
            if patience_out && self.state.epoch < self.cfg.epochs {
                self.state.stopped_early = true;
                println!(
                    "stopping early: validation balanced accuracy has not improved for {} epoch(s) (best {:.2}% at epoch {})",
                    self.state.epoch - self.state.best_epoch,
                    self.state.best_score,
                    self.state.best_epoch
                );
            }
            self.save_last()?;
            if improved {
                let best = self.opts.out.join("best.safetensors");
                checkpoint::save(&best, &self.trainer.model, self.metadata()?, None)?;
            }
            self.write_outputs(m, vm)?;
            if self.stop_requested(stop, taken)
                && self.state.epoch < self.cfg.epochs
                && !self.state.stopped_early
            {
                println!(
                    "stopped after epoch {}; continue with `lskbb train --out {} --resume`",
                    epoch + 1,
                    self.opts.out.display()
                );
                return Ok(Outcome::Interrupted);
            }
        }
        println!(
            "done: best epoch {} by {} balanced accuracy ({:.2}%), test accuracy there {:.2}%, final {:.2}%; results in {}",
            self.state.best_epoch,
            if self.ds.val.is_empty() { "test" } else { "validation" },
            self.state.best_score,
            self.state.best_acc,
            self.state.history.last().map_or(0.0, |r| r.test_acc),
            self.opts.out.display()
        );
        Ok(Outcome::Finished)
    }

    /// Warns once about each image that --skip-bad-images skipped since the last call.
    fn report_skipped(&mut self) {
        for (image, err) in self.ds.skipped_images() {
            if self.skipped_reported.insert(image.clone()) {
                eprintln!("warning: skipping unreadable image {image}: {err}");
            }
        }
    }

    /// Ctrl-C was pressed or this invocation's step budget is spent.
    fn stop_requested(&self, stop: &AtomicBool, taken: u64) -> bool {
        stop.load(Ordering::SeqCst) || self.opts.stop_after_steps.is_some_and(|n| taken >= n)
    }

    fn metadata(&self) -> Result<HashMap<String, String>> {
        let mut m = HashMap::new();
        m.insert("train".into(), serde_json::to_string(&self.cfg)?);
        m.insert("run".into(), serde_json::to_string(&self.state)?);
        m.insert("classes".into(), serde_json::to_string(&self.ds.classes)?);
        m.insert("adapter".into(), self.gpu.describe());
        let tuning = self.gpu.tuning_state();
        if !tuning.is_empty() {
            m.insert("tuning".into(), serde_json::to_string(&tuning)?);
        }
        Ok(m)
    }

    fn save_last(&self) -> Result<()> {
        let optim = self.trainer.opt.state(&self.trainer.model.store)?;
        checkpoint::save(
            &last_path(&self.opts.out),
            &self.trainer.model,
            self.metadata()?,
            Some(optim),
        )
    }
}

/// The run's method, or `backbone+loss+branches[+sampler]` where its choices are no preset's.
pub fn run_name(cfg: &TrainConfig) -> String {
    cfg.method
        .map_or_else(|| cfg.choices.describe(), |m| m.name().to_string())
}

fn host(b: &crate::data::Batch) -> HostBatch<'_> {
    HostBatch {
        x: &b.x,
        y: &b.y,
        shape: b.shape,
    }
}
