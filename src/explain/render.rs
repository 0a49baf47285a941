//! Maps to pixels, on the CPU over plain slices (presentation, no GPU): scaling to [0, 1],
//! bilinear upsampling to the image size, a colour map, and overlays onto the input image.

use anyhow::{bail, Result};

/// `map` divided by its largest value, so its strongest evidence is 1 and no evidence stays 0
/// (a Grad-CAM map is ReLU'd, never negative). Non-finite entries become 0; a map with no
/// positive finite entry becomes all zeros.
pub fn normalize_max(map: &[f32]) -> Vec<f32> {
    let top = map
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f32, |m, &v| m.max(v));
    map.iter()
        .map(|&v| {
            if top > 0.0 && v.is_finite() {
                (v / top).max(0.0)
            } else {
                0.0
            }
        })
        .collect()
}

/// Bilinear resampling of the row-major `h`×`w` map to `out_h`×`out_w`, with pixel centres
/// aligned as PyTorch's `interpolate(mode="bilinear", align_corners=False)` and OpenCV's
/// `resize` place them: output pixel i samples the input at (i + ½)·in/out − ½, clamped to
/// the edge pixels.
pub fn upsample_bilinear(
    map: &[f32],
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
) -> Result<Vec<f32>> {
    if h == 0 || w == 0 || map.len() != h * w {
        bail!("upsample_bilinear: {} values for a {h}x{w} map", map.len());
    }
    let taps = |n_in: usize, n_out: usize| -> Vec<(usize, usize, f32)> {
        let scale = n_in as f64 / n_out as f64;
        (0..n_out)
            .map(|i| {
                let src = ((i as f64 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (src.floor() as usize).min(n_in - 1);
                let i1 = (i0 + 1).min(n_in - 1);
                (i0, i1, (src - i0 as f64) as f32)
            })
            .collect()
    };
    let (ys, xs) = (taps(h, out_h), taps(w, out_w));
    let mut out = Vec::with_capacity(out_h * out_w);
    for &(y0, y1, ty) in &ys {
        for &(x0, x1, tx) in &xs {
            let at = |y: usize, x: usize| map[y * w + x];
            let top = at(y0, x0) * (1.0 - tx) + at(y0, x1) * tx;
            let bottom = at(y1, x0) * (1.0 - tx) + at(y1, x1) * tx;
            out.push(top * (1.0 - ty) + bottom * ty);
        }
    }
    Ok(out)
}

/// The colour of `v` in [0, 1] (clamped; NaN shows as 0) on Turbo, Google's rainbow map with
/// a smooth lightness ramp (Mikhailov 2019; its polynomial fit): dark at 0, blue, green near
/// ½, yellow, dark red at 1.
pub fn turbo(v: f32) -> [u8; 3] {
    let x = if v.is_nan() {
        0.0
    } else {
        v.clamp(0.0, 1.0) as f64
    };
    let poly = |c: [f64; 6]| c.iter().rev().fold(0.0, |acc, k| acc * x + k);
    let r = poly([
        0.13572138,
        4.61539260,
        -42.66032258,
        132.13108234,
        -152.94239396,
        59.28637943,
    ]);
    let g = poly([
        0.09140261,
        2.19418839,
        4.84296658,
        -14.18503333,
        4.27729857,
        2.82956604,
    ]);
    let b = poly([
        0.10667330,
        12.64194608,
        -60.58204836,
        110.36276771,
        -89.90310912,
        27.34824973,
    ]);
    [r, g, b].map(|c| (c.clamp(0.0, 1.0) * 255.0).round() as u8)
}

/// An un-normalised C×H×W image of [0, 1] values (C = 1: grey, C = 3: RGB) as row-major RGB
/// bytes; values outside [0, 1] are clamped.
pub fn image_rgb(chw: &[f32], c: usize, h: usize, w: usize) -> Result<Vec<u8>> {
    if !(c == 1 || c == 3) || chw.len() != c * h * w {
        bail!(
            "image_rgb: {} values for a {c}x{h}x{w} image (1 or 3 channels)",
            chw.len()
        );
    }
    let byte = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let mut out = Vec::with_capacity(3 * h * w);
    for i in 0..h * w {
        for k in 0..3 {
            out.push(byte(chw[(k % c) * h * w + i]));
        }
    }
    Ok(out)
}

/// Each pixel of an RGB image repeated `k`×`k` times (a small image made visible without
/// inventing detail).
pub fn upscale_nearest(rgb: &[u8], h: usize, w: usize, k: usize) -> Result<Vec<u8>> {
    if rgb.len() != 3 * h * w || k == 0 {
        bail!(
            "upscale_nearest: {} bytes for a {h}x{w} RGB image, factor {k}",
            rgb.len()
        );
    }
    let mut out = Vec::with_capacity(rgb.len() * k * k);
    for y in 0..h * k {
        for x in 0..w * k {
            let i = 3 * ((y / k) * w + x / k);
            out.extend_from_slice(&rgb[i..i + 3]);
        }
    }
    Ok(out)
}

/// The RGB image with `heat` (one [0, 1] value per pixel) coloured by [`turbo`] laid over it:
/// (1 − alpha)·image + alpha·colour.
pub fn overlay(rgb: &[u8], heat: &[f32], alpha: f32) -> Result<Vec<u8>> {
    if rgb.len() != 3 * heat.len() {
        bail!(
            "overlay: {} heat values for an RGB image of {} pixels",
            heat.len(),
            rgb.len() / 3
        );
    }
    let a = alpha.clamp(0.0, 1.0);
    Ok(rgb
        .chunks_exact(3)
        .zip(heat)
        .flat_map(|(px, &v)| {
            let c = turbo(v);
            [0, 1, 2].map(|k| ((1.0 - a) * px[k] as f32 + a * c[k] as f32).round() as u8)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_max_scales_by_the_largest_finite_value() {
        assert_eq!(
            normalize_max(&[0.0, 2.0, 1.0, f32::NAN]),
            [0.0, 1.0, 0.5, 0.0]
        );
        assert_eq!(normalize_max(&[0.0, 0.0]), [0.0, 0.0]);
        assert_eq!(normalize_max(&[f32::INFINITY, 1.0]), [0.0, 1.0]);
    }

    #[test]
    fn bilinear_keeps_constants_and_interpolates_between_centres() {
        let flat = upsample_bilinear(&[0.25; 6], 2, 3, 5, 7).unwrap();
        assert!(flat.iter().all(|&v| v == 0.25));
        // 1x2 -> 1x4: centres at -0.25, 0.25, 0.75, 1.25 of the input (clamped).
        let row = upsample_bilinear(&[0.0, 1.0], 1, 2, 1, 4).unwrap();
        assert_eq!(row, [0.0, 0.25, 0.75, 1.0]);
        assert!(upsample_bilinear(&[1.0; 5], 2, 3, 4, 4).is_err());
    }

    #[test]
    fn turbo_runs_from_dark_through_blue_and_green_to_dark_red() {
        let (lo, blue, green, hi) = (turbo(0.0), turbo(0.1), turbo(0.5), turbo(1.0));
        assert!(lo.iter().all(|&c| c < 64), "{lo:?}");
        assert!(blue[2] > blue[0] && blue[2] > blue[1], "{blue:?}");
        assert!(green[1] > green[0] && green[1] > green[2], "{green:?}");
        assert!(hi[0] > hi[1] && hi[0] > hi[2] && hi[0] < 192, "{hi:?}");
        assert_eq!(turbo(f32::NAN), lo);
        assert_eq!(turbo(7.0), hi);
    }

    #[test]
    fn grey_images_become_rgb_and_overlays_mix() {
        let rgb = image_rgb(&[0.0, 1.0], 1, 1, 2).unwrap();
        assert_eq!(rgb, [0, 0, 0, 255, 255, 255]);
        assert_eq!(overlay(&rgb, &[0.0, 1.0], 0.0).unwrap(), rgb);
        let full = overlay(&rgb, &[0.0, 1.0], 1.0).unwrap();
        assert_eq!(full[..3], turbo(0.0));
        assert_eq!(upscale_nearest(&rgb, 1, 2, 2).unwrap().len(), 3 * 4 * 2);
        assert!(image_rgb(&[0.0; 5], 2, 1, 2).is_err());
    }
}
