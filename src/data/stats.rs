//! `--normalize dataset`: the per-channel mean and std of the training split.
//!
//! Each training image is read the evaluation way (centre window, no augmentation, [0, 1]
//! values after channel conversion); its per-channel sums and sums of squares are taken in
//! f64, and the images' sums are added in the order of the training list, so the result is
//! the same whatever the number of threads. std is the population std, at least 1/255 (one
//! grey level) so that a constant channel stays finite.

use super::{Dataset, Preprocessor, Sample};
use anyhow::{bail, Result};

/// Per-channel sums and sums of squares of one image; None where it could not be read and
/// `skip_bad_images` is set.
type Sums = Option<(Vec<f64>, Vec<f64>)>;

fn image_sums(pre: &Preprocessor, s: &Sample, ds: &Dataset) -> Result<Sums> {
    let mut buf = vec![0f32; pre.image_len()];
    if let Err(e) = pre.unnormalised(&s.source, &mut buf) {
        if ds.config.skip_bad_images {
            ds.record_skipped(s.source.describe(), &e);
            return Ok(None);
        }
        return Err(e);
    }
    let plane = pre.size() * pre.size();
    let (sum, sq) = buf
        .chunks(plane)
        .map(|c| {
            c.iter().fold((0f64, 0f64), |(a, b), &v| {
                (a + v as f64, b + (v as f64).powi(2))
            })
        })
        .unzip();
    Ok(Some((sum, sq)))
}

/// The mean and std of each channel over the training split of `ds`.
pub(super) fn training_statistics(ds: &Dataset) -> Result<(Vec<f32>, Vec<f32>)> {
    let (train, pre) = (&ds.train, ds.preprocessor());
    let workers = ds
        .config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, train.len().max(1));
    let chunk = train.len().div_ceil(workers).max(1);
    let parts: Vec<Result<Vec<Sums>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = train
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|s| image_sums(pre, s, ds)).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| bail!("a statistics thread panicked"))
            })
            .collect()
    });
    let c = pre.channels();
    let (mut sum, mut sq, mut n) = (vec![0f64; c], vec![0f64; c], 0usize);
    for part in parts {
        for (s, q) in part?.into_iter().flatten() {
            for k in 0..c {
                sum[k] += s[k];
                sq[k] += q[k];
            }
            n += 1;
        }
    }
    if n == 0 {
        bail!("--normalize dataset: no training image could be read to compute the statistics");
    }
    let count = (n * pre.size() * pre.size()) as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
    let std = sq
        .iter()
        .zip(&mean)
        .map(|(q, m)| ((q / count - m * m).max(0.0).sqrt() as f32).max(1.0 / 255.0))
        .collect();
    Ok((mean.into_iter().map(|m| m as f32).collect(), std))
}
