//! Evaluation of a model on a dataset split, and prediction on image files: inference runs
//! on the GPU (eval-mode batch norm, both branches on the same image, softmax), the host only
//! reads the class scores back.

use super::metrics::Metrics;
use crate::autograd::{no_grad, Var};
use crate::data::{BatchLoader, Dataset};
use crate::model::Network;
use crate::ops::softmax::softmax_forward;
use crate::tensor::Tensor;
use anyhow::{bail, Result};
use std::sync::Arc;

pub struct EvalResult {
    pub metrics: Metrics,
    /// (true, predicted) class per evaluated image.
    pub pairs: Vec<(usize, usize)>,
    /// Class probabilities of each evaluated image, in the order of `pairs`.
    pub probs: Vec<Vec<f32>>,
}

/// Class probabilities [N, C] for a batch of preprocessed images [N, C_in, S, S].
pub fn probabilities(model: &Network, x: &[f32], shape: [usize; 4]) -> Result<Vec<Vec<f32>>> {
    let p = softmax_of(model, x, shape)?;
    Ok(rows(&p, p.to_f32()?))
}

/// [`probabilities`] for async code (the library API, a browser).
pub async fn probabilities_async(
    model: &Network,
    x: &[f32],
    shape: [usize; 4],
) -> Result<Vec<Vec<f32>>> {
    let p = softmax_of(model, x, shape)?;
    Ok(rows(&p, p.to_f32_async().await?))
}

/// The model's class probabilities of the images `x` of `shape`, on the GPU.
fn softmax_of(model: &Network, x: &[f32], shape: [usize; 4]) -> Result<Tensor> {
    let gpu = model
        .store
        .params
        .first()
        .map(|(_, p)| p.value().gpu().clone())
        .ok_or_else(|| anyhow::anyhow!("model without parameters"))?;
    let x = Var::constant(Tensor::from_f32(&gpu, x, &shape)?);
    no_grad(|| -> Result<Tensor> { softmax_forward(model.infer(&x)?.value(), false) })
}

/// `values` read back from the [N, C] tensor `p`, one row per image.
fn rows(p: &Tensor, values: Vec<f32>) -> Vec<Vec<f32>> {
    values.chunks(p.shape()[1]).map(<[f32]>::to_vec).collect()
}

/// Index of the first largest entry (the predicted class); NaN entries are never chosen.
pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv {
                (i, x)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// Runs every batch of `loader` through the model and scores the predictions.
pub fn evaluate(model: &Network, loader: &BatchLoader, ds: &Arc<Dataset>) -> Result<EvalResult> {
    if model.config.classes != ds.num_classes() {
        bail!(
            "the model has {} classes, the dataset {} ({})",
            model.config.classes,
            ds.num_classes(),
            ds.classes.join(", ")
        );
    }
    let mut labels = Vec::new();
    let mut all = Vec::new();
    for batch in loader.epoch(0, 0)? {
        let batch = batch?;
        if batch.y.is_empty() {
            continue;
        }
        let probs = probabilities(model, &batch.x, batch.shape)?;
        labels.extend(batch.y.iter().map(|&y| y as usize));
        all.extend(probs);
    }
    let pairs = labels
        .iter()
        .zip(&all)
        .map(|(&y, p)| (y, argmax(p)))
        .collect();
    let metrics = Metrics::from_probabilities(&ds.classes, &ds.train_counts(), &labels, &all);
    Ok(EvalResult {
        metrics,
        pairs,
        probs: all,
    })
}
