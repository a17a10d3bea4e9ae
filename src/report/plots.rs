//! Publication-quality figures for the benchmark report.
//!
//! Every public plotting function takes plain data, draws the figure once per
//! backend through a single generic drawing function over
//! `DrawingArea<DB, Shift>`, and writes `<stem>.png` (bitmap) and `<stem>.svg`
//! (vector) next to each other. `stem` carries no extension; missing parent
//! directories are created. The functions return the two paths written.
//!
//! All text uses the DejaVu Sans font bundled with the crate (registered under
//! the family name `"sans-serif"`), so the figures render identically on
//! machines without any system fonts.
//!
//! Non-finite values are skipped (or, where the plot gives them a meaning,
//! drawn specially: "not measured" voxels in grey, runs over the time budget
//! as triangles at the budget line). An empty list of series/rows is an error
//! that names the plot.

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::combinators::WithKeyPoints;
use plotters::chart::MeshStyle;
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontDesc, FontFamily, FontStyle, FontTransform};

/// The bundled DejaVu Sans (see `assets/fonts/DejaVuSans-LICENSE.txt`).
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Font family every text element uses.
const FAMILY: &str = "sans-serif";

// Text sizes in pixels, for figures roughly 1000 px wide.
const TITLE_PX: f64 = 30.0;
const CAPTION_PX: f64 = 24.0;
const AXIS_DESC_PX: f64 = 22.0;
const TICK_PX: f64 = 18.0;
const LEGEND_PX: f64 = 19.0;
const NOTE_PX: f64 = 17.0;

/// Distinct series colours (the "tab10" palette of matplotlib).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Colour for voxels/pixels that carry no value ("not measured", NaN).
const MISSING_GREY: RGBColor = RGBColor(170, 170, 170);

/// Registers the bundled DejaVu Sans as the `"sans-serif"` family of the
/// plotters ab_glyph font backend. Idempotent and cheap after the first call;
/// every public plotting function calls it first.
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(FAMILY, FontStyle::Normal, DEJAVU_SANS).is_err() {
            // Only possible if the bundled asset is corrupt; text drawing then
            // fails with a "font unavailable" error that the plot functions report.
            eprintln!("warning: the bundled DejaVuSans.ttf could not be registered for plotting");
        }
    });
}

// ---------------------------------------------------------------------------
// Rendering to both backends
// ---------------------------------------------------------------------------

/// `<stem>.png` and `<stem>.svg`; creates the parent directory.
fn output_paths(stem: &Path) -> Result<(PathBuf, PathBuf)> {
    if let Some(dir) = stem.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating directory {}", dir.display()))?;
        }
    }
    let with_ext = |ext: &str| {
        let mut s = stem.as_os_str().to_owned();
        s.push(".");
        s.push(ext);
        PathBuf::from(s)
    };
    Ok((with_ext("png"), with_ext("svg")))
}

/// Runs one generic drawing call for the bitmap and the SVG backend.
macro_rules! render_both {
    ($what:expr, $stem:expr, $size:expr, |$root:ident| $draw:expr) => {{
        let (png, svg) = output_paths($stem)?;
        let size: (u32, u32) = $size;
        {
            let $root = BitMapBackend::new(&png, size).into_drawing_area();
            $root.fill(&WHITE).pe()?;
            $draw.with_context(|| format!("{}: drawing {}", $what, png.display()))?;
            $root
                .present()
                .pe()
                .with_context(|| format!("{}: writing {}", $what, png.display()))?;
        }
        {
            let $root = SVGBackend::new(&svg, size).into_drawing_area();
            $root.fill(&WHITE).pe()?;
            $draw.with_context(|| format!("{}: drawing {}", $what, svg.display()))?;
            $root
                .present()
                .pe()
                .with_context(|| format!("{}: writing {}", $what, svg.display()))?;
        }
        Ok(vec![png, svg])
    }};
}

/// Converts plotters' backend-generic errors into `anyhow` errors.
trait PlotErr<T> {
    fn pe(self) -> Result<T>;
}

impl<T, E: std::fmt::Display> PlotErr<T> for std::result::Result<T, E> {
    fn pe(self) -> Result<T> {
        self.map_err(|e| anyhow!("plotters: {e}"))
    }
}

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

/// FSC curves against the ground truth: one `(label, [(spatial frequency in
/// 1/Å, FSC)])` per curve, with dashed reference lines at 0.5 and 0.143.
pub fn fsc_curves(stem: &Path, curves: &[(String, Vec<(f64, f64)>)]) -> Result<Vec<PathBuf>> {
    register_font();
    if curves.is_empty() {
        bail!("FSC plot (fsc_curves): no curves to plot");
    }
    render_both!("FSC plot", stem, (1000, 700), |root| draw_fsc(
        &root, curves
    ))
}

