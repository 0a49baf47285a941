//! The figures an experiment file asks for, drawn in `<out>/` from its run folders once they
//! have what a figure shows: `fig5-theta.png`, `fig8-class-counts.png`,
//! `fig9-curves-<row>-<column>.png` and `fig10-precision-sensitivity-<column>.png` (the
//! paper's figures 5, 8, 9 and 10).

use super::config::{Experiment, Figure, Metric};
use super::plan::Run;
use super::table::{cell_values, mean_std, Summaries};
use anyhow::{Context, Result};
use lskbb::optim::parabolic;
use lskbb::train::plot::{self, Bar, XAxis};
use lskbb::train::EpochRecord;
use serde_json::Value;
use std::path::Path;

/// Points drawn per epoch of the θ curve.
const THETA_STEPS_PER_EPOCH: usize = 8;

fn read_json(path: &Path) -> Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{}: not the JSON lskbb train writes", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The θ of the dynamic losses over the epochs of the first run that has started, as it
/// trains it (`optim::parabolic`): per iteration T/T_max equals the fraction of the epochs
/// done, since every epoch takes the same steps; with `--theta-per epoch` a staircase.
fn theta(runs: &[Run], path: &Path) -> Result<()> {
    for run in runs {
        let Some(cfg) = read_json(&run.dir.join("config.json"))? else {
            continue;
        };
        let epochs = cfg["epochs"].as_u64().unwrap_or(0) as usize;
        if epochs == 0 {
            continue;
        }
        let per_epoch = cfg["theta_per"].as_str() == Some("Epoch");
        let n = epochs * THETA_STEPS_PER_EPOCH;
        let values: Vec<f64> = (0..=n)
            .map(|k| {
                let t = k as f64 / THETA_STEPS_PER_EPOCH as f64;
                parabolic(if per_epoch { t.floor() } else { t }, epochs as f64)
            })
            .collect();
        let label = if per_epoch {
            "THETA PER EPOCH"
        } else {
            "THETA PER ITERATION"
        };
        let x = XAxis {
            label: "EPOCH",
            first: 0.0,
            last: epochs as f64,
        };
        return plot::lines(path, "THETA = 1 - (T/TMAX)^2", x, &[(label, &values)]);
    }
    Ok(())
}

/// Each column's training images per class (label order) after the long tail, from the
/// split.json of its first run that has one.
fn class_counts(exp: &Experiment, runs: &[Run], path: &Path) -> Result<()> {
    let mut series: Vec<(String, Vec<f64>)> = Vec::new();
    for c in 0..exp.columns.len() {
        for run in runs.iter().filter(|r| r.column == c) {
            if let Some(split) = read_json(&run.dir.join("split.json"))? {
                let counts = split["counts"]["train"].as_array().with_context(|| {
                    format!("{}: no counts.train", run.dir.join("split.json").display())
                })?;
                let counts = counts.iter().filter_map(Value::as_f64).collect();
                series.push((exp.column_label(c).to_uppercase(), counts));
                break;
            }
        }
    }
    if series.is_empty() {
        return Ok(());
    }
    let classes = series.iter().map(|s| s.1.len()).max().unwrap_or(1);
    let x = XAxis {
        label: "CLASS (LABEL ORDER)",
        first: 0.0,
        last: classes.saturating_sub(1) as f64,
    };
    let refs: Vec<(&str, &[f64])> = series.iter().map(|(l, v)| (l.as_str(), &v[..])).collect();
    plot::lines(path, "TRAINING IMAGES PER CLASS", x, &refs)
}

/// The epoch records of a finished run.
fn history(run: &Run) -> Result<Vec<EpochRecord>> {
    let path = run.dir.join("metrics.jsonl");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{} line {}: not an epoch record", path.display(), i + 1))
        })
        .collect()
}

