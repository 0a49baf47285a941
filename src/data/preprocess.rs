//! CPU preprocessing: decode, resize to the dataset's pre-crop size (cached in memory), then
//! the window, augmentation, channel conversion and normalisation to f32 CHW (see
//! [`super::augment`]).

use super::augment::{default_augment, default_normalize, fill, Augment, Draw, Normalize, LUMA};
use super::rng::Rng;
use super::synthetic::synthetic_image;
use super::{DataConfig, DatasetKind, ImageSource};
use anyhow::{anyhow, bail, Result};
use image::imageops::{self, FilterType};
use image::{GrayImage, RgbImage};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// ImageNet channel statistics (RGB), the default normalisation.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The longest side of an image that is decoded, and the most memory its decoding may take.
const MAX_SIDE: u32 = 32_768;
const MAX_DECODE_BYTES: u64 = 1 << 30;
/// The most one side of an image may exceed the other: resizing the shorter side to the crop
/// size scales the longer one by as much.
const MAX_ASPECT: u64 = 16;

/// A decoded, resized (pre-crop) image: `c` is 1 (grey) or 3 (RGB), row-major HWC bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Pixels {
    pub w: usize,
    pub h: usize,
    pub c: usize,
    pub data: Vec<u8>,
}

impl Pixels {
    fn from_gray(img: GrayImage) -> Pixels {
        Pixels {
            w: img.width() as usize,
            h: img.height() as usize,
            c: 1,
            data: img.into_raw(),
        }
    }

    fn from_rgb(img: RgbImage) -> Pixels {
        Pixels {
            w: img.width() as usize,
            h: img.height() as usize,
            c: 3,
            data: img.into_raw(),
        }
    }
}

type Slot = Arc<OnceLock<Result<Arc<Pixels>, String>>>;

/// The preprocessing pipeline of one dataset, with its image cache.
pub struct Preprocessor {
    kind: DatasetKind,
    size: usize,
    channels: usize,
    augment: Augment,
    normalize: Normalize,
    mean: Vec<f32>,
    std: Vec<f32>,
    seed: u64,
    num_classes: usize,
    cache: Mutex<HashMap<ImageSource, Slot>>,
    cache_bytes: AtomicUsize,
    cache_limit: usize,
}

fn scaled(v: usize, size: usize) -> usize {
    ((v * size) as f64 / 224.0).round().max(1.0) as usize
}

/// Decodes what `reader` reads (named `what` in errors) within the size limits: a header may
/// claim any size, so it is refused before decoding rather than allocate gigabytes (a 29 KB
/// PNG claiming 30,000,000 x 1 pixels took 5.7 GB).
fn decode_limited<R: std::io::BufRead + std::io::Seek>(
    mut reader: image::ImageReader<R>,
    what: &str,
) -> Result<image::DynamicImage> {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    reader.decode().map_err(|e| {
        anyhow!("cannot decode image {what}: {e} (images up to {MAX_SIDE} pixels a side are read)")
    })
}

/// Decodes an encoded image (PNG, JPEG, TIFF or BMP bytes; `what` names it in errors) within
/// the same limits as image files.
pub fn decode_image_bytes(bytes: &[u8], what: &str) -> Result<image::DynamicImage> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| anyhow!("cannot read image {what}: {e}"))?;
    if reader.format().is_none() {
        bail!("{what} is not a PNG, JPEG, TIFF or BMP image");
    }
    decode_limited(reader, what)
}

fn resize_any(img: &image::DynamicImage, w: usize, h: usize) -> Pixels {
    let (w, h) = (w.max(1) as u32, h.max(1) as u32);
    if img.color().has_color() {
        Pixels::from_rgb(imageops::resize(&img.to_rgb8(), w, h, FilterType::Triangle))
    } else {
        Pixels::from_gray(imageops::resize(
            &img.to_luma8(),
            w,
            h,
            FilterType::Triangle,
        ))
    }
}

