//! Batch loading on CPU worker threads with prefetch, in a deterministic order.
//!
//! Work is split per image: worker threads take (batch, position) items in order, at most
//! `prefetch` batches ahead of the consumer, and the consumer assembles batches in order.
//! Every random decision (which images, every `--augment` draw) is a function of (seed,
//! sampler kind, epoch, batch index, position), so batches are identical whatever the thread
//! timing and whether an epoch starts at batch 0 or resumes at batch k.

use super::rng::Rng;
use super::sampler::{batch_bounds, Sampler, SamplerKind};
use super::{Dataset, Split};
use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// One batch: `x` is [B, C, S, S] row-major (`shape`), `y` the labels, `samples` the indices
/// into the split's sample list, `index` the batch number within the epoch. With
/// `skip_bad_images` a batch may hold fewer images than drawn, possibly none (B = 0).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub x: Vec<f32>,
    pub y: Vec<u32>,
    pub shape: [usize; 4],
    pub index: usize,
    pub samples: Vec<usize>,
}

impl Batch {
    /// Keeps the first `n` images.
    pub fn truncate(&mut self, n: usize) {
        if n < self.y.len() {
            let per = self.shape[1] * self.shape[2] * self.shape[3];
            self.x.truncate(n * per);
            self.y.truncate(n);
            self.samples.truncate(n);
            self.shape[0] = n;
        }
    }
}

/// Loads batches of one split with one sampler.
pub struct BatchLoader {
    ds: Arc<Dataset>,
    split: Split,
    sampler: Sampler,
    batch_size: usize,
    augment: bool,
    merge_tail: bool,
    workers: usize,
    prefetch: usize,
}

impl BatchLoader {
    /// A loader over `split`; `augment` turns on the dataset's random augmentation. Training
    /// loaders (`augment`) merge a 1-image tail batch into the previous one.
    pub fn new(
        ds: Arc<Dataset>,
        split: Split,
        kind: SamplerKind,
        batch_size: usize,
        augment: bool,
    ) -> Result<BatchLoader> {
        if batch_size == 0 {
            bail!("batch size must be at least 1");
        }
        let labels: Vec<usize> = ds.split(split).iter().map(|s| s.label).collect();
        if labels.is_empty() {
            bail!("the {} set is empty", split.name());
        }
        let sampler = Sampler::new(kind, &labels, ds.num_classes(), ds.config.seed)?;
        let workers = ds.config.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        Ok(BatchLoader {
            split,
            sampler,
            batch_size,
            augment,
            merge_tail: augment,
            workers: workers.max(1),
            prefetch: ds.config.prefetch_batches.max(1),
            ds,
        })
    }

    /// Training loader over the train set (augmented).
    pub fn train(ds: Arc<Dataset>, kind: SamplerKind, batch_size: usize) -> Result<BatchLoader> {
        BatchLoader::new(ds, Split::Train, kind, batch_size, true)
    }

    /// Evaluation loader: every image of `split` once, in order, centre window, no augmentation.
    pub fn eval(ds: Arc<Dataset>, split: Split, batch_size: usize) -> Result<BatchLoader> {
        BatchLoader::new(ds, split, SamplerKind::Sequential, batch_size, false)
    }

    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    /// Batches per epoch (the same for every sampler kind over the same split and batch size).
    pub fn num_batches(&self) -> usize {
        batch_bounds(self.sampler.len(), self.batch_size, self.merge_tail).len()
    }

    /// The sample indices of each batch of `epoch`.
    pub fn epoch_plan(&self, epoch: u64) -> Vec<Vec<usize>> {
        let order = self.sampler.epoch_indices(epoch);
        batch_bounds(order.len(), self.batch_size, self.merge_tail)
            .into_iter()
            .map(|r| order[r].to_vec())
            .collect()
    }

