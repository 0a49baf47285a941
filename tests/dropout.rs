//! Dropout (`ops::dropout`): the GPU mask bit for bit against the CPU reference's hash, the
//! mask's statistics (kept fraction, independence between neighbours and between seeds),
//! backward = mask·gy / (1 − p) through autograd, p = 0 and eval as the identity, p = 1 as
//! zeros, and reproducibility from the seed.

mod common;
use common::{down, gpu};
use lskbb::ops::dropout::{dropout, dropout_apply, keep_scale, threshold};
use lskbb::reference::{dropout as rdrop, Arr, Rng, Tol};
use lskbb::{backward, Tensor, Var};

/// Kept values are x·(1/(1 − p)) with 1/(1 − p) rounded to f32 once, then the product rounded:
/// two f32 roundings against the f64 reference x / (1 − p), ≤ 2·2⁻²⁴ ≈ 1.2e-7 relative.
const SCALE_TOL: Tol = Tol::new(1.5e-7, 0.0);

/// x with no zero entries, so a zero in y marks a dropped element.
fn nonzero(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let v = rng.uniform() as f32;
            v.signum() * (v.abs() + 0.5)
        })
        .collect()
}

fn up(x: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_f32(&gpu(), x, shape).unwrap()
}

/// The reference output x·m / (1 − p) in f64 from the CPU hash.
fn reference(x: &[f32], shape: &[usize], p: f32, seed: u64) -> Arr {
    let t = threshold(p).unwrap();
    let data = x.iter().enumerate().map(|(i, &v)| {
        if rdrop::keep(seed, t, i as u32) {
            v as f64 / (1.0 - p as f64)
        } else {
            0.0
        }
    });
    Arr::new(shape, data.collect())
}

/// Odd shapes (1 element, partial workgroups of 255, 210, 5005 and 257 elements, ranks 1, 2
/// and 4), probabilities around VGG's 0.5, and seeds in either or both 32-bit words.
#[test]
fn mask_matches_the_reference_hash_and_backward_reuses_it() {
    let mut rng = Rng(71);
    let cases: &[(&[usize], f32, u64)] = &[
        (&[1], 0.5, 0),
        (&[3, 85], 0.5, 1),
        (&[2, 3, 7, 5], 0.1, 1 << 40),
        (&[5, 1001], 0.9, 12345),
        (&[257], 0.3, u64::MAX),
    ];
    for &(shape, p, seed) in cases {
        let n = shape.iter().product();
        let x = nonzero(&mut rng, n);
        let want = reference(&x, shape, p, seed);
        let xv = Var::param(up(&x, shape));
        let y = dropout(&xv, p, seed, true).unwrap();
        let got = down(y.value());
        SCALE_TOL
            .check(&got, &want)
            .unwrap_or_else(|m| panic!("{shape:?} p {p} seed {seed}: {m}"));
        // Backward through autograd: gx = m·gy / (1 − p), the mask read off y.
        let gy: Vec<f32> = (0..n).map(|_| rng.uniform() as f32).collect();
        let prod = lskbb::ops::elementwise::mul(&y, &Var::constant(up(&gy, shape))).unwrap();
        let axes: Vec<usize> = (0..shape.len()).collect();
        backward(&lskbb::ops::reduce::sum(&prod, &axes, false).unwrap()).unwrap();
        let gx = down(&xv.grad().unwrap());
        let scale = keep_scale(p);
        for i in 0..n {
            let want = if got[i] == 0.0 { 0.0 } else { gy[i] * scale };
            assert_eq!(gx[i], want, "{shape:?} p {p} element {i}");
        }
    }
}

/// Over 2^20 elements the kept fraction is within 5 standard deviations of 1 − p
/// (σ = √(p(1 − p)/n) ≤ 4.9e-4), neighbours are independent (P(both kept) within 5σ of
/// (1 − p)²), and two seeds agree where independent masks would, (1 − p)² + p².
#[test]
fn mask_statistics() {
    let n = 1 << 20;
    let x = up(&vec![1.0; n], &[n]);
    for p in [0.1f32, 0.5, 0.75] {
        let q = 1.0 - p as f64;
        let a: Vec<bool> = down(&dropout_apply(&x, p, 3).unwrap())
            .iter()
            .map(|&v| v != 0.0)
            .collect();
        let b: Vec<bool> = down(&dropout_apply(&x, p, 4).unwrap())
            .iter()
            .map(|&v| v != 0.0)
            .collect();
        let frac = |k: usize| k as f64 / n as f64;
        let within = |got: f64, want: f64, what: &str| {
            let sigma = (want * (1.0 - want) / n as f64).sqrt();
            assert!(
                (got - want).abs() <= 5.0 * sigma,
                "p {p} {what}: {got} vs {want} (5σ = {})",
                5.0 * sigma
            );
        };
        within(frac(a.iter().filter(|&&k| k).count()), q, "kept");
        let pairs = a.windows(2).filter(|w| w[0] && w[1]).count();
        within(pairs as f64 / (n - 1) as f64, q * q, "neighbours kept");
        let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
        within(frac(same), q * q + (1.0 - q) * (1.0 - q), "seeds agree");
    }
}

#[test]
fn eval_and_p_zero_are_the_identity_and_p_one_drops_all() {
    let mut rng = Rng(73);
    let x = nonzero(&mut rng, 300);
    let xv = Var::param(up(&x, &[3, 100]));
    for (p, training) in [(0.5, false), (0.0, true), (0.0, false)] {
        let y = dropout(&xv, p, 9, training).unwrap();
        assert!(
            y.value().same_buffer(xv.value()),
            "p {p} training {training}"
        );
    }
    assert!(down(&dropout_apply(&up(&x, &[300]), 0.0, 9).unwrap()) == x);
    let zeros = down(&dropout_apply(&up(&x, &[300]), 1.0, 9).unwrap());
    assert!(zeros.iter().all(|&v| v == 0.0));
}

#[test]
fn same_seed_same_mask_and_bad_p_is_refused() {
    let x = up(&vec![2.0; 4099], &[4099]);
    let a = down(&dropout_apply(&x, 0.5, 77).unwrap());
    assert_eq!(a, down(&dropout_apply(&x, 0.5, 77).unwrap()));
    assert_ne!(a, down(&dropout_apply(&x, 0.5, 78).unwrap()));
    for p in [-0.1, 1.5, f32::NAN] {
        let Err(e) = dropout(&Var::param(x.clone()), p, 0, true) else {
            panic!("p {p} accepted");
        };
        assert!(format!("{e:#}").contains("[0, 1]"), "{e:#}");
    }
}
