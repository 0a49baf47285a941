//! `lskbb predict --explain DIR`: one picture per image in DIR, `<image stem>.png`, with the
//! Grad-CAM map of the predicted class and the LSK selection masks of the last block of each
//! stage (layout: `lskbb::explain::sheet`). The library computes and draws them
//! (`lskbb::explain::pictures`); this names and writes the files.

use anyhow::{Context, Result};
use lskbb::app::block_on;
use lskbb::data::Preprocessor;
use lskbb::explain::pictures::explain_batch;
use lskbb::model::Network;
use lskbb::tensor_file::write_atomic;
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
        model: &Network,
        pre: &Preprocessor,
        files: &[PathBuf],
        x: &[f32],
        classes: &[String],
    ) -> Result<(Vec<Vec<f32>>, Vec<PathBuf>)> {
        let (c, s) = (pre.channels(), pre.size());
        let x = Var::constant(Tensor::from_f32(gpu, x, &[files.len(), c, s, s])?);
        let mut images = Vec::with_capacity(files.len() * c * s * s);
        for file in files {
            images.extend(pre.prepare_file_unnormalised(file)?);
        }
        let explained = block_on(explain_batch(model, &x, &images, classes))?;
        let mut probs = Vec::with_capacity(files.len());
        let mut written = Vec::with_capacity(files.len());
        for (file, e) in files.iter().zip(explained) {
            if e.cam.iter().any(|v| !v.is_finite()) {
                eprintln!(
                    "warning: the Grad-CAM map of {} is not finite; its non-finite values show as 0",
                    file.display()
                );
            }
            let path = self.path_for(file);
            write_atomic(&path, &e.sheet.png()?)?;
            written.push(path);
            probs.push(e.probabilities);
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
