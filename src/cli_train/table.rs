//! The metrics table `lskbb eval` prints.

use lskbb::train::metrics::Metrics;

/// Accuracy, balanced accuracy and macro ROC-AUC, the macro sensitivity, specificity,
/// precision and F1, head / medium / tail accuracy, and a per-class table of the same.
pub(super) fn print_metrics(m: &Metrics) {
    let auc = |v: Option<f64>| v.map_or("-".to_string(), |a| format!("{a:.4}"));
    println!(
        "accuracy {:.2}%  balanced accuracy {:.2}%  ROC-AUC {}",
        m.accuracy,
        m.balanced_accuracy,
        auc(m.auc)
    );
    println!(
        "macro: sensitivity {:.2}%  specificity {:.2}%  precision {:.2}%  F1 {:.2}%",
        m.sensitivity, m.specificity, m.precision, m.f1
    );
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |a| format!("{a:.2}%"));
    println!(
        "head {}  medium {}  tail {}",
        fmt(m.head_acc),
        fmt(m.medium_acc),
        fmt(m.tail_acc)
    );
    println!(
        "{:<24} {:>7} {:>7} {:>12} {:>12} {:>10} {:>8} {:>9} {:>8}",
        "class",
        "train",
        "images",
        "sensitivity",
        "specificity",
        "precision",
        "F1",
        "accuracy",
        "ROC-AUC"
    );
    for c in &m.per_class {
        println!(
            "{:<24} {:>7} {:>7} {:>11.2}% {:>11.2}% {:>9.2}% {:>7.2}% {:>8.2}% {:>8}",
            c.class,
            c.train_count,
            c.test_count,
            c.sensitivity,
            c.specificity,
            c.precision,
            c.f1,
            c.accuracy,
            auc(c.auc)
        );
    }
}
