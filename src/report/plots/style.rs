//! The house look every figure shares: the embedded font and text sizes, the
//! series palette, the mesh, title band, legend and "no data" note, and the
//! double rendering of one drawing function to PNG and SVG.

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{anyhow, Context, Result};
use plotters::chart::MeshStyle;
use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontDesc, FontFamily, FontStyle};

use super::axes::log_axis;

/// The bundled DejaVu Sans (see `assets/fonts/DejaVuSans-LICENSE.txt`).
static DEJAVU_SANS: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

/// Font family every text element uses.
const FAMILY: &str = "sans-serif";

// Text sizes in pixels, for figures roughly 1000 px wide.
pub(super) const TITLE_PX: f64 = 30.0;
pub(super) const CAPTION_PX: f64 = 24.0;
pub(super) const AXIS_DESC_PX: f64 = 22.0;
pub(super) const TICK_PX: f64 = 18.0;
pub(super) const LEGEND_PX: f64 = 19.0;
pub(super) const NOTE_PX: f64 = 17.0;

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
pub(super) const MISSING_GREY: RGBColor = RGBColor(170, 170, 170);

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
pub(super) fn output_paths(stem: &Path) -> Result<(PathBuf, PathBuf)> {
    if let Some(dir) = stem.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
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

/// Registers the font, then runs one generic drawing call for the bitmap and
/// the SVG backend and returns the two paths written. (A macro, because the
/// drawing call is generic over the backend and closures cannot be.)
macro_rules! render_both {
    ($what:expr, $stem:expr, $size:expr, |$root:ident| $draw:expr) => {{
        use plotters::prelude::{BitMapBackend, SVGBackend};
        $crate::report::plots::style::register_font();
        let (png, svg) = $crate::report::plots::style::output_paths($stem)?;
        let size: (u32, u32) = $size;
        $crate::report::plots::style::render_both!(@one BitMapBackend, $what, png, size, |$root| $draw);
        $crate::report::plots::style::render_both!(@one SVGBackend, $what, svg, size, |$root| $draw);
        Ok(vec![png, svg])
    }};
    (@one $backend:ident, $what:expr, $path:ident, $size:ident, |$root:ident| $draw:expr) => {{
        use $crate::report::plots::style::PlotErr as _;
        use anyhow::Context as _;
        use plotters::prelude::{IntoDrawingArea, WHITE};
        let $root = $backend::new(&$path, $size).into_drawing_area();
        $root.fill(&WHITE).pe()?;
        $draw.with_context(|| format!("{}: drawing {}", $what, $path.display()))?;
        $root
            .present()
            .pe()
            .with_context(|| format!("{}: writing {}", $what, $path.display()))?;
    }};
}
pub(super) use render_both;

/// Converts plotters' backend-generic errors into `anyhow` errors.
pub(super) trait PlotErr<T> {
    fn pe(self) -> Result<T>;
}

impl<T, E: std::fmt::Display> PlotErr<T> for std::result::Result<T, E> {
    fn pe(self) -> Result<T> {
        self.map_err(|e| anyhow!("plotters: {e}"))
    }
}

// ---------------------------------------------------------------------------
// Text and colours
// ---------------------------------------------------------------------------

pub(super) fn font(px: f64) -> TextStyle<'static> {
    TextStyle::from(FontDesc::new(FontFamily::Name(FAMILY), px, FontStyle::Normal)).color(&BLACK)
}

pub(super) fn font_at(px: f64, h: HPos, v: VPos) -> TextStyle<'static> {
    font(px).pos(Pos::new(h, v))
}

pub(super) fn series_color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Draws `text` as a figure title in a band at the top of `root` and returns
/// the area below it.
pub(super) fn titled<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, text: &str) -> Result<DrawingArea<DB, Shift>> {
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

// ---------------------------------------------------------------------------
// Charts: builder, mesh, traces, reference lines, legend, notes
// ---------------------------------------------------------------------------

pub(super) type Chart2d<'a, DB, X, Y> = ChartContext<'a, DB, Cartesian2d<X, Y>>;

/// The builder of one captioned panel of a multi-panel figure: `caption` in
/// the caption size, 16 px margins except `margin_right`, and label areas of
/// `x_area` (below) and `y_area` (left) pixels.
pub(super) fn panel_builder<'a, 'b, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: &str,
    margin_right: u32,
    (x_area, y_area): (u32, u32),
) -> ChartBuilder<'a, 'b, DB> {
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(caption, font(CAPTION_PX))
        .margin(16)
        .margin_right(margin_right)
        .x_label_area_size(x_area)
        .y_label_area_size(y_area);
    builder
}