/// Per epoch, the mean of `f` over the runs that reached it.
fn mean_per_epoch(runs: &[Vec<EpochRecord>], f: impl Fn(&EpochRecord) -> f64) -> Vec<f64> {
    let epochs = runs.iter().map(Vec::len).max().unwrap_or(0);
    (0..epochs)
        .map(|e| {
            let v: Vec<f64> = runs.iter().filter_map(|h| h.get(e)).map(&f).collect();
            mean_std(&v).0
        })
        .collect()
}

/// Loss and train, validation and test accuracy per epoch of a cell, the mean over its
/// finished runs.
fn curves(runs: &[Run], done: &Summaries, r: usize, c: usize, path: &Path) -> Result<()> {
    let histories: Vec<Vec<EpochRecord>> = runs
        .iter()
        .zip(done)
        .filter(|(run, s)| run.row == r && run.column == c && s.is_some())
        .map(|(run, _)| history(run))
        .collect::<Result<_>>()?;
    if histories.iter().all(Vec::is_empty) {
        return Ok(());
    }
    let with_val = histories.iter().flatten().all(|e| e.val_acc.is_some());
    let val = if with_val {
        mean_per_epoch(&histories, |e| e.val_acc.unwrap_or(f64::NAN))
    } else {
        Vec::new()
    };
    plot::curves(
        path,
        &mean_per_epoch(&histories, |e| e.train_loss),
        &mean_per_epoch(&histories, |e| e.train_acc),
        &val,
        &mean_per_epoch(&histories, |e| e.test_acc),
    )
}

/// Macro precision and sensitivity (test, best epoch) of every row in column `c`.
fn precision_sensitivity(
    exp: &Experiment,
    runs: &[Run],
    done: &Summaries,
    c: usize,
    path: &Path,
) -> Result<()> {
    let bar = |r: usize, m: Metric| {
        let v = cell_values(runs, done, r, c, m);
        if v.is_empty() {
            return Bar {
                mean: f64::NAN,
                std: f64::NAN,
            };
        }
        let (mean, std) = mean_std(&v);
        Bar {
            mean,
            std: std.unwrap_or(0.0),
        }
    };
    let groups: Vec<(String, Vec<Bar>)> = (0..exp.rows.len())
        .map(|r| {
            let label = exp.row_label(r).to_uppercase();
            (
                label,
                vec![bar(r, Metric::Precision), bar(r, Metric::Sensitivity)],
            )
        })
        .collect();
    if groups
        .iter()
        .all(|g| g.1.iter().all(|b| !b.mean.is_finite()))
    {
        return Ok(());
    }
    let refs: Vec<(&str, &[Bar])> = groups.iter().map(|(l, b)| (l.as_str(), &b[..])).collect();
    let title = format!(
        "MACRO PRECISION AND SENSITIVITY (%), {}",
        exp.column_label(c).to_uppercase()
    );
    plot::bars(path, &title, &["PRECISION", "SENSITIVITY"], &refs)
}

/// Draws every figure of the file that its runs have data for.
pub fn draw(exp: &Experiment, runs: &[Run], done: &Summaries, out: &Path) -> Result<()> {
    for figure in &exp.figures {
        match figure {
            Figure::Theta {} => theta(runs, &out.join("fig5-theta.png"))?,
            Figure::ClassCounts {} => class_counts(exp, runs, &out.join("fig8-class-counts.png"))?,
            Figure::Curves { row, column } => {
                let (r, c) = (exp.row(row, "curves")?, exp.column(column, "curves")?);
                let path = out.join(format!("fig9-curves-{row}-{column}.png"));
                curves(runs, done, r, c, &path)?;
            }
            Figure::PrecisionSensitivity { column } => {
                let c = exp.column(column, "precision-sensitivity")?;
                let path = out.join(format!("fig10-precision-sensitivity-{column}.png"));
                precision_sensitivity(exp, runs, done, c, &path)?;
            }
        }
    }
    Ok(())
}
