//! `lskbb experiment FILE.toml`: a table of runs (rows × columns × seeds, see
//! `cli_experiment::config`) trained one after the other in this process with `train`'s own
//! code, each in its own folder; finished runs are skipped and a stopped one is resumed, so
//! the experiment goes on where it stopped. table.md, table.csv and the figures are written
//! before the first run and again after each.

mod config;
mod figures;
mod plan;
mod table;

use crate::cli_train;
use anyhow::{bail, Context, Result};
use clap::Args;
use lskbb::gpu::AdapterChoice;
use lskbb::tensor_file::write_atomic;
use lskbb::train::Outcome;
use lskbb::Gpu;
use plan::{Run, State, ARGS_FILE};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ExperimentArgs {
    /// The experiment file (TOML): rows, columns, seeds, shared `train` flags, the paper's
    /// numbers and the figures; see experiments/README.md.
    file: PathBuf,
    /// The folder of the runs, tables and figures [default: the file's out, else
    /// runs/<file stem>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Check the file and every run's flags and list the runs (finished, to resume, to start)
    /// without training or writing anything.
    #[arg(long)]
    check: bool,
}

/// Writes table.md, table.csv and the figures from the run folders as they are.
fn render(exp: &config::Experiment, runs: &[Run], out: &Path) -> Result<()> {
    let done = table::summaries(runs)?;
    table::write(exp, runs, &done, out)?;
    figures::draw(exp, runs, &done, out)
}

/// "1 row", "2 rows".
fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

fn state_word(s: State) -> &'static str {
    match s {
        State::Finished => "finished",
        State::Resume => "to resume",
        State::Start => "to start",
    }
}

/// The columns whose data folder is missing, as lines naming them.
fn missing_data(exp: &config::Experiment) -> Vec<String> {
    exp.columns
        .iter()
        .filter_map(|c| {
            let d = c.data.as_ref()?;
            (!d.is_dir()).then(|| format!("column '{}': no data folder {}", c.name, d.display()))
        })
        .collect()
}

pub fn experiment(choice: &AdapterChoice, a: ExperimentArgs) -> Result<bool> {
    let exp = config::load(&a.file)?;
    let out = match (a.out, &exp.out) {
        (Some(o), _) => o,
        (None, Some(o)) => o.clone(),
        (None, None) => {
            let stem = a
                .file
                .file_stem()
                .map_or("experiment".into(), |s| s.to_string_lossy());
            PathBuf::from("runs").join(stem.as_ref())
        }
    };
    let runs = plan::plan(&exp, &a.file, &out)?;
    let states: Vec<State> = runs
        .iter()
        .map(|r| r.state(&exp, &a.file))
        .collect::<Result<_>>()?;
    let count = |s: State| states.iter().filter(|&&t| t == s).count();
    println!(
        "{}: {} × {} × {} = {} runs in {}: {} finished, {} to resume, {} to start",
        a.file.display(),
        plural(exp.rows.len(), "row"),
        plural(exp.columns.len(), "column"),
        plural(exp.seeds.len(), "seed"),
        runs.len(),
        out.display(),
        count(State::Finished),
        count(State::Resume),
        count(State::Start)
    );
    let missing = missing_data(&exp);
    if a.check {
        for (run, state) in runs.iter().zip(&states) {
            println!(
                "  {}: {} ({})",
                run.describe(&exp),
                state_word(*state),
                run.dir.display()
            );
        }
        for m in &missing {
            println!("note: {m}; experiments/README.md says where to get the data");
        }
        return Ok(true);
    }
    if !missing.is_empty() && count(State::Finished) < runs.len() {
        anyhow::bail!(
            "{}: {}; experiments/README.md says where to get the data",
            a.file.display(),
            missing.join("; ")
        );
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    render(&exp, &runs, &out)?;
    for (run, _) in runs
        .iter()
        .zip(&states)
        .filter(|(_, &s)| s == State::Finished)
    {
        println!(
            "skipping {}: finished ({})",
            run.describe(&exp),
            run.dir.join("summary.json").display()
        );
    }
    let todo: Vec<(&Run, State)> = runs
        .iter()
        .zip(states)
        .filter(|(_, s)| *s != State::Finished)
        .collect();
    if todo.is_empty() {
        println!(
            "every run has finished; tables in {}",
            out.join("table.md").display()
        );
        return Ok(true);
    }
    let gpu = Gpu::new(choice)?;
    println!("adapter: {}", gpu.describe());
    cli_train::catch_stop_signals()?;
    let mut stopped = false;
    // A run that fails is reported and the others go on (a table of 60 runs should not wait
    // on one bad folder); the experiment exits 1 at the end naming them.
    let mut failed = Vec::new();
    for (k, (run, state)) in todo.iter().enumerate() {
        if cli_train::stop_requested() {
            stopped = true;
            break;
        }
        println!(
            "experiment run {}/{}: {} in {} ({})",
            k + 1,
            todo.len(),
            run.describe(&exp),
            run.dir.display(),
            if *state == State::Resume {
                "resuming"
            } else {
                "starting"
            }
        );
        let args = run.train_args(*state)?;
        if *state == State::Start {
            std::fs::create_dir_all(&run.dir)
                .with_context(|| format!("creating {}", run.dir.display()))?;
            write_atomic(
                &run.dir.join(ARGS_FILE),
                &serde_json::to_vec_pretty(&run.args)?,
            )?;
        }
        let outcome = cli_train::train_on(&gpu, args);
        render(&exp, &runs, &out)?;
        match outcome {
            Ok(Outcome::Interrupted) => {
                stopped = true;
                break;
            }
            Ok(_) => {}
            Err(e) => {
                let what = format!("{} ({})", run.describe(&exp), run.dir.display());
                eprintln!("error: {what}: {e:#}; going on with the other runs");
                failed.push(what);
            }
        }
    }
    let table = out.join("table.md");
    if stopped {
        println!(
            "stopped; `lskbb experiment {}` again goes on where it stopped (tables so far in {})",
            a.file.display(),
            table.display()
        );
    } else if !failed.is_empty() {
        bail!(
            "{} failed (their messages are above; the table in {} leaves them out): {}",
            plural(failed.len(), "run"),
            table.display(),
            failed.join("; ")
        );
    } else {
        println!(
            "done: every run has finished; tables in {}",
            table.display()
        );
    }
    Ok(true)
}
