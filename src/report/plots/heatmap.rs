//! What the two image-grid figures (gallery, volume slices) share: the grid
//! of square panels with row labels, column headers and a colour bar on the
//! right; drawing an image through the viridis colour map; and text sized to
//! fit its space.

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use plotters::style::text_anchor::{HPos, VPos};
use plotters::style::FontTransform;

use super::style::{font, font_at, PlotErr, AXIS_DESC_PX, CAPTION_PX, MISSING_GREY, TICK_PX, TITLE_PX};

/// Pixel layout of a grid of `rows` × `cols` square panels of edge `panel`:
/// a title band, a band of column headers, row labels on the left and a
/// colour bar column of width `bar_w` on the right.
pub(super) struct PanelGrid {
    pub panel: i32,
    pub label_w: i32,
    pub gap: i32,
    pub title_h: i32,
    pub header_h: i32,
    pub bar_w: i32,
    pub cols: usize,
    pub rows: usize,
}

impl PanelGrid {
    pub(super) fn new(panel: i32, gap: i32, bar_w: i32, cols: usize, rows: usize) -> Self {
        Self {
            panel,
            label_w: 190,
            gap,
            title_h: 64,
            header_h: 40,
            bar_w,
            cols,
            rows,
        }
    }

    /// Figure size in pixels (at least 760 wide).
    pub(super) fn size(&self) -> (u32, u32) {
        let w = self.label_w + self.cols as i32 * (self.panel + self.gap) + self.bar_w;
        let h = self.title_h + self.header_h + self.rows as i32 * (self.panel + self.gap) + self.gap;
        (w.max(760) as u32, h as u32)
    }

    /// Upper left corner of panel (r, c); column `cols` is the colour bar's.
    pub(super) fn panel_origin(&self, r: usize, c: usize) -> (i32, i32) {
        (
            self.label_w + c as i32 * (self.panel + self.gap),
            self.title_h + self.header_h + r as i32 * (self.panel + self.gap),
        )
    }

    /// Upper left corner of the colour bar column.
    pub(super) fn bar_origin(&self) -> (i32, i32) {
        self.panel_origin(0, self.cols)
    }
}

/// Draws the figure title (shrunk to fit the width) and one header centred
/// above each panel column; with `fit_headers` a header shrinks to fit its
/// column.
pub(super) fn draw_grid_titles<DB: DrawingBackend, H: AsRef<str>>(
    root: &DrawingArea<DB, Shift>,
    l: &PanelGrid,
    title: &str,
    headers: &[H],
    fit_headers: bool,
) -> Result<()> {
    let (w, _) = root.dim_in_pixel();
    let title_px = fitting_font(root, title, TITLE_PX - 2.0, w - 20);
    root.draw(&Text::new(
        title.to_string(),
        (w as i32 / 2, l.title_h / 2),
        font_at(title_px, HPos::Center, VPos::Center),
    ))
    .pe()?;
    for (c, name) in headers.iter().enumerate() {
        let name = name.as_ref();
        let (x, _) = l.panel_origin(0, c);
        let px = if fit_headers {
            fitting_font(root, name, CAPTION_PX, (l.panel + l.gap - 4) as u32)
        } else {
            CAPTION_PX
        };
        root.draw(&Text::new(
            name.to_string(),
            (x + l.panel / 2, l.title_h + l.header_h / 2),
            font_at(px, HPos::Center, VPos::Center),
        ))
        .pe()?;
    }
    Ok(())
}

/// Draws the label of row `r`, right-aligned left of the row and shrunk to
/// fit the label column, `dy` pixels below the row's middle.
pub(super) fn draw_row_label<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    l: &PanelGrid,
    r: usize,
    text: &str,
    dy: i32,
) -> Result<()> {
    let (x0, y0) = l.panel_origin(r, 0);
    let px = fitting_font(root, text, CAPTION_PX - 2.0, (l.label_w - 24) as u32);
    root.draw(&Text::new(
        text.to_string(),
        (x0 - 16, y0 + l.panel / 2 + dy),
        font_at(px, HPos::Right, VPos::Center),
    ))
    .pe()
}

/// 256-entry viridis lookup table.
pub(super) fn viridis_lut() -> Vec<RGBColor> {
    (0..256).map(|i| ViridisRGB::get_color(i as f32 / 255.0)).collect()
}

/// Colour for t ∈ [0, 1] (None → grey).
fn lut_color(lut: &[RGBColor], t: Option<f64>) -> RGBColor {
    match t {
        Some(t) if t.is_finite() => lut[(t.clamp(0.0, 1.0) * 255.0).round() as usize],
        _ => MISSING_GREY,
    }
}

/// The largest finite value of an image, and the floor below which its log
/// scale clips: 10⁻³ of that maximum (10⁻³ when the maximum is not positive).
pub(super) fn max_and_log_floor(values: &[f32]) -> (f64, f64) {
    let max = values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f32::NEG_INFINITY, f32::max) as f64;
    (max, if max > 0.0 { 1e-3 * max } else { 1e-3 })
}

/// Draws a row-major side×side image of normalised values `t` (None: grey)
/// through `lut` into the square with upper left corner (x0, y0) and edge
/// `size` px; horizontal runs of equal colour become one rectangle (keeps
/// the SVG small).
pub(super) fn draw_heat<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    lut: &[RGBColor],
    (x0, y0): (i32, i32),
    size: i32,
    side: usize,
    t: &[Option<f64>],
) -> Result<()> {
    let colors: Vec<RGBColor> = t.iter().map(|&t| lut_color(lut, t)).collect();
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
                area.draw(&Rectangle::new([(xa, ya), (xb, yb)], c.filled())).pe()?;
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
pub(super) fn fitting_font<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, text: &str, px: f64, max_w: u32) -> f64 {
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

/// Vertical colour bar, 22 px wide and `h` px high, at the top of the grid's
/// colour bar column, with tick labels at `ticks` (fractions of the scale)
/// and a rotated description on its right.
pub(super) fn draw_colorbar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    lut: &[RGBColor],
    l: &PanelGrid,
    h: i32,
    ticks: &[(f64, String)],
    desc: &str,
) -> Result<()> {
    let (xb, y0) = l.bar_origin();
    let (x0, w) = (xb + 4, 22);
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
