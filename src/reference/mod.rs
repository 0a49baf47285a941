//! The CPU reference: every op's forward and backward in f64 over plain arrays, written for
//! clarity, not speed. It exists only to test the GPU kernels against; nothing else uses it.

pub mod attention;
pub mod conv;
pub mod dropout;
pub mod elementwise;
pub mod losses;
pub mod nn;
pub mod pool;
pub mod simam;

/// A dense row-major f64 array.
#[derive(Clone, Debug, PartialEq)]
pub struct Arr {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl Arr {
    pub fn new(shape: &[usize], data: Vec<f64>) -> Arr {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "shape {shape:?}"
        );
        Arr {
            shape: shape.to_vec(),
            data,
        }
    }

    pub fn zeros(shape: &[usize]) -> Arr {
        Arr::new(shape, vec![0.0; shape.iter().product()])
    }

    pub fn from_f32(shape: &[usize], data: &[f32]) -> Arr {
        Arr::new(shape, data.iter().map(|&v| v as f64).collect())
    }

    pub fn to_f32(&self) -> Vec<f32> {
        self.data.iter().map(|&v| v as f32).collect()
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    pub fn map(&self, f: impl Fn(f64) -> f64) -> Arr {
        Arr::new(&self.shape, self.data.iter().map(|&v| f(v)).collect())
    }

    pub fn zip(&self, o: &Arr, f: impl Fn(f64, f64) -> f64) -> Arr {
        assert_eq!(self.shape, o.shape);
        Arr::new(
            &self.shape,
            self.data
                .iter()
                .zip(&o.data)
                .map(|(&a, &b)| f(a, b))
                .collect(),
        )
    }

    /// Element at a rank-4 index of a [N, C, H, W] array.
    pub fn at4(&self, n: usize, c: usize, h: usize, w: usize) -> f64 {
        let s = &self.shape;
        self.data[((n * s[1] + c) * s[2] + h) * s[3] + w]
    }
}

/// A small deterministic generator for test data (SplitMix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    /// An array of values uniform in [-scale, scale), exactly representable in f32.
    pub fn arr(&mut self, shape: &[usize], scale: f64) -> Arr {
        let n = shape.iter().product();
        Arr::new(
            shape,
            (0..n)
                .map(|_| (self.uniform() * scale) as f32 as f64)
                .collect(),
        )
    }
}

/// A tolerance for comparing a float32 result with its f64 reference: the error that
/// [`max_rel_err`] measures with this floor must not exceed `rel`. Each test states why its
/// floor fits what it checks; `Tol::EXACT` (both 0) demands equal values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tol {
    /// The largest error allowed.
    pub rel: f64,
    /// Entries smaller than `floor · scale` are held to that level instead of their own size.
    pub floor: f64,
    /// The magnitude the floor is a fraction of: by default (None) the reference's largest
    /// |value|. A test whose results are much smaller than the terms they are computed from
    /// (entries that all cancel) sets the size of those terms, which rounding scales with.
    pub scale: Option<f64>,
}

impl Tol {
    /// Equality: every element must equal its reference exactly.
    pub const EXACT: Tol = Tol::new(0.0, 0.0);

    pub const fn new(rel: f64, floor: f64) -> Tol {
        Tol {
            rel,
            floor,
            scale: None,
        }
    }

    /// This tolerance with its floor a fraction of `scale` rather than of max |want|.
    pub const fn with_scale(self, scale: f64) -> Tol {
        Tol {
            scale: Some(scale),
            ..self
        }
    }

    /// The measured error of `got` against `want` if it is within `rel`, else a message that
    /// gives the error, this tolerance and the worst element.
    pub fn check(&self, got: &[f32], want: &Arr) -> Result<f64, String> {
        let w = max_rel_err(got, want, self);
        // `<=` is false for NaN, so even a NaN error (which max_rel_err never gives) fails.
        if w.err <= self.rel {
            Ok(w.err)
        } else {
            Err(format!(
                "error {:.3e} > tolerance {:.1e} (floor {:.1e} x scale {:.3e}); worst at index \
                 {}: got {:e}, want {:e}",
                w.err, self.rel, self.floor, w.scale, w.index, w.got, w.want
            ))
        }
    }
}

