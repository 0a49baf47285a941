//! CPU preprocessing: decode, resize to the dataset's pre-crop size (cached in memory), then
//! crop, flip, channel conversion and normalisation to f32 CHW.

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

/// Weights of ITU-R BT.601 luma, used for RGB → 1 channel.
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

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
        let default = |v: [f32; 3]| {
            if cfg.channels == 3 {
                v.to_vec()
            } else {
                vec![LUMA.iter().zip(v).map(|(l, x)| l * x).sum()]
            }
        };
        let mean = cfg.mean.clone().unwrap_or_else(|| default(IMAGENET_MEAN));
        let std = cfg.std.clone().unwrap_or_else(|| default(IMAGENET_STD));
        if mean.len() != cfg.channels || std.len() != cfg.channels {
            bail!(
                "mean {mean:?} and std {std:?} must have one value per channel ({})",
                cfg.channels
            );
        }
        if std
            .iter()
            .any(|&s| s.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater))
        {
            bail!("std values must be > 0, got {std:?}");
        }
        Ok(Preprocessor {
            kind,
            size: cfg.image_size,
            channels: cfg.channels,
            mean,
            std,
            seed: cfg.seed,
            num_classes,
            cache: Mutex::new(HashMap::new()),
            cache_bytes: AtomicUsize::new(0),
            cache_limit: cfg.cache_mb.saturating_mul(1 << 20),
        })
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
        let mut reader = image::ImageReader::open(path)
            .and_then(|r| r.with_guessed_format())
            .map_err(|e| anyhow!("cannot read image {}: {e}", path.display()))?;
        // A header may claim any size: refuse it before decoding rather than allocate
        // gigabytes (a 29 KB PNG claiming 30,000,000 x 1 pixels took 5.7 GB).
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(MAX_SIDE);
        limits.max_image_height = Some(MAX_SIDE);
        limits.max_alloc = Some(MAX_DECODE_BYTES);
        reader.limits(limits);
        let img = reader.decode().map_err(|e| {
            anyhow!(
                "cannot decode image {}: {e} (images up to {MAX_SIDE} pixels a side are read)",
                path.display()
            )
        })?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        let long = w.max(h) as u64;
        if long > MAX_ASPECT * w.min(h).max(1) as u64 {
            bail!(
                "image {} is {w}x{h} pixels: its sides differ by more than {MAX_ASPECT} times, \
                 too far from the square crops the model reads",
                path.display()
            );
        }
        let s = self.size;
        Ok(match self.kind {
            DatasetKind::BreaKHis => resize_any(&img, scaled(350, s).max(s), scaled(230, s).max(s)),
            DatasetKind::ChestXray => {
                // ¼ scale, centre square crop, then to S (the paper's "scale ½ → 224").
                let quarter = img.resize_exact(
                    (w / 4).max(1) as u32,
                    (h / 4).max(1) as u32,
                    FilterType::Triangle,
                );
                let side = quarter.width().min(quarter.height());
                let square = quarter.crop_imm(
                    (quarter.width() - side) / 2,
                    (quarter.height() - side) / 2,
                    side,
                    side,
                );
                resize_any(&square, s, s)
            }
            DatasetKind::Synthetic => resize_any(&img, s, s),
            _ => {
                // shorter side to S·256/224, aspect kept
                let short = scaled(256, s).max(s);
                let (nw, nh) = if w <= h {
                    (
                        short,
                        ((h * short) as f64 / w.max(1) as f64).round() as usize,
                    )
                } else {
                    (
                        ((w * short) as f64 / h.max(1) as f64).round() as usize,
                        short,
                    )
                };
                resize_any(&img, nw.max(s), nh.max(s))
            }
        })
    }

    fn produce(&self, src: &ImageSource) -> Result<Pixels> {
        match src {
            ImageSource::File(path) => self.decode_file(path),
            ImageSource::Synthetic { class, index } => Ok(synthetic_image(
                self.seed,
                *class,
                *index,
                self.num_classes,
                self.size,
            )),
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

    /// Writes the C·S·S normalised image of `src` into `out`. With `aug` (training): random
    /// crop offset and a horizontal flip with probability ½; without: centre crop.
    pub fn prepare(&self, src: &ImageSource, aug: Option<&mut Rng>, out: &mut [f32]) -> Result<()> {
        let px = self.base(src)?;
        let s = self.size;
        if px.w < s || px.h < s || out.len() != self.image_len() {
            bail!(
                "internal size mismatch preparing {}: base {}x{}, size {s}, out {}",
                src.describe(),
                px.w,
                px.h,
                out.len()
            );
        }
        let (x0, y0, flip) = match aug {
            Some(rng) => (
                rng.below(px.w - s + 1),
                rng.below(px.h - s + 1),
                rng.next_u64() >> 63 == 1,
            ),
            None => ((px.w - s) / 2, (px.h - s) / 2, false),
        };
        let plane = s * s;
        for y in 0..s {
            for x in 0..s {
                let sx = if flip { x0 + s - 1 - x } else { x0 + x };
                let p = ((y0 + y) * px.w + sx) * px.c;
                let o = y * s + x;
                let v = |c: usize| px.data[p + c] as f32 / 255.0;
                match (px.c, self.channels) {
                    (1, 1) => out[o] = v(0),
                    (1, _) => {
                        for c in 0..3 {
                            out[c * plane + o] = v(0);
                        }
                    }
                    (_, 1) => out[o] = LUMA[0] * v(0) + LUMA[1] * v(1) + LUMA[2] * v(2),
                    _ => {
                        for c in 0..3 {
                            out[c * plane + o] = v(c);
                        }
                    }
                }
            }
        }
        for c in 0..self.channels {
            let (m, inv) = (self.mean[c], 1.0 / self.std[c]);
            for v in &mut out[c * plane..(c + 1) * plane] {
                *v = (*v - m) * inv;
            }
        }
        Ok(())
    }

    /// Number of cached images.
    pub fn cached(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }
}
