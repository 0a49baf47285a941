//! `lskbb experiment` end to end on tiny synthetic runs: a 2-row × 2-column × 2-seed table is
//! trained and rendered (table.md and table.csv hold each cell's mean and sample std over
//! the runs' summary.json and the paper's number; the figures are drawn); a second
//! invocation skips every finished run, and one whose flags the file no longer gives is
//! refused; a run stopped part-way is resumed; a bad key or flag is an error that names it;
//! every shipped experiments/*.toml parses and its runs' flags pass `train`'s checks.

mod common;

use common::cli::{fails_with, json, lskbb, ok, temp_dir};
use std::path::Path;

/// Flags of a one-epoch run on 8×8 images of 3 synthetic classes (12 per class before the
/// long tail, 4 test images per class).
const TINY: &str = r#""--epochs", "1", "--image-size", "8", "--batch-size", "4",
    "--synthetic-classes", "3", "--synthetic-per-class", "12", "--test-per-class", "4""#;

fn table_file(dir: &Path, extra_args: &str, seeds: &str) -> std::path::PathBuf {
    let path = dir.join("tiny.toml");
    let text = format!(
        r#"title = "Tiny table"
out = "{out}"
seeds = {seeds}
args = [{TINY}{extra_args}]
figures = [
  {{ figure = "theta" }},
  {{ figure = "class-counts" }},
  {{ figure = "curves", row = "lskbb", column = "if4" }},
  {{ figure = "precision-sensitivity", column = "if2" }},
]

[[columns]]
name = "if2"
imbalance = 2

[[columns]]
name = "if4"
label = "IF 4"
imbalance = "4"

[[rows]]
name = "ce"
label = "CE"
args = ["--method", "ce"]
paper.accuracy = {{ if2 = 75.5, if4 = 70.25 }}

[[rows]]
name = "lskbb"
args = ["--method", "lskbb"]
paper.accuracy = {{ if4 = 79.84 }}
"#,
        out = dir.join("out").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn a_table_trains_renders_mean_and_std_beside_the_paper_and_skips_finished_runs() {
    let dir = temp_dir("experiment-table");
    let file = table_file(&dir, "", "[0, 1]");
    let f = file.to_str().unwrap();
    let text = ok(&lskbb(&["experiment", f]));
    assert_eq!(text.matches("experiment run ").count(), 8, "{text}");
    let out = dir.join("out");
    let csv = std::fs::read_to_string(out.join("table.csv")).unwrap();
    let md = std::fs::read_to_string(out.join("table.md")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "metric,row,column,runs_finished,seeds,mean,std,paper,values"
    );
    assert_eq!(lines.len(), 5, "{csv}");
    let paper = [
        ("ce", "if2", "75.5"),
        ("ce", "if4", "70.25"),
        ("lskbb", "if2", ""),
        ("lskbb", "if4", "79.84"),
    ];
    for (line, (row, column, paper)) in lines[1..].iter().zip(paper) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(&fields[..5], ["accuracy", row, column, "2", "2"], "{line}");
        // The cell from the two runs' own summary.json: test accuracy at the best epoch.
        let acc: Vec<f64> = (0..2)
            .map(|s| {
                let run = out.join(row).join(column).join(format!("seed-{s}"));
                json(&run.join("summary.json"))["test"]["best"]["accuracy"]
                    .as_f64()
                    .unwrap()
            })
            .collect();
        let (mean, std) = mean_std(&acc);
        let got = |k: usize| fields[k].parse::<f64>().unwrap();
        assert!((got(5) - mean).abs() < 1e-9, "mean {mean}: {line}");
        assert!((got(6) - std).abs() < 1e-9, "std {std}: {line}");
        assert_eq!(fields[7], paper, "{line}");
        let label = if row == "ce" { "CE" } else { "lskbb" };
        let md_row = md
            .lines()
            .find(|l| l.starts_with(&format!("| {label} |")))
            .unwrap_or_else(|| panic!("no row {label} in {md}"));
        let cell = format!("{mean:.2} ± {std:.2}");
        assert!(md_row.contains(&cell), "{cell} not in {md_row}");
        if !paper.is_empty() {
            let p = format!("| {:.2} |", paper.parse::<f64>().unwrap());
            assert!(md_row.contains(&p), "{p} not in {md_row}");
        }
    }
    assert!(md.contains("| | if2 | paper | IF 4 | paper |"), "{md}");
    assert!(md.contains("8 of 8 runs finished"), "{md}");
    for fig in [
        "fig5-theta.png",
        "fig8-class-counts.png",
        "fig9-curves-lskbb-if4.png",
        "fig10-precision-sensitivity-if2.png",
    ] {
        assert!(image::open(out.join(fig)).is_ok(), "{fig} is not a PNG");
    }

    // Again: every run is skipped, none is touched.
    let summary = out.join("ce/if2/seed-0/summary.json");
    let before = modified(&summary);
    let again = ok(&lskbb(&["experiment", f]));
    assert_eq!(again.matches("skipping ").count(), 8, "{again}");
    assert!(!again.contains("experiment run "), "{again}");
    assert_eq!(modified(&summary), before);

    // A finished run's flags that the file no longer gives: a usage error naming the run and
    // the flag, rather than an old result under a new heading.
    let changed = std::fs::read_to_string(&file)
        .unwrap()
        .replace("\"--batch-size\", \"4\"", "\"--batch-size\", \"5\"");
    std::fs::write(&file, changed).unwrap();
    fails_with(
        &lskbb(&["experiment", f]),
        2,
        &[
            "row 'ce', column 'if2', seed 0",
            "--batch-size (4 then, 5 now)",
        ],
    );
}

#[test]
fn a_stopped_run_is_resumed_by_the_next_invocation() {
    let dir = temp_dir("experiment-resume");
    // Every invocation stops its run after two steps, as Ctrl-C would, with a checkpoint.
    let file = table_file(&dir, r#", "--stop-after-steps", "2""#, "[0]");
    let f = file.to_str().unwrap();
    let run = dir.join("out/ce/if2/seed-0");
    let first = ok(&lskbb(&["experiment", f]));
    assert!(
        first.contains("(starting)") && first.contains("stopped;"),
        "{first}"
    );
    assert!(run.join("last.safetensors").is_file());
    assert!(!run.join("summary.json").exists());
    let check = ok(&lskbb(&["experiment", f, "--check"]));
    assert!(
        check.contains("row 'ce', column 'if2', seed 0: to resume"),
        "{check}"
    );
    let second = ok(&lskbb(&["experiment", f]));
    assert!(second.contains("(resuming)"), "{second}");
    assert!(
        second.contains("resuming "),
        "train itself resumes: {second}"
    );
}

/// A run that fails while training (here: a column whose imbalance factor empties a class,
/// which only the data can tell) is reported by name, the other runs still train and the
/// table is written; the experiment exits 1 naming the failed run.
#[test]
fn a_failing_run_does_not_stop_the_others() {
    let dir = temp_dir("experiment-failing-run");
    let path = dir.join("failing.toml");
    let text = format!(
        r#"title = "One column cannot train"
out = "{out}"
seeds = [0]
args = [{TINY}]

[[columns]]
name = "if1000"
imbalance = 1000

[[columns]]
name = "if2"
imbalance = 2

[[rows]]
name = "ce"
args = ["--method", "ce"]
"#,
        out = dir.join("out").display()
    );
    std::fs::write(&path, text).unwrap();
    let out = lskbb(&["experiment", path.to_str().unwrap()]);
    fails_with(
        &out,
        1,
        &[
            "row 'ce', column 'if1000', seed 0",
            "leaves class 1 with no training image",
            "1 class_1",
            "going on with the other runs",
            "1 run failed",
        ],
    );
    assert!(dir.join("out/ce/if2/seed-0/summary.json").is_file());
    assert!(!dir.join("out/ce/if1000/seed-0/summary.json").exists());
    let table = std::fs::read_to_string(dir.join("out/table.md")).unwrap();
    assert!(table.contains("–"), "the failed cell is empty: {table}");
}

#[test]
fn bad_keys_and_flags_are_errors_that_name_them() {
    let dir = temp_dir("experiment-errors");
    let file = table_file(&dir, "", "[0]");
    let good = std::fs::read_to_string(&file).unwrap();
    let f = file.to_str().unwrap();
    let with = |from: &str, to: &str| {
        assert!(good.contains(from), "{from}");
        std::fs::write(&file, good.replacen(from, to, 1)).unwrap();
        lskbb(&["experiment", f, "--check"])
    };
    fails_with(
        &with("title =", "titel ="),
        1,
        &[f, "unknown field `titel`"],
    );
    fails_with(
        &with("label = \"CE\"", "label = \"CE\"\nmethod = \"ce\""),
        1,
        &[f, "unknown field `method`"],
    );
    fails_with(
        &with(r#""--method", "ce""#, r#""--method", "ce", "--epoch", "3""#),
        2,
        &[f, "row 'ce'", "'--epoch'"],
    );
    fails_with(
        &with(r#""--method", "lskbb""#, r#""--method", "lskbbx""#),
        2,
        &["row 'lskbb'", "--method", "lskbbx"],
    );
    fails_with(
        &with(r#""--method", "ce""#, r#""--method", "ce", "--seed", "3""#),
        2,
        &["row 'ce'", "--seed is set by the file's seeds"],
    );
    fails_with(
        &with(
            r#""--method", "ce""#,
            r#""--method", "ce", "--epochs", "3""#,
        ),
        2,
        &[
            "row 'ce', column 'if2'",
            "'--epochs <EPOCHS>' cannot be used multiple times",
        ],
    );
    // Checked as train checks it, beyond parsing: a loss flag that does not fit the row's loss.
    fails_with(
        &with(
            r#""--method", "ce""#,
            r#""--method", "ce", "--theta-per", "epoch""#,
        ),
        2,
        &["row 'ce', column 'if2'", "--theta-per does not apply"],
    );
    fails_with(
        &with("imbalance = \"4\"", "imbalance = \"four\""),
        2,
        &["row 'ce', column 'if4'", "--imbalance", "four"],
    );
    fails_with(
        &with("if2 = 75.5", "if3 = 75.5"),
        1,
        &["row 'ce': paper.accuracy names column 'if3'"],
    );
    fails_with(
        &with(
            "{ figure = \"theta\" }",
            "{ figure = \"theta\", row = \"ce\" }",
        ),
        1,
        &[f, "unknown field `row`"],
    );
    fails_with(
        &with("column = \"if4\" }", "column = \"if8\" }"),
        1,
        &["figures[2] names column 'if8'"],
    );
    fails_with(
        &with("name = \"if2\"", "name = \"if 2\""),
        1,
        &["column name 'if 2' is not a folder name"],
    );
    assert!(!dir.join("out").exists(), "--check writes nothing");
}

#[test]
fn every_shipped_experiment_file_parses_and_its_flags_pass_trains_checks() {
    let dir = temp_dir("experiment-shipped");
    let mut files: Vec<_> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "table2-breakhis.toml",
            "table3-chestxray.toml",
            "table4-backbones.toml",
            "table5-losses.toml"
        ]
    );
    for file in &files {
        let out = dir.join(file.file_stem().unwrap());
        let text = ok(&lskbb(&[
            "experiment",
            file.to_str().unwrap(),
            "--check",
            "--out",
            out.to_str().unwrap(),
        ]));
        assert!(text.contains("0 finished, 0 to resume"), "{text}");
        assert!(!out.exists(), "--check writes nothing");
    }
}
