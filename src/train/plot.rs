//! PNG figures of a run: `curves.png` (loss and train/test accuracy per epoch, like the
//! paper's figure 9) and `confusion.png`, and line charts of any series (`lines`, for
//! `lskbb experiment`'s figures; bar charts are in `bars`), drawn with a tiny built-in bitmap
//! font.

mod bars;

pub use bars::{bars, Bar};

use crate::tensor_file::write_atomic;
use anyhow::{Context, Result};
use image::{Rgb, RgbImage};
use std::path::Path;

const BG: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([30, 30, 30]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const BLUE: Rgb<u8> = Rgb([31, 119, 180]);
const RED: Rgb<u8> = Rgb([214, 39, 40]);
const GREEN: Rgb<u8> = Rgb([44, 160, 44]);
/// Colours of the series of a line chart, in order (matplotlib's tab10), repeating after ten.
const PALETTE: [Rgb<u8>; 10] = [
    BLUE,
    RED,
    GREEN,
    Rgb([255, 127, 14]),
    Rgb([148, 103, 189]),
    Rgb([140, 86, 75]),
    Rgb([227, 119, 194]),
    Rgb([127, 127, 127]),
    Rgb([188, 189, 34]),
    Rgb([23, 190, 207]),
];
const SCALE: u32 = 2;

/// 3×5 glyphs, rows top to bottom, 3 bits each (MSB = left column).
fn glyph(c: char) -> [u8; 5] {
    match c.to_ascii_uppercase() {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '%' => [5, 1, 2, 4, 5],
        '-' => [0, 0, 7, 0, 0],
        ':' => [0, 2, 0, 2, 0],
        '/' => [1, 1, 2, 4, 4],
        '+' => [0, 2, 7, 2, 0],
        '=' => [0, 7, 0, 7, 0],
        '_' => [0, 0, 0, 0, 7],
        '^' => [2, 5, 0, 0, 0],
        ',' => [0, 0, 0, 2, 4],
        '(' => [1, 2, 2, 2, 1],
        ')' => [4, 2, 2, 2, 4],
        'A' => [2, 5, 7, 5, 5],
        'B' => [6, 5, 6, 5, 6],
        'C' => [3, 4, 4, 4, 3],
        'D' => [6, 5, 5, 5, 6],
        'E' => [7, 4, 6, 4, 7],
        'F' => [7, 4, 6, 4, 4],
        'G' => [3, 4, 5, 5, 3],
        'H' => [5, 5, 7, 5, 5],
        'I' => [7, 2, 2, 2, 7],
        'J' => [1, 1, 1, 5, 2],
        'K' => [5, 5, 6, 5, 5],
        'L' => [4, 4, 4, 4, 7],
        'M' => [5, 7, 7, 5, 5],
        'N' => [6, 5, 5, 5, 5],
        'O' => [2, 5, 5, 5, 2],
        'P' => [6, 5, 6, 4, 4],
        'Q' => [2, 5, 5, 6, 3],
        'R' => [6, 5, 6, 5, 5],
        'S' => [3, 4, 2, 1, 6],
        'T' => [7, 2, 2, 2, 2],
        'U' => [5, 5, 5, 5, 7],
        'V' => [5, 5, 5, 5, 2],
        'W' => [5, 5, 7, 7, 5],
        'X' => [5, 5, 2, 5, 5],
        'Y' => [5, 5, 2, 2, 2],
        'Z' => [7, 1, 2, 4, 7],
        _ => [0; 5],
    }
}

fn text(img: &mut RgbImage, x: i64, y: i64, s: &str, color: Rgb<u8>) {
    for (k, ch) in s.chars().enumerate() {
        let g = glyph(ch);
        for (row, bits) in g.iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) != 0 {
                    for dy in 0..SCALE {
                        for dx in 0..SCALE {
                            let px = x + (k as i64 * 4 + col) * SCALE as i64 + dx as i64;
                            let py = y + row as i64 * SCALE as i64 + dy as i64;
                            put(img, px, py, color);
                        }
                    }
                }
            }
        }
    }
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: Rgb<u8>) {
    let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
    for i in 0..=n {
        let t = i as f64 / n as f64;
        let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
        for d in 0..2 {
            put(img, x as i64, y as i64 + d, c);
        }
    }
}

/// The x axis of a panel: the values of each series are spread evenly from `first` to `last`.
#[derive(Clone, Copy)]
pub struct XAxis<'a> {
    pub label: &'a str,
    pub first: f64,
    pub last: f64,
}

impl XAxis<'_> {
    /// Epochs 1 to n.
    fn epochs(n: usize) -> XAxis<'static> {
        XAxis {
            label: "EPOCH",
            first: 1.0,
            last: n.max(2) as f64,
        }
    }
}

/// A tick label: whole numbers without decimals.
fn tick(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A value axis's tick label, with as many decimals as a `range` of values needs.
fn value_tick(v: f64, range: f64) -> String {
    match range {
        r if r >= 100.0 => format!("{v:.0}"),
        r if r >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.3}"),
    }
}

