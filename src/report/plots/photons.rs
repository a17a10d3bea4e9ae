//! Accuracy against photons per pattern: a quantity (test pose error, resolution) against the
//! mean photons per pattern on log–log axes, one series per method, each with its noise-free
//! result as a dashed line in the series' colour, so the photon level where a method departs
//! from its ideal-data result, and where the methods cross, can be read off.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::axes::log_range;
use super::style::{
    draw_legend, emptiest_corner, log_log_chart, marked_series, no_data_note, normalise_log, render_both, series_color,
    PlotErr,
};

/// `series[i]` = (label, [(photons, value)]); `noise_free[i]`: series i's value on noise-free
/// data (NaN: none). Writes `stem.png` and `stem.svg`.
pub fn photons(
    stem: &Path,
    title: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    noise_free: &[f64],
) -> Result<Vec<PathBuf>> {
    if series.is_empty() {
        bail!("photons plot ({title:?}): no series to plot");
    }
    render_both!("photons plot", stem, (1000, 700), |root| draw(
        &root, title, y_label, series, noise_free
    ))
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    noise_free: &[f64],
) -> Result<()> {
    let data: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|(_, pts)| {
            let mut ok: Vec<(f64, f64)> = pts
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && *x > 0.0 && y.is_finite() && *y > 0.0)
                .collect();
            ok.sort_by(|a, b| a.0.total_cmp(&b.0));
            ok
        })
        .collect();
    let refs: Vec<Option<f64>> = (0..series.len())
        .map(|i| noise_free.get(i).copied().filter(|v| v.is_finite() && *v > 0.0))
        .collect();
    let (x_lo, x_hi) = log_range(data.iter().flatten().map(|p| p.0), 1.35);
    let ys: Vec<f64> = data
        .iter()
        .flatten()
        .map(|p| p.1)
        .chain(refs.iter().flatten().copied())
        .collect();
    let (y_lo, y_hi) = log_range(ys, 1.4);
    let mut chart = log_log_chart(
        root,
        title,
        ("mean photons per pattern", y_label),
        (x_lo, x_hi),
        (y_lo, y_hi),
    )?;
    let norm = |(x, y): (f64, f64)| (normalise_log(x, x_lo, x_hi), normalise_log(y, y_lo, y_hi));
    let mut norm_pts: Vec<(f64, f64)> = Vec::new();
    for (i, ((label, _), ok)) in series.iter().zip(&data).enumerate() {
        let col = series_color(i);
        marked_series(&mut chart, ok, col, label)?;
        norm_pts.extend(ok.iter().map(|&p| norm(p)));
        if let Some(v) = refs[i] {
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(x_lo, v), (x_hi, v)],
                    10,
                    7,
                    col.mix(0.8).stroke_width(2),
                ))
                .pe()?
                .label(format!("{label}, noise-free"))
                .legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (10, 0)], col.stroke_width(2))
                        + PathElement::new(vec![(16, 0), (26, 0)], col.stroke_width(2))
                });
            norm_pts.push(norm((x_lo, v)));
            norm_pts.push(norm((x_hi, v)));
        }
    }
    if data.iter().all(|d| d.is_empty()) {
        no_data_note(&chart, "no finite values")?;
    }
    draw_legend(&mut chart, emptiest_corner(&norm_pts))?;
    Ok(())
}
