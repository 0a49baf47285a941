//! Classification metrics: confusion matrix, accuracy, balanced accuracy, per-class and macro
//! sensitivity (recall), specificity, precision, F1 and one-vs-rest ROC-AUC, and head / medium /
//! tail accuracy by training-set class size.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub class: String,
    pub train_count: usize,
    pub test_count: usize,
    /// TP / (TP + FP), percent.
    pub precision: f64,
    /// TP / (TP + FN) (recall), percent.
    pub sensitivity: f64,
    /// TN / (TN + FP), percent.
    pub specificity: f64,
    /// Harmonic mean of precision and sensitivity, percent (0 when both are 0).
    pub f1: f64,
    /// One-vs-rest accuracy (TP + TN) / all, percent.
    pub accuracy: f64,
    /// One-vs-rest ROC-AUC of this class's probability (0..1); None without probabilities or
    /// when the evaluated images hold no positive or no negative of the class.
    pub auc: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Metrics {
    /// Percent of test images classified correctly.
    pub accuracy: f64,
    /// Macro averages over classes, percent.
    pub precision: f64,
    pub sensitivity: f64,
    pub specificity: f64,
    pub f1: f64,
    /// Mean sensitivity over the classes that have evaluated images, percent.
    pub balanced_accuracy: f64,
    /// Mean of the per-class ROC-AUCs that exist (0..1); None when none does.
    pub auc: Option<f64>,
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

/// One-vs-rest ROC-AUC: the probability that a random positive scores above a random
/// negative, ties counted half (the Mann-Whitney U statistic over |pos| x |neg|), from average
/// ranks. None when there is no positive or no negative.
pub fn roc_auc(scores: &[f32], positive: &[bool]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 || scores.len() != positive.len() {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg * order[i..=j].iter().filter(|&&k| positive[k]).count() as f64;
        i = j + 1;
    }
    let u = rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos as f64 * n_neg as f64))
}

impl Metrics {
    /// Metrics from true labels and class probabilities (one row per image): the prediction
    /// is the row's argmax, and each class gets its one-vs-rest ROC-AUC.
    pub fn from_probabilities(
        classes: &[String],
        train_counts: &[usize],
        labels: &[usize],
        probs: &[Vec<f32>],
    ) -> Metrics {
        let pairs: Vec<(usize, usize)> = labels
            .iter()
            .zip(probs)
            .map(|(&y, p)| (y, super::eval::argmax(p)))
            .collect();
        let mut m = Metrics::from_predictions(classes, train_counts, &pairs);
        for (k, cm) in m.per_class.iter_mut().enumerate() {
            let scores: Vec<f32> = probs
                .iter()
                .map(|p| p.get(k).copied().unwrap_or(f32::NAN))
                .collect();
            let positive: Vec<bool> = labels.iter().map(|&y| y == k).collect();
            cm.auc = roc_auc(&scores, &positive);
        }
        let aucs: Vec<f64> = m.per_class.iter().filter_map(|c| c.auc).collect();
        m.auc = (!aucs.is_empty()).then(|| aucs.iter().sum::<f64>() / aucs.len() as f64);
        m
    }

