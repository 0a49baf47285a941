//! Seeded parameter initialisation (SPEC.md): kaiming_normal_ (fan_in, gain √2) for the ResNet
//! convs and the fc weight; PyTorch's default Conv2d/Linear init (kaiming_uniform_ with a = √5,
//! i.e. uniform ±1/√fan_in, and bias uniform ±1/√fan_in) elsewhere. Values are drawn on the
//! CPU once and uploaded: generating initial data is not tensor math.

use crate::data::rng::Rng;

pub struct Init {
    rng: Rng,
}

impl Init {
    pub fn new(seed: u64) -> Init {
        Init {
            rng: Rng::new(seed ^ 0x4C53_4B42_4249_4E49),
        }
    }

    /// N(0, 2/fan_in): kaiming_normal_ with mode fan_in and the ReLU gain.
    pub fn kaiming_normal(&mut self, n: usize, fan_in: usize) -> Vec<f32> {
        let std = (2.0 / fan_in as f64).sqrt();
        (0..n).map(|_| (self.normal() * std) as f32).collect()
    }

    /// N(0, std²): torchvision's VGG linear layers (std 0.01).
    pub fn normal_std(&mut self, n: usize, std: f64) -> Vec<f32> {
        (0..n).map(|_| (self.normal() * std) as f32).collect()
    }

    /// U(−1/√fan_in, 1/√fan_in): PyTorch's default for conv/linear weights and biases.
    pub fn torch_default(&mut self, n: usize, fan_in: usize) -> Vec<f32> {
        let bound = 1.0 / (fan_in as f64).sqrt();
        (0..n)
            .map(|_| ((self.rng.next_f64() * 2.0 - 1.0) * bound) as f32)
            .collect()
    }

    /// Standard normal by Box-Muller (one draw per pair of uniforms, kept simple).
    fn normal(&mut self) -> f64 {
        let u1: f64 = 1.0 - self.rng.next_f64();
        let u2 = self.rng.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}