/// Distribution of per-image pose errors (degrees), one `(method, errors)` per
/// series: a histogram (left) and the empirical CDF on a log axis (right).
pub fn pose_error_distribution(stem: &Path, series: &[(String, Vec<f64>)]) -> Result<Vec<PathBuf>> {
    register_font();
    if series.is_empty() {
        bail!("pose-error distribution plot (pose_error_distribution): no series to plot");
    }
    render_both!("pose-error distribution plot", stem, (1600, 680), |root| {
        draw_pose_errors(&root, series)
    })
}

/// One logged point of an X-RAI training run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainingPoint {
    /// Wall-clock time since the start of training, seconds.
    pub elapsed_s: f64,
    /// Optimiser step.
    pub step: usize,
    /// Training loss at this step.
    pub loss: f64,
    /// Median pose error on the test images (degrees); NaN where not evaluated.
    pub test_median_deg: f64,
}

/// Training loss and test median pose error against wall-clock time.
pub fn training_curves(stem: &Path, points: &[TrainingPoint]) -> Result<Vec<PathBuf>> {
    register_font();
    if points.is_empty() {
        bail!("training-curve plot (training_curves): no training points to plot");
    }
    render_both!("training-curve plot", stem, (1600, 640), |root| {
        draw_training(&root, points)
    })
}

/// One EMC iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmcIteration {
    pub iteration: usize,
    /// Total log-likelihood of the data (a large negative number).
    pub log_likelihood: f64,
    /// Deterministic-annealing parameter β.
    pub beta: f64,
}

/// EMC log-likelihood per iteration (top) and the annealing parameter β on a
/// log axis (bottom panel).
pub fn emc_log_likelihood(stem: &Path, iters: &[EmcIteration]) -> Result<Vec<PathBuf>> {
    register_font();
    if iters.is_empty() {
        bail!("EMC log-likelihood plot (emc_log_likelihood): no iterations to plot");
    }
    render_both!("EMC log-likelihood plot", stem, (1000, 860), |root| {
        draw_emc(&root, iters)
    })
}

/// Grid of input vs reconstructed images: one `(label, input, reconstruction)`
/// per row, each a row-major `side`×`side` intensity image, drawn as
/// log₁₀(max(v, 10⁻³·max)) with the viridis colour map.
pub fn image_gallery(
    stem: &Path,
    side: usize,
    rows: &[(String, Vec<f32>, Vec<f32>)],
) -> Result<Vec<PathBuf>> {
    register_font();
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
    let layout = GalleryLayout::new(side, rows.len());
    render_both!("image gallery", stem, layout.size(), |root| draw_gallery(
        &root, &layout, side, rows
    ))
}

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
    register_font();
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
    let layout = SliceLayout::new(columns.len(), rows.len());
    render_both!(
        "volume-slice plot",
        stem,
        layout.size(),
        |root| draw_slices(&root, &layout, columns, rows, log)
    )
}

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
    register_font();
    if series.is_empty() {
        bail!("scaling plot (scaling, {title:?}): no series to plot");
    }
    render_both!("scaling plot", stem, (1000, 700), |root| draw_scaling(
        &root, title, y_label, series, budget
    ))
}

// ---------------------------------------------------------------------------
// Small helpers: fonts, colours, ranges, tick labels, legends
// ---------------------------------------------------------------------------

/// Every chart's mesh in one style: axis descriptions and tick labels in the embedded font,
/// faint major and minor grid lines. Callers add descriptions, formatters and label counts.
fn house_mesh<'m, 'a, 'b, X: Ranged, Y: Ranged, DB: DrawingBackend>(
    mesh: &'m mut MeshStyle<'a, 'b, X, Y, DB>,
) -> &'m mut MeshStyle<'a, 'b, X, Y, DB> {
    mesh.axis_desc_style(font(AXIS_DESC_PX))
        .label_style(font(TICK_PX))
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(BLACK.mix(0.04))
}

fn font(px: f64) -> TextStyle<'static> {
    TextStyle::from(FontDesc::new(
        FontFamily::Name(FAMILY),
        px,
        FontStyle::Normal,
    ))
    .color(&BLACK)
}

fn font_at(px: f64, h: HPos, v: VPos) -> TextStyle<'static> {
    font(px).pos(Pos::new(h, v))
}

fn series_color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn finite_pairs(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect()
}

