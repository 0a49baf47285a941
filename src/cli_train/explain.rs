//! `lskbb predict --explain DIR`: one picture per image in DIR, `<image stem>.png`, with the
//! Grad-CAM map of the predicted class and the LSK selection masks of the blocks in
//! [`SHOWN_BLOCKS`] (layout: `lskbb::explain::sheet`). The library records the maps on the GPU;
//! this reads them back (blocking) and draws them.

use anyhow::{Context, Result};
use lskbb::data::Preprocessor;
use lskbb::explain::sheet::{explanation, BlockMasks, ImageMaps, SHOWN_BLOCKS};
use lskbb::explain::{forward_with_maps, grad_cam};
use lskbb::model::BbnResNet32;
use lskbb::ops::softmax::softmax_forward;
use lskbb::tensor_file::write_atomic;
use lskbb::train::eval::argmax;
use lskbb::{Gpu, Tensor, Var};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the pictures go, and the names given so far.
pub(super) struct Explainer {
    dir: PathBuf,
    /// Lower-cased, so that names differing only in case stay apart on any file system.
    used: HashSet<String>,
}

impl Explainer {
    /// Creates `dir` (and its parents) if need be.
    pub(super) fn new(dir: &Path) -> Result<Explainer> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the --explain folder {}", dir.display()))?;
        Ok(Explainer {
            dir: dir.to_path_buf(),
            used: HashSet::new(),
        })
    }

    /// `DIR/<stem>.png`, or `DIR/<stem>-2.png`, `-3`, ... when an earlier image had the stem.
    fn path_for(&mut self, file: &Path) -> PathBuf {
        let stem = file
            .file_stem()
            .map_or("image".into(), |s| s.to_string_lossy().into_owned());
        let mut name = stem.clone();
        for k in 2.. {
            if self.used.insert(name.to_lowercase()) {
                break;
            }
            name = format!("{stem}-{k}");
        }
        self.dir.join(format!("{name}.png"))
    }

    /// Classifies one batch of preprocessed images [N, C, S, S] as `probabilities` does and
    /// writes each one's picture; returns the class probabilities and the pictures' paths.
    pub(super) fn batch(
        &mut self,
        gpu: &Arc<Gpu>,
        model: &BbnResNet32,
        pre: &Preprocessor,
        files: &[PathBuf],
        x: &[f32],
        classes: &[String],
    ) -> Result<(Vec<Vec<f32>>, Vec<PathBuf>)> {
        let (c, s) = (pre.channels(), pre.size());
        let x = Var::constant(Tensor::from_f32(gpu, x, &[files.len(), c, s, s])?);
        let captured = forward_with_maps(model, &x)?;
        let probs: Vec<Vec<f32>> = softmax_forward(&captured.logits, false)?
            .to_f32()?
            .chunks(classes.len())
            .map(<[f32]>::to_vec)
            .collect();
        let predicted: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
        let cam = grad_cam(&captured, &predicted)?;
        let [_, ch, cw] = *cam.shape() else {
            anyhow::bail!("Grad-CAM map of shape {:?}", cam.shape());
        };
        let cam = cam.to_f32()?;
        let mut masks = Vec::new();
        for block in SHOWN_BLOCKS {
            if let Some(m) = captured.masks(block) {
                masks.push((block, m.shape().to_vec(), m.to_f32()?));
            }
        }
        let mut written = Vec::with_capacity(files.len());
        for (i, file) in files.iter().enumerate() {
            let map = &cam[i * ch * cw..(i + 1) * ch * cw];
            if map.iter().any(|v| !v.is_finite()) {
                eprintln!(
                    "warning: the Grad-CAM map of {} is not finite; its non-finite values show as 0",
                    file.display()
                );
            }
            let label = format!(
                "{} {:.0}%",
                classes[predicted[i]],
                100.0 * probs[i][predicted[i]]
            );
            let lsk = masks
                .iter()
                .map(|(block, shape, v)| {
                    let n = 2 * shape[2] * shape[3];
                    BlockMasks {
                        block,
                        masks: &v[i * n..(i + 1) * n],
                        height: shape[2],
                        width: shape[3],
                    }
                })
                .collect();
            let image = pre.prepare_file_unnormalised(file)?;
            let sheet = explanation(&ImageMaps {
                image: &image,
                channels: c,
                height: s,
                width: s,
                cam: map,
                cam_height: ch,
                cam_width: cw,
                label: &label,
                lsk,
            })?;
            let path = self.path_for(file);
            write_atomic(&path, &sheet.png()?)?;
            written.push(path);
        }
        Ok((probs, written))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colliding_stems_get_numbered_names() {
        let dir = std::env::temp_dir().join(format!("lskbb-explain-names-{}", std::process::id()));
        let mut e = Explainer::new(&dir).unwrap();
        let names: Vec<PathBuf> = ["a/x.png", "b/x.jpg", "X.tif", "c/x-2.png", "y"]
            .iter()
            .map(|f| e.path_for(Path::new(f)))
            .collect();
        let want = ["x.png", "x-2.png", "X-3.png", "x-2-2.png", "y.png"];
        assert_eq!(names, want.map(|n| dir.join(n)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
