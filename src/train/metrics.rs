//! Classification metrics: confusion matrix, accuracy, per-class precision / sensitivity /
//! accuracy, and head / medium / tail accuracy by training-set class size.

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct ClassMetrics {
    pub class: String,
    pub train_count: usize,
    pub test_count: usize,
    /// TP / (TP + FP), percent.
    pub precision: f64,
    /// TP / (TP + FN) (recall), percent.
    pub sensitivity: f64,
    /// One-vs-rest accuracy (TP + TN) / all, percent.
    pub accuracy: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Metrics {
    /// Percent of test images classified correctly.
    pub accuracy: f64,
    /// Macro averages over classes, percent.
    pub precision: f64,
    pub sensitivity: f64,
    pub per_class: Vec<ClassMetrics>,
    /// Accuracy over the test images of the largest, middle and smallest third of the
    /// classes by training count (percent; None when a group is empty).
    pub head_acc: Option<f64>,
    pub medium_acc: Option<f64>,
    pub tail_acc: Option<f64>,
    /// confusion[true][predicted].
    pub confusion: Vec<Vec<usize>>,
}

fn pct(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        100.0 * a as f64 / b as f64
    }
}

impl Metrics {
    /// Metrics from (true, predicted) pairs.
    pub fn from_predictions(
        classes: &[String],
        train_counts: &[usize],
        pairs: &[(usize, usize)],
    ) -> Metrics {
        let c = classes.len();
        let mut confusion = vec![vec![0usize; c]; c];
        for &(t, p) in pairs {
            if t < c && p < c {
                confusion[t][p] += 1;
            }
        }
        let total: usize = pairs.len();
        let correct: usize = (0..c).map(|i| confusion[i][i]).sum();
        let per_class: Vec<ClassMetrics> = (0..c)
            .map(|i| {
                let tp = confusion[i][i];
                let row: usize = confusion[i].iter().sum();
                let col: usize = (0..c).map(|t| confusion[t][i]).sum();
                let tn = total - row - col + tp;
                ClassMetrics {
                    class: classes[i].clone(),
                    train_count: train_counts.get(i).copied().unwrap_or(0),
                    test_count: row,
                    precision: pct(tp, col),
                    sensitivity: pct(tp, row),
                    accuracy: pct(tp + tn, total),
                }
            })
            .collect();
        // Classes ranked by training count, largest first, cut in thirds.
        let mut order: Vec<usize> = (0..c).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(train_counts.get(i).copied().unwrap_or(0)));
        let third = c.div_ceil(3);
        let group = |idx: &[usize]| -> Option<f64> {
            let n: usize = idx
                .iter()
                .map(|&i| confusion[i].iter().sum::<usize>())
                .sum();
            let ok: usize = idx.iter().map(|&i| confusion[i][i]).sum();
            (n > 0).then(|| pct(ok, n))
        };
        let head = &order[..third.min(c)];
        let tail_start = c.saturating_sub(third).max(head.len());
        let medium = &order[head.len()..tail_start];
        let tail = &order[tail_start..];
        let mean =
            |f: fn(&ClassMetrics) -> f64| per_class.iter().map(f).sum::<f64>() / c.max(1) as f64;
        Metrics {
            accuracy: pct(correct, total),
            precision: mean(|m| m.precision),
            sensitivity: mean(|m| m.sensitivity),
            head_acc: group(head),
            medium_acc: group(medium),
            tail_acc: group(tail),
            per_class,
            confusion,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_a_known_confusion_matrix() {
        let classes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        // a: 3 right, 1 as b; b: 2 right; c: 1 right, 1 as a.
        let pairs = [
            (0, 0),
            (0, 0),
            (0, 0),
            (0, 1),
            (1, 1),
            (1, 1),
            (2, 2),
            (2, 0),
        ];
        let m = Metrics::from_predictions(&classes, &[100, 10, 1], &pairs);
        assert!((m.accuracy - 75.0).abs() < 1e-9);
        assert!((m.per_class[0].precision - 75.0).abs() < 1e-9);
        assert!((m.per_class[0].sensitivity - 75.0).abs() < 1e-9);
        assert!((m.per_class[1].precision - 200.0 / 3.0).abs() < 1e-9);
        assert!((m.per_class[2].sensitivity - 50.0).abs() < 1e-9);
        assert_eq!(m.head_acc, Some(75.0));
        assert_eq!(m.medium_acc, Some(100.0));
        assert_eq!(m.tail_acc, Some(50.0));
        assert_eq!(m.confusion[2][0], 1);
    }
}
