//! The runs of an experiment: each (row, column, seed) is `lskbb train` with the shared flags,
//! the column's and the row's, and `--seed`, in `<out>/<row>/<column>/seed-<k>/`. The flags
//! are parsed by the same `TrainArgs` as `train`'s, so each is checked as there; a bad one is
//! a usage error naming the row or column. A run folder keeps the flags it was started with
//! (`train-args.json`): a finished run is skipped, a stopped one resumed, and one whose flags
//! the file no longer gives is an error rather than a result under the wrong heading.

use super::config::Experiment;
use crate::cli_train::{TrainArgs, UsageError, RESUME_FLAGS};
use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use std::path::{Path, PathBuf};

/// `lskbb train`'s flags on their own (no binary name, no global GPU flags, no --help).
#[derive(Parser)]
#[command(name = "train", no_binary_name = true, disable_help_flag = true)]
struct TrainFlags {
    #[command(flatten)]
    train: TrainArgs,
}

/// The run's flags file: the `train` flags the run was started with (without --out).
pub const ARGS_FILE: &str = "train-args.json";

/// Flags the experiment gives each run itself, and where the file says them instead.
const OWN_FLAGS: [(&str, &str); 5] = [
    ("seed", "the file's seeds"),
    ("out", "the run folder <out>/<row>/<column>/seed-<k>"),
    (
        "resume",
        "the experiment, which resumes a stopped run by itself",
    ),
    ("data", "a column's data key"),
    ("imbalance", "a column's imbalance key"),
];

pub struct Run {
    pub row: usize,
    pub column: usize,
    pub seed: u64,
    pub dir: PathBuf,
    /// The `train` flags of the run, without --out and --resume.
    pub args: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Finished,
    Resume,
    Start,
}

/// clap's message without its "error: " and the usage and help lines after it.
fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let text = text.split("\nUsage:").next().unwrap_or(&text);
    text.trim().trim_start_matches("error: ").trim().to_string()
}

fn parse(args: &[String]) -> Result<(ArgMatches, TrainArgs), String> {
    let matches = TrainFlags::command()
        .try_get_matches_from(args)
        .map_err(|e| clap_message(&e))?;
    let flags = TrainFlags::from_arg_matches(&matches).map_err(|e| clap_message(&e))?;
    Ok((matches, flags.train))
}

fn given(m: &ArgMatches, id: &str) -> bool {
    m.value_source(id) == Some(ValueSource::CommandLine)
}

/// `args` (of `place` in `file`) parse as `train`'s and leave the experiment's own flags alone.
fn check_part(file: &Path, place: &str, args: &[String]) -> Result<(), UsageError> {
    let usage = |msg: String| UsageError(format!("{}: {place}: {msg}", file.display()));
    let (m, _) = parse(args).map_err(usage)?;
    match OWN_FLAGS.iter().find(|(id, _)| given(&m, id)) {
        Some((id, by)) => Err(usage(format!(
            "--{id} is set by {by}; leave it out of the args"
        ))),
        None => Ok(()),
    }
}

/// The flags of a column that come before its args: --data and --imbalance.
fn column_flags(exp: &Experiment, c: usize) -> Vec<String> {
    let col = &exp.columns[c];
    let mut v = Vec::new();
    if let Some(d) = &col.data {
        v.push("--data".to_string());
        v.push(d.to_string_lossy().into_owned());
    }
    if let Some(i) = &col.imbalance {
        v.push("--imbalance".to_string());
        v.push(i.flag_value());
    }
    v.extend(col.args.iter().cloned());
    v
}

/// Every run of the experiment in `out`, seed by seed (so that each cell has a first value
/// early), once every row's flags with every column's parse and pass `train`'s checks.
pub fn plan(exp: &Experiment, file: &Path, out: &Path) -> Result<Vec<Run>> {
    check_part(file, "args", &exp.args)?;
    for col in &exp.columns {
        check_part(file, &format!("column '{}'", col.name), &col.args)?;
    }
    for row in &exp.rows {
        check_part(file, &format!("row '{}'", row.name), &row.args)?;
    }
    let args = |r: usize, c: usize, seed: u64| {
        let mut v = exp.args.clone();
        v.extend(column_flags(exp, c));
        v.extend(exp.rows[r].args.iter().cloned());
        v.push("--seed".to_string());
        v.push(seed.to_string());
        v
    };
    for r in 0..exp.rows.len() {
        for c in 0..exp.columns.len() {
            let place = format!(
                "{}: row '{}', column '{}'",
                file.display(),
                exp.rows[r].name,
                exp.columns[c].name
            );
            let (_, train) = parse(&args(r, c, exp.seeds[0]))
                .map_err(|msg| UsageError(format!("{place}: {msg}")))?;
            train
                .check()
                .map_err(|e| UsageError(format!("{place}: {e:#}")))?;
        }
    }
    let mut runs = Vec::new();
    for &seed in &exp.seeds {
        for r in 0..exp.rows.len() {
            for c in 0..exp.columns.len() {
                runs.push(Run {
                    row: r,
                    column: c,
                    seed,
                    dir: out
                        .join(&exp.rows[r].name)
                        .join(&exp.columns[c].name)
                        .join(format!("seed-{seed}")),
                    args: args(r, c, seed),
                });
            }
        }
    }
    Ok(runs)
}