/// (min, max) of the finite values, or None.
fn min_max(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// Linear axis range around the finite values with `pad` (fraction of the
/// span) on both sides; degenerate spans are widened.
fn lin_range(values: impl IntoIterator<Item = f64>, pad: f64) -> (f64, f64) {
    match min_max(values) {
        None => (0.0, 1.0),
        Some((lo, hi)) if hi - lo <= f64::EPSILON * hi.abs().max(lo.abs()).max(1e-300) => {
            let d = if lo == 0.0 { 1.0 } else { lo.abs() * 1e-3 };
            (lo - d, hi + d)
        }
        Some((lo, hi)) => {
            let d = (hi - lo) * pad;
            (lo - d, hi + d)
        }
    }
}

/// Log axis range around the positive finite values (multiplicative `pad`),
/// widened geometrically about its centre to at least one decade so that the
/// 1-2-5 tick labels of [`log_axis`] always give several labels.
fn log_range(values: impl IntoIterator<Item = f64>, pad: f64) -> (f64, f64) {
    let Some((lo, hi)) = min_max(values.into_iter().filter(|v| *v > 0.0)) else {
        return (1.0, 10.0);
    };
    let (lo, hi) = (lo / pad, hi * pad);
    if hi / lo >= 10.0 {
        return (lo, hi);
    }
    let centre = (lo * hi).sqrt();
    (centre / 10f64.sqrt(), centre * 10f64.sqrt())
}

fn superscript(n: i32) -> String {
    n.to_string()
        .chars()
        .map(|c| match c {
            '-' => '⁻',
            '0' => '⁰',
            '1' => '¹',
            '2' => '²',
            '3' => '³',
            '4' => '⁴',
            '5' => '⁵',
            '6' => '⁶',
            '7' => '⁷',
            '8' => '⁸',
            '9' => '⁹',
            c => c,
        })
        .collect()
}

fn trim_zeros(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Compact number: up to three significant digits, `m×10ᵉ` outside
/// [10⁻³, 10⁵), Unicode minus sign.
fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    let s = if (1e-3..1e5).contains(&a) {
        let digits = (2 - a.log10().floor() as i32).max(0) as usize;
        trim_zeros(format!("{a:.digits$}"))
    } else {
        let mut e = a.log10().floor() as i32;
        let mut m = a / 10f64.powi(e);
        if m >= 9.995 {
            m /= 10.0;
            e += 1;
        }
        let m = trim_zeros(format!("{m:.2}"));
        if m == "1" {
            format!("10{}", superscript(e))
        } else {
            format!("{m}×10{}", superscript(e))
        }
    };
    if v < 0.0 {
        format!("−{s}")
    } else {
        s
    }
}

/// Tick formatter for a linear axis spanning `span`: values that are zero up
/// to rounding print as "0".
fn lin_ticks(span: f64) -> impl Fn(&f64) -> String {
    move |v: &f64| {
        if v.abs() < span.abs() * 1e-9 {
            "0".into()
        } else {
            fmt_num(*v)
        }
    }
}

/// A log axis over [lo, hi] with explicit tick positions, and its label
/// formatter. Labelled ticks: powers of ten, plus the 2× and 5× multiples on
/// axes spanning at most 2.6 decades (every k-th power on very long axes);
/// minor grid lines at all 1…9 multiples. Labels read 10ᵉ (or m×10ᵉ) when the
/// axis leaves [0.01, 10⁴], plain numbers otherwise.
fn log_axis(lo: f64, hi: f64) -> (WithKeyPoints<LogCoord<f64>>, impl Fn(&f64) -> String) {
    let decades = (hi / lo).log10();
    let powers = lo < 0.00999 || hi > 10001.0;
    let (e_lo, e_hi) = (
        (lo.log10() - 1.0).floor() as i32,
        (hi.log10() + 1.0).ceil() as i32,
    );
    let inside = |v: f64| v >= lo * (1.0 - 1e-9) && v <= hi * (1.0 + 1e-9);
    let multiples: &[f64] = if decades <= 2.6 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0]
    };
    let every = if decades > 7.0 {
        (decades / 6.0).ceil() as i32
    } else {
        1
    };
    let mut bold = Vec::new();
    let mut light = Vec::new();
    for e in e_lo..=e_hi {
        let p = 10f64.powi(e);
        if e.rem_euclid(every) == 0 {
            bold.extend(multiples.iter().map(|m| m * p).filter(|&v| inside(v)));
        }
        if decades <= 7.0 {
            light.extend((1..=9).map(|k| k as f64 * p).filter(|&v| inside(v)));
        } else if inside(p) {
            light.push(p);
        }
    }
    let axis = (lo..hi)
        .log_scale()
        .with_key_points(bold)
        .with_light_points(light);
    let fmt = move |v: &f64| {
        let e = (v.log10() + 1e-9).floor();
        let m = (v / 10f64.powf(e) * 1e6).round() / 1e6;
        match (powers, m == 1.0) {
            (true, true) => format!("10{}", superscript(e as i32)),
            (true, false) => format!("{}×10{}", fmt_num(m), superscript(e as i32)),
            (false, _) => fmt_num(*v),
        }
    };
    (axis, fmt)
}

/// Draws `text` as a figure title in a band at the top of `root` and returns
/// the area below it.
fn titled<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    text: &str,
) -> Result<DrawingArea<DB, Shift>> {
    let band = 62u32;
    let (w, _) = root.dim_in_pixel();
    let (top, rest) = root.split_vertically(band);
    top.draw(&Text::new(
        text.to_string(),
        (w as i32 / 2, band as i32 / 2 + 2),
        font_at(TITLE_PX, HPos::Center, VPos::Center),
    ))
    .pe()?;
    Ok(rest)
}

