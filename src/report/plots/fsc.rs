//! Figure 1: FSC curves of the reconstructions against the ground truth,
//! with the customary 0.5 and 0.143 thresholds.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::axes::{finite_pairs, lin_ticks};
use super::style::{
    draw_legend, emptiest_corner, font, house_mesh, line_legend, no_data_note, normalise_lin, reference_line,
    render_both, series_color, PlotErr, TITLE_PX,
};

/// FSC curves against the ground truth: one `(label, [(spatial frequency in
/// 1/Å, FSC)])` per curve, with dashed reference lines at 0.5 and 0.143.
pub fn fsc_curves(stem: &Path, curves: &[(String, Vec<(f64, f64)>)]) -> Result<Vec<PathBuf>> {
    if curves.is_empty() {
        bail!("FSC plot (fsc_curves): no curves to plot");
    }
    render_both!("FSC plot", stem, (1000, 700), |root| draw_fsc(&root, curves))
}

fn draw_fsc<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, curves: &[(String, Vec<(f64, f64)>)]) -> Result<()> {
    let cleaned: Vec<(&str, Vec<(f64, f64)>)> = curves
        .iter()
        .map(|(label, pts)| {
            let mut pts = finite_pairs(pts);
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            (label.as_str(), pts)
        })
        .collect();
    let x_max = cleaned
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.0))
        .fold(f64::NEG_INFINITY, f64::max);
    let x_min = cleaned
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.0))
        .fold(0.0, f64::min);
    let x_max = if x_max.is_finite() && x_max > x_min {
        x_max
    } else {
        x_min + 1.0
    };
    let (y_lo, y_hi) = (-0.1, 1.05);

    let mut chart = ChartBuilder::on(root)
        .caption("FSC against the ground truth", font(TITLE_PX))
        .margin(20)
        .margin_right(36)
        .x_label_area_size(72)
        .y_label_area_size(92)
        .build_cartesian_2d(x_min..x_max, y_lo..y_hi)
        .pe()?;
    let fx = lin_ticks(x_max - x_min);
    let fy = lin_ticks(1.0);
    house_mesh(&mut chart.configure_mesh())
        .x_desc("spatial frequency (1/Å)")
        .y_desc("Fourier shell correlation")
        .x_label_formatter(&fx)
        .y_label_formatter(&fy)
        .x_labels(8)
        .y_labels(12)
        .draw()
        .pe()?;

    // zero line and the two customary thresholds
    chart
        .draw_series(LineSeries::new(
            vec![(x_min, 0.0), (x_max, 0.0)],
            BLACK.mix(0.35).stroke_width(1),
        ))
        .pe()?;
    let x_text = x_min + 0.012 * (x_max - x_min);
    for (thr, text) in [(0.5, "FSC = 0.5"), (0.143, "FSC = 0.143")] {
        reference_line(&mut chart, (x_min, x_max), thr, text, (x_text, thr + 0.015))?;
    }

    let mut norm_pts = Vec::new();
    for (i, (label, pts)) in cleaned.iter().enumerate() {
        let c = series_color(i);
        let s = chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(3)))
            .pe()?;
        if !label.is_empty() {
            s.label(*label).legend(line_legend(c));
        }
        if pts.len() == 1 {
            chart
                .draw_series(std::iter::once(Circle::new(pts[0], 5, c.filled())))
                .pe()?;
        }
        norm_pts.extend(
            pts.iter()
                .map(|&(x, y)| (normalise_lin(x, x_min, x_max), normalise_lin(y, y_lo, y_hi))),
        );
    }
    if cleaned.iter().all(|(_, p)| p.is_empty()) {
        no_data_note(&chart, "no finite FSC values")?;
    }
    if cleaned.iter().any(|(l, _)| !l.is_empty()) {
        draw_legend(&mut chart, emptiest_corner(&norm_pts))?;
    }
    Ok(())
}
