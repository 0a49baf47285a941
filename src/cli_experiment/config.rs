//! The experiment file of `lskbb experiment` (TOML): rows (configurations, each the `train`
//! flags it adds), columns (a data folder or the built-in set, an imbalance factor), seeds,
//! the flags every run shares, the paper's numbers per row and column, and the figures to
//! draw. Read strictly: an unknown key is an error that names it and the file; names must be
//! folder names, and the paper's numbers and the figures must name rows and columns the
//! file has.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// The heading of table.md (which of the paper's tables the file reproduces).
    #[serde(default)]
    pub title: String,
    /// The folder of the runs, tables and figures, relative to the working directory
    /// (default: runs/<file stem>).
    pub out: Option<PathBuf>,
    /// Each cell trains once per seed (`--seed`).
    pub seeds: Vec<u64>,
    /// `train` flags every run takes (epochs, batch size, ...).
    #[serde(default)]
    pub args: Vec<String>,
    /// The test metrics tabulated, one table each (default: accuracy).
    #[serde(default = "accuracy_only")]
    pub metrics: Vec<Metric>,
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
    #[serde(default)]
    pub figures: Vec<Figure>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// The folder name of the column's runs and its name in the tables.
    pub name: String,
    /// The heading in table.md (default: the name).
    pub label: Option<String>,
    /// `--data` (relative to the working directory); none: the built-in synthetic set.
    pub data: Option<PathBuf>,
    /// `--imbalance` (a number, or "none"); none: train's default.
    pub imbalance: Option<Imbalance>,
    /// More `train` flags of this column's runs (`--long-tail-cap`, `--magnification`, ...).
    #[serde(default)]
    pub args: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Imbalance {
    Number(f64),
    Text(String),
}

impl Imbalance {
    /// The value of `--imbalance`.
    pub fn flag_value(&self) -> String {
        match self {
            Imbalance::Number(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
            Imbalance::Number(v) => v.to_string(),
            Imbalance::Text(s) => s.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// The folder name of the row's runs and its name in the tables.
    pub name: String,
    /// The row's name in table.md and the figures (default: the name).
    pub label: Option<String>,
    /// The `train` flags that make this row (`--method lskbb`, ...).
    #[serde(default)]
    pub args: Vec<String>,
    /// The paper's numbers: metric -> column name -> value (%).
    #[serde(default)]
    pub paper: BTreeMap<Metric, BTreeMap<String, f64>>,
}

/// A test metric of summary.json at the best epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    Accuracy,
    BalancedAccuracy,
    Precision,
    Sensitivity,
    Specificity,
    F1,
    Auc,
}

fn accuracy_only() -> Vec<Metric> {
    vec![Metric::Accuracy]
}

impl Metric {
    /// Its key in summary.json's metrics.
    pub fn key(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::BalancedAccuracy => "balanced_accuracy",
            Metric::Precision => "precision",
            Metric::Sensitivity => "sensitivity",
            Metric::Specificity => "specificity",
            Metric::F1 => "f1",
            Metric::Auc => "auc",
        }
    }

    /// Its name in the file and in table.csv.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::BalancedAccuracy => "balanced-accuracy",
            Metric::Precision => "precision",
            Metric::Sensitivity => "sensitivity",
            Metric::Specificity => "specificity",
            Metric::F1 => "f1",
            Metric::Auc => "auc",
        }
    }

    /// The heading of its table in table.md.
    pub fn title(self) -> &'static str {
        match self {
            Metric::Accuracy => "Accuracy (%)",
            Metric::BalancedAccuracy => "Balanced accuracy (%)",
            Metric::Precision => "Macro precision (%)",
            Metric::Sensitivity => "Macro sensitivity (%)",
            Metric::Specificity => "Macro specificity (%)",
            Metric::F1 => "Macro F1 (%)",
            Metric::Auc => "Macro one-vs-rest ROC-AUC",
        }
    }

    /// Decimals shown: percentages to 0.01, the AUC (0 to 1) to 0.0001.
    pub fn decimals(self) -> usize {
        if self == Metric::Auc {
            4
        } else {
            2
        }
    }
}

/// A figure drawn from the runs (`figure = "..."` names the kind).
#[derive(Debug, Deserialize)]
#[serde(tag = "figure", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Figure {
    /// The dynamic losses' θ = 1 − (T/T_max)² over the epochs (the paper's figure 5).
    /// (Variants without fields are written `{}` so that an unknown key is refused there too.)
    Theta {},
    /// Each column's training images per class, in label order (figure 8).
    ClassCounts {},
    /// Loss and train, validation and test accuracy per epoch of one cell, the mean over its
    /// finished seeds (figure 9).
    Curves { row: String, column: String },
    /// Macro precision and sensitivity of every row in one column (figure 10).
    PrecisionSensitivity { column: String },
}

