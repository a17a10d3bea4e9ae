//! Figure 2: the distribution of per-image pose errors, as a histogram and
//! as the empirical CDF on a log axis, one series per method.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::axes::{fmt_num, lin_ticks, log_axis};
use super::style::{
    draw_legend, emptiest_corner, font_at, house_mesh, line_legend, no_data_note, panel_builder, render_both,
    series_color, titled, PlotErr, NOTE_PX,
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

fn fmt_deg(d: f64) -> String {
    if d < 1.0 {
        format!("{d:.2}°")
    } else if d < 100.0 {
        format!("{d:.1}°")
    } else {
        format!("{d:.0}°")
    }
}

/// Histogram of the pose errors of each series on common bins.
#[derive(Debug, PartialEq)]
struct Histogram {
    /// Bin width (°).
    width: f64,
    n_bins: usize,
    /// Upper edge of the last bin (°); errors above it are counted in `over`.
    hi: f64,
    /// Counts per series and bin.
    counts: Vec<Vec<usize>>,
    /// Errors above `hi`, per series (the overflow bin).
    over: Vec<usize>,
}

impl Histogram {
    /// Bins over the sorted errors of each series. The range covers the
    /// largest error when the tail is short (largest ≤ 1.5 × the 99th
    /// percentile of all errors); a long tail is cut at the 99th percentile
    /// and the errors beyond it are counted in the overflow bin, so that the
    /// bulk stays readable and the outliers still show. ~1° bins; finer bins
    /// when the errors are all small, so that the histogram keeps at least
    /// ~20 bins.
    fn new<'a>(sorted: impl Iterator<Item = &'a [f64]> + Clone) -> Self {
        let mut pooled: Vec<f64> = sorted.clone().flatten().copied().collect();
        pooled.sort_by(f64::total_cmp);
        let upper = match pooled.last() {
            None => 10.0,
            Some(&max) => {
                let k = (0.99 * pooled.len() as f64).ceil() as usize;
                let p99 = pooled[k.clamp(1, pooled.len()) - 1];
                if max <= 1.5 * p99 {
                    max
                } else {
                    p99
                }
            }
        };
        let upper = upper.clamp(0.5, 180.0);
        let width = [1.0, 0.5, 0.2, 0.1, 0.05]
            .into_iter()
            .find(|w| upper / w >= 20.0)
            .unwrap_or(0.05);
        let n_bins = ((upper / width).ceil() as usize).max(1);
        let hi = n_bins as f64 * width;
        let (counts, over) = sorted
            .map(|v| {
                let mut c = vec![0usize; n_bins];
                let mut over = 0;
                for &x in v {
                    if x <= hi + 1e-9 {
                        c[((x / width) as usize).min(n_bins - 1)] += 1;
                    } else {
                        over += 1;
                    }
                }
                (c, over)
            })
            .unzip();
        Self {
            width,
            n_bins,
            hi,
            counts,
            over,
        }
    }
}

fn draw_pose_errors<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, series: &[(String, Vec<f64>)]) -> Result<()> {
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
            let med = crate::stats::median_sorted(&v);
            let label = if v.is_empty() {
                format!("{label} (no data)")
            } else {
                format!("{label} (median {})", fmt_deg(med))
            };
            (label, v)
        })
        .collect();

    let hist = Histogram::new(data.iter().map(|(_, v)| v.as_slice()));
    let area = titled(root, "Pose-error distribution")?;
    let panels = area.split_evenly((1, 2));
    draw_histogram(&panels[0], &data, &hist)?;

    draw_cdf(&panels[1], &data)
}

