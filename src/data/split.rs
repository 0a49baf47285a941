//! Making the training set long-tailed, and the balanced test/validation split BreaKHis needs.

use super::rng::Rng;
use super::Sample;
use anyhow::{bail, Result};
use std::collections::{BTreeMap, BTreeSet};

/// Per-class sample counts (length `num_classes`).
pub fn class_counts(samples: &[Sample], num_classes: usize) -> Vec<usize> {
    let mut counts = vec![0; num_classes];
    for s in samples {
        counts[s.label] += 1;
    }
    counts
}

/// Classes ranked by count, largest first (ties by class index).
fn rank(counts: &[usize]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
    order
}

/// The formula's targets in class order, before any check against the counts.
fn formula_targets(counts: &[usize], imbalance: f64) -> Result<Vec<usize>> {
    if !imbalance.is_finite() || imbalance < 1.0 {
        bail!("imbalance factor must be a number >= 1, got {imbalance}");
    }
    let c = counts.len();
    let order = rank(counts);
    let n_max = order.first().map(|&k| counts[k]).unwrap_or(0);
    let mut targets = vec![0; c];
    for (i, &class) in order.iter().enumerate() {
        let exponent = if c > 1 {
            i as f64 / (c - 1) as f64
        } else {
            0.0
        };
        // The epsilon keeps exact products (e.g. 5000/100 = 50) from flooring to one less.
        targets[class] = (n_max as f64 * (1.0 / imbalance).powf(exponent) + 1e-9).floor() as usize;
    }
    // A class without training images cannot be learnt, and class-balanced weights divide by
    // its count: refuse rather than train on (or end in a non-finite loss).
    if let Some(class) = (0..c).find(|&k| targets[k] == 0 && counts[k] > 0) {
        bail!(
            "imbalance factor {imbalance} leaves class {class} with no training image: the \
             largest class has {n_max}, and {n_max}/{imbalance} rounds down to 0; use a smaller \
             --imbalance (at most {n_max}) or more images"
        );
    }
    Ok(targets)
}

/// Long-tailed target counts, in class order: the class ranked i-th by its original count
/// (largest first, ties by class index) keeps n_i = floor(n_max·(1/IF)^(i/(C−1))). Errors
/// when a class has fewer images than its target, or IF < 1.
pub fn long_tail_counts(counts: &[usize], imbalance: f64) -> Result<Vec<usize>> {
    let targets = formula_targets(counts, imbalance)?;
    let order = rank(counts);
    let short: Vec<String> = order
        .iter()
        .enumerate()
        .filter(|(_, &class)| counts[class] < targets[class])
        .map(|(i, &class)| {
            format!(
                "class {class} (rank {i}) has {} images but needs {}",
                counts[class], targets[class]
            )
        })
        .collect();
    if !short.is_empty() {
        let n_max = counts.iter().copied().max().unwrap_or(0);
        let natural = n_max as f64 / counts.iter().copied().min().unwrap_or(1).max(1) as f64;
        bail!(
            "imbalance factor {imbalance} needs more images than available: {} (n_max = {n_max}; \
             the training set's own imbalance ratio is {natural:.2}; keep it as is with no \
             imbalance factor (--imbalance none), or cap each target at the class's count with --long-tail-cap)",
            short.join("; ")
        );
    }
    Ok(targets)
}

/// Like `long_tail_counts`, but a class with fewer images than its target keeps all of them:
/// n_i = min(N_i, floor(n_max·(1/IF)^(i/(C−1)))). On BreaKHis (largest training class 3291,
/// second 854) the strict targets are unreachable for IF 10, 50 and 100; these reach the
/// requested n_max/n_min whenever the smallest class has at least n_max/IF images.
pub fn long_tail_counts_capped(counts: &[usize], imbalance: f64) -> Result<Vec<usize>> {
    Ok(formula_targets(counts, imbalance)?
        .into_iter()
        .zip(counts)
        .map(|(t, &n)| t.min(n))
        .collect())
}