/// Scientific tick labels with a common exponent and just enough decimals to
/// tell ticks `step` apart, e.g. "−1.234e7".
fn sci_ticks(lo: f64, hi: f64) -> impl Fn(&f64) -> String {
    let max_abs = lo.abs().max(hi.abs()).max(1e-300);
    let exp = max_abs.log10().floor() as i32;
    let step = ((hi - lo) / 6.0).abs().max(max_abs * 1e-12);
    let decimals = ((exp as f64 - step.log10()).ceil() as i32).clamp(1, 8) as usize;
    let small = (-3..5).contains(&exp);
    move |v: &f64| {
        if small {
            return fmt_num(*v);
        }
        let m = *v / 10f64.powi(exp);
        let s = format!("{:.*}e{exp}", decimals, m.abs());
        if *v < 0.0 && m.abs() >= 0.5 * 10f64.powi(-(decimals as i32)) {
            format!("−{s}")
        } else {
            s
        }
    }
}

/// Integer tick labels (blank for non-integers, so that no label repeats).
fn int_ticks(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-6 {
        format!("{}", v.round() as i64)
    } else {
        String::new()
    }
}

/// The corner of the plot with the fewest data points in it (points given in
/// normalised [0, 1]² plot coordinates), preferring the upper right on ties.
fn emptiest_corner(points: &[(f64, f64)]) -> SeriesLabelPosition {
    let corners = [
        (SeriesLabelPosition::UpperRight, 0.55, 1.0, 0.6, 1.0),
        (SeriesLabelPosition::UpperLeft, 0.0, 0.45, 0.6, 1.0),
        (SeriesLabelPosition::LowerRight, 0.55, 1.0, 0.0, 0.4),
        (SeriesLabelPosition::LowerLeft, 0.0, 0.45, 0.0, 0.4),
    ];
    let mut best = (usize::MAX, 0usize);
    for (k, (_, x0, x1, y0, y1)) in corners.iter().enumerate() {
        let n = points
            .iter()
            .filter(|(x, y)| *x >= *x0 && *x <= *x1 && *y >= *y0 && *y <= *y1)
            .count();
        if n < best.0 {
            best = (n, k);
        }
    }
    corners[best.1].0.clone()
}

fn normalise_lin(v: f64, lo: f64, hi: f64) -> f64 {
    (v - lo) / (hi - lo)
}

fn normalise_log(v: f64, lo: f64, hi: f64) -> f64 {
    (v.max(1e-300).ln() - lo.ln()) / (hi.ln() - lo.ln())
}

fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    pos: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(pos)
        .margin(14)
        .legend_area_size(34)
        .label_font(font(LEGEND_PX))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .draw()
        .pe()
}

fn line_legend(c: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 26, y)], c.stroke_width(3))
}

type Chart2d<'a, DB, X, Y> = ChartContext<'a, DB, Cartesian2d<X, Y>>;

/// A framed "no data" note in the middle of a chart.
fn no_data_note<DB: DrawingBackend, X: Ranged, Y: Ranged>(
    chart: &Chart2d<'_, DB, X, Y>,
    text: &str,
) -> Result<()> {
    let area = chart.plotting_area();
    let (w, h) = area.dim_in_pixel();
    area.strip_coord_spec()
        .draw(&Text::new(
            text.to_string(),
            (w as i32 / 2, h as i32 / 2),
            font_at(CAPTION_PX, HPos::Center, VPos::Center).color(&BLACK.mix(0.6)),
        ))
        .pe()
}

// ---------------------------------------------------------------------------
// 1. FSC curves
// ---------------------------------------------------------------------------

fn draw_fsc<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    curves: &[(String, Vec<(f64, f64)>)],
) -> Result<()> {
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
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x_min, thr), (x_max, thr)],
                12,
                8,
                BLACK.mix(0.6).stroke_width(2),
            ))
            .pe()?;
        chart
            .draw_series(std::iter::once(Text::new(
                text.to_string(),
                (x_text, thr + 0.015),
                font_at(NOTE_PX, HPos::Left, VPos::Bottom).color(&BLACK.mix(0.75)),
            )))
            .pe()?;
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

// ---------------------------------------------------------------------------
// 2. Pose-error distribution
// ---------------------------------------------------------------------------

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
        let mut chart = ChartBuilder::on(&panels[0])
            .caption("(a) histogram", font(CAPTION_PX))
            .margin(16)
            .margin_right(28)
            .x_label_area_size(72)
            .y_label_area_size(92)
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
        let mut chart = ChartBuilder::on(&panels[1])
            .caption("(b) cumulative distribution", font(CAPTION_PX))
            .margin(16)
            .margin_right(36)
            .x_label_area_size(72)
            .y_label_area_size(92)
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

// ---------------------------------------------------------------------------
// 3. Training curves
// ---------------------------------------------------------------------------

