//! A built-in synthetic image set, generated in memory and deterministic from a seed.
//! Class k of C shows oriented stripes (angle π·k/C, 2 + 1.5·k cycles per image), a bright
//! blob on a circle at angle 2π·k/C, and a class tint, all with per-image jitter and pixel
//! noise, so a small CNN can learn it but not trivially from one pixel.

use super::preprocess::Pixels;
use super::rng::Rng;
use std::f64::consts::PI;

/// The `index`-th image of `class` (RGB, `size`×`size`).
pub fn synthetic_image(
    seed: u64,
    class: usize,
    index: u64,
    num_classes: usize,
    size: usize,
) -> Pixels {
    let mut rng = Rng::from_parts(&[seed, 0x5359, class as u64, index]);
    let c = num_classes.max(1) as f64;
    let k = class as f64;
    let jitter = |rng: &mut Rng, a: f64| (rng.next_f64() * 2.0 - 1.0) * a;
    let theta = PI * k / c + jitter(&mut rng, 0.12);
    let freq = (2.0 + 1.5 * k) * (1.0 + jitter(&mut rng, 0.1));
    let phase = rng.next_f64() * 2.0 * PI;
    let around = 2.0 * PI * k / c;
    let bx = 0.5 + 0.25 * around.cos() + jitter(&mut rng, 0.05);
    let by = 0.5 + 0.25 * around.sin() + jitter(&mut rng, 0.05);
    let sigma2 = 2.0 * 0.1f64.powi(2);
    let tint = [
        0.5 + 0.5 * around.cos(),
        0.5 + 0.5 * (around - 2.094).cos(),
        0.5 + 0.5 * (around + 2.094).cos(),
    ];
    let (ct, st) = (theta.cos(), theta.sin());
    let mut data = Vec::with_capacity(size * size * 3);
    for y in 0..size {
        for x in 0..size {
            let u = (x as f64 + 0.5) / size as f64;
            let v = (y as f64 + 0.5) / size as f64;
            let stripe = 0.5 + 0.5 * (2.0 * PI * freq * (u * ct + v * st) + phase).sin();
            let d2 = (u - bx).powi(2) + (v - by).powi(2);
            let blob = (-d2 / sigma2).exp();
            for t in tint {
                let noise = jitter(&mut rng, 0.15);
                let val = 0.1 + 0.4 * stripe + 0.35 * blob + 0.15 * t + noise;
                data.push((val.clamp(0.0, 1.0) * 255.0).round() as u8);
            }
        }
    }
    Pixels {
        w: size,
        h: size,
        c: 3,
        data,
    }
}