/// The worst element of a comparison: its error, where it is, and both values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Worst {
    /// max_i |a_i - b_i| / max(|b_i|, floor · scale); infinite if any value is NaN or ±inf.
    pub err: f64,
    pub index: usize,
    pub got: f64,
    pub want: f64,
    /// The magnitude the floor was a fraction of (max_j |b_j| unless the tolerance set one).
    pub scale: f64,
}

/// The error measure every test compares with its tolerance: the largest over elements of
/// |a_i - b_i| / max(|b_i|, floor · max_j |b_j|) (or floor · `tol.scale` where set; `tol.rel`
/// is not used here). It is relative, except that entries smaller than `floor` times the
/// reference's largest magnitude are held to that level instead: a float32 sum's absolute
/// error scales with the size of its terms, not of its result, so an entry whose terms nearly
/// cancel cannot keep its own relative precision. A NaN or an infinity on either side makes
/// the error infinite; where the denominator is 0 (an all-zero reference, or floor 0 and a
/// zero entry) equal values count 0 and any others infinite. Empty arrays give 0.
pub fn max_rel_err(a: &[f32], b: &Arr, tol: &Tol) -> Worst {
    assert_eq!(a.len(), b.numel(), "length mismatch");
    let scale = tol.scale.unwrap_or_else(|| {
        b.data
            .iter()
            .filter(|v| v.is_finite())
            .fold(0.0, |m: f64, v| m.max(v.abs()))
    });
    let level = tol.floor * scale;
    assert!(
        level >= 0.0,
        "floor {} x scale {scale} must be >= 0",
        tol.floor
    );
    let mut worst = Worst {
        err: 0.0,
        index: 0,
        got: a.first().map_or(0.0, |&v| v as f64),
        want: b.data.first().copied().unwrap_or(0.0),
        scale,
    };
    for (i, (&x, &y)) in a.iter().zip(&b.data).enumerate() {
        let x = x as f64;
        let err = if !x.is_finite() || !y.is_finite() {
            f64::INFINITY
        } else if x == y {
            0.0
        } else {
            let den = y.abs().max(level);
            if den > 0.0 {
                (x - y).abs() / den
            } else {
                f64::INFINITY
            }
        };
        // Not a fold with f64::max, which drops a NaN: a NaN (which the branches above never
        // give) would count as infinite.
        let err = if err.is_nan() { f64::INFINITY } else { err };
        if err > worst.err {
            worst = Worst {
                err,
                index: i,
                got: x,
                want: y,
                scale,
            };
        }
    }
    worst
}

/// Central finite difference of a scalar function of one array, against an analytic
/// gradient: returns the largest absolute difference over all elements, infinite if any
/// difference is NaN or infinite.
pub fn finite_diff_check(x: &Arr, grad: &Arr, f: impl Fn(&Arr) -> f64) -> f64 {
    let h = 1e-6;
    let mut worst: f64 = 0.0;
    for i in 0..x.numel() {
        let mut xp = x.clone();
        xp.data[i] += h;
        let mut xm = x.clone();
        xm.data[i] -= h;
        let fd = (f(&xp) - f(&xm)) / (2.0 * h);
        let d = (fd - grad.data[i]).abs();
        // f64::max drops a NaN, so a NaN difference counts as infinite first.
        worst = worst.max(if d.is_nan() { f64::INFINITY } else { d });
    }
    worst
}

