//! Figure 5: a gallery of input diffraction images beside their
//! reconstructions, on a common log₁₀ intensity scale per image.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::axes::fmt_num;
use super::heatmap::{
    draw_colorbar, draw_grid_titles, draw_heat, draw_row_label, max_and_log_floor, viridis_lut, PanelGrid,
};
use super::style::render_both;

/// Grid of input vs reconstructed images: one `(label, input, reconstruction)`
/// per row, each a row-major `side`×`side` intensity image, drawn as
/// log₁₀(max(v, 10⁻³·max)) with the viridis colour map.
pub fn image_gallery(stem: &Path, side: usize, rows: &[(String, Vec<f32>, Vec<f32>)]) -> Result<Vec<PathBuf>> {
    if rows.is_empty() {
        bail!("image gallery (image_gallery): no images to plot");
    }
    if side == 0 {
        bail!("image gallery (image_gallery): image side is 0");
    }
    for (label, input, recon) in rows {
        for (what, img) in [("input", input), ("reconstruction", recon)] {
            if img.len() != side * side {
                bail!(
                    "image gallery (image_gallery): {what} image of row {label:?} has {} values, expected {side}×{side} = {}",
                    img.len(),
                    side * side
                );
            }
        }
    }
    let layout = gallery_grid(side, rows.len());
    render_both!("image gallery", stem, layout.size(), |root| draw_gallery(
        &root, &layout, side, rows
    ))
}

/// Two panel columns, each image magnified by an integer factor up to ~280 px.
fn gallery_grid(side: usize, rows: usize) -> PanelGrid {
    let panel = (if side >= 280 { side } else { side * (280 / side).max(1) }) as i32;
    PanelGrid::new(panel, 14, 140, 2, rows)
}

/// Normalised log₁₀ intensity: log₁₀(max(v, floor)) mapped from
/// [log₁₀ floor, log₁₀ max] = [log₁₀ max − 3, log₁₀ max] to [0, 1].
fn log_intensity_t(img: &[f32]) -> Vec<Option<f64>> {
    let (max, floor) = max_and_log_floor(img);
    let top = if max > 0.0 { max } else { floor };
    let (lo, hi) = (floor.log10(), top.log10());
    img.iter()
        .map(|&v| {
            if !v.is_finite() {
                return None;
            }
            let l = (v as f64).max(floor).log10();
            Some(if hi > lo { (l - lo) / (hi - lo) } else { 0.0 })
        })
        .collect()
}

fn draw_gallery<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    l: &PanelGrid,
    side: usize,
    rows: &[(String, Vec<f32>, Vec<f32>)],
) -> Result<()> {
    let lut = viridis_lut();
    let title = "Input and reconstructed images (log₁₀ intensity)";
    draw_grid_titles(root, l, title, &["input", "reconstruction"], false)?;
    for (r, (label, input, recon)) in rows.iter().enumerate() {
        draw_row_label(root, l, r, label, 0)?;
        for (c, img) in [input, recon].into_iter().enumerate() {
            let t = log_intensity_t(img);
            draw_heat(root, &lut, l.panel_origin(r, c), l.panel, side, &t)?;
        }
    }
    let bar_h = if l.rows == 1 {
        l.panel
    } else {
        (l.panel + l.gap + l.panel / 2).min(l.rows as i32 * (l.panel + l.gap) - l.gap)
    };
    let ticks: Vec<(f64, String)> = (0..=3).map(|k| (k as f64 / 3.0, fmt_num(k as f64 - 3.0))).collect();
    draw_colorbar(root, &lut, l, bar_h, &ticks, "log₁₀(I / max I)")?;
    Ok(())
}
