//! `<out>/table.md` and `<out>/table.csv`: per metric, rows × columns of the mean and sample
//! standard deviation over the seeds whose runs finished (the test metric at the best epoch
//! of summary.json), with the paper's number beside each cell.

use super::config::{Experiment, Metric};
use super::plan::{finished, Run};
use anyhow::Result;
use lskbb::tensor_file::write_atomic;
use std::path::Path;

/// The summary.json of every finished run, in the order of the runs (None: not finished).
pub type Summaries = Vec<Option<serde_json::Value>>;

pub fn summaries(runs: &[Run]) -> Result<Summaries> {
    runs.iter()
        .map(|r| Ok(r.summary()?.filter(finished)))
        .collect()
}

/// Mean and sample standard deviation (n − 1; None below two values).
pub fn mean_std(values: &[f64]) -> (f64, Option<f64>) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = (values.len() > 1)
        .then(|| (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    (mean, std)
}

/// The values of `metric` (test, best epoch) of the finished runs of a cell, by seed.
pub fn cell_values(runs: &[Run], done: &Summaries, r: usize, c: usize, metric: Metric) -> Vec<f64> {
    runs.iter()
        .zip(done)
        .filter(|(run, _)| run.row == r && run.column == c)
        .filter_map(|(_, s)| s.as_ref()?["test"]["best"][metric.key()].as_f64())
        .collect()
}

/// "mean ± std", with "(n=k/N)" where fewer than all `seeds` runs finished; "–" for none.
fn format_cell(values: &[f64], seeds: usize, decimals: usize) -> String {
    if values.is_empty() {
        return "–".to_string();
    }
    let (mean, std) = mean_std(values);
    let mut s = format!("{mean:.decimals$}");
    if let Some(sd) = std {
        s.push_str(&format!(" ± {sd:.decimals$}"));
    }
    if values.len() < seeds {
        s.push_str(&format!(" (n={}/{seeds})", values.len()));
    }
    s
}

fn paper_value(exp: &Experiment, r: usize, c: usize, metric: Metric) -> Option<f64> {
    exp.rows[r]
        .paper
        .get(&metric)?
        .get(&exp.columns[c].name)
        .copied()
}

/// A markdown table cell: '|' escaped.
fn md(s: &str) -> String {
    s.replace('|', "\\|")
}

fn markdown(exp: &Experiment, runs: &[Run], done: &Summaries) -> String {
    let seeds = exp.seeds.len();
    let finished = done.iter().filter(|s| s.is_some()).count();
    let mut t = String::new();
    if !exp.title.is_empty() {
        t.push_str(&format!("# {}\n\n", exp.title));
    }
    t.push_str(&format!(
        "Test metrics at the best epoch (chosen on validation balanced accuracy): mean ± \
         sample standard deviation over seeds {}; n=k/{seeds} marks a cell with k finished \
         runs. \"paper\" is the published number. {finished} of {} runs finished.\n",
        exp.seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        runs.len()
    ));
    for &metric in &exp.metrics {
        t.push_str(&format!("\n## {}\n\n| |", metric.title()));
        for c in 0..exp.columns.len() {
            t.push_str(&format!(" {} | paper |", md(exp.column_label(c))));
        }
        t.push_str("\n|---|");
        t.push_str(&"---:|---:|".repeat(exp.columns.len()));
        t.push('\n');
        for r in 0..exp.rows.len() {
            t.push_str(&format!("| {} |", md(exp.row_label(r))));
            for c in 0..exp.columns.len() {
                let ours = format_cell(
                    &cell_values(runs, done, r, c, metric),
                    seeds,
                    metric.decimals(),
                );
                let paper = paper_value(exp, r, c, metric)
                    .map_or(String::new(), |v| format!("{v:.*}", metric.decimals()));
                t.push_str(&format!(" {ours} | {paper} |"));
            }
            t.push('\n');
        }
    }
    t
}

fn csv(exp: &Experiment, runs: &[Run], done: &Summaries) -> String {
    let mut t = String::from("metric,row,column,runs_finished,seeds,mean,std,paper,values\n");
    let num = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
    for &metric in &exp.metrics {
        for r in 0..exp.rows.len() {
            for c in 0..exp.columns.len() {
                let values = cell_values(runs, done, r, c, metric);
                let (mean, std) = if values.is_empty() {
                    (None, None)
                } else {
                    let (m, s) = mean_std(&values);
                    (Some(m), s)
                };
                let list: Vec<String> = values.iter().map(|v| format!("{v}")).collect();
                t.push_str(&format!(
                    "{},{},{},{},{},{},{},{},{}\n",
                    metric.name(),
                    exp.rows[r].name,
                    exp.columns[c].name,
                    values.len(),
                    exp.seeds.len(),
                    num(mean),
                    num(std),
                    num(paper_value(exp, r, c, metric)),
                    list.join(";")
                ));
            }
        }
    }
    t
}

/// Writes table.md and table.csv in `out` (each to a temporary file, then renamed).
pub fn write(exp: &Experiment, runs: &[Run], done: &Summaries, out: &Path) -> Result<()> {
    write_atomic(&out.join("table.md"), markdown(exp, runs, done).as_bytes())?;
    write_atomic(&out.join("table.csv"), csv(exp, runs, done).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::{format_cell, mean_std};

    #[test]
    fn cells_show_the_mean_the_sample_std_and_how_many_runs_finished() {
        let (mean, std) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(mean, 2.5);
        // Sample (n − 1) standard deviation: sqrt(5/3), not the population's sqrt(5/4).
        assert!((std.unwrap() - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_std(&[7.0]).1, None);
        assert_eq!(format_cell(&[87.0, 88.0, 86.0], 3, 2), "87.00 ± 1.00");
        assert_eq!(format_cell(&[87.0, 88.0], 3, 2), "87.50 ± 0.71 (n=2/3)");
        assert_eq!(format_cell(&[80.0], 3, 2), "80.00 (n=1/3)");
        assert_eq!(format_cell(&[0.91234], 1, 4), "0.9123");
        assert_eq!(format_cell(&[], 3, 2), "–");
    }
}
