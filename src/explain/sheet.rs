//! One picture per image, on the CPU from maps read back from the GPU: the input, its
//! Grad-CAM overlay and map in the first row, then one row per LSK block shown: its 5×5
//! branch's mask, its dilated 7×7 branch's mask and the 7×7 share σ₁/(σ₀ + σ₁), each laid
//! over the image; a titled panel each and a colour bar of the [0, 1] scale at the bottom.

use super::font::{lit, GLYPH_H, GLYPH_W};
use super::render::{image_rgb, normalize_max, overlay, turbo, upsample_bilinear, upscale_nearest};
use anyhow::{bail, Context, Result};
use std::io::Cursor;

/// The LSK blocks a sheet shows: the last block of each stage, stage 3's being its two branch
/// blocks (the bilateral network's; a single-branch model runs `cb_block` alone). Early
/// blocks see fine texture at full resolution, the last ones the features the classifier pools.
pub const SHOWN_BLOCKS: [&str; 4] = ["layer1.4", "layer2.4", "cb_block", "rb_block"];

/// Panels are the image scaled by a whole factor to at least this many pixels a side.
pub const MIN_PANEL: usize = 128;
/// Pixels around the sheet and between panels.
pub const GAP: usize = 6;
/// Font pixels are this many image pixels a side.
const FONT: usize = 2;
/// The title strip above each panel.
pub const TITLE_H: usize = GLYPH_H * FONT + GAP;
/// The colour bar at the bottom, and its labels below it.
pub const BAR_H: usize = 12;
pub const BAR_LABEL_H: usize = GLYPH_H * FONT + GAP;
/// How much of a map's colour covers the image beneath it: half for Grad-CAM (the usual
/// overlay), more for the LSK masks, whose values vary little about ½ and would otherwise
/// drown in the image's texture.
pub const CAM_ALPHA: f32 = 0.5;
pub const MASK_ALPHA: f32 = 0.75;

const BACKGROUND: [u8; 3] = [24, 24, 24];
const INK: [u8; 3] = [235, 235, 235];

/// A titled picture: row-major RGB bytes.
pub struct Panel {
    pub title: String,
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

/// A finished picture: row-major RGB bytes.
pub struct Sheet {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Sheet {
    /// The sheet as a PNG file's bytes.
    pub fn png(&self) -> Result<Vec<u8>> {
        let img =
            image::RgbImage::from_raw(self.width as u32, self.height as u32, self.rgb.clone())
                .context("sheet: pixel buffer does not match its size")?;
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png)?;
        Ok(out.into_inner())
    }