/// Σ a·b: the scalar loss ⟨y, gy⟩ whose gradient through an op is that op's backward at gy.
pub fn dot(a: &Arr, b: &Arr) -> f64 {
    a.data.iter().zip(&b.data).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The measure this one replaced: |a - b| / max(|b|, 1), folded with f64::max.
    fn old_measure(a: &[f32], b: &Arr) -> f64 {
        a.iter()
            .zip(&b.data)
            .map(|(&x, &y)| (x as f64 - y).abs() / y.abs().max(1.0))
            .fold(0.0, f64::max)
    }

    const TOL: Tol = Tol::new(1e-4, 1e-3);

    #[test]
    fn an_all_nan_output_fails() {
        let want = Arr::new(&[4], vec![1.0, -2.0, 0.5, 0.0]);
        let got = [f32::NAN; 4];
        assert_eq!(old_measure(&got, &want), 0.0, "the old fold dropped NaN");
        assert_eq!(max_rel_err(&got, &want, &TOL).err, f64::INFINITY);
        assert!(TOL.check(&got, &want).is_err());
        // One NaN among correct values, and a NaN in the reference, fail as well.
        let one = [1.0, f32::NAN, 0.5, 0.0];
        assert_eq!(max_rel_err(&one, &want, &TOL).index, 1);
        assert!(TOL.check(&one, &want).is_err());
        let nan_want = Arr::new(&[4], vec![1.0, f64::NAN, 0.5, 0.0]);
        assert!(TOL.check(&[1.0, -2.0, 0.5, 0.0], &nan_want).is_err());
    }

    #[test]
    fn an_infinity_fails_on_either_side() {
        let want = Arr::new(&[3], vec![1.0, -2.0, 3.0]);
        for bad in [f32::INFINITY, f32::NEG_INFINITY] {
            let w = max_rel_err(&[1.0, bad, 3.0], &want, &TOL);
            assert_eq!((w.err, w.index), (f64::INFINITY, 1));
            assert!(TOL.check(&[1.0, bad, 3.0], &want).is_err());
            // Even a matching infinity: an overflow is never a pass.
            let inf_want = Arr::new(&[3], vec![1.0, bad as f64, 3.0]);
            assert!(TOL.check(&[1.0, bad, 3.0], &inf_want).is_err());
        }
    }

    #[test]
    fn a_small_but_wrong_value_fails_where_the_old_measure_passed() {
        // A gradient whose entries are all ~1e-5: one is off by a factor 2.
        let want = Arr::new(&[3], vec![1e-5, -2e-5, 3e-5]);
        let got = [1e-5, -4e-5, 3e-5];
        assert!(old_measure(&got, &want) <= 1e-4, "passed before");
        let w = max_rel_err(&got, &want, &TOL);
        assert!((w.err - 1.0).abs() < 1e-6, "{w:?}");
        assert_eq!((w.index, w.got, w.want), (1, -4e-5f32 as f64, -2e-5));
        let msg = TOL.check(&got, &want).unwrap_err();
        assert!(msg.contains("index 1"), "{msg}");
        // An entry that nearly cancels is held to rel · floor · max|want| = 3e-12 absolute, not
        // to its own relative precision (3e-12 vs 1e-12 is off by 200%).
        let want = Arr::new(&[2], vec![3e-5, 1e-12]);
        assert!(TOL.check(&[3e-5, 3e-12], &want).is_ok());
        assert!(TOL.check(&[3e-5, 1e-11], &want).is_err());
    }

    #[test]
    fn a_set_scale_replaces_the_largest_reference_value() {
        // Every entry cancelled to ~1e-6 from terms of size 1: rounding errors of 1e-8 are
        // 1% of the largest entry, but 1e-8 of the terms.
        let want = Arr::new(&[2], vec![1e-6, -2e-6]);
        let got = [1.01e-6, -2e-6];
        assert!(TOL.check(&got, &want).is_err());
        let w = max_rel_err(&got, &want, &TOL.with_scale(1.0));
        assert_eq!(w.scale, 1.0);
        assert!((w.err - 1e-5).abs() < 1e-9, "{w:?}");
        assert!(TOL.with_scale(1.0).check(&got, &want).is_ok());
        assert!(TOL
            .with_scale(1.0)
            .check(&[f32::NAN, -2e-6], &want)
            .is_err());
    }

    #[test]
    fn zeros_and_exact_comparisons() {
        let zeros = Arr::zeros(&[3]);
        assert_eq!(max_rel_err(&[0.0, -0.0, 0.0], &zeros, &TOL).err, 0.0);
        assert_eq!(
            max_rel_err(&[0.0, 1e-30, 0.0], &zeros, &TOL).err,
            f64::INFINITY
        );
        let want = Arr::new(&[2], vec![0.5, 0.0]);
        assert_eq!(Tol::EXACT.check(&[0.5, 0.0], &want), Ok(0.0));
        assert!(Tol::EXACT.check(&[0.5, 1e-30], &want).is_err());
        assert!(Tol::EXACT.check(&[0.5f32.next_up(), 0.0], &want).is_err());
        assert_eq!(max_rel_err(&[], &Arr::zeros(&[0]), &Tol::EXACT).err, 0.0);
    }

    #[test]
    fn finite_differences_fail_on_nan() {
        let x = Arr::new(&[2], vec![0.5, 1.0]);
        let g = Arr::new(&[2], vec![1.0, f64::NAN]);
        assert_eq!(
            finite_diff_check(&x, &g, |x| x.data.iter().sum()),
            f64::INFINITY
        );
    }
}