impl Preprocessor {
    /// `kind` must be resolved (not `Auto`); `num_classes` is used by the synthetic set only.
    pub fn new(kind: DatasetKind, cfg: &DataConfig, num_classes: usize) -> Result<Preprocessor> {
        if kind == DatasetKind::Auto {
            bail!("preprocessing needs a concrete dataset kind, not auto");
        }
        if cfg.image_size < 8 {
            bail!("image_size must be at least 8, got {}", cfg.image_size);
        }
        if cfg.channels != 1 && cfg.channels != 3 {
            bail!("channels must be 1 or 3, got {}", cfg.channels);
        }
        let augment = cfg.augment.unwrap_or(default_augment(kind));
        let normalize = cfg.normalize.unwrap_or(default_normalize(kind));
        let default = |v: [f32; 3]| {
            if cfg.channels == 3 {
                v.to_vec()
            } else {
                vec![LUMA.iter().zip(v).map(|(l, x)| l * x).sum()]
            }
        };
        // `dataset` statistics are set by `set_statistics` (Dataset::open) or come saved
        // in `cfg.mean`/`cfg.std`; until then the values pass through unchanged.
        let (m, sd) = match normalize {
            Normalize::Imagenet => (default(IMAGENET_MEAN), default(IMAGENET_STD)),
            Normalize::Dataset | Normalize::None => {
                (vec![0.0; cfg.channels], vec![1.0; cfg.channels])
            }
        };
        let mut pre = Preprocessor {
            kind,
            size: cfg.image_size,
            channels: cfg.channels,
            augment,
            normalize,
            mean: Vec::new(),
            std: Vec::new(),
            seed: cfg.seed,
            num_classes,
            cache: Mutex::new(HashMap::new()),
            cache_bytes: AtomicUsize::new(0),
            cache_limit: cfg.cache_mb.saturating_mul(1 << 20),
        };
        pre.set_statistics(cfg.mean.clone().unwrap_or(m), cfg.std.clone().unwrap_or(sd))?;
        Ok(pre)
    }

