//! Labels for the loss tests, and the finite-difference check of the reference losses.

use super::gpu;
use lskbb::ops::loss::LossKind;
use lskbb::reference::losses as rl;
use lskbb::reference::{finite_diff_check, Rng};
use lskbb::Tensor;

/// `n` random labels below `c`.
pub fn labels(rng: &mut Rng, n: usize, c: usize) -> Vec<u32> {
    (0..n).map(|_| (rng.next_u64() % c as u64) as u32).collect()
}

pub fn up_labels(l: &[u32]) -> Tensor {
    Tensor::from_u32(&gpu(), l, &[l.len()]).unwrap()
}

/// The reference's gradient of every loss in `kinds(c)` against central differences, on
/// one class, one sample and odd sizes; each within `tol`.
pub fn check_reference_losses(seed: u64, kinds: impl Fn(usize) -> Vec<LossKind>, tol: f64) {
    let mut rng = Rng(seed);
    for (n, c) in [(1, 1), (1, 4), (5, 3), (9, 6)] {
        let z = rng.arr(&[n, c], 2.0);
        let y = labels(&mut rng, n, c);
        for kind in kinds(c) {
            let (_, g) = rl::loss(&z, &y, &kind);
            let err = finite_diff_check(&z, &g, |zz| rl::loss(zz, &y, &kind).0);
            assert!(
                err < tol,
                "{kind:?} {n}x{c}: finite differences off by {err:.2e}"
            );
        }
    }
}