fn draw_training<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    points: &[TrainingPoint],
) -> Result<()> {
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
    let t_max = points
        .iter()
        .map(minutes)
        .filter(|t| t.is_finite())
        .fold(0.0, f64::max);
    let t_min = points
        .iter()
        .map(minutes)
        .filter(|t| t.is_finite())
        .fold(0.0, f64::min);
    let (t_lo, t_hi) = if t_max > t_min {
        (t_min, t_max + 0.02 * (t_max - t_min))
    } else {
        (t_min, t_min + 1.0)
    };

    let area = titled(root, "Training progress")?;
    let panels = area.split_evenly((1, 2));
    let specs: [(
        &DrawingArea<DB, Shift>,
        &str,
        &str,
        &[(f64, f64)],
        RGBColor,
        bool,
    ); 2] = [
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
        let mut chart = ChartBuilder::on(panel)
            .caption(caption, font(CAPTION_PX))
            .margin(16)
            .margin_right(32)
            .x_label_area_size(72)
            .y_label_area_size(96)
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
        if pts.is_empty() {
            no_data_note(&chart, "no finite values")?;
            continue;
        }
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), col.stroke_width(2)))
            .pe()?;
        if markers || pts.len() <= 60 {
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, col.filled())))
                .pe()?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 4. EMC log-likelihood and β
// ---------------------------------------------------------------------------

fn draw_emc<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    iters: &[EmcIteration],
) -> Result<()> {
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
    let (h_top, _) = {
        let (_, h) = area.dim_in_pixel();
        ((h as f64 * 0.6) as u32, h)
    };
    let (top, bottom) = area.split_vertically(h_top);

    // (a) log-likelihood
    {
        let (y_lo, y_hi) = lin_range(ll.iter().map(|p| p.1), 0.08);
        let mut chart = ChartBuilder::on(&top)
            .caption("(a) log-likelihood of the data", font(CAPTION_PX))
            .margin(16)
            .margin_right(36)
            .x_label_area_size(44)
            .y_label_area_size(130)
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
        let col = series_color(0);
        if ll.is_empty() {
            no_data_note(&chart, "no finite log-likelihood values")?;
        } else {
            chart
                .draw_series(LineSeries::new(ll.iter().copied(), col.stroke_width(2)))
                .pe()?;
            chart
                .draw_series(ll.iter().map(|&p| Circle::new(p, 4, col.filled())))
                .pe()?;
        }
    }

    // (b) annealing parameter β
    {
        let (y_lo, y_hi) = log_range(beta.iter().map(|p| p.1), 1.3);
        let (y_axis, fy) = log_axis(y_lo, y_hi);
        let mut chart = ChartBuilder::on(&bottom)
            .caption("(b) annealing parameter β", font(CAPTION_PX))
            .margin(16)
            .margin_right(36)
            .x_label_area_size(72)
            .y_label_area_size(130)
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
        let col = series_color(1);
        if beta.is_empty() {
            no_data_note(&chart, "no positive β values")?;
        } else {
            chart
                .draw_series(LineSeries::new(beta.iter().copied(), col.stroke_width(2)))
                .pe()?;
            chart
                .draw_series(beta.iter().map(|&p| Circle::new(p, 4, col.filled())))
                .pe()?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Heat-map helpers (5, 6)
// ---------------------------------------------------------------------------

/// 256-entry viridis lookup table.
fn viridis_lut() -> Vec<RGBColor> {
    (0..256)
        .map(|i| ViridisRGB::get_color(i as f32 / 255.0))
        .collect()
}

/// Colour for t ∈ [0, 1] (None → grey).
fn lut_color(lut: &[RGBColor], t: Option<f64>) -> RGBColor {
    match t {
        Some(t) if t.is_finite() => lut[(t.clamp(0.0, 1.0) * 255.0).round() as usize],
        _ => MISSING_GREY,
    }
}

/// Draws a row-major side×side image of colours into the square with upper
/// left corner (x0, y0) and edge `size` px; horizontal runs of equal colour
/// become one rectangle (keeps the SVG small).
fn draw_pixels<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (x0, y0): (i32, i32),
    size: i32,
    side: usize,
    colors: &[RGBColor],
) -> Result<()> {
    let s = side as i64;
    let edge = |k: usize| (k as i64 * size as i64 / s) as i32;
    for i in 0..side {
        let (ya, yb) = (y0 + edge(i), y0 + edge(i + 1));
        if yb <= ya {
            continue;
        }
        let row = &colors[i * side..(i + 1) * side];
        let mut j = 0;
        while j < side {
            let c = row[j];
            let mut k = j + 1;
            while k < side && row[k] == c {
                k += 1;
            }
            let (xa, xb) = (x0 + edge(j), x0 + edge(k));
            if xb > xa {
                area.draw(&Rectangle::new([(xa, ya), (xb, yb)], c.filled()))
                    .pe()?;
            }
            j = k;
        }
    }
    area.draw(&Rectangle::new(
        [(x0 - 1, y0 - 1), (x0 + size, y0 + size)],
        BLACK.mix(0.7).stroke_width(1),
    ))
    .pe()?;
    Ok(())
}

/// Largest font size ≤ `px` (≥ 11) at which `text` fits in `max_w` pixels.
fn fitting_font<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    px: f64,
    max_w: u32,
) -> f64 {
    let mut size = px;
    while size > 11.0 {
        match area.estimate_text_size(text, &font(size)) {
            Ok((w, _)) if w <= max_w => break,
            Ok(_) => size -= 1.0,
            Err(_) => break,
        }
    }
    size
}

/// Vertical colour bar with tick labels and a rotated description on its right.
#[allow(clippy::too_many_arguments)]
fn draw_colorbar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    lut: &[RGBColor],
    (x0, y0): (i32, i32),
    (w, h): (i32, i32),
    ticks: &[(f64, String)],
    desc: &str,
) -> Result<()> {
    for y in 0..h {
        let t = 1.0 - y as f64 / (h - 1).max(1) as f64;
        area.draw(&Rectangle::new(
            [(x0, y0 + y), (x0 + w, y0 + y + 1)],
            lut_color(lut, Some(t)).filled(),
        ))
        .pe()?;
    }
    area.draw(&Rectangle::new(
        [(x0, y0), (x0 + w, y0 + h)],
        BLACK.mix(0.7).stroke_width(1),
    ))
    .pe()?;
    let mut text_right = 0;
    for (t, label) in ticks {
        let y = y0 + ((1.0 - t) * (h - 1) as f64).round() as i32;
        area.draw(&PathElement::new(
            vec![(x0 + w, y), (x0 + w + 6, y)],
            BLACK.stroke_width(1),
        ))
        .pe()?;
        area.draw(&Text::new(
            label.clone(),
            (x0 + w + 9, y),
            font_at(TICK_PX, HPos::Left, VPos::Center),
        ))
        .pe()?;
        let tw = area
            .estimate_text_size(label, &font(TICK_PX))
            .map(|s| s.0 as i32)
            .unwrap_or(30);
        text_right = text_right.max(tw);
    }
    area.draw(&Text::new(
        desc.to_string(),
        (x0 + w + 9 + text_right + 26, y0 + h / 2),
        font_at(AXIS_DESC_PX - 2.0, HPos::Center, VPos::Center).transform(FontTransform::Rotate270),
    ))
    .pe()?;
    Ok(())
}

