//! Kernel autotuning, as cuDNN's benchmark mode: where an op has several correct kernels, the
//! first call with a new shape times each of them on this GPU and every later call runs the
//! fastest. Off by default: the choice depends on timings, so two runs may pick different
//! kernels and round differently. A run saves its choices ([`Gpu::tuning_state`]) and a
//! resumed one restores them ([`Gpu::preset_tuning`]), so it continues on the same kernels.

use super::{lock, Gpu};
use anyhow::Result;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// What autotuning has chosen so far.
#[derive(Default)]
pub struct Tuning {
    on: bool,
    /// Per key: the chosen candidate, and every candidate's name and measured time in ns.
    chosen: HashMap<String, (usize, Vec<(String, f64)>)>,
    /// Choices restored from an earlier run (key to candidate name), used whenever their
    /// key comes up, with autotuning on or off.
    preset: HashMap<String, String>,
}

/// One autotuning decision, for reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TunedChoice {
    pub key: String,
    pub chosen: String,
    /// Every candidate's name and GPU time in ms, the default first.
    pub candidates: Vec<(String, f64)>,
}

impl Gpu {
    /// Turns autotuning on or off ([`Gpu::choose`]); choices already made are kept.
    pub fn set_autotune(&self, on: bool) {
        lock(&self.tuning).on = on;
    }

    /// Every choice made or restored so far, key to candidate name, for saving with a run.
    pub fn tuning_state(&self) -> BTreeMap<String, String> {
        let t = lock(&self.tuning);
        let mut out: BTreeMap<String, String> = t.preset.clone().into_iter().collect();
        for (key, (i, times)) in &t.chosen {
            out.insert(key.clone(), times[*i].0.clone());
        }
        out
    }

    /// Restores choices saved by [`Gpu::tuning_state`]: their keys run the named candidate
    /// from now on, without timing, whether autotuning is on or not.
    pub fn preset_tuning(&self, choices: BTreeMap<String, String>) {
        lock(&self.tuning).preset.extend(choices);
    }

    /// The choices timed so far, by key.
    pub fn tuned_choices(&self) -> Vec<TunedChoice> {
        let mut out: Vec<TunedChoice> = lock(&self.tuning)
            .chosen
            .iter()
            .map(|(key, (chosen, times))| TunedChoice {
                key: key.clone(),
                chosen: times[*chosen].0.clone(),
                candidates: times.iter().map(|(n, t)| (n.clone(), t / 1e6)).collect(),
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Which of the candidates (by name) to run for `key` (the op and its shape): the one
    /// chosen or restored before, else with autotuning off the first (the op's own default),
    /// else the fastest, each recorded by `run(i)` on the real inputs and timed here.
    pub fn choose(
        &self,
        key: impl FnOnce() -> String,
        names: &[&str],
        mut run: impl FnMut(usize) -> Result<()>,
    ) -> Result<usize> {
        let n = names.len();
        let on = {
            let t = lock(&self.tuning);
            if n < 2 || (!t.on && t.preset.is_empty()) {
                return Ok(0);
            }
            t.on
        };
        let key = key();
        {
            let t = lock(&self.tuning);
            if let Some((i, _)) = t.chosen.get(&key) {
                return Ok(*i);
            }
            let preset = t.preset.get(&key);
            if let Some(i) = preset.and_then(|name| names.iter().position(|c| c == name)) {
                return Ok(i);
            }
        }
        if !on {
            return Ok(0);
        }
        // Twice each, keeping the faster run: the first may pay for compiling the pipeline. A
        // candidate that fails here (too much scratch for this GPU, say) is never chosen, so
        // tuning cannot break a step that runs without it.
        let mut ns = Vec::with_capacity(n);
        for i in 0..n {
            let mut timed = || self.time(|| run(i)).unwrap_or(f64::INFINITY);
            let a = timed();
            ns.push(a.min(timed()));
        }
        let best = (0..n).min_by(|&a, &b| ns[a].total_cmp(&ns[b])).unwrap_or(0);
        let times = names.iter().map(|s| s.to_string()).zip(ns).collect();
        lock(&self.tuning).chosen.insert(key, (best, times));
        Ok(best)
    }

    /// GPU time in ns of the work `f` records: the sum of its dispatches' timestamps where the
    /// adapter has timestamp queries, else the wall-clock time of its submission. Work
    /// recorded before is submitted first and not counted; a profiled run's totals are kept.
    fn time(&self, f: impl FnOnce() -> Result<()>) -> Result<f64> {
        self.flush()?;
        if self.profiling_supported() {
            let fresh = super::Profiler::new(&self.device, &self.queue);
            let saved = lock(&self.rec).profiler.replace(fresh);
            let run = f().and_then(|_| self.flush());
            let prof = std::mem::replace(&mut lock(&self.rec).profiler, saved);
            run?;
            return Ok(prof.map_or(0.0, |p| p.kernel_times().iter().map(|k| k.ns).sum()));
        }
        self.wait()?;
        let t = Instant::now();
        f()?;
        self.finish()?;
        Ok(t.elapsed().as_secs_f64() * 1e9)
    }
}