    /// Batches `start_batch..` of `epoch`, prepared ahead on worker threads.
    pub fn epoch(&self, epoch: u64, start_batch: usize) -> Result<EpochIter> {
        let plan = self.epoch_plan(epoch);
        if start_batch > plan.len() {
            bail!(
                "cannot start epoch {epoch} at batch {start_batch}: it has {} batches",
                plan.len()
            );
        }
        let plan: Vec<Vec<usize>> = plan.into_iter().skip(start_batch).collect();
        let items: Arc<Vec<(usize, usize, usize)>> = Arc::new(
            plan.iter()
                .enumerate()
                .flat_map(|(b, samples)| samples.iter().enumerate().map(move |(p, &s)| (b, p, s)))
                .collect(),
        );
        let shared = Arc::new((
            Mutex::new(Progress {
                next_item: 0,
                consumed: 0,
                stop: false,
            }),
            Condvar::new(),
        ));
        let (tx, rx) = channel();
        let mut handles = Vec::new();
        for _ in 0..self.workers.min(items.len()).max(1) {
            let tx = tx.clone();
            let (ds, items, shared) = (self.ds.clone(), items.clone(), shared.clone());
            let (split, augment, prefetch) = (self.split, self.augment, self.prefetch);
            let stream = [
                self.ds.config.seed,
                0x4155,
                self.sampler.kind() as u64,
                epoch,
            ];
            handles.push(std::thread::spawn(move || {
                let pre = ds.preprocessor();
                let len = pre.image_len();
                while let Some((b, p, s)) = take(&shared, &items, prefetch) {
                    let mut buf = vec![0f32; len];
                    let mut rng = Rng::from_parts(&[
                        stream[0],
                        stream[1],
                        stream[2],
                        stream[3],
                        (b + start_batch) as u64,
                        p as u64,
                    ]);
                    let src = &ds.split(split)[s].source;
                    let r = pre
                        .prepare(src, augment.then_some(&mut rng), &mut buf)
                        .map(|_| buf);
                    if tx.send((b, p, r)).is_err() {
                        return;
                    }
                }
            }));
        }
        Ok(EpochIter {
            ds: self.ds.clone(),
            split: self.split,
            plan,
            start_batch,
            next: 0,
            pending: HashMap::new(),
            rx,
            shared,
            handles,
        })
    }
}

struct Progress {
    next_item: usize,
    consumed: usize,
    stop: bool,
}

type Shared = Arc<(Mutex<Progress>, Condvar)>;

/// The next work item, waiting while it is more than `prefetch` batches ahead.
fn take(
    shared: &Shared,
    items: &[(usize, usize, usize)],
    prefetch: usize,
) -> Option<(usize, usize, usize)> {
    let (lock, cv) = &**shared;
    let mut g = lock.lock().ok()?;
    loop {
        if g.stop || g.next_item >= items.len() {
            return None;
        }
        let item = items[g.next_item];
        if item.0 < g.consumed + prefetch {
            g.next_item += 1;
            return Some(item);
        }
        g = cv.wait(g).ok()?;
    }
}

/// Iterator over the batches of one epoch; dropping it stops and joins the workers.
pub struct EpochIter {
    ds: Arc<Dataset>,
    split: Split,
    plan: Vec<Vec<usize>>,
    start_batch: usize,
    next: usize,
    pending: HashMap<usize, Vec<Option<Result<Vec<f32>>>>>,
    rx: Receiver<(usize, usize, Result<Vec<f32>>)>,
    shared: Shared,
    handles: Vec<JoinHandle<()>>,
}

impl EpochIter {
    /// Batches left to yield.
    pub fn remaining(&self) -> usize {
        self.plan.len() - self.next
    }

    fn stop(&self) {
        let (lock, cv) = &*self.shared;
        if let Ok(mut g) = lock.lock() {
            g.stop = true;
        }
        cv.notify_all();
    }

    fn assemble(&mut self) -> Result<Batch> {
        let b = self.next;
        let want = self.plan[b].len();
        loop {
            let done = self
                .pending
                .get(&b)
                .is_some_and(|v| v.iter().all(Option::is_some));
            if done {
                break;
            }
            let (bb, p, r) = self
                .rx
                .recv()
                .map_err(|_| anyhow!("data loader workers stopped unexpectedly"))?;
            let slot = self
                .pending
                .entry(bb)
                .or_insert_with(|| (0..self.plan[bb].len()).map(|_| None).collect());
            slot[p] = Some(r);
        }
        let images = self.pending.remove(&b).unwrap_or_default();
        {
            let (lock, cv) = &*self.shared;
            if let Ok(mut g) = lock.lock() {
                g.consumed = b + 1;
            }
            cv.notify_all();
        }
        let pre = self.ds.preprocessor();
        let len = pre.image_len();
        let mut x = Vec::with_capacity(want * len);
        let mut y = Vec::with_capacity(want);
        let mut samples = Vec::with_capacity(want);
        for (p, r) in images.into_iter().enumerate() {
            let s = self.plan[b][p];
            match r {
                Some(Ok(img)) => {
                    x.extend_from_slice(&img);
                    y.push(self.ds.split(self.split)[s].label as u32);
                    samples.push(s);
                }
                Some(Err(e)) if self.ds.config.skip_bad_images => {
                    self.ds
                        .record_skipped(self.ds.split(self.split)[s].source.describe(), &e);
                }
                Some(Err(e)) => return Err(e),
                None => bail!("internal: batch {b} position {p} missing"),
            }
        }
        Ok(Batch {
            shape: [y.len(), pre.channels(), pre.size(), pre.size()],
            x,
            y,
            index: b + self.start_batch,
            samples,
        })
    }
}

impl Iterator for EpochIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.next >= self.plan.len() {
            return None;
        }
        let r = self.assemble();
        self.next += 1;
        if r.is_err() {
            // an error ends the epoch
            self.next = self.plan.len();
            self.stop();
        }
        Some(r)
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        self.stop();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
