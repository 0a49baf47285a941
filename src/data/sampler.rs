//! Epoch samplers. Each epoch's index list is a pure function of (seed, epoch), so the whole
//! sampler state is three integers (seed, epoch, next batch) and a run resumes exactly.

use super::rng::Rng;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::ops::Range;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// Dataset order, every image once (evaluation).
    Sequential,
    /// A shuffled permutation each epoch (BBN's conventional branch).
    Uniform,
    /// Class i with probability ∝ N_max/N_i, then an image uniformly from that class
    /// (BBN's reversed sampler, re-balancing branch); with replacement.
    Reversed,
    /// Class uniformly, then an image uniformly from it; with replacement.
    ClassBalanced,
}

impl SamplerKind {
    fn stream(self) -> u64 {
        match self {
            SamplerKind::Sequential => 0,
            SamplerKind::Uniform => 1,
            SamplerKind::Reversed => 2,
            SamplerKind::ClassBalanced => 3,
        }
    }
}

/// Draws `len()` sample indices per epoch (the size of the set, whatever the kind, so the
/// uniform and reversed loaders of one epoch have the same number of batches).
#[derive(Clone, Debug)]
pub struct Sampler {
    kind: SamplerKind,
    seed: u64,
    n: usize,
    members: Vec<Vec<usize>>,
    /// Cumulative class weights (reversed / class-balanced).
    cumulative: Vec<f64>,
}

impl Sampler {
    pub fn new(
        kind: SamplerKind,
        labels: &[usize],
        num_classes: usize,
        seed: u64,
    ) -> Result<Sampler> {
        let mut members = vec![Vec::new(); num_classes];
        for (i, &l) in labels.iter().enumerate() {
            if l >= num_classes {
                bail!("sample {i} has label {l} but there are {num_classes} classes");
            }
            members[l].push(i);
        }
        let n_max = members.iter().map(Vec::len).max().unwrap_or(0);
        let mut total = 0.0;
        let cumulative = members
            .iter()
            .map(|m| {
                total += match (kind, m.len()) {
                    (_, 0) => 0.0,
                    (SamplerKind::Reversed, n) => n_max as f64 / n as f64,
                    _ => 1.0,
                };
                total
            })
            .collect();
        Ok(Sampler {
            kind,
            seed,
            n: labels.len(),
            members,
            cumulative,
        })
    }

    pub fn kind(&self) -> SamplerKind {
        self.kind
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Draws per epoch.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The probability of each class per draw.
    pub fn class_probabilities(&self) -> Vec<f64> {
        match self.kind {
            SamplerKind::Sequential | SamplerKind::Uniform => self
                .members
                .iter()
                .map(|m| m.len() as f64 / self.n.max(1) as f64)
                .collect(),
            _ => {
                let total = self
                    .cumulative
                    .last()
                    .copied()
                    .unwrap_or(0.0)
                    .max(f64::MIN_POSITIVE);
                let mut prev = 0.0;
                self.cumulative
                    .iter()
                    .map(|&c| {
                        let p = (c - prev) / total;
                        prev = c;
                        p
                    })
                    .collect()
            }
        }
    }

    /// The sample indices of `epoch`, in draw order.
    pub fn epoch_indices(&self, epoch: u64) -> Vec<usize> {
        let mut rng = Rng::from_parts(&[self.seed, 0x5341, self.kind.stream(), epoch]);
        match self.kind {
            SamplerKind::Sequential => (0..self.n).collect(),
            SamplerKind::Uniform => {
                let mut v: Vec<usize> = (0..self.n).collect();
                rng.shuffle(&mut v);
                v
            }
            SamplerKind::Reversed | SamplerKind::ClassBalanced => {
                let total = self.cumulative.last().copied().unwrap_or(0.0);
                (0..self.n)
                    .map(|_| {
                        let r = rng.next_f64() * total;
                        let class = self
                            .cumulative
                            .iter()
                            .position(|&c| r < c)
                            .unwrap_or(self.cumulative.len() - 1);
                        let m = &self.members[class];
                        m[rng.below(m.len())]
                    })
                    .collect()
            }
        }
    }
}

/// Batch boundaries over `n` draws: ceil(n/batch) batches of `batch`, the last possibly
/// smaller. With `merge_tail` a 1-image tail joins the previous batch (which then holds
/// batch+1 images), so no training batch has a single image (BatchNorm needs ≥ 2); a set of
/// one image still gives one batch of one.
pub fn batch_bounds(n: usize, batch: usize, merge_tail: bool) -> Vec<Range<usize>> {
    let batch = batch.max(1);
    let mut out: Vec<Range<usize>> = (0..n.div_ceil(batch))
        .map(|b| b * batch..((b + 1) * batch).min(n))
        .collect();
    if merge_tail && out.len() >= 2 && out.last().is_some_and(|r| r.len() == 1) {
        out.pop();
        if let Some(last) = out.last_mut() {
            last.end = n;
        }
    }
    out
}