/// Every chart's mesh in one style: axis descriptions and tick labels in the embedded font,
/// faint major and minor grid lines. Callers add descriptions, formatters and label counts.
pub(super) fn house_mesh<'m, 'a, 'b, X: Ranged, Y: Ranged, DB: DrawingBackend>(
    mesh: &'m mut MeshStyle<'a, 'b, X, Y, DB>,
) -> &'m mut MeshStyle<'a, 'b, X, Y, DB> {
    mesh.axis_desc_style(font(AXIS_DESC_PX))
        .label_style(font(TICK_PX))
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(BLACK.mix(0.04))
}

/// Log axes from a log-log figure's two [`log_axis`] ranges.
pub(super) type LogLog = Cartesian2d<WithKeyPoints<LogCoord<f64>>, WithKeyPoints<LogCoord<f64>>>;

/// A log–log chart filling `root` (the against-N and against-photons figures): `title` above,
/// axes spanning `x` and `y` with decade ticks, the house mesh described by `x_desc` and
/// `y_desc`.
pub(super) fn log_log_chart<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    (x_lo, x_hi): (f64, f64),
    (y_lo, y_hi): (f64, f64),
) -> Result<ChartContext<'a, DB, LogLog>> {
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
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&fx)
        .y_label_formatter(&fy)
        .draw()
        .pe()?;
    Ok(chart)
}

/// One method's series of a log–log figure: a 2 px line with 5 px filled circles at `pts`, in
/// the legend as `label` (none when empty).
pub(super) fn marked_series<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, LogLog>,
    pts: &[(f64, f64)],
    col: RGBColor,
    label: &str,
) -> Result<()> {
    let s = chart
        .draw_series(LineSeries::new(pts.iter().copied(), col.stroke_width(2)))
        .pe()?;
    if !label.is_empty() {
        s.label(label).legend(move |(x, y)| {
            EmptyElement::at((x, y))
                + PathElement::new(vec![(0, 0), (26, 0)], col.stroke_width(2))
                + Circle::new((13, 0), 5, col.filled())
        });
    }
    chart
        .draw_series(pts.iter().map(|&p| Circle::new(p, 5, col.filled())))
        .pe()?;
    Ok(())
}

/// One series as a 2 px line through `pts` with filled circles of `radius`
/// px at the points (none for radius 0); a "no data" note saying `empty`
/// instead when there are no points.
pub(super) fn trace<DB, X, Y>(
    chart: &mut Chart2d<'_, DB, X, Y>,
    pts: &[(f64, f64)],
    col: RGBColor,
    radius: i32,
    empty: &str,
) -> Result<()>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    if pts.is_empty() {
        return no_data_note(chart, empty);
    }
    chart
        .draw_series(LineSeries::new(pts.iter().copied(), col.stroke_width(2)))
        .pe()?;
    if radius > 0 {
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, radius, col.filled())))
            .pe()?;
    }
    Ok(())
}

/// A dashed horizontal reference line at `y` from `x_lo` to `x_hi`, with
/// `text` written just above it, its lower left corner at `text_at`.
pub(super) fn reference_line<DB, X, Y>(
    chart: &mut Chart2d<'_, DB, X, Y>,
    (x_lo, x_hi): (f64, f64),
    y: f64,
    text: &str,
    text_at: (f64, f64),
) -> Result<()>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .draw_series(DashedLineSeries::new(
            vec![(x_lo, y), (x_hi, y)],
            12,
            8,
            BLACK.mix(0.6).stroke_width(2),
        ))
        .pe()?;
    chart
        .draw_series(std::iter::once(Text::new(
            text.to_string(),
            text_at,
            font_at(NOTE_PX, HPos::Left, VPos::Bottom).color(&BLACK.mix(0.75)),
        )))
        .pe()?;
    Ok(())
}

/// The corner of the plot with the fewest data points in it (points given in
/// normalised [0, 1]² plot coordinates), preferring the upper right on ties.
pub(super) fn emptiest_corner(points: &[(f64, f64)]) -> SeriesLabelPosition {
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

/// Position of `v` on a linear axis [lo, hi], as a fraction.
pub(super) fn normalise_lin(v: f64, lo: f64, hi: f64) -> f64 {
    (v - lo) / (hi - lo)
}

/// Position of `v` on a log axis [lo, hi], as a fraction.
pub(super) fn normalise_log(v: f64, lo: f64, hi: f64) -> f64 {
    (v.max(1e-300).ln() - lo.ln()) / (hi.ln() - lo.ln())
}

pub(super) fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
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

pub(super) fn line_legend(c: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 26, y)], c.stroke_width(3))
}

/// A framed "no data" note in the middle of a chart.
pub(super) fn no_data_note<DB: DrawingBackend, X: Ranged, Y: Ranged>(
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
