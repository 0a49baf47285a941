//! Shared test helpers: one GPU per test binary, uploads of reference arrays, comparisons.
#![allow(dead_code)]

pub mod cli;
pub mod losses;
pub mod subgroups;

use lskbb::ops::{elementwise, reduce};
use lskbb::reference::{Arr, Tol};
use lskbb::{backward, AdapterChoice, Gpu, Tensor, Var};
use std::sync::{Arc, OnceLock};

/// The GPU every test in this binary uses (the best adapter present; lavapipe in CI).
pub fn gpu() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new(&AdapterChoice::default()) {
        Ok(g) => g,
        Err(e) => panic!("tests need a GPU adapter: {e:#}"),
    })
    .clone()
}

pub fn up(a: &Arr) -> Tensor {
    Tensor::from_f32(&gpu(), &a.to_f32(), &a.shape).expect("upload")
}

pub fn down(t: &Tensor) -> Vec<f32> {
    t.to_f32().expect("download")
}

/// Asserts that a GPU result matches the f64 reference within `tol` (see
/// `lskbb::reference::max_rel_err` for the measure: relative, with a floor scaled by the
/// reference's largest magnitude; NaN and ±inf always fail).
pub fn assert_close(what: &str, got: &Tensor, want: &Arr, tol: Tol) {
    assert_eq!(got.shape(), &want.shape[..], "{what}: shape");
    assert_close_f32(what, &down(got), want, tol);
}

/// `assert_close` for values already downloaded; returns the measured error.
pub fn assert_close_f32(what: &str, got: &[f32], want: &Arr, tol: Tol) -> f64 {
    tol.check(got, want)
        .unwrap_or_else(|msg| panic!("{what}: {msg}"))
}

/// d ⟨y, gy⟩ / d leaves: back-propagates gy from y through autograd.
pub fn backprop(y: &Var, gy: &Arr) {
    let prod = elementwise::mul(y, &Var::constant(up(gy))).unwrap();
    let axes: Vec<usize> = (0..y.shape().len()).collect();
    backward(&reduce::sum(&prod, &axes, false).unwrap()).unwrap();
}
