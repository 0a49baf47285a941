//! Horizontal grouped bar charts of percentages (`lskbb experiment`'s precision and
//! sensitivity per row, like the paper's figure 10).

use super::{line, put, save_png, text, BG, GRID, INK, PALETTE};
use anyhow::Result;
use image::RgbImage;
use std::path::Path;

/// One bar: a mean in percent and the standard deviation around it (0 or NaN: no whisker;
/// a NaN mean: no bar, for a cell without results).
#[derive(Clone, Copy, Debug)]
pub struct Bar {
    pub mean: f64,
    pub std: f64,
}

const BAR_AREA: f64 = 500.0;
const BAR_HEIGHT: i64 = 12;
const TOP: i64 = 50;

/// Per group (its label on the left) one bar per series (named in the legend, coloured in
/// order), on a 0-100 % axis, each labelled with its mean.
pub fn bars(path: &Path, title: &str, series: &[&str], groups: &[(&str, &[Bar])]) -> Result<()> {
    let widest = groups.iter().map(|g| g.0.len()).max().unwrap_or(0) as i64;
    let left = 8 * widest + 16;
    let group_h = BAR_HEIGHT * series.len().max(1) as i64 + 12;
    let width = (left as f64 + BAR_AREA) as u32 + 80;
    let height = (TOP + group_h * groups.len() as i64 + 40) as u32;
    let mut img = RgbImage::from_pixel(width, height, BG);
    let x = |v: f64| left as f64 + BAR_AREA * v.clamp(0.0, 100.0) / 100.0;
    let bottom = (TOP + group_h * groups.len() as i64) as f64;
    for k in 0..=5 {
        let v = 20.0 * k as f64;
        line(&mut img, (x(v), TOP as f64), (x(v), bottom), GRID);
        text(
            &mut img,
            x(v) as i64 - 8,
            bottom as i64 + 8,
            &format!("{v:.0}"),
            INK,
        );
    }
    line(&mut img, (x(0.0), TOP as f64), (x(0.0), bottom), INK);
    text(&mut img, left, 8, title, INK);
    let mut lx = left;
    for (s, name) in series.iter().enumerate() {
        fill(&mut img, lx, 26, 20, 10, PALETTE[s % PALETTE.len()]);
        text(&mut img, lx + 26, 26, name, INK);
        lx += 26 + 8 * name.len() as i64 + 24;
    }
    for (g, (label, values)) in groups.iter().enumerate() {
        let gy = TOP + group_h * g as i64 + 6;
        let centre = gy + BAR_HEIGHT * series.len() as i64 / 2 - 5;
        text(&mut img, 8, centre, label, INK);
        for (s, bar) in values.iter().enumerate() {
            let y = gy + BAR_HEIGHT * s as i64;
            if !bar.mean.is_finite() {
                text(&mut img, x(0.0) as i64 + 4, y + 1, "-", INK);
                continue;
            }
            let end = x(bar.mean);
            let color = PALETTE[s % PALETTE.len()];
            fill(
                &mut img,
                x(0.0) as i64,
                y,
                (end - x(0.0)) as i64,
                BAR_HEIGHT - 2,
                color,
            );
            let mut label_x = end;
            if bar.std.is_finite() && bar.std > 0.0 {
                let (lo, hi) = (x(bar.mean - bar.std), x(bar.mean + bar.std));
                let mid = (y + BAR_HEIGHT / 2 - 1) as f64;
                line(&mut img, (lo, mid), (hi, mid), INK);
                line(&mut img, (lo, mid - 3.0), (lo, mid + 2.0), INK);
                line(&mut img, (hi, mid - 3.0), (hi, mid + 2.0), INK);
                label_x = label_x.max(hi);
            }
            text(
                &mut img,
                label_x as i64 + 4,
                y,
                &format!("{:.2}", bar.mean),
                INK,
            );
        }
    }
    save_png(&img, path)
}

fn fill(img: &mut RgbImage, x: i64, y: i64, w: i64, h: i64, color: image::Rgb<u8>) {
    for dy in 0..h {
        for dx in 0..w {
            put(img, x + dx, y + dy, color);
        }
    }
}
