//! Figure 3: X-RAI training progress, the training loss and the test-set
//! median pose error against wall-clock time, both on log axes.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::axes::{lin_ticks, log_axis, log_range};
use super::style::{house_mesh, panel_builder, render_both, series_color, titled, trace, PlotErr};
use super::TrainingPoint;

/// Training loss and test median pose error against wall-clock time.
pub fn training_curves(stem: &Path, points: &[TrainingPoint]) -> Result<Vec<PathBuf>> {
    if points.is_empty() {
        bail!("training-curve plot (training_curves): no training points to plot");
    }
    render_both!("training-curve plot", stem, (1600, 640), |root| {
        draw_training(&root, points)
    })
}

fn draw_training<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, points: &[TrainingPoint]) -> Result<()> {
    let minutes = |p: &TrainingPoint| p.elapsed_s / 60.0;
    let loss: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (minutes(p), p.loss))
        .filter(|(t, l)| t.is_finite() && l.is_finite() && *l > 0.0)
        .collect();
    let test: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (minutes(p), p.test_median_deg))
        .filter(|(t, e)| t.is_finite() && e.is_finite() && *e > 0.0)
        .collect();
    let t_max = points.iter().map(minutes).filter(|t| t.is_finite()).fold(0.0, f64::max);
    let t_min = points.iter().map(minutes).filter(|t| t.is_finite()).fold(0.0, f64::min);
    let (t_lo, t_hi) = if t_max > t_min {
        (t_min, t_max + 0.02 * (t_max - t_min))
    } else {
        (t_min, t_min + 1.0)
    };

    let area = titled(root, "Training progress")?;
    let panels = area.split_evenly((1, 2));
    let specs: [(&DrawingArea<DB, Shift>, &str, &str, &[(f64, f64)], RGBColor, bool); 2] = [
        (
            &panels[0],
            "(a) training loss",
            "training loss (log scale)",
            &loss,
            series_color(0),
            false,
        ),
        (
            &panels[1],
            "(b) test-set pose error",
            "median pose error (°, log scale)",
            &test,
            series_color(3),
            true,
        ),
    ];
    for (panel, caption, y_desc, pts, col, markers) in specs {
        let (y_lo, y_hi) = log_range(pts.iter().map(|p| p.1), 1.15);
        let (y_axis, fy) = log_axis(y_lo, y_hi);
        let mut chart = panel_builder(panel, caption, 32, (72, 96))
            .build_cartesian_2d(t_lo..t_hi, y_axis)
            .pe()?;
        let fx = lin_ticks(t_hi - t_lo);
        house_mesh(&mut chart.configure_mesh())
            .x_desc("wall-clock time (min)")
            .y_desc(y_desc)
            .x_label_formatter(&fx)
            .y_label_formatter(&fy)
            .x_labels(8)
            .draw()
            .pe()?;
        let radius = if markers || pts.len() <= 60 { 4 } else { 0 };
        trace(&mut chart, pts, col, radius, "no finite values")?;
    }
    Ok(())
}