/// Panel (a): the histogram, one filled step outline per series, and the
/// overflow bin (if any errors fall beyond the bins) as a separate bar on the
/// right, labelled with its lower bound.
fn draw_histogram<DB: DrawingBackend>(
    panel: &DrawingArea<DB, Shift>,
    data: &[(String, Vec<f64>)],
    h: &Histogram,
) -> Result<()> {
    let (width, n_bins, hi) = (h.width, h.n_bins, h.hi);
    let over_max = h.over.iter().copied().max().unwrap_or(0);
    // the overflow bar: ~6% of the axis wide, after a gap, with room for its label
    let bar_w = (n_bins as f64 * 0.06).ceil() * width;
    let (bar_lo, bar_hi) = (hi + 0.5 * bar_w, hi + 1.5 * bar_w);
    let x_hi = if over_max > 0 { bar_hi + 0.5 * bar_w } else { hi };
    let c_max = h.counts.iter().flatten().copied().max().unwrap_or(0);
    let c_max = c_max.max(over_max).max(1) as f64;

    let mut chart = panel_builder(panel, "(a) histogram", 28, (72, 92))
        .build_cartesian_2d(0.0..x_hi, 0.0..c_max * 1.08)
        .pe()?;
    // no tick labels over the overflow bar: its abscissa is not an error value
    let ticks = lin_ticks(hi);
    let fx = |v: &f64| {
        if *v > hi * (1.0 + 1e-9) {
            String::new()
        } else {
            ticks(v)
        }
    };
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
    for (i, (c, &over)) in h.counts.iter().zip(&h.over).enumerate() {
        let fill = series_color(i).mix(0.2).filled();
        let bins = c
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(b, &n)| Rectangle::new([(b as f64 * width, 0.0), ((b + 1) as f64 * width, n as f64)], fill));
        let over_bar = (over > 0).then(|| Rectangle::new([(bar_lo, 0.0), (bar_hi, over as f64)], fill));
        chart.draw_series(bins.chain(over_bar)).pe()?;
    }
    let norm = |x: f64, n: usize| (x / x_hi, n as f64 / (c_max * 1.08));
    let mut norm_pts = Vec::new();
    for (i, ((label, v), c)) in data.iter().zip(&h.counts).enumerate() {
        let col = series_color(i);
        let mut step = vec![(0.0, 0.0)];
        for (b, &n) in c.iter().enumerate() {
            step.push((b as f64 * width, n as f64));
            step.push(((b + 1) as f64 * width, n as f64));
            norm_pts.push(norm((b as f64 + 0.5) * width, n));
        }
        step.push((hi, 0.0));
        let s = chart.draw_series(LineSeries::new(step, col.stroke_width(2))).pe()?;
        if !v.is_empty() || !label.is_empty() {
            s.label(label.clone()).legend(line_legend(col));
        }
        let over = h.over[i] as f64;
        if over > 0.0 {
            let outline = vec![(bar_lo, 0.0), (bar_lo, over), (bar_hi, over), (bar_hi, 0.0)];
            chart.draw_series(LineSeries::new(outline, col.stroke_width(2))).pe()?;
            norm_pts.push(norm(0.5 * (bar_lo + bar_hi), h.over[i]));
        }
    }
    if over_max > 0 {
        chart
            .draw_series(std::iter::once(Text::new(
                format!("all > {}°", fmt_num(hi)),
                (x_hi, over_max as f64 + 0.015 * c_max),
                font_at(NOTE_PX, HPos::Right, VPos::Bottom).color(&BLACK.mix(0.75)),
            )))
            .pe()?;
    }
    draw_legend(&mut chart, emptiest_corner(&norm_pts))
}

/// Panel (b): the empirical CDF of each series on a log axis, with its
/// median marked on the 0.5 line.
fn draw_cdf<DB: DrawingBackend>(panel: &DrawingArea<DB, Shift>, data: &[(String, Vec<f64>)]) -> Result<()> {
    let (x_lo, x_hi) = (0.1, 180.0);
    let (x_axis, fx) = log_axis(x_lo, x_hi);
    let mut chart = panel_builder(panel, "(b) cumulative distribution", 36, (72, 92))
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
        chart.draw_series(LineSeries::new(pts, col.stroke_width(3))).pe()?;
        // median marker: dotted drop line from the 0.5 level
        let med = crate::stats::median_sorted(v).clamp(x_lo, x_hi);
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Histogram;

    fn total(h: &Histogram) -> Vec<usize> {
        h.counts.iter().map(|c| c.iter().sum()).collect()
    }

    #[test]
    fn long_tail_goes_to_the_overflow_bin() {
        // 995 errors 0.00°, 0.01°, …, 9.94° and 5 outliers at 150°: the 99th
        // percentile is the 990th value, 9.89°; bins of 0.2° up to 10°.
        let bulk: Vec<f64> = (0..995).map(|k| k as f64 * 0.01).collect();
        let outliers = vec![150.0; 5];
        let h = Histogram::new([bulk.as_slice(), outliers.as_slice()].into_iter());
        assert_eq!((h.width, h.n_bins, h.hi), (0.2, 50, 10.0));
        assert_eq!(total(&h), vec![995, 0]);
        assert_eq!(h.over, vec![0, 5]);
    }

    #[test]
    fn short_tail_stays_in_range() {
        // 0.1°, 0.2°, …, 10° and one error at 14° ≤ 1.5 × the 99th percentile
        // (10°): the bins of 0.5° reach 14°, nothing overflows.
        let mut v: Vec<f64> = (1..=100).map(|k| k as f64 * 0.1).collect();
        v.push(14.0);
        let h = Histogram::new(std::iter::once(v.as_slice()));
        assert_eq!((h.width, h.n_bins, h.hi), (0.5, 28, 14.0));
        assert_eq!(total(&h), vec![101]);
        assert_eq!(h.over, vec![0]);
        assert_eq!(h.counts[0][27], 1, "14° lies in the last bin");
    }

    #[test]
    fn no_errors_give_empty_bins() {
        let h = Histogram::new(std::iter::once(&[][..]));
        assert_eq!((h.width, h.n_bins, h.hi), (0.5, 20, 10.0));
        assert_eq!((total(&h), h.over), (vec![0], vec![0]));
    }
}
