//! The library API for apps: open a GPU (or share the app's), load a checkpoint written by
//! `lskbb train` from a path or bytes, and classify images given as bytes or
//! [`image::DynamicImage`]; [`Classifier::explain`] adds where the model looked. Every call
//! that reads results back is `async`, so the same code runs natively (where [`block_on`]
//! drives it) and in a browser on WebGPU.
//!
//! ```no_run
//! # async fn demo() -> Result<(), lskbb::app::Error> {
//! let gpu = lskbb::app::request_gpu().await?;
//! let model = lskbb::app::Classifier::load(&gpu, "runs/lskbb/best.safetensors".as_ref())?;
//! let p = model.classify_bytes(&std::fs::read("slide.png").unwrap()).await?;
//! println!("{} ({:.1}%)", p.class, 100.0 * p.probability);
//! # Ok(()) }
//! ```

use crate::autograd::Var;
use crate::checkpoint::{model_from, output_names};
use crate::data::{decode_image_bytes, file_preprocessor, DataConfig, Preprocessor};
use crate::explain::pictures::explain_batch;
use crate::explain::render::{normalize_max, upsample_bilinear};
use crate::gpu::{DEVICE_LOST, OUT_OF_MEMORY};
use crate::model::Network;
use crate::tensor::Tensor;
use crate::tensor_file::TensorFile;
use crate::train::eval::probabilities_async;
use crate::train::run::saved_config;
use crate::Gpu;
use std::path::Path;
use std::sync::Arc;

/// What went wrong, by what an app can do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// No GPU adapter (natively: no Vulkan/Metal/DX12/GL driver; in a browser: no WebGPU).
    NoAdapter(String),
    /// The GPU ran out of memory.
    OutOfMemory(String),
    /// The GPU device was lost (driver reset, tab in the background too long): open a new
    /// one and load the model again.
    DeviceLost(String),
    /// The checkpoint cannot be read or does not describe a model lskbb can run.
    BadCheckpoint(String),
    /// The image cannot be decoded or is not a shape the model reads.
    BadImage(String),
    /// Any other GPU failure (a kernel the adapter cannot build, a validation error).
    Gpu(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NoAdapter(m) => write!(f, "no GPU: {m}"),
            Error::OutOfMemory(m) | Error::DeviceLost(m) | Error::Gpu(m) => f.write_str(m),
            Error::BadCheckpoint(m) => write!(f, "bad checkpoint: {m}"),
            Error::BadImage(m) => write!(f, "bad image: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// An engine error as the variant it is: out of memory and a lost device by their messages,
/// anything else as `other`.
fn classify(e: anyhow::Error, other: fn(String) -> Error) -> Error {
    let m = format!("{e:#}");
    if m.contains(OUT_OF_MEMORY) {
        Error::OutOfMemory(m)
    } else if m.contains(DEVICE_LOST) {
        Error::DeviceLost(m)
    } else {
        other(m)
    }
}

/// Opens the best GPU there is: natively the adapter `lskbb` would pick (with its own
/// limits), in a browser WebGPU's adapter with WebGPU's default limits (which every adapter
/// grants) and no optional features but subgroups and timestamps where offered.
pub async fn request_gpu() -> Result<Arc<Gpu>, Error> {
    #[cfg(not(target_arch = "wasm32"))]
    return Gpu::new(&crate::AdapterChoice::default())
        .map_err(|e| Error::NoAdapter(format!("{e:#}")));
    #[cfg(target_arch = "wasm32")]
    {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::BROWSER_WEBGPU;
        let adapter = wgpu::Instance::new(desc)
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::NoAdapter(format!("this browser offers no WebGPU adapter: {e}")))?;
        Gpu::open(&adapter, wgpu::Limits::default())
            .await
            .map_err(|e| classify(e, Error::NoAdapter))
    }
}

/// Natively, runs an `async` call of this module to its end on the calling thread.
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

/// One image's class probabilities.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// The most probable class's name, index and probability.
    pub class: String,
    pub index: usize,
    pub probability: f32,
    /// Every class with its probability, in the checkpoint's class order.
    pub probabilities: Vec<(String, f32)>,
}

impl Prediction {
    fn new(classes: &[String], p: &[f32]) -> Prediction {
        let index = crate::train::eval::argmax(p);
        Prediction {
            class: classes[index].clone(),
            index,
            probability: p[index],
            probabilities: classes.iter().cloned().zip(p.iter().copied()).collect(),
        }
    }

    /// The `k` most probable classes, most probable first.
    pub fn top(&self, k: usize) -> Vec<(String, f32)> {
        let mut v = self.probabilities.clone();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v.truncate(k);
        v
    }
}

/// A prediction with where the model looked.
#[derive(Clone, Debug)]
pub struct Explanation {
    pub prediction: Prediction,
    /// The Grad-CAM map of the predicted class over the network's input (the centre window
    /// the image was cropped to): `size`×`size` values, row-major, scaled so the largest is 1.
    pub heat_map: Vec<f32>,
    pub size: usize,
    /// The picture as a PNG file's bytes: the input, the Grad-CAM overlay and map, and the
    /// 5×5 and dilated 7×7 selection masks of the last LSK block of each stage.
    pub png: Vec<u8>,
}

