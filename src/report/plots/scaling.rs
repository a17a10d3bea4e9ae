//! Figure 7: a quantity (wall-clock time, test pose error, resolution)
//! against the number of training images N on log–log axes, one series per
//! method, with runs over the time budget marked at the budget line, or, where
//! their cost was projected, drawn as hollow markers at the projected value.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::axes::log_range;
use super::style::{
    draw_legend, emptiest_corner, log_log_chart, marked_series, no_data_note, normalise_log, reference_line,
    render_both, series_color, PlotErr, MISSING_GREY,
};

/// Log–log plot of a value against the number of training images N, one
/// `(label, [(N, value)])` per series. Values that are +∞ or NaN (run did not
/// finish within the budget) are drawn as upward triangles at the budget
/// line when `budget` is given, which is drawn dashed.
pub fn scaling(
    stem: &Path,
    title: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    budget: Option<f64>,
) -> Result<Vec<PathBuf>> {
    scaling_projected(stem, title, y_label, series, &[], budget)
}

/// [`scaling`] with projections: `projected[i]` holds series i's projected
/// `(N, value)` points — runs the budget stopped, whose full cost was projected
/// from what they measured. They are drawn as hollow markers in the series'
/// colour, joined to its measured line by a dashed segment, and the legend says
/// "projected (hollow)". Give such a run here rather than as +∞ in `series`.
pub fn scaling_projected(
    stem: &Path,
    title: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    projected: &[Vec<(f64, f64)>],
    budget: Option<f64>,
) -> Result<Vec<PathBuf>> {
    if series.is_empty() {
        bail!("scaling plot (scaling, {title:?}): no series to plot");
    }
    if projected.len() > series.len() {
        bail!(
            "scaling plot ({title:?}): {} projected series for {} series",
            projected.len(),
            series.len()
        );
    }
    render_both!("scaling plot", stem, (1000, 700), |root| draw_scaling(
        &root, title, y_label, series, projected, budget
    ))
}

fn positive(pts: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut ok: Vec<(f64, f64)> = pts
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && *x > 0.0 && y.is_finite() && *y > 0.0)
        .collect();
    ok.sort_by(|a, b| a.0.total_cmp(&b.0));
    ok
}

fn draw_scaling<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    projected: &[Vec<(f64, f64)>],
    budget: Option<f64>,
) -> Result<()> {
    let budget = budget.filter(|b| b.is_finite() && *b > 0.0);
    let projected: Vec<Vec<(f64, f64)>> = (0..series.len())
        .map(|i| projected.get(i).map_or_else(Vec::new, |p| positive(p)))
        .collect();
    let any_projected = projected.iter().any(|p| !p.is_empty());
    // finite points, and abscissae of runs over the budget, per series
    let data: Vec<(&str, Vec<(f64, f64)>, Vec<f64>)> = series
        .iter()
        .map(|(label, pts)| {
            let ok = positive(pts);
            let over: Vec<f64> = if budget.is_some() {
                pts.iter()
                    .filter(|(x, y)| x.is_finite() && *x > 0.0 && (y.is_nan() || *y == f64::INFINITY))
                    .map(|p| p.0)
                    .collect()
            } else {
                Vec::new()
            };
            (label.as_str(), ok, over)
        })
        .collect();
    let any_over = data.iter().any(|d| !d.2.is_empty());
    let xs = data
        .iter()
        .flat_map(|d| d.1.iter().map(|p| p.0).chain(d.2.iter().copied()))
        .chain(projected.iter().flatten().map(|p| p.0));
    let (x_lo, x_hi) = log_range(xs, 1.35);
    let mut ys: Vec<f64> = data
        .iter()
        .flat_map(|d| d.1.iter().map(|p| p.1))
        .chain(projected.iter().flatten().map(|p| p.1))
        .collect();
    if let Some(b) = budget {
        ys.push(b);
        if any_over {
            ys.push(b * 1.6);
        }
    }
    let (y_lo, y_hi) = log_range(ys, 1.4);
    let mut chart = log_log_chart(root, title, ("training images N", y_label), (x_lo, x_hi), (y_lo, y_hi))?;

    let norm = |(x, y): (f64, f64)| (normalise_log(x, x_lo, x_hi), normalise_log(y, y_lo, y_hi));
    let mut norm_pts: Vec<(f64, f64)> = Vec::new();
    if let Some(b) = budget {
        let text_at = (x_lo * (x_hi / x_lo).powf(0.012), b * (y_hi / y_lo).powf(0.012));
        reference_line(&mut chart, (x_lo, x_hi), b, "budget", text_at)?;
        norm_pts.push(norm((x_lo, b)));
    }
    for (i, (label, ok, over)) in data.iter().enumerate() {
        let col = series_color(i);
        marked_series(&mut chart, ok, col, label)?;
        norm_pts.extend(ok.iter().map(|&p| norm(p)));
        let proj = &projected[i];
        if !proj.is_empty() {
            // dashed from the last measured point before the first projection, then hollow
            // markers (a white fill inside the series' ring, so lines do not show through)
            let first = proj[0];
            let mut path: Vec<(f64, f64)> = ok.iter().rev().find(|p| p.0 < first.0).copied().into_iter().collect();
            path.extend(proj.iter().copied());
            if path.len() > 1 {
                chart
                    .draw_series(DashedLineSeries::new(path, 6, 5, col.mix(0.8).stroke_width(2)))
                    .pe()?;
            }
            chart
                .draw_series(proj.iter().map(|&p| Circle::new(p, 6, WHITE.filled())))
                .pe()?;
            chart
                .draw_series(proj.iter().map(|&p| Circle::new(p, 6, col.stroke_width(2))))
                .pe()?;
            norm_pts.extend(proj.iter().map(|&p| norm(p)));
        }
        if let Some(b) = budget {
            // dashed connector from the last finished run to the first run over budget
            if let (Some(&last), Some(&first_over)) = (ok.last(), over.iter().min_by(|a, b| a.total_cmp(b))) {
                if first_over > last.0 {
                    chart
                        .draw_series(DashedLineSeries::new(
                            vec![last, (first_over, b)],
                            6,
                            5,
                            col.mix(0.8).stroke_width(2),
                        ))
                        .pe()?;
                }
            }
            // (TriangleMarker always fills: a larger black one underneath is the outline)
            chart
                .draw_series(over.iter().map(|&x| TriangleMarker::new((x, b), 11, BLACK.filled())))
                .pe()?;
            chart
                .draw_series(over.iter().map(|&x| TriangleMarker::new((x, b), 8, col.filled())))
                .pe()?;
            norm_pts.extend(over.iter().map(|&x| norm((x, b))));
        }
    }
    if any_over {
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
            .pe()?
            .label("> budget")
            .legend(|(x, y)| {
                EmptyElement::at((x + 13, y))
                    + TriangleMarker::new((0, 0), 11, BLACK.filled())
                    + TriangleMarker::new((0, 0), 8, MISSING_GREY.filled())
            });
    }
    if any_projected {
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
            .pe()?
            .label("projected (hollow)")
            .legend(|(x, y)| {
                EmptyElement::at((x + 13, y))
                    + Circle::new((0, 0), 6, WHITE.filled())
                    + Circle::new((0, 0), 6, BLACK.stroke_width(2))
            });
    }
    if data.iter().all(|d| d.1.is_empty() && d.2.is_empty()) && !any_projected {
        no_data_note(&chart, "no finite values")?;
    }
    if data.iter().any(|d| !d.0.is_empty()) || any_over || any_projected {
        draw_legend(&mut chart, emptiest_corner(&norm_pts))?;
    }
    Ok(())
}