/// One panel: series of (label, colour, values) on shared axes; the value axis reaches down
/// to 0 with `from_zero`.
fn panel(
    img: &mut RgbImage,
    ox: i64,
    title: &str,
    x: XAxis,
    from_zero: bool,
    series: &[(&str, Rgb<u8>, &[f64])],
) {
    let (w, h, top, left) = (430.0, 300.0, 40.0, 60.0);
    let finite = series
        .iter()
        .flat_map(|s| s.2.iter())
        .filter(|v| v.is_finite());
    let (mut lo, mut hi) = finite.fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    if lo > hi {
        (lo, hi) = (0.0, 1.0);
    }
    if from_zero {
        lo = lo.min(0.0);
    }
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    let n = series.iter().map(|s| s.2.len()).max().unwrap_or(0).max(2);
    let px = |i: usize| ox as f64 + left + w * i as f64 / (n - 1) as f64;
    let py = |v: f64| top + h - h * (v - lo) / (hi - lo);
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        line(img, (px(0), py(v)), (px(n - 1), py(v)), GRID);
        text(img, ox + 4, py(v) as i64 - 5, &value_tick(v, hi - lo), INK);
    }
    line(img, (px(0), top), (px(0), top + h), INK);
    line(img, (px(0), top + h), (px(n - 1), top + h), INK);
    text(img, ox + left as i64, 10, title, INK);
    text(img, px(0) as i64, (top + h) as i64 + 8, &tick(x.first), INK);
    let last = tick(x.last);
    let last_x = px(n - 1) as i64 - 8 * last.len() as i64 + 4;
    text(img, last_x, (top + h) as i64 + 8, &last, INK);
    let label_x = (px(0) + w / 2.0) as i64 - 4 * x.label.len() as i64;
    text(img, label_x, (top + h) as i64 + 8, x.label, INK);
    let widest = series.iter().map(|s| s.0.len()).max().unwrap_or(0);
    for (k, (label, color, vals)) in series.iter().enumerate() {
        for i in 1..vals.len() {
            if vals[i - 1].is_finite() && vals[i].is_finite() {
                line(
                    img,
                    (px(i - 1), py(vals[i - 1])),
                    (px(i), py(vals[i])),
                    *color,
                );
            }
        }
        if vals.len() == 1 && vals[0].is_finite() {
            line(
                img,
                (px(0) - 2.0, py(vals[0])),
                (px(0) + 2.0, py(vals[0])),
                *color,
            );
        }
        let ly = top as i64 + 10 + 16 * k as i64;
        let lx = px(n - 1) - 8.0 * widest as f64;
        line(
            img,
            (lx - 26.0, ly as f64 + 4.0),
            (lx - 6.0, ly as f64 + 4.0),
            *color,
        );
        text(img, lx as i64, ly, label, INK);
    }
}

fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .with_context(|| format!("encoding {}", path.display()))?;
    write_atomic(path, &bytes)
}

/// Loss (left) and train/test accuracy in percent (right) per epoch.
/// `val_acc` may be empty (a run without validation images): its line is left out.
pub fn curves(
    path: &Path,
    loss: &[f64],
    train_acc: &[f64],
    val_acc: &[f64],
    test_acc: &[f64],
) -> Result<()> {
    let mut img = RgbImage::from_pixel(1000, 380, BG);
    let x = XAxis::epochs(loss.len().max(train_acc.len()));
    panel(
        &mut img,
        0,
        "TRAINING LOSS",
        x,
        false,
        &[("LOSS", BLUE, loss)],
    );
    let mut series = vec![("TRAIN", BLUE, train_acc)];
    if !val_acc.is_empty() {
        series.push(("VAL", GREEN, val_acc));
    }
    series.push(("TEST", RED, test_acc));
    panel(&mut img, 500, "ACCURACY (%)", x, false, &series);
    save_png(&img, path)
}

/// One panel of labelled series over `x` (values from 0 up), coloured in the order of
/// `PALETTE`.
pub fn lines(path: &Path, title: &str, x: XAxis, series: &[(&str, &[f64])]) -> Result<()> {
    let mut img = RgbImage::from_pixel(520, 380, BG);
    let coloured: Vec<(&str, Rgb<u8>, &[f64])> = series
        .iter()
        .enumerate()
        .map(|(k, (label, vals))| (*label, PALETTE[k % PALETTE.len()], *vals))
        .collect();
    panel(&mut img, 0, title, x, true, &coloured);
    save_png(&img, path)
}

/// Confusion matrix, rows = true class, columns = predicted, shaded by row share.
pub fn confusion(path: &Path, classes: &[String], m: &[Vec<usize>]) -> Result<()> {
    let c = classes.len().max(1);
    let cell = (480 / c).clamp(24, 80) as i64;
    let left = 160i64;
    let top = 40i64;
    let size = (left + cell * c as i64 + 20) as u32;
    let mut img = RgbImage::from_pixel(size, size - left as u32 + top as u32 + 30, BG);
    text(&mut img, left, 10, "PREDICTED", INK);
    for (t, row) in m.iter().enumerate() {
        let total: usize = row.iter().sum();
        let name: String = format!("{t} {}", classes[t]).chars().take(18).collect();
        text(
            &mut img,
            4,
            top + t as i64 * cell + cell / 2 - 5,
            &name,
            INK,
        );
        for (p, &v) in row.iter().enumerate() {
            let share = if total == 0 {
                0.0
            } else {
                v as f64 / total as f64
            };
            let shade = (255.0 - 200.0 * share) as u8;
            let color = Rgb([shade, shade, 255]);
            for y in 0..cell - 2 {
                for x in 0..cell - 2 {
                    put(
                        &mut img,
                        left + p as i64 * cell + x,
                        top + t as i64 * cell + y,
                        color,
                    );
                }
            }
            let ink = if share > 0.6 { BG } else { INK };
            text(
                &mut img,
                left + p as i64 * cell + 4,
                top + t as i64 * cell + cell / 2 - 5,
                &v.to_string(),
                ink,
            );
        }
    }
    for p in 0..c {
        text(
            &mut img,
            left + p as i64 * cell + 4,
            top + c as i64 * cell + 6,
            &p.to_string(),
            INK,
        );
    }
    save_png(&img, path)
}
