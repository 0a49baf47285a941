//! The CPU reference: every op's forward and backward in f64 over plain arrays, written for
//! clarity, not speed. It exists only to test the GPU kernels against; nothing else uses it.

pub mod conv;
pub mod elementwise;
pub mod losses;
pub mod nn;

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

/// Largest |a - b| relative to max(1, |b|) over all elements: the error measure that tests
/// compare with their tolerance.
pub fn max_rel_err(a: &[f32], b: &Arr) -> f64 {
    assert_eq!(a.len(), b.numel(), "length mismatch");
    a.iter()
        .zip(&b.data)
        .map(|(&x, &y)| (x as f64 - y).abs() / y.abs().max(1.0))
        .fold(0.0, f64::max)
}

/// Central finite difference of a scalar function of one array, against an analytic
/// gradient: returns the largest absolute difference over all elements.
pub fn finite_diff_check(x: &Arr, grad: &Arr, f: impl Fn(&Arr) -> f64) -> f64 {
    let h = 1e-6;
    let mut worst: f64 = 0.0;
    for i in 0..x.numel() {
        let mut xp = x.clone();
        xp.data[i] += h;
        let mut xm = x.clone();
        xm.data[i] -= h;
        let fd = (f(&xp) - f(&xm)) / (2.0 * h);
        worst = worst.max((fd - grad.data[i]).abs());
    }
    worst
}

/// Σ a·b: the scalar loss ⟨y, gy⟩ whose gradient through an op is that op's backward at gy.
pub fn dot(a: &Arr, b: &Arr) -> f64 {
    a.data.iter().zip(&b.data).map(|(x, y)| x * y).sum()
}