    fn put(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < self.width && y < self.height {
            let i = 3 * (y * self.width + x);
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    /// `text` at (x, y), cut to whole characters within `max_w` pixels.
    fn text(&mut self, x: usize, y: usize, text: &str, max_w: usize) {
        let advance = (GLYPH_W + 1) * FONT;
        for (k, ch) in text.chars().take(max_w / advance).enumerate() {
            for gy in 0..GLYPH_H * FONT {
                for gx in 0..GLYPH_W * FONT {
                    if lit(ch, gx / FONT, gy / FONT) {
                        self.put(x + k * advance + gx, y + gy, INK);
                    }
                }
            }
        }
    }
}

/// Lays out rows of panels (each row left to right) in a grid of equal cells, each panel
/// under its title, with a colour bar of [`turbo`] from 0 (left) to 1 (right) at the bottom.
pub fn compose(rows: &[Vec<Panel>]) -> Result<Sheet> {
    let panels = || rows.iter().flatten();
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let cw = panels().map(|p| p.width).max().unwrap_or(0);
    let ch = panels().map(|p| p.height).max().unwrap_or(0) + TITLE_H;
    if cols == 0 || cw == 0 {
        bail!("compose: no panels");
    }
    if let Some(p) = panels().find(|p| p.rgb.len() != 3 * p.width * p.height) {
        bail!(
            "compose: panel '{}' has {} bytes for {}x{} RGB pixels",
            p.title,
            p.rgb.len(),
            p.width,
            p.height
        );
    }
    let width = 2 * GAP + cols * cw + (cols - 1) * GAP;
    let grid_h = rows.len() * (ch + GAP);
    let height = GAP + grid_h + BAR_H + BAR_LABEL_H + GAP;
    let mut s = Sheet {
        width,
        height,
        rgb: BACKGROUND.repeat(width * height),
    };
    for (r, row) in rows.iter().enumerate() {
        for (c, p) in row.iter().enumerate() {
            let (x0, y0) = (GAP + c * (cw + GAP), GAP + r * (ch + GAP));
            s.text(x0, y0, &p.title, cw);
            for (i, px) in p.rgb.chunks_exact(3).enumerate() {
                let (x, y) = (i % p.width, i / p.width);
                s.put(x0 + x, y0 + TITLE_H + y, [px[0], px[1], px[2]]);
            }
        }
    }
    let (bar_y, bar_w) = (GAP + grid_h, width - 2 * GAP);
    for x in 0..bar_w {
        let c = turbo(x as f32 / (bar_w - 1).max(1) as f32);
        for y in 0..BAR_H {
            s.put(GAP + x, bar_y + y, c);
        }
    }
    let label_y = bar_y + BAR_H + GAP / 2;
    s.text(GAP, label_y, "0", bar_w);
    // "0.5" centred: three characters and the spaces between them.
    let half = (3 * (GLYPH_W + 1) * FONT - FONT) / 2;
    s.text(
        (GAP + bar_w / 2).saturating_sub(half),
        label_y,
        "0.5",
        bar_w,
    );
    s.text(
        (GAP + bar_w).saturating_sub(GLYPH_W * FONT),
        label_y,
        "1",
        bar_w,
    );
    Ok(s)
}

/// One LSK block's masks for one image, read back from the GPU.
pub struct BlockMasks<'a> {
    /// The block's name (`layer1.4`, `cb_block`, ...).
    pub block: &'a str,
    /// 2×h×w: the 5×5 branch's mask, then the dilated 7×7 branch's.
    pub masks: &'a [f32],
    pub height: usize,
    pub width: usize,
}

/// One image's explanation, read back from the GPU.
pub struct ImageMaps<'a> {
    /// The network's input before normalisation: C×H×W values in [0, 1], C = 1 or 3.
    pub image: &'a [f32],
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// This image's Grad-CAM map as [`super::grad_cam`] gives it (any scale), h×w.
    pub cam: &'a [f32],
    pub cam_height: usize,
    pub cam_width: usize,
    /// What the map explains, in the Grad-CAM panel's title (the class and its probability).
    pub label: &'a str,
    /// The LSK blocks to show, one row each, in order (see [`SHOWN_BLOCKS`]).
    pub lsk: Vec<BlockMasks<'a>>,
}

/// The short name of a block in a title: `layer1.4` → `L1.4`, `cb_block` → `CB`.
fn short(block: &str) -> String {
    match block.strip_prefix("layer") {
        Some(rest) => format!("L{rest}"),
        None => block.trim_end_matches("_block").to_uppercase(),
    }
}

/// The explanation sheet of one image (module doc): the image is scaled up by a whole factor
/// to at least [`MIN_PANEL`] pixels a side, each map resampled bilinearly to that size.
pub fn explanation(m: &ImageMaps) -> Result<Sheet> {
    let (h, w) = (m.height, m.width);
    let k = MIN_PANEL.div_ceil(h.max(w).max(1)).max(1);
    let (ph, pw) = (h * k, w * k);
    let base = upscale_nearest(&image_rgb(m.image, m.channels, h, w)?, h, w, k)?;
    let panel = |title: String, rgb: Vec<u8>| Panel {
        title,
        width: pw,
        height: ph,
        rgb,
    };
    let cam = normalize_max(m.cam);
    let cam = upsample_bilinear(&cam, m.cam_height, m.cam_width, ph, pw)?;
    let heat: Vec<u8> = cam.iter().flat_map(|&v| turbo(v)).collect();
    let mut rows = vec![vec![
        panel("INPUT".into(), base.clone()),
        panel(format!("CAM {}", m.label), overlay(&base, &cam, CAM_ALPHA)?),
        panel("GRAD-CAM".into(), heat),
    ]];
    for b in &m.lsk {
        let n = b.height * b.width;
        if b.masks.len() != 2 * n {
            bail!(
                "block {}: {} mask values for two {}x{} masks",
                b.block,
                b.masks.len(),
                b.height,
                b.width
            );
        }
        let (m5, m7) = b.masks.split_at(n);
        let share: Vec<f32> = m5
            .iter()
            .zip(m7)
            .map(|(&a, &c)| if a + c > 0.0 { c / (a + c) } else { 0.5 })
            .collect();
        let name = short(b.block);
        let mut row = Vec::new();
        for (title, map) in [
            (format!("{name} 5X5"), m5),
            (format!("{name} 7X7 D3"), m7),
            (format!("{name} 7X7 SHARE"), &share[..]),
        ] {
            let up = upsample_bilinear(map, b.height, b.width, ph, pw)?;
            row.push(panel(title, overlay(&base, &up, MASK_ALPHA)?));
        }
        rows.push(row);
    }
    compose(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sheet_has_one_row_per_block_under_the_grad_cam_row() {
        let image = vec![0.5; 3 * 16 * 8];
        let masks = vec![0.25; 2 * 4 * 2];
        let m = ImageMaps {
            image: &image,
            channels: 3,
            height: 16,
            width: 8,
            cam: &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
            cam_height: 4,
            cam_width: 2,
            label: "c1 90%",
            lsk: vec![BlockMasks {
                block: "layer1.4",
                masks: &masks,
                height: 4,
                width: 2,
            }],
        };
        let s = explanation(&m).unwrap();
        // 16x8 scaled by 8 to 128x64 panels; 3 columns and 2 rows.
        assert_eq!(s.width, 2 * GAP + 3 * 64 + 2 * GAP);
        assert_eq!(
            s.height,
            GAP + 2 * (128 + TITLE_H + GAP) + BAR_H + BAR_LABEL_H + GAP
        );
        let png = s.png().unwrap();
        let back = image::load_from_memory(&png).unwrap();
        assert_eq!(
            (back.width() as usize, back.height() as usize),
            (s.width, s.height)
        );
        assert_eq!(short("cb_block"), "CB");
        assert_eq!(short("layer2.4"), "L2.4");
        let bad = ImageMaps {
            cam: &[1.0; 3],
            ..m
        };
        assert!(explanation(&bad).is_err());
    }
}
