//! A batch of images from input to pictures: the forward pass with the maps, the Grad-CAM of
//! each image's predicted class, the readback and one picture ([`super::sheet`]) per image.
//! Asynchronous, so that the CLI (through `block_on`) and a browser page run the same code.

use super::sheet::{explanation, BlockMasks, ImageMaps, Sheet, SHOWN_BLOCKS};
use super::{forward_with_maps, grad_cam};
use crate::autograd::Var;
use crate::model::Network;
use crate::ops::softmax::softmax_forward;
use crate::train::eval::argmax;
use anyhow::{bail, Result};

/// One image's prediction and explanation.
pub struct Explained {
    /// Class probabilities, in the model's output order.
    pub probabilities: Vec<f32>,
    /// The predicted class, the one the Grad-CAM map explains.
    pub class: usize,
    /// The Grad-CAM map as [`grad_cam`] gives it (any scale; h×w of the last stage).
    pub cam: Vec<f32>,
    pub cam_height: usize,
    pub cam_width: usize,
    /// The picture: the input, the Grad-CAM overlay and map, and the LSK masks of the blocks
    /// in [`SHOWN_BLOCKS`] that the model has.
    pub sheet: Sheet,
}

/// Explains a batch: `x` is the network input [N, C, S, S], `images` the same images before
/// normalisation (N·C·S·S values in [0, 1]) for the pictures, `classes` the output names.
pub async fn explain_batch(
    model: &Network,
    x: &Var,
    images: &[f32],
    classes: &[String],
) -> Result<Vec<Explained>> {
    let &[n, c, s, s2] = x.value().shape() else {
        bail!(
            "explain_batch needs [N, C, S, S] images, got {:?}",
            x.value().shape()
        );
    };
    if images.len() != n * c * s * s2 {
        bail!(
            "explain_batch: {} unnormalised values for images of shape {:?}",
            images.len(),
            x.value().shape()
        );
    }
    let captured = forward_with_maps(model, x)?;
    let k = classes.len();
    let probs = softmax_forward(&captured.logits, false)?
        .to_f32_async()
        .await?;
    if probs.len() != n * k {
        bail!(
            "the model has {} outputs per image, not {k} classes",
            probs.len() / n.max(1)
        );
    }
    let predicted: Vec<usize> = probs.chunks(k).map(argmax).collect();
    let cam = grad_cam(&captured, &predicted)?;
    let &[_, ch, cw] = cam.shape() else {
        bail!("Grad-CAM map of shape {:?}", cam.shape());
    };
    let cam = cam.to_f32_async().await?;
    let mut masks = Vec::new();
    for block in SHOWN_BLOCKS {
        if let Some(m) = captured.masks(block) {
            masks.push((block, m.shape().to_vec(), m.to_f32_async().await?));
        }
    }
    let image_len = c * s * s2;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let p = &probs[i * k..(i + 1) * k];
        let map = &cam[i * ch * cw..(i + 1) * ch * cw];
        let label = format!("{} {:.0}%", classes[predicted[i]], 100.0 * p[predicted[i]]);
        let lsk = masks
            .iter()
            .map(|(block, shape, v)| {
                let m = 2 * shape[2] * shape[3];
                BlockMasks {
                    block,
                    masks: &v[i * m..(i + 1) * m],
                    height: shape[2],
                    width: shape[3],
                }
            })
            .collect();
        let sheet = explanation(&ImageMaps {
            image: &images[i * image_len..(i + 1) * image_len],
            channels: c,
            height: s,
            width: s2,
            cam: map,
            cam_height: ch,
            cam_width: cw,
            label: &label,
            lsk,
        })?;
        out.push(Explained {
            probabilities: p.to_vec(),
            class: predicted[i],
            cam: map.to_vec(),
            cam_height: ch,
            cam_width: cw,
            sheet,
        });
    }
    Ok(out)
}
