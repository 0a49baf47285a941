//! lskbb in the browser: the page (`web/index.html`) hands a checkpoint's and an image's bytes
//! to [`Model`], which classifies and explains the image on the browser's WebGPU adapter
//! through `lskbb::app`, the same library calls a native app makes.
#![cfg(target_arch = "wasm32")]

use js_sys::{Array, Promise, Uint8Array};
use lskbb::app::{request_gpu, Classifier, Prediction};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

fn js_error(e: lskbb::app::Error) -> JsValue {
    JsError::new(&e.to_string()).into()
}

/// A checkpoint loaded on the browser's GPU.
#[wasm_bindgen]
pub struct Model {
    inner: Rc<Classifier>,
}

#[wasm_bindgen]
impl Model {
    /// Opens WebGPU and loads a checkpoint written by `lskbb train` (`name` names it in
    /// errors). Resolves to a `Model`.
    pub fn load(checkpoint: Vec<u8>, name: String) -> Promise {
        future_to_promise(async move {
            let gpu = request_gpu().await.map_err(js_error)?;
            let inner = Classifier::from_bytes(&gpu, &checkpoint, &name).map_err(js_error)?;
            Ok(Model {
                inner: Rc::new(inner),
            }
            .into())
        })
    }

    /// The adapter the model runs on, as `lskbb devices` names it.
    pub fn adapter(&self) -> String {
        self.inner.gpu().describe()
    }

    /// The class names, in the order of the model's outputs.
    pub fn classes(&self) -> Vec<String> {
        self.inner.classes().to_vec()
    }

    /// Classifies an encoded image (PNG, JPEG, TIFF, BMP). Resolves to a JSON string shaped
    /// like a line of `lskbb predict --json`: `class`, `probability`, `probabilities`.
    pub fn classify(&self, image: Vec<u8>) -> Promise {
        let model = self.inner.clone();
        future_to_promise(async move {
            let p = model.classify_bytes(&image).await.map_err(js_error)?;
            Ok(JsValue::from_str(&prediction_json(&p)))
        })
    }

    /// Classifies an encoded image and explains it. Resolves to `[json, png]`: the JSON of
    /// [`Model::classify`] and the explanation picture (the input, the Grad-CAM map of the
    /// predicted class over it, the LSK selection masks) as PNG bytes in a `Uint8Array`.
    pub fn explain(&self, image: Vec<u8>) -> Promise {
        let model = self.inner.clone();
        future_to_promise(async move {
            let e = model.explain_bytes(&image).await.map_err(js_error)?;
            let pair = Array::new();
            pair.push(&JsValue::from_str(&prediction_json(&e.prediction)));
            pair.push(&Uint8Array::from(e.png.as_slice()));
            Ok(pair.into())
        })
    }
}

/// A prediction as a line of `lskbb predict --json` has it.
fn prediction_json(p: &Prediction) -> String {
    let probabilities: serde_json::Map<String, serde_json::Value> = p
        .probabilities
        .iter()
        .map(|(c, v)| (c.clone(), (*v).into()))
        .collect();
    serde_json::json!({
        "class": p.class,
        "probability": p.probability,
        "probabilities": probabilities,
    })
    .to_string()
}