/// The flags that define a run (all but the ones `--resume` accepts) whose values differ
/// between two parses, each as "--flag (X then, Y now)".
fn changed_flags(then: &ArgMatches, now: &ArgMatches) -> Vec<String> {
    let raw = |m: &ArgMatches, id: &str| -> String {
        m.get_raw(id).map_or("unset".to_string(), |vals| {
            vals.map(|v| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
    };
    TrainFlags::command()
        .get_arguments()
        .map(|a| a.get_id().as_str().to_string())
        .filter(|id| !RESUME_FLAGS.contains(&id.as_str()))
        .filter_map(|id| {
            let (a, b) = (raw(then, &id), raw(now, &id));
            (a != b).then(|| format!("--{} ({a} then, {b} now)", id.replace('_', "-")))
        })
        .collect()
}

/// A summary.json that says the run is over: every epoch done, or stopped by --patience.
pub fn finished(summary: &serde_json::Value) -> bool {
    let done = summary["epochs_done"].as_u64();
    summary["stopped_early"].as_bool() == Some(true)
        || (done.is_some() && done == summary["config"]["epochs"].as_u64())
}

impl Run {
    pub fn describe(&self, exp: &Experiment) -> String {
        format!(
            "row '{}', column '{}', seed {}",
            exp.rows[self.row].name, exp.columns[self.column].name, self.seed
        )
    }

    /// The run's summary.json, if it has one.
    pub fn summary(&self) -> Result<Option<serde_json::Value>> {
        let path = self.dir.join("summary.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("{}: not the JSON lskbb train writes", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Where the run stands; an error where its folder holds a run of other flags.
    pub fn state(&self, exp: &Experiment, file: &Path) -> Result<State> {
        let started = self.dir.join("last.safetensors").exists();
        let args_path = self.dir.join(ARGS_FILE);
        let saved: Option<Vec<String>> = match std::fs::read(&args_path) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{}: not the list of flags lskbb experiment writes",
                    args_path.display()
                )
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", args_path.display())),
        };
        let Some(saved) = saved else {
            if started {
                return Err(UsageError(format!(
                    "{} ({}) holds a run without {ARGS_FILE}, which lskbb experiment did not \
                     start; move it away or choose another out",
                    self.dir.display(),
                    self.describe(exp)
                ))
                .into());
            }
            return Ok(State::Start);
        };
        let changed = match (parse(&saved), parse(&self.args)) {
            (Ok((then, _)), Ok((now, _))) => changed_flags(&then, &now),
            (Err(e), _) => vec![format!("the saved flags no longer parse ({e})")],
            (_, Err(e)) => vec![e],
        };
        if !changed.is_empty() {
            return Err(UsageError(format!(
                "{} ({}) was started with other flags than {} now gives: {}; restore the file, \
                 or move the folder away to train the run anew",
                self.dir.display(),
                self.describe(exp),
                file.display(),
                changed.join(", ")
            ))
            .into());
        }
        if self.summary()?.is_some_and(|s| finished(&s)) {
            Ok(State::Finished)
        } else if started {
            Ok(State::Resume)
        } else {
            Ok(State::Start)
        }
    }

    /// The `train` flags of this invocation of the run, parsed.
    pub fn train_args(&self, state: State) -> Result<TrainArgs> {
        let mut args = self.args.clone();
        args.push("--out".to_string());
        args.push(self.dir.to_string_lossy().into_owned());
        if state == State::Resume {
            args.push("--resume".to_string());
        }
        parse(&args)
            .map(|(_, t)| t)
            .map_err(|msg| UsageError(format!("{}: {msg}", self.dir.display())).into())
    }
}
