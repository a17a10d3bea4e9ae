//! Figure 6: central slices through the volumes (truth and reconstructions),
//! amplitudes on a log scale with "not measured" voxels in grey, densities on
//! a linear scale, each panel scaled to its own range.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::axes::min_max;
use super::heatmap::{
    draw_colorbar, draw_grid_titles, draw_heat, draw_row_label, max_and_log_floor, viridis_lut, PanelGrid,
};
use super::style::{font_at, render_both, PlotErr, CAPTION_PX, MISSING_GREY, NOTE_PX};

/// Grid of central slices: `columns` are the column titles; each row is
/// `(title, side, slices)` with one row-major `side`×`side` slice per column.
/// `log[r]` selects a log₁₀ scale for row r (amplitudes; negative values mark
/// "not measured" and are drawn grey) or a linear scale (densities). Each
/// panel is scaled to its own min/max.
pub fn volume_slices(
    stem: &Path,
    columns: &[String],
    rows: &[(String, usize, Vec<Vec<f32>>)],
    log: &[bool],
) -> Result<Vec<PathBuf>> {
    if columns.is_empty() || rows.is_empty() {
        bail!("volume-slice plot (volume_slices): no columns or no rows to plot");
    }
    if log.len() != rows.len() {
        bail!(
            "volume-slice plot (volume_slices): {} log flags for {} rows",
            log.len(),
            rows.len()
        );
    }
    for (title, side, slices) in rows {
        if *side == 0 {
            bail!("volume-slice plot (volume_slices): row {title:?} has side 0");
        }
        if slices.len() > columns.len() {
            bail!(
                "volume-slice plot (volume_slices): row {title:?} has {} slices for {} columns",
                slices.len(),
                columns.len()
            );
        }
        for (c, s) in slices.iter().enumerate() {
            if s.len() != side * side {
                bail!(
                    "volume-slice plot (volume_slices): slice {c} of row {title:?} has {} values, expected {side}×{side}",
                    s.len()
                );
            }
        }
    }
    let cols = columns.len();
    let panel = ((1000 - 190) / cols as i32).clamp(150, 270);
    let layout = PanelGrid::new(panel, 12, 150, cols, rows.len());
    render_both!("volume-slice plot", stem, layout.size(), |root| draw_slices(
        &root, &layout, columns, rows, log
    ))
}

/// Per-panel normalisation. Log rows: negative values are "not measured"
/// (None), others log₁₀(max(v, 10⁻³·max)). Linear rows: NaN → None.
fn slice_t(slice: &[f32], log: bool) -> Vec<Option<f64>> {
    let vals: Vec<Option<f64>> = if log {
        let (_, floor) = max_and_log_floor(slice);
        slice
            .iter()
            .map(|&v| (v.is_finite() && v >= 0.0).then(|| (v as f64).max(floor).log10()))
            .collect()
    } else {
        slice.iter().map(|&v| v.is_finite().then_some(v as f64)).collect()
    };
    let Some((lo, hi)) = min_max(vals.iter().flatten().copied()) else {
        return vals;
    };
    vals.into_iter()
        .map(|v| v.map(|v| if hi > lo { (v - lo) / (hi - lo) } else { 0.5 }))
        .collect()
}

fn draw_slices<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    l: &PanelGrid,
    columns: &[String],
    rows: &[(String, usize, Vec<Vec<f32>>)],
    log: &[bool],
) -> Result<()> {
    let lut = viridis_lut();
    let title = "Volume slices (each panel scaled to its own range)";
    draw_grid_titles(root, l, title, columns, true)?;
    let mut any_missing = false;
    for (r, ((title, side, slices), &is_log)) in rows.iter().zip(log).enumerate() {
        let (x0, y0) = l.panel_origin(r, 0);
        draw_row_label(root, l, r, title, -14)?;
        let scale = if is_log { "(log₁₀ scale)" } else { "(linear scale)" };
        root.draw(&Text::new(
            scale.to_string(),
            (x0 - 16, y0 + l.panel / 2 + 14),
            font_at(NOTE_PX, HPos::Right, VPos::Center).color(&BLACK.mix(0.65)),
        ))
        .pe()?;
        for c in 0..columns.len() {
            let origin = l.panel_origin(r, c);
            match slices.get(c) {
                Some(slice) => {
                    let t = slice_t(slice, is_log);
                    any_missing |= t.iter().any(|v| v.is_none());
                    draw_heat(root, &lut, origin, l.panel, *side, &t)?;
                }
                None => {
                    root.draw(&Rectangle::new(
                        [origin, (origin.0 + l.panel, origin.1 + l.panel)],
                        BLACK.mix(0.3).stroke_width(1),
                    ))
                    .pe()?;
                    root.draw(&Text::new(
                        "n/a".to_string(),
                        (origin.0 + l.panel / 2, origin.1 + l.panel / 2),
                        font_at(CAPTION_PX, HPos::Center, VPos::Center).color(&BLACK.mix(0.5)),
                    ))
                    .pe()?;
                }
            }
        }
    }
    let bar_h = l.panel.max(200).min(l.rows as i32 * (l.panel + l.gap) - l.gap - 50);
    let ticks = vec![(0.0, "min".to_string()), (1.0, "max".to_string())];
    draw_colorbar(root, &lut, l, bar_h, &ticks, "per-panel scale")?;
    if any_missing || log.iter().any(|&b| b) {
        let (xb, yb) = l.bar_origin();
        let y = yb + bar_h + 24;
        root.draw(&Rectangle::new([(xb + 4, y), (xb + 26, y + 18)], MISSING_GREY.filled()))
            .pe()?;
        root.draw(&Rectangle::new(
            [(xb + 4, y), (xb + 26, y + 18)],
            BLACK.mix(0.7).stroke_width(1),
        ))
        .pe()?;
        root.draw(&Text::new(
            "not measured".to_string(),
            (xb + 32, y + 9),
            font_at(NOTE_PX - 1.0, HPos::Left, VPos::Center),
        ))
        .pe()?;
    }
    Ok(())
}
