//! Shared test helpers: one GPU per test binary, uploads of reference arrays, comparisons.
#![allow(dead_code)]

use lskbb::ops::{elementwise, reduce};
use lskbb::reference::{max_rel_err, Arr};
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

/// Asserts that a GPU result matches the f64 reference within `tol`, measured as the largest
/// |a - b| / max(1, |b|).
pub fn assert_close(what: &str, got: &Tensor, want: &Arr, tol: f64) {
    assert_eq!(got.shape(), &want.shape[..], "{what}: shape");
    let err = max_rel_err(&down(got), want);
    assert!(
        err <= tol,
        "{what}: max error {err:.3e} > tolerance {tol:.1e}"
    );
}

/// d ⟨y, gy⟩ / d leaves: back-propagates gy from y through autograd.
pub fn backprop(y: &Var, gy: &Arr) {
    let prod = elementwise::mul(y, &Var::constant(up(gy))).unwrap();
    let axes: Vec<usize> = (0..y.shape().len()).collect();
    backward(&reduce::sum(&prod, &axes, false).unwrap()).unwrap();
}