    /// Sets the per-channel mean and std the inputs are normalised with.
    pub fn set_statistics(&mut self, mean: Vec<f32>, std: Vec<f32>) -> Result<()> {
        if mean.len() != self.channels || std.len() != self.channels {
            bail!(
                "mean {mean:?} and std {std:?} must have one value per channel ({})",
                self.channels
            );
        }
        if std
            .iter()
            .any(|&s| s.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater))
        {
            bail!("std values must be > 0, got {std:?}");
        }
        if mean.iter().any(|m| !m.is_finite()) {
            bail!("mean values must be finite, got {mean:?}");
        }
        self.mean = mean;
        self.std = std;
        Ok(())
    }

    pub fn augment(&self) -> Augment {
        self.augment
    }

    pub fn normalize(&self) -> Normalize {
        self.normalize
    }

    /// The per-channel mean and std in use.
    pub fn statistics(&self) -> (&[f32], &[f32]) {
        (&self.mean, &self.std)
    }

    /// The pipeline in words and numbers, for summary.json and the start of a run.
    pub fn describe(&self) -> serde_json::Value {
        let (s, side) = (self.size, self.pre_crop_side());
        let base = match self.kind {
            DatasetKind::BreaKHis if self.augment.crop => format!(
                "resize to {}x{}",
                scaled(350, s).max(s),
                scaled(230, s).max(s)
            ),
            DatasetKind::ChestXray => {
                format!("1/4 scale, centre square, resize to {side}x{side}")
            }
            DatasetKind::Synthetic if side == s => format!("generated at {s}x{s}"),
            DatasetKind::Synthetic => format!("generated at {s}x{s}, resize to {side}x{side}"),
            _ => format!("shorter side to {side}"),
        };
        let window = if self.augment.crop {
            "random"
        } else {
            "centre"
        };
        let mut train = vec![base.clone(), format!("{window} {s}x{s} window")];
        let a = self.augment;
        for (on, what) in [
            (a.flip, "left-right flip p 1/2"),
            (a.vflip, "top-bottom flip p 1/2"),
            (a.rot90, "0-3 quarter turns"),
            (a.color, "brightness and contrast x U[0.8, 1.2]"),
        ] {
            if on {
                train.push(what.into());
            }
        }
        // f32 → the shortest decimal that reads back as it, so the JSON round-trips
        let decimal = |v: &[f32]| -> Vec<f64> {
            v.iter()
                .map(|x| x.to_string().parse().unwrap_or(f64::NAN))
                .collect()
        };
        serde_json::json!({
            "augment": self.augment,
            "normalize": self.normalize,
            "mean": decimal(&self.mean),
            "std": decimal(&self.std),
            "train": train.join(", "),
            "eval": format!("{base}, centre {s}x{s} window"),
        })
    }

    /// The shorter side of the pre-crop image: S·256/224 with `crop` (the margin a random
    /// window moves in), S without.
    fn pre_crop_side(&self) -> usize {
        if self.augment.crop {
            scaled(256, self.size).max(self.size)
        } else {
            self.size
        }
    }

    /// Final side length S.
    pub fn size(&self) -> usize {
        self.size
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Floats per preprocessed image (C·S·S).
    pub fn image_len(&self) -> usize {
        self.channels * self.size * self.size
    }

    /// Decodes a file and brings it to the pre-crop size of this dataset's pipeline.
    fn decode_file(&self, path: &Path) -> Result<Pixels> {
        let reader = image::ImageReader::open(path)
            .and_then(|r| r.with_guessed_format())
            .map_err(|e| anyhow!("cannot read image {}: {e}", path.display()))?;
        let what = path.display().to_string();
        self.fit(&decode_limited(reader, &what)?, &what)
    }

    /// Brings a decoded image (named `what` in errors) to the pre-crop size of this
    /// dataset's pipeline.
    fn fit(&self, img: &image::DynamicImage, what: &str) -> Result<Pixels> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let long = w.max(h) as u64;
        if long > MAX_ASPECT * w.min(h).max(1) as u64 {
            bail!(
                "image {what} is {w}x{h} pixels: its sides differ by more than {MAX_ASPECT} times, \
                 too far from the square crops the model reads"
            );
        }
        let (s, side) = (self.size, self.pre_crop_side());
        Ok(match self.kind {
            DatasetKind::BreaKHis if self.augment.crop => {
                resize_any(img, scaled(350, s).max(s), scaled(230, s).max(s))
            }
            DatasetKind::ChestXray => {
                // ¼ scale, centre square crop, then to S (the paper's "scale ½ → 224").
                let quarter = img.resize_exact(
                    (w / 4).max(1) as u32,
                    (h / 4).max(1) as u32,
                    FilterType::Triangle,
                );
                let sq = quarter.width().min(quarter.height());
                let square = quarter.crop_imm(
                    (quarter.width() - sq) / 2,
                    (quarter.height() - sq) / 2,
                    sq,
                    sq,
                );
                resize_any(&square, side, side)
            }
            DatasetKind::Synthetic => resize_any(img, side, side),
            _ => {
                // shorter side to `side`, aspect kept
                let (nw, nh) = if w <= h {
                    (side, ((h * side) as f64 / w.max(1) as f64).round() as usize)
                } else {
                    (((w * side) as f64 / h.max(1) as f64).round() as usize, side)
                };
                resize_any(img, nw.max(s), nh.max(s))
            }
        })
    }

    fn produce(&self, src: &ImageSource) -> Result<Pixels> {
        match src {
            ImageSource::File(path) => self.decode_file(path),
            ImageSource::Synthetic { class, index } => {
                let px = synthetic_image(self.seed, *class, *index, self.num_classes, self.size);
                let side = self.pre_crop_side();
                if side == px.w {
                    return Ok(px);
                }
                let img = RgbImage::from_raw(px.w as u32, px.h as u32, px.data)
                    .ok_or_else(|| anyhow!("internal: synthetic image of the wrong length"))?;
                Ok(resize_any(&img.into(), side, side))
            }
        }
    }

    /// The pre-crop image, decoded at most once per source while the cache has room
    /// (a failure is remembered too, so a bad file is reported without re-reading it).
    pub fn base(&self, src: &ImageSource) -> Result<Arc<Pixels>> {
        let slot = {
            let mut cache = self
                .cache
                .lock()
                .map_err(|_| anyhow!("image cache lock poisoned"))?;
            cache.get(src).cloned().or_else(|| {
                (self.cache_bytes.load(Ordering::Relaxed) < self.cache_limit).then(|| {
                    let slot: Slot = Arc::default();
                    cache.insert(src.clone(), slot.clone());
                    slot
                })
            })
        };
        match slot {
            Some(slot) => {
                let r = slot.get_or_init(|| {
                    self.produce(src)
                        .map(|p| {
                            self.cache_bytes.fetch_add(p.data.len(), Ordering::Relaxed);
                            Arc::new(p)
                        })
                        .map_err(|e| format!("{e:#}"))
                });
                r.clone().map_err(|e| anyhow!(e))
            }
            None => self.produce(src).map(Arc::new),
        }
    }

    /// The C·S·S normalised image of a file, prepared the evaluation way (centre crop).
    pub fn prepare_file(&self, path: &Path) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.image_len()];
        self.prepare(&ImageSource::File(path.to_path_buf()), None, &mut out)?;
        Ok(out)
    }

    /// The C·S·S normalised image of an image already in memory (named `what` in errors),
    /// prepared the evaluation way, as [`Preprocessor::prepare_file`] prepares a file.
    pub fn prepare_image(&self, img: &image::DynamicImage, what: &str) -> Result<Vec<f32>> {
        let px = self.fit(img, what)?;
        self.centre_window(&px, what, &self.mean, &self.std)
    }

    /// [`Preprocessor::prepare_image`], and the same window as [0, 1] values before the
    /// normalisation (what an explanation's picture shows), from one resize.
    pub fn prepare_image_and_unnormalised(
        &self,
        img: &image::DynamicImage,
        what: &str,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let px = self.fit(img, what)?;
        let (zero, one) = (vec![0.0; self.channels], vec![1.0; self.channels]);
        Ok((
            self.centre_window(&px, what, &self.mean, &self.std)?,
            self.centre_window(&px, what, &zero, &one)?,
        ))
    }

    /// The centre S×S window of a pre-crop image, with `mean` and `std`.
    fn centre_window(
        &self,
        px: &Pixels,
        what: &str,
        mean: &[f32],
        std: &[f32],
    ) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.image_len()];
        let d = Draw::centre(px.w, px.h, self.size);
        self.fill_with(px, what, &d, mean, std, &mut out)?;
        Ok(out)
    }

    /// The C·S·S image of a file as [`Preprocessor::prepare_file`] prepares it, before the
    /// normalisation: [0, 1] values (what an explanation draws its maps over).
    pub fn prepare_file_unnormalised(&self, path: &Path) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.image_len()];
        self.unnormalised(&ImageSource::File(path.to_path_buf()), &mut out)?;
        Ok(out)
    }

    /// Writes the C·S·S normalised image of `src` into `out`. With `aug` (training): the
    /// random transforms of this pipeline's [`Augment`], drawn from it; without: the centre
    /// window, nothing else.
    pub fn prepare(&self, src: &ImageSource, aug: Option<&mut Rng>, out: &mut [f32]) -> Result<()> {
        let px = self.base(src)?;
        let s = self.size;
        if px.w < s || px.h < s {
            bail!(
                "internal size mismatch preparing {}: base {}x{}, size {s}",
                src.describe(),
                px.w,
                px.h
            );
        }
        let d = match aug {
            Some(rng) => Draw::random(self.augment, rng, px.w, px.h, s),
            None => Draw::centre(px.w, px.h, s),
        };
        self.fill_with(&px, &src.describe(), &d, &self.mean, &self.std, out)
    }

    /// Writes the C·S·S normalised image of `src` with the decisions `d` into `out`.
    pub fn prepare_drawn(&self, src: &ImageSource, d: &Draw, out: &mut [f32]) -> Result<()> {
        let px = self.base(src)?;
        self.fill_with(&px, &src.describe(), d, &self.mean, &self.std, out)
    }

    /// The evaluation image of `src` as [0, 1] values, not normalised (for statistics).
    pub(crate) fn unnormalised(&self, src: &ImageSource, out: &mut [f32]) -> Result<()> {
        let px = self.base(src)?;
        let d = Draw::centre(px.w, px.h, self.size);
        let (zero, one) = (vec![0.0; self.channels], vec![1.0; self.channels]);
        self.fill_with(&px, &src.describe(), &d, &zero, &one, out)
    }

    fn fill_with(
        &self,
        px: &Pixels,
        what: &str,
        d: &Draw,
        mean: &[f32],
        std: &[f32],
        out: &mut [f32],
    ) -> Result<()> {
        let s = self.size;
        if d.x0 + s > px.w
            || d.y0 + s > px.h
            || d.quarter_turns > 3
            || out.len() != self.image_len()
        {
            bail!(
                "cannot take a {s}x{s} window at ({}, {}) turned {} times of {} ({}x{}) into {} values",
                d.x0,
                d.y0,
                d.quarter_turns,
                what,
                px.w,
                px.h,
                out.len()
            );
        }
        fill(px, d, s, mean, std, out);
        Ok(())
    }

    /// Number of cached images.
    pub fn cached(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }
}

/// The preprocessing of evaluation images (predict path), without opening the dataset.
/// `Auto` means `root`'s detected kind, or the generic ImageFolder pipeline without a root;
/// `Synthetic` resizes the whole image to S×S.
pub fn file_preprocessor(cfg: &DataConfig) -> Result<Preprocessor> {
    let kind = match (cfg.kind, &cfg.root) {
        (DatasetKind::Auto, Some(root)) => super::layouts::detect(root)?,
        (DatasetKind::Auto, None) => DatasetKind::ImageFolder,
        (k, _) => k,
    };
    let pre = Preprocessor::new(kind, cfg, 0)?;
    if pre.normalize() == Normalize::Dataset && cfg.mean.is_none() {
        bail!(
            "--normalize dataset needs the statistics of a training split: a checkpoint \
             trained with it stores them; without one, choose --normalize imagenet or none"
        );
    }
    Ok(pre)
}

/// Preprocesses one image file as evaluation images are (see [`file_preprocessor`]).
pub fn preprocess_file(path: &Path, cfg: &DataConfig) -> Result<Vec<f32>> {
    file_preprocessor(cfg)?.prepare_file(path)
}
