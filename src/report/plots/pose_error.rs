//! Figure 2: the distribution of per-image pose errors, as a histogram and
//! as the empirical CDF on a log axis, one series per method.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::axes::{fmt_num, lin_ticks, log_axis};
use super::style::{
    draw_legend, emptiest_corner, house_mesh, line_legend, no_data_note, panel_builder,
    render_both, series_color, titled, PlotErr,
};

/// Distribution of per-image pose errors (degrees), one `(method, errors)` per
/// series: a histogram (left) and the empirical CDF on a log axis (right).
pub fn pose_error_distribution(stem: &Path, series: &[(String, Vec<f64>)]) -> Result<Vec<PathBuf>> {
    if series.is_empty() {
        bail!("pose-error distribution plot (pose_error_distribution): no series to plot");
    }
    render_both!("pose-error distribution plot", stem, (1600, 680), |root| {
        draw_pose_errors(&root, series)
    })
}

fn median_sorted(v: &[f64]) -> f64 {
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

fn fmt_deg(d: f64) -> String {
    if d < 1.0 {
        format!("{d:.2}°")
    } else if d < 100.0 {
        format!("{d:.1}°")
    } else {
        format!("{d:.0}°")
    }
}

fn draw_pose_errors<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    series: &[(String, Vec<f64>)],
) -> Result<()> {
    // sorted finite errors, clamped into [0°, 180°]
    let data: Vec<(String, Vec<f64>)> = series
        .iter()
        .map(|(label, v)| {
            let mut v: Vec<f64> = v
                .iter()
                .copied()
                .filter(|x| x.is_finite())
                .map(|x| x.clamp(0.0, 180.0))
                .collect();
            v.sort_by(f64::total_cmp);
            let med = median_sorted(&v);
            let label = if v.is_empty() {
                format!("{label} (no data)")
            } else {
                format!("{label} (median {})", fmt_deg(med))
            };
            (label, v)
        })
        .collect();

    // histogram range: up to the 99th percentile of all errors (≤ 180°)
    let mut pooled: Vec<f64> = data.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    pooled.sort_by(f64::total_cmp);
    let p99 = if pooled.is_empty() {
        10.0
    } else {
        pooled[((0.99 * pooled.len() as f64).ceil() as usize).clamp(1, pooled.len()) - 1]
    };
    let upper = p99.clamp(0.5, 180.0);
    // ~1° bins; finer bins when the errors are all small, so that the
    // histogram keeps at least ~20 bins.
    let width = [1.0, 0.5, 0.2, 0.1, 0.05]
        .into_iter()
        .find(|w| upper / w >= 20.0)
        .unwrap_or(0.05);
    let n_bins = ((upper / width).ceil() as usize).max(1);
    let hist_hi = n_bins as f64 * width;
    let counts: Vec<Vec<usize>> = data
        .iter()
        .map(|(_, v)| {
            let mut c = vec![0usize; n_bins];
            for &x in v {
                if x <= hist_hi + 1e-9 {
                    c[((x / width) as usize).min(n_bins - 1)] += 1;
                }
            }
            c
        })
        .collect();
    let c_max = counts.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;

    let area = titled(root, "Pose-error distribution")?;
    let panels = area.split_evenly((1, 2));

    // (a) histogram
    {
        let mut chart = panel_builder(&panels[0], "(a) histogram", 28, (72, 92))
            .build_cartesian_2d(0.0..hist_hi, 0.0..c_max * 1.08)
            .pe()?;
        let fx = lin_ticks(hist_hi);
        let fy = lin_ticks(c_max);
        house_mesh(&mut chart.configure_mesh())
            .x_desc(format!("pose error (°), bins of {}°", fmt_num(width)))
            .y_desc("number of images")
            .x_label_formatter(&fx)
            .y_label_formatter(&fy)
            .x_labels(8)
            .y_labels(8)
            .draw()
            .pe()?;
        for (i, c) in counts.iter().enumerate() {
            let col = series_color(i);
            chart
                .draw_series(
                    c.iter()
                        .enumerate()
                        .filter(|(_, n)| **n > 0)
                        .map(|(b, &n)| {
                            Rectangle::new(
                                [(b as f64 * width, 0.0), ((b + 1) as f64 * width, n as f64)],
                                col.mix(0.2).filled(),
                            )
                        }),
                )
                .pe()?;
        }
        let mut norm_pts = Vec::new();
        for (i, ((label, v), c)) in data.iter().zip(&counts).enumerate() {
            let col = series_color(i);
            let mut step = vec![(0.0, 0.0)];
            for (b, &n) in c.iter().enumerate() {
                step.push((b as f64 * width, n as f64));
                step.push(((b + 1) as f64 * width, n as f64));
                norm_pts.push(((b as f64 + 0.5) / n_bins as f64, n as f64 / (c_max * 1.08)));
            }
            step.push((hist_hi, 0.0));
            let s = chart
                .draw_series(LineSeries::new(step, col.stroke_width(2)))
                .pe()?;
            if !v.is_empty() || !label.is_empty() {
                s.label(label.clone()).legend(line_legend(col));
            }
        }
        draw_legend(&mut chart, emptiest_corner(&norm_pts))?;
    }

    // (b) empirical CDF on a log axis
    {
        let (x_lo, x_hi) = (0.1, 180.0);
        let (x_axis, fx) = log_axis(x_lo, x_hi);
        let mut chart = panel_builder(&panels[1], "(b) cumulative distribution", 36, (72, 92))
            .build_cartesian_2d(x_axis, 0.0..1.02)
            .pe()?;
        let fy = lin_ticks(1.0);
        house_mesh(&mut chart.configure_mesh())
            .x_desc("pose error (°, log scale)")
            .y_desc("fraction of images")
            .x_label_formatter(&fx)
            .y_label_formatter(&fy)
            .y_labels(11)
            .draw()
            .pe()?;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x_lo, 0.5), (x_hi, 0.5)],
                8,
                6,
                BLACK.mix(0.45).stroke_width(1),
            ))
            .pe()?;
        for (i, (_, v)) in data.iter().enumerate() {
            if v.is_empty() {
                continue;
            }
            let col = series_color(i);
            let n = v.len() as f64;
            let mut pts = vec![(x_lo, 0.0)];
            if v.len() <= 300 {
                for (k, &x) in v.iter().enumerate() {
                    let x = x.clamp(x_lo, x_hi);
                    pts.push((x, k as f64 / n));
                    pts.push((x, (k + 1) as f64 / n));
                }
            } else {
                // sample the step function at 1200 log-spaced abscissae
                let m = 1200;
                for k in 0..=m {
                    let x = x_lo * (x_hi / x_lo).powf(k as f64 / m as f64);
                    let below = v.partition_point(|&e| e <= x);
                    pts.push((x, below as f64 / n));
                }
            }
            let last = pts.last().map_or(0.0, |p| p.1);
            pts.push((x_hi, last));
            chart
                .draw_series(LineSeries::new(pts, col.stroke_width(3)))
                .pe()?;
            // median marker: dotted drop line from the 0.5 level
            let med = median_sorted(v).clamp(x_lo, x_hi);
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(med, 0.0), (med, 0.5)],
                    4,
                    4,
                    col.mix(0.9).stroke_width(2),
                ))
                .pe()?;
            chart
                .draw_series(std::iter::once(Circle::new((med, 0.5), 5, col.filled())))
                .pe()?;
        }
        if data.iter().all(|(_, v)| v.is_empty()) {
            no_data_note(&chart, "no finite pose errors")?;
        }
    }
    Ok(())
}