    /// Metrics from (true, predicted) pairs (no ROC-AUC: that needs probabilities).
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
                let tn = total + tp - row - col;
                let (precision, sensitivity) = (pct(tp, col), pct(tp, row));
                ClassMetrics {
                    class: classes[i].clone(),
                    train_count: train_counts.get(i).copied().unwrap_or(0),
                    test_count: row,
                    precision,
                    sensitivity,
                    specificity: pct(tn, total - row),
                    f1: if precision + sensitivity > 0.0 {
                        2.0 * precision * sensitivity / (precision + sensitivity)
                    } else {
                        0.0
                    },
                    accuracy: pct(tp + tn, total),
                    auc: None,
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
        let present: Vec<&ClassMetrics> = per_class.iter().filter(|m| m.test_count > 0).collect();
        let balanced_accuracy = if present.is_empty() {
            0.0
        } else {
            present.iter().map(|m| m.sensitivity).sum::<f64>() / present.len() as f64
        };
        Metrics {
            accuracy: pct(correct, total),
            precision: mean(|m| m.precision),
            sensitivity: mean(|m| m.sensitivity),
            specificity: mean(|m| m.specificity),
            f1: mean(|m| m.f1),
            balanced_accuracy,
            auc: None,
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
        // a: TN = 8 - 4 - 4 + 3 = 3 of 4 negatives; b: TN = 6 - 1 = 5 of 6; c: 6 of 6.
        assert!((m.per_class[0].specificity - 75.0).abs() < 1e-9);
        assert!((m.per_class[1].specificity - 500.0 / 6.0).abs() < 1e-9);
        assert!((m.per_class[2].specificity - 100.0).abs() < 1e-9);
        // F1 of b: precision 2/3, recall 1 -> 2 * (2/3) / (5/3) = 0.8; c: P 1, R 1/2 -> 2/3.
        assert!((m.per_class[0].f1 - 75.0).abs() < 1e-9);
        assert!((m.per_class[1].f1 - 80.0).abs() < 1e-9);
        assert!((m.per_class[2].f1 - 200.0 / 3.0).abs() < 1e-9);
        // Balanced accuracy: (75 + 100 + 50) / 3.
        assert!((m.balanced_accuracy - 75.0).abs() < 1e-9);
        assert!((m.specificity - (75.0 + 500.0 / 6.0 + 100.0) / 3.0).abs() < 1e-9);
        assert!((m.f1 - (75.0 + 80.0 + 200.0 / 3.0) / 3.0).abs() < 1e-9);
        assert_eq!(m.auc, None);
    }

    #[test]
    fn a_class_predicted_for_every_image_has_no_true_negatives() {
        let classes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let m = Metrics::from_predictions(&classes, &[1, 1, 1], &[(0, 0), (1, 0), (2, 0)]);
        assert_eq!(m.per_class[0].specificity, 0.0);
        assert_eq!(m.per_class[1].specificity, 100.0);
    }

    #[test]
    fn roc_auc_counts_ties_half() {
        // Perfect and reversed rankings.
        assert_eq!(
            roc_auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]),
            Some(1.0)
        );
        assert_eq!(
            roc_auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]),
            Some(0.0)
        );
        // Positives 0.5, 0.7; negatives 0.5, 0.3, 0.7. Pairs (pos, neg):
        // 0.5: vs 0.5 tie 1/2, vs 0.3 win, vs 0.7 loss -> 1.5; 0.7: 0.5 win, 0.3 win,
        // 0.7 tie -> 2.5. U = 4 of 6 pairs.
        let auc = roc_auc(
            &[0.5, 0.7, 0.5, 0.3, 0.7],
            &[true, true, false, false, false],
        );
        assert!((auc.unwrap_or(f64::NAN) - 4.0 / 6.0).abs() < 1e-12);
        // All scores equal: every pair a tie.
        assert_eq!(roc_auc(&[0.3; 4], &[true, false, true, false]), Some(0.5));
        // No positives or no negatives: undefined, not NaN.
        assert_eq!(roc_auc(&[0.1, 0.2], &[false, false]), None);
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
    }

    #[test]
    fn metrics_from_probabilities_with_a_class_without_positives() {
        let classes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        // Four images of a and b, none of c.
        let labels = [0, 0, 1, 1];
        let probs = vec![
            vec![0.6, 0.3, 0.1],
            vec![0.3, 0.4, 0.3],
            vec![0.2, 0.7, 0.1],
            vec![0.5, 0.4, 0.1],
        ];
        let m = Metrics::from_probabilities(&classes, &[2, 2, 2], &labels, &probs);
        // Predictions: a, b, b, a -> a: 1 of 2, b: 1 of 2.
        assert!((m.accuracy - 50.0).abs() < 1e-9);
        // Balanced accuracy over the classes with images only: (50 + 50) / 2.
        assert!((m.balanced_accuracy - 50.0).abs() < 1e-9);
        // a: positives 0.6, 0.3; negatives 0.2, 0.5. 0.6 beats both (2), 0.3 beats 0.2 (1):
        // 3 of 4.
        assert_eq!(m.per_class[0].auc, Some(0.75));
        // b: positives 0.7, 0.4; negatives 0.3, 0.4. 0.7: 2; 0.4: beats 0.3, ties 0.4 -> 1.5.
        assert_eq!(m.per_class[1].auc, Some(3.5 / 4.0));
        // c has no positive: None, and the macro AUC averages a and b only.
        assert_eq!(m.per_class[2].auc, None);
        assert_eq!(m.auc, Some((0.75 + 0.875) / 2.0));
        // c: no positives, so its specificity is over all 4 images: none predicted c.
        assert!((m.per_class[2].specificity - 100.0).abs() < 1e-9);
        assert_eq!(m.per_class[2].sensitivity, 0.0);
        assert_eq!(m.per_class[2].f1, 0.0);
    }
}
