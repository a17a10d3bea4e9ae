//! Figure 4: EMC convergence, the log-likelihood of the data per iteration
//! and the deterministic-annealing parameter β on a log axis.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::axes::{int_ticks, lin_range, log_axis, log_range, min_max, sci_ticks};
use super::style::{house_mesh, panel_builder, render_both, series_color, titled, trace, PlotErr};
use super::EmcIteration;

/// EMC log-likelihood per iteration (top) and the annealing parameter β on a
/// log axis (bottom panel).
pub fn emc_log_likelihood(stem: &Path, iters: &[EmcIteration]) -> Result<Vec<PathBuf>> {
    if iters.is_empty() {
        bail!("EMC log-likelihood plot (emc_log_likelihood): no iterations to plot");
    }
    render_both!("EMC log-likelihood plot", stem, (1000, 860), |root| {
        draw_emc(&root, iters)
    })
}

fn draw_emc<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, iters: &[EmcIteration]) -> Result<()> {
    let ll: Vec<(f64, f64)> = iters
        .iter()
        .map(|it| (it.iteration as f64, it.log_likelihood))
        .filter(|(_, v)| v.is_finite())
        .collect();
    let beta: Vec<(f64, f64)> = iters
        .iter()
        .map(|it| (it.iteration as f64, it.beta))
        .filter(|(_, v)| v.is_finite() && *v > 0.0)
        .collect();
    let (i_min, i_max) = min_max(iters.iter().map(|it| it.iteration as f64)).unwrap_or((0.0, 1.0));
    let pad = (0.03 * (i_max - i_min)).max(0.5);
    let (x_lo, x_hi) = (i_min - pad, i_max + pad);
    let n_x_labels = ((i_max - i_min) as usize + 1).clamp(2, 12);

    let area = titled(root, "EMC convergence")?;
    let h_top = (area.dim_in_pixel().1 as f64 * 0.6) as u32;
    let (top, bottom) = area.split_vertically(h_top);

    // (a) log-likelihood
    {
        let (y_lo, y_hi) = lin_range(ll.iter().map(|p| p.1), 0.08);
        let mut chart = panel_builder(&top, "(a) log-likelihood of the data", 36, (44, 130))
            .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
            .pe()?;
        let fy = sci_ticks(y_lo, y_hi);
        house_mesh(&mut chart.configure_mesh())
            .y_desc("log-likelihood")
            .x_label_formatter(&int_ticks)
            .y_label_formatter(&fy)
            .x_labels(n_x_labels)
            .y_labels(7)
            .draw()
            .pe()?;
        trace(&mut chart, &ll, series_color(0), 4, "no finite log-likelihood values")?;
    }

    // (b) annealing parameter β
    {
        let (y_lo, y_hi) = log_range(beta.iter().map(|p| p.1), 1.3);
        let (y_axis, fy) = log_axis(y_lo, y_hi);
        let mut chart = panel_builder(&bottom, "(b) annealing parameter β", 36, (72, 130))
            .build_cartesian_2d(x_lo..x_hi, y_axis)
            .pe()?;
        house_mesh(&mut chart.configure_mesh())
            .x_desc("EMC iteration")
            .y_desc("β (log scale)")
            .x_label_formatter(&int_ticks)
            .y_label_formatter(&fy)
            .x_labels(n_x_labels)
            .draw()
            .pe()?;
        trace(&mut chart, &beta, series_color(1), 4, "no positive β values")?;
    }
    Ok(())
}