/// Keeps a seeded random choice of `targets[c]` samples of each class c (original order kept).
pub fn subsample(samples: Vec<Sample>, targets: &[usize], seed: u64) -> Vec<Sample> {
    let mut keep = vec![false; samples.len()];
    for (class, &target) in targets.iter().enumerate() {
        let mut members: Vec<usize> = (0..samples.len())
            .filter(|&i| samples[i].label == class)
            .collect();
        Rng::from_parts(&[seed, 0x4C54, class as u64]).shuffle(&mut members);
        for &i in members.iter().take(target) {
            keep[i] = true;
        }
    }
    samples
        .into_iter()
        .zip(keep)
        .filter_map(|(s, k)| k.then_some(s))
        .collect()
}

/// Moves a `fraction` of each class's training samples (rounded, at least 1) to a validation
/// set, never leaving a class with fewer than 1 training image (a class of 1 keeps it); the
/// choice is seeded, both sets keep the input order. Returns (train, val).
pub fn carve_validation(
    samples: Vec<Sample>,
    num_classes: usize,
    fraction: f64,
    seed: u64,
) -> (Vec<Sample>, Vec<Sample>) {
    let mut to_val = vec![false; samples.len()];
    for class in 0..num_classes {
        let mut members: Vec<usize> = (0..samples.len())
            .filter(|&i| samples[i].label == class)
            .collect();
        let n = members.len();
        if n < 2 || fraction.is_nan() || fraction <= 0.0 {
            continue;
        }
        let k = ((n as f64 * fraction).round() as usize).clamp(1, n - 1);
        Rng::from_parts(&[seed, 0x5641, class as u64]).shuffle(&mut members);
        for &i in members.iter().take(k) {
            to_val[i] = true;
        }
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (s, v) in samples.into_iter().zip(to_val) {
        if v {
            val.push(s);
        } else {
            train.push(s);
        }
    }
    (train, val)
}

/// Result of a balanced split: the three sets and notes on what happened.
pub struct BalancedSplit {
    pub train: Vec<Sample>,
    pub test: Vec<Sample>,
    pub val: Vec<Sample>,
    pub notes: Vec<String>,
}

/// Balanced test and validation sets of `test_q` and `val_q` images per class, the rest train.
///
/// Image-level (`by_patient == false`): a seeded choice of images per class.
/// Patient-level (`by_patient == true`): whole patients are moved to the test side (then the
/// validation side) in seeded order until each class has its quota, never taking a class's
/// last training patient. A moved patient's images beyond the quota are discarded (used
/// nowhere) so test/val stay balanced and no patient is in two sets; if a class runs out of
/// patients its test/val count is short, which is reported in the notes.
pub fn balanced_split(
    samples: Vec<Sample>,
    classes: &[String],
    test_q: usize,
    val_q: usize,
    by_patient: bool,
    seed: u64,
) -> Result<BalancedSplit> {
    let num_classes = classes.len();
    let counts = class_counts(&samples, num_classes);
    if by_patient {
        return Ok(patient_split(samples, num_classes, test_q, val_q, seed));
    }
    let short: Vec<String> = classes
        .iter()
        .zip(&counts)
        .filter(|(_, &n)| n <= test_q + val_q)
        .map(|(c, n)| format!("{c} ({n})"))
        .collect();
    if !short.is_empty() {
        bail!(
            "too few images in class {} for {test_q} test + {val_q} validation images per class \
             and a training set (more than {} each); lower --test-per-class and --val-per-class",
            short.join(", "),
            test_q + val_q
        );
    }
    let mut side = vec![0u8; samples.len()];
    for class in 0..num_classes {
        let mut members: Vec<usize> = (0..samples.len())
            .filter(|&i| samples[i].label == class)
            .collect();
        Rng::from_parts(&[seed, 0x5350, class as u64]).shuffle(&mut members);
        for (k, &i) in members.iter().enumerate() {
            side[i] = if k < test_q {
                1
            } else if k < test_q + val_q {
                2
            } else {
                0
            };
        }
    }
    let mut out = BalancedSplit {
        train: Vec::new(),
        test: Vec::new(),
        val: Vec::new(),
        notes: Vec::new(),
    };
    for (s, side) in samples.into_iter().zip(side) {
        match side {
            1 => out.test.push(s),
            2 => out.val.push(s),
            _ => out.train.push(s),
        }
    }
    Ok(out)
}

fn patient_split(
    samples: Vec<Sample>,
    num_classes: usize,
    test_q: usize,
    val_q: usize,
    seed: u64,
) -> BalancedSplit {
    let patient_of = |s: &Sample| s.patient.clone().unwrap_or_default();
    // images per (patient, class)
    let mut per_patient: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, s) in samples.iter().enumerate() {
        per_patient.entry(patient_of(s)).or_default().push(i);
    }
    let mut patients: Vec<String> = per_patient.keys().cloned().collect();
    Rng::from_parts(&[seed, 0x5054]).shuffle(&mut patients);
    let class_count = |p: &str, c: usize| {
        per_patient[p]
            .iter()
            .filter(|&&i| samples[i].label == c)
            .count()
    };
    // 0 = train, 1 = test, 2 = val
    let mut assigned: BTreeMap<String, u8> = BTreeMap::new();
    for (side, quota) in [(1u8, test_q), (2u8, val_q)] {
        for class in 0..num_classes {
            let mut have: usize = patients
                .iter()
                .filter(|p| assigned.get(*p) == Some(&side))
                .map(|p| class_count(p, class))
                .sum();
            for p in &patients {
                if have >= quota {
                    break;
                }
                let n = class_count(p, class);
                if n == 0 || assigned.contains_key(p) {
                    continue;
                }
                let train_patients_left = patients
                    .iter()
                    .filter(|q| !assigned.contains_key(*q) && class_count(q, class) > 0)
                    .count();
                if train_patients_left <= 1 {
                    break;
                }
                assigned.insert(p.clone(), side);
                have += n;
            }
        }
    }
    let mut side_of = vec![0u8; samples.len()];
    for (p, &side) in &assigned {
        for &i in &per_patient[p] {
            side_of[i] = side;
        }
    }
    // trim each held-out side to its quota per class (seeded); the rest is discarded
    let mut keep = vec![true; samples.len()];
    let mut notes = Vec::new();
    for (side, quota, name) in [(1u8, test_q, "test"), (2u8, val_q, "validation")] {
        let mut got = Vec::new();
        let mut discarded = 0;
        for class in 0..num_classes {
            let mut members: Vec<usize> = (0..samples.len())
                .filter(|&i| side_of[i] == side && samples[i].label == class)
                .collect();
            Rng::from_parts(&[seed, 0x5452, side as u64, class as u64]).shuffle(&mut members);
            for &i in members.iter().skip(quota) {
                keep[i] = false;
                discarded += 1;
            }
            got.push(members.len().min(quota));
        }
        let held: BTreeSet<&String> = assigned
            .iter()
            .filter(|(_, &s)| s == side)
            .map(|(p, _)| p)
            .collect();
        if quota > 0 {
            notes.push(format!(
                "patient split: {name} set takes {} whole patients, per-class counts {got:?} (quota {quota}); {discarded} further images of those patients are unused",
                held.len()
            ));
            if got.iter().any(|&g| g < quota) {
                notes.push(format!(
                    "patient split: some classes have too few patients to fill the {name} quota of {quota}: {got:?}"
                ));
            }
        }
    }
    let mut out = BalancedSplit {
        train: Vec::new(),
        test: Vec::new(),
        val: Vec::new(),
        notes,
    };
    for ((s, side), k) in samples.into_iter().zip(side_of).zip(keep) {
        if !k {
            continue;
        }
        match side {
            1 => out.test.push(s),
            2 => out.val.push(s),
            _ => out.train.push(s),
        }
    }
    out
}