/// A trained model ready to classify: its network on the GPU, the preprocessing it was
/// trained with and its class names.
pub struct Classifier {
    gpu: Arc<Gpu>,
    model: Network,
    pre: Preprocessor,
    classes: Vec<String>,
}

impl Classifier {
    /// Loads a checkpoint file written by `lskbb train`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(gpu: &Arc<Gpu>, path: &Path) -> Result<Classifier, Error> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::BadCheckpoint(format!("reading {}: {e}", path.display())))?;
        Classifier::from_bytes(gpu, &bytes, &path.display().to_string())
    }

    /// Loads a checkpoint written by `lskbb train` from its bytes (`name` names it in
    /// errors). Its stored preprocessing and class names are used.
    pub fn from_bytes(gpu: &Arc<Gpu>, bytes: &[u8], name: &str) -> Result<Classifier, Error> {
        let bad = |e: anyhow::Error| Error::BadCheckpoint(format!("{e:#}"));
        let f = TensorFile::from_bytes(bytes, name).map_err(bad)?;
        let data = saved_config(&f, Path::new(name))
            .map_err(bad)?
            .ok_or_else(|| {
                Error::BadCheckpoint(format!(
                    "{name} has no 'train' metadata (not written by `lskbb train`), so its \
                     preprocessing is unknown: use Classifier::with_preprocessing"
                ))
            })?
            .data;
        Classifier::with_preprocessing(gpu, f, name, data)
    }

    /// A checkpoint already read (a PyTorch state_dict, say) with the preprocessing `data`
    /// given by the caller (its `kind`, `image_size`, `augment` and `normalize` matter; the
    /// data folder is not used).
    pub fn with_preprocessing(
        gpu: &Arc<Gpu>,
        f: TensorFile,
        name: &str,
        mut data: DataConfig,
    ) -> Result<Classifier, Error> {
        let path = Path::new(name);
        let (model, f) = model_from(gpu, f, path).map_err(|e| classify(e, Error::BadCheckpoint))?;
        let classes = output_names(&f, path, model.config.classes)
            .map_err(|e| Error::BadCheckpoint(format!("{e:#}")))?;
        data.root = None;
        data.channels = model.config.in_ch;
        let pre = file_preprocessor(&data).map_err(|e| Error::BadCheckpoint(format!("{e:#}")))?;
        Ok(Classifier {
            gpu: gpu.clone(),
            model,
            pre,
            classes,
        })
    }

    /// The class names, in the order of the model's outputs.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The side of the square network input in pixels.
    pub fn image_size(&self) -> usize {
        self.pre.size()
    }

    /// The GPU the model runs on.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// Classifies an encoded image (PNG, JPEG, TIFF or BMP bytes).
    pub async fn classify_bytes(&self, bytes: &[u8]) -> Result<Prediction, Error> {
        let img = decode_image_bytes(bytes, "the image")
            .map_err(|e| Error::BadImage(format!("{e:#}")))?;
        self.classify(&img).await
    }

    /// Classifies a decoded image, preprocessed as the checkpoint's evaluation images were.
    pub async fn classify(&self, image: &image::DynamicImage) -> Result<Prediction, Error> {
        let x = self
            .pre
            .prepare_image(image, "the image")
            .map_err(|e| Error::BadImage(format!("{e:#}")))?;
        let (c, s) = (self.pre.channels(), self.pre.size());
        let p = probabilities_async(&self.model, &x, [1, c, s, s])
            .await
            .map_err(|e| classify(e, Error::Gpu))?;
        Ok(Prediction::new(&self.classes, &p[0]))
    }

    /// Classifies a decoded image and explains the prediction: the Grad-CAM map of the
    /// predicted class and the picture `lskbb predict --explain` writes (the input, the map
    /// over it, and each stage's LSK selection masks), computed on the GPU.
    pub async fn explain(&self, image: &image::DynamicImage) -> Result<Explanation, Error> {
        let bad = |e: anyhow::Error| Error::BadImage(format!("{e:#}"));
        let (x, shown) = self
            .pre
            .prepare_image_and_unnormalised(image, "the image")
            .map_err(bad)?;
        let (c, s) = (self.pre.channels(), self.pre.size());
        let gpu_error = |e: anyhow::Error| classify(e, Error::Gpu);
        let x = Var::constant(Tensor::from_f32(&self.gpu, &x, &[1, c, s, s]).map_err(gpu_error)?);
        let e = explain_batch(&self.model, &x, &shown, &self.classes)
            .await
            .map_err(gpu_error)?
            .pop()
            .ok_or_else(|| Error::Gpu("the explanation of the image is missing".into()))?;
        let heat_map = upsample_bilinear(&normalize_max(&e.cam), e.cam_height, e.cam_width, s, s)
            .map_err(gpu_error)?;
        Ok(Explanation {
            prediction: Prediction::new(&self.classes, &e.probabilities),
            heat_map,
            size: s,
            png: e.sheet.png().map_err(gpu_error)?,
        })
    }

    /// [`Classifier::explain`] of an encoded image (PNG, JPEG, TIFF or BMP bytes).
    pub async fn explain_bytes(&self, bytes: &[u8]) -> Result<Explanation, Error> {
        let img = decode_image_bytes(bytes, "the image")
            .map_err(|e| Error::BadImage(format!("{e:#}")))?;
        self.explain(&img).await
    }
}
