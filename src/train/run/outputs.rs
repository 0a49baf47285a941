//! The run folder's result files after each epoch: metrics.jsonl, curves.png, confusion.png
//! and summary.json (validation and test metrics at the best epoch and at the end).

use super::{EpochRecord, Run};
use crate::data::Split;
use crate::tensor_file::write_atomic;
use crate::train::metrics::Metrics;
use crate::train::plot;
use anyhow::Result;
use serde_json::json;

impl Run<'_> {
    /// `test` and `val` are this epoch's metrics (`val` None without validation images).
    pub(super) fn write_outputs(&self, test: &Metrics, val: Option<&Metrics>) -> Result<()> {
        let out = &self.opts.out;
        let h = &self.state.history;
        let mut lines = String::new();
        for r in h {
            lines.push_str(&serde_json::to_string(r)?);
            lines.push('\n');
        }
        write_atomic(&out.join("metrics.jsonl"), lines.as_bytes())?;
        let col = |f: fn(&EpochRecord) -> f64| h.iter().map(f).collect::<Vec<f64>>();
        let val_acc: Vec<f64> = h.iter().filter_map(|r| r.val_acc).collect();
        plot::curves(
            &out.join("curves.png"),
            &col(|r| r.train_loss),
            &col(|r| r.train_acc),
            if val_acc.len() == h.len() {
                &val_acc
            } else {
                &[]
            },
            &col(|r| r.test_acc),
        )?;
        plot::confusion(
            &out.join("confusion.png"),
            &self.ds.classes,
            &test.confusion,
        )?;
        let m = test;
        let s = &self.state;
        let summary = json!({
            "selected_on": if val.is_some() {
                "validation balanced accuracy"
            } else {
                "test balanced accuracy (the run has no validation images)"
            },
            "best_epoch": s.best_epoch,
            "best_score": s.best_score,
            "best_acc": s.best_acc,
            "stopped_early": s.stopped_early,
            "validation": {
                "best": s.best_val,
                "final": val,
            },
            "test": {
                "best": s.best_test,
                "final": m,
            },
            "final_acc": m.accuracy,
            "epochs_done": h.len(),
            "final_precision": m.precision,
            "final_sensitivity": m.sensitivity,
            "final_specificity": m.specificity,
            "final_f1": m.f1,
            "final_balanced_accuracy": m.balanced_accuracy,
            "final_auc": m.auc,
            "per_class": m.per_class,
            "head_acc": m.head_acc,
            "medium_acc": m.medium_acc,
            "tail_acc": m.tail_acc,
            "confusion": m.confusion,
            "classes": self.ds.classes,
            "train_counts": self.ds.train_counts(),
            "val_counts": self.ds.counts(Split::Val),
            "test_counts": self.ds.counts(Split::Test),
            "skipped_images": self.ds.skipped_images().len(),
            "config": self.cfg,
            "preprocessing": self.ds.preprocessor().describe(),
            "adapter": self.gpu.describe(),
        });
        write_atomic(
            &out.join("summary.json"),
            &serde_json::to_vec_pretty(&summary)?,
        )
    }
}