impl Experiment {
    pub fn column_label(&self, c: usize) -> &str {
        let col = &self.columns[c];
        col.label.as_deref().unwrap_or(&col.name)
    }

    pub fn row_label(&self, r: usize) -> &str {
        let row = &self.rows[r];
        row.label.as_deref().unwrap_or(&row.name)
    }

    fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    pub fn row_index(&self, name: &str) -> Option<usize> {
        self.rows.iter().position(|r| r.name == name)
    }

    /// The index of column `name`, or an error naming what refers to it.
    pub fn column(&self, name: &str, what: &str) -> Result<usize> {
        self.column_index(name).with_context(|| {
            format!(
                "{what} names column '{name}', which the file does not have (columns: {})",
                names(self.columns.iter().map(|c| c.name.as_str()))
            )
        })
    }

    /// The index of row `name`, or an error naming what refers to it.
    pub fn row(&self, name: &str, what: &str) -> Result<usize> {
        self.row_index(name).with_context(|| {
            format!(
                "{what} names row '{name}', which the file does not have (rows: {})",
                names(self.rows.iter().map(|r| r.name.as_str()))
            )
        })
    }
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.collect::<Vec<_>>().join(", ")
}

/// Reads and checks the experiment file `path`.
pub fn load(path: &Path) -> Result<Experiment> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the experiment file {}", path.display()))?;
    let exp: Experiment = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
    exp.check().with_context(|| format!("{}", path.display()))?;
    Ok(exp)
}

/// A name that is one folder name everywhere: letters, digits, '.', '_', '+' and '-', not
/// starting with '.'.
fn check_name(name: &str, what: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'));
    if !ok {
        bail!(
            "{what} name '{name}' is not a folder name: use letters, digits, '.', '_', '+' and \
             '-', not starting with '.'"
        );
    }
    Ok(())
}

fn unique<'a>(names: impl Iterator<Item = &'a str>, what: &str) -> Result<()> {
    let mut seen = BTreeSet::new();
    for n in names {
        check_name(n, what)?;
        if !seen.insert(n) {
            bail!("two {what}s are named '{n}'");
        }
    }
    Ok(())
}

impl Experiment {
    fn check(&self) -> Result<()> {
        if self.seeds.is_empty() {
            bail!("seeds is empty: give at least one, e.g. seeds = [0, 1, 2]");
        }
        if let Some(s) = self
            .seeds
            .iter()
            .enumerate()
            .find_map(|(i, s)| self.seeds[..i].contains(s).then_some(s))
        {
            bail!("seeds lists {s} twice");
        }
        if self.columns.is_empty() || self.rows.is_empty() {
            bail!("the file needs at least one [[columns]] and one [[rows]] table");
        }
        if self.metrics.is_empty() {
            bail!("metrics is empty: give at least one, e.g. metrics = [\"accuracy\"]");
        }
        if let Some(m) = self
            .metrics
            .iter()
            .enumerate()
            .find_map(|(i, m)| self.metrics[..i].contains(m).then_some(m))
        {
            bail!("metrics lists {} twice", m.name());
        }
        unique(self.columns.iter().map(|c| c.name.as_str()), "column")?;
        unique(self.rows.iter().map(|r| r.name.as_str()), "row")?;
        for row in &self.rows {
            for (metric, cells) in &row.paper {
                let what = format!("row '{}': paper.{}", row.name, metric.name());
                if !self.metrics.contains(metric) {
                    bail!(
                        "{what}: {} is not in metrics, so no table shows it; add it there",
                        metric.name()
                    );
                }
                for (column, value) in cells {
                    self.column(column, &what)?;
                    if !value.is_finite() {
                        bail!("{what}.{column} is {value}, not a number");
                    }
                }
            }
        }
        for (k, figure) in self.figures.iter().enumerate() {
            let what = format!("figures[{k}]");
            match figure {
                Figure::Theta {} | Figure::ClassCounts {} => {}
                Figure::Curves { row, column } => {
                    self.row(row, &what)?;
                    self.column(column, &what)?;
                }
                Figure::PrecisionSensitivity { column } => {
                    self.column(column, &what)?;
                }
            }
        }
        Ok(())
    }
}