// ---------------------------------------------------------------------------
// 5. Image gallery
// ---------------------------------------------------------------------------

struct GalleryLayout {
    panel: i32,
    label_w: i32,
    gap: i32,
    title_h: i32,
    header_h: i32,
    bar_w: i32,
    rows: usize,
}

impl GalleryLayout {
    fn new(side: usize, rows: usize) -> Self {
        // integer magnification up to ~280 px per panel
        let panel = (if side >= 280 {
            side
        } else {
            side * (280 / side).max(1)
        }) as i32;
        Self {
            panel,
            label_w: 190,
            gap: 14,
            title_h: 64,
            header_h: 40,
            bar_w: 140,
            rows,
        }
    }
    fn size(&self) -> (u32, u32) {
        let w = self.label_w + 2 * self.panel + 2 * self.gap + self.bar_w;
        let h =
            self.title_h + self.header_h + self.rows as i32 * (self.panel + self.gap) + self.gap;
        (w.max(760) as u32, h as u32)
    }
    fn panel_origin(&self, r: usize, c: usize) -> (i32, i32) {
        (
            self.label_w + c as i32 * (self.panel + self.gap),
            self.title_h + self.header_h + r as i32 * (self.panel + self.gap),
        )
    }
}

/// Normalised log₁₀ intensity: log₁₀(max(v, floor)) mapped from
/// [log₁₀ floor, log₁₀ max] = [log₁₀ max − 3, log₁₀ max] to [0, 1].
fn log_intensity_t(img: &[f32]) -> Vec<Option<f64>> {
    let max = img
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f32::NEG_INFINITY, f32::max) as f64;
    let (floor, top) = if max > 0.0 {
        (1e-3 * max, max)
    } else {
        (1e-3, 1e-3)
    };
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
    l: &GalleryLayout,
    side: usize,
    rows: &[(String, Vec<f32>, Vec<f32>)],
) -> Result<()> {
    let (w, _) = root.dim_in_pixel();
    let lut = viridis_lut();
    let title = "Input and reconstructed images (log₁₀ intensity)";
    let title_px = fitting_font(root, title, TITLE_PX - 2.0, w - 20);
    root.draw(&Text::new(
        title.to_string(),
        (w as i32 / 2, l.title_h / 2),
        font_at(title_px, HPos::Center, VPos::Center),
    ))
    .pe()?;
    for (c, name) in ["input", "reconstruction"].into_iter().enumerate() {
        let (x, _) = l.panel_origin(0, c);
        root.draw(&Text::new(
            name.to_string(),
            (x + l.panel / 2, l.title_h + l.header_h / 2),
            font_at(CAPTION_PX, HPos::Center, VPos::Center),
        ))
        .pe()?;
    }
    for (r, (label, input, recon)) in rows.iter().enumerate() {
        let (x0, y0) = l.panel_origin(r, 0);
        let px = fitting_font(root, label, CAPTION_PX - 2.0, (l.label_w - 24) as u32);
        root.draw(&Text::new(
            label.clone(),
            (x0 - 16, y0 + l.panel / 2),
            font_at(px, HPos::Right, VPos::Center),
        ))
        .pe()?;
        for (c, img) in [input, recon].into_iter().enumerate() {
            let colors: Vec<RGBColor> = log_intensity_t(img)
                .into_iter()
                .map(|t| lut_color(&lut, t))
                .collect();
            draw_pixels(root, l.panel_origin(r, c), l.panel, side, &colors)?;
        }
    }
    let (xb, yb) = l.panel_origin(0, 2);
    let bar_h = if l.rows == 1 {
        l.panel
    } else {
        (l.panel + l.gap + l.panel / 2).min(l.rows as i32 * (l.panel + l.gap) - l.gap)
    };
    let ticks: Vec<(f64, String)> = (0..=3)
        .map(|k| (k as f64 / 3.0, fmt_num(k as f64 - 3.0)))
        .collect();
    draw_colorbar(
        root,
        &lut,
        (xb + 4, yb),
        (22, bar_h),
        &ticks,
        "log₁₀(I / max I)",
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------
// 6. Volume slices
// ---------------------------------------------------------------------------

struct SliceLayout {
    panel: i32,
    label_w: i32,
    gap: i32,
    title_h: i32,
    header_h: i32,
    bar_w: i32,
    cols: usize,
    rows: usize,
}

impl SliceLayout {
    fn new(cols: usize, rows: usize) -> Self {
        let panel = ((1000 - 190) / cols as i32).clamp(150, 270);
        Self {
            panel,
            label_w: 190,
            gap: 12,
            title_h: 64,
            header_h: 40,
            bar_w: 150,
            cols,
            rows,
        }
    }
    fn size(&self) -> (u32, u32) {
        let w = self.label_w + self.cols as i32 * (self.panel + self.gap) + self.bar_w;
        let h =
            self.title_h + self.header_h + self.rows as i32 * (self.panel + self.gap) + self.gap;
        (w.max(760) as u32, h as u32)
    }
    fn panel_origin(&self, r: usize, c: usize) -> (i32, i32) {
        (
            self.label_w + c as i32 * (self.panel + self.gap),
            self.title_h + self.header_h + r as i32 * (self.panel + self.gap),
        )
    }
}

/// Per-panel normalisation. Log rows: negative values are "not measured"
/// (None), others log₁₀(max(v, 10⁻³·max)). Linear rows: NaN → None.
fn slice_t(slice: &[f32], log: bool) -> Vec<Option<f64>> {
    let vals: Vec<Option<f64>> = if log {
        let max = slice
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(f32::NEG_INFINITY, f32::max) as f64;
        let floor = if max > 0.0 { 1e-3 * max } else { 1e-3 };
        slice
            .iter()
            .map(|&v| (v.is_finite() && v >= 0.0).then(|| (v as f64).max(floor).log10()))
            .collect()
    } else {
        slice
            .iter()
            .map(|&v| v.is_finite().then_some(v as f64))
            .collect()
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
    l: &SliceLayout,
    columns: &[String],
    rows: &[(String, usize, Vec<Vec<f32>>)],
    log: &[bool],
) -> Result<()> {
    let (w, _) = root.dim_in_pixel();
    let lut = viridis_lut();
    let title = "Volume slices (each panel scaled to its own range)";
    let title_px = fitting_font(root, title, TITLE_PX - 2.0, w - 20);
    root.draw(&Text::new(
        title.to_string(),
        (w as i32 / 2, l.title_h / 2),
        font_at(title_px, HPos::Center, VPos::Center),
    ))
    .pe()?;
    for (c, name) in columns.iter().enumerate() {
        let (x, _) = l.panel_origin(0, c);
        let px = fitting_font(root, name, CAPTION_PX, (l.panel + l.gap - 4) as u32);
        root.draw(&Text::new(
            name.clone(),
            (x + l.panel / 2, l.title_h + l.header_h / 2),
            font_at(px, HPos::Center, VPos::Center),
        ))
        .pe()?;
    }
    let mut any_missing = false;
    for (r, ((title, side, slices), &is_log)) in rows.iter().zip(log).enumerate() {
        let (x0, y0) = l.panel_origin(r, 0);
        let px = fitting_font(root, title, CAPTION_PX - 2.0, (l.label_w - 24) as u32);
        root.draw(&Text::new(
            title.clone(),
            (x0 - 16, y0 + l.panel / 2 - 14),
            font_at(px, HPos::Right, VPos::Center),
        ))
        .pe()?;
        let scale = if is_log {
            "(log₁₀ scale)"
        } else {
            "(linear scale)"
        };
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
                    let colors: Vec<RGBColor> = t.into_iter().map(|t| lut_color(&lut, t)).collect();
                    draw_pixels(root, origin, l.panel, *side, &colors)?;
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
    let (xb, yb) = l.panel_origin(0, columns.len());
    let bar_h = l
        .panel
        .max(200)
        .min(l.rows as i32 * (l.panel + l.gap) - l.gap - 50);
    let ticks = vec![(0.0, "min".to_string()), (1.0, "max".to_string())];
    draw_colorbar(
        root,
        &lut,
        (xb + 4, yb),
        (22, bar_h),
        &ticks,
        "per-panel scale",
    )?;
    if any_missing || log.iter().any(|&b| b) {
        let y = yb + bar_h + 24;
        root.draw(&Rectangle::new(
            [(xb + 4, y), (xb + 26, y + 18)],
            MISSING_GREY.filled(),
        ))
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

// ---------------------------------------------------------------------------
// 7. Scaling with N
// ---------------------------------------------------------------------------

fn draw_scaling<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    budget: Option<f64>,
) -> Result<()> {
    let budget = budget.filter(|b| b.is_finite() && *b > 0.0);
    // finite points, and abscissae of runs over the budget, per series
    let data: Vec<(&str, Vec<(f64, f64)>, Vec<f64>)> = series
        .iter()
        .map(|(label, pts)| {
            let mut ok: Vec<(f64, f64)> = pts
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && *x > 0.0 && y.is_finite() && *y > 0.0)
                .collect();
            ok.sort_by(|a, b| a.0.total_cmp(&b.0));
            let over: Vec<f64> = if budget.is_some() {
                pts.iter()
                    .filter(|(x, y)| {
                        x.is_finite() && *x > 0.0 && (y.is_nan() || *y == f64::INFINITY)
                    })
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
        .flat_map(|d| d.1.iter().map(|p| p.0).chain(d.2.iter().copied()));
    let (x_lo, x_hi) = log_range(xs, 1.35);
    let mut ys: Vec<f64> = data.iter().flat_map(|d| d.1.iter().map(|p| p.1)).collect();
    if let Some(b) = budget {
        ys.push(b);
        if any_over {
            ys.push(b * 1.6);
        }
    }
    let (y_lo, y_hi) = log_range(ys, 1.4);
    let (x_axis, fx) = log_axis(x_lo, x_hi);
    let (y_axis, fy) = log_axis(y_lo, y_hi);

    let mut chart = ChartBuilder::on(root)
        .caption(title, font(TITLE_PX))
        .margin(20)
        .margin_right(36)
        .x_label_area_size(72)
        .y_label_area_size(100)
        .build_cartesian_2d(x_axis, y_axis)
        .pe()?;
    house_mesh(&mut chart.configure_mesh())
        .x_desc("training images N")
        .y_desc(y_label)
        .x_label_formatter(&fx)
        .y_label_formatter(&fy)
        .draw()
        .pe()?;

    let norm = |(x, y): (f64, f64)| (normalise_log(x, x_lo, x_hi), normalise_log(y, y_lo, y_hi));
    let mut norm_pts: Vec<(f64, f64)> = Vec::new();
    if let Some(b) = budget {
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x_lo, b), (x_hi, b)],
                12,
                8,
                BLACK.mix(0.6).stroke_width(2),
            ))
            .pe()?;
        let x_text = x_lo * (x_hi / x_lo).powf(0.012);
        chart
            .draw_series(std::iter::once(Text::new(
                "budget".to_string(),
                (x_text, b * (y_hi / y_lo).powf(0.012)),
                font_at(NOTE_PX, HPos::Left, VPos::Bottom).color(&BLACK.mix(0.75)),
            )))
            .pe()?;
        norm_pts.push(norm((x_lo, b)));
    }
    for (i, (label, ok, over)) in data.iter().enumerate() {
        let col = series_color(i);
        let s = chart
            .draw_series(LineSeries::new(ok.iter().copied(), col.stroke_width(2)))
            .pe()?;
        if !label.is_empty() {
            s.label(*label).legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (26, 0)], col.stroke_width(2))
                    + Circle::new((13, 0), 5, col.filled())
            });
        }
        chart
            .draw_series(ok.iter().map(|&p| Circle::new(p, 5, col.filled())))
            .pe()?;
        norm_pts.extend(ok.iter().map(|&p| norm(p)));
        if let Some(b) = budget {
            // dashed connector from the last finished run to the first run over budget
            if let (Some(&last), Some(&first_over)) =
                (ok.last(), over.iter().min_by(|a, b| a.total_cmp(b)))
            {
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
                .draw_series(
                    over.iter()
                        .map(|&x| TriangleMarker::new((x, b), 11, BLACK.filled())),
                )
                .pe()?;
            chart
                .draw_series(
                    over.iter()
                        .map(|&x| TriangleMarker::new((x, b), 8, col.filled())),
                )
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
    if data.iter().all(|d| d.1.is_empty() && d.2.is_empty()) {
        no_data_note(&chart, "no finite values")?;
    }
    if data.iter().any(|d| !d.0.is_empty()) || any_over {
        draw_legend(&mut chart, emptiest_corner(&norm_pts))?;
    }
    Ok(())
}
