//! Axis ranges and tick labels: linear and logarithmic ranges around the
//! finite data, compact number formatting with Unicode exponents, and the
//! log axis with 1-2-5 key points that the log-scale charts share.

use plotters::coord::combinators::WithKeyPoints;
use plotters::prelude::*;

/// The points whose both coordinates are finite.
pub(super) fn finite_pairs(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect()
}

/// (min, max) of the finite values, or None.
pub(super) fn min_max(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
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
pub(super) fn lin_range(values: impl IntoIterator<Item = f64>, pad: f64) -> (f64, f64) {
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
pub(super) fn log_range(values: impl IntoIterator<Item = f64>, pad: f64) -> (f64, f64) {
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
pub(super) fn fmt_num(v: f64) -> String {
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
pub(super) fn lin_ticks(span: f64) -> impl Fn(&f64) -> String {
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
pub(super) fn log_axis(lo: f64, hi: f64) -> (WithKeyPoints<LogCoord<f64>>, impl Fn(&f64) -> String) {
    let decades = (hi / lo).log10();
    let powers = lo < 0.00999 || hi > 10001.0;
    let (e_lo, e_hi) = ((lo.log10() - 1.0).floor() as i32, (hi.log10() + 1.0).ceil() as i32);
    let inside = |v: f64| v >= lo * (1.0 - 1e-9) && v <= hi * (1.0 + 1e-9);
    let multiples: &[f64] = if decades <= 2.6 { &[1.0, 2.0, 5.0] } else { &[1.0] };
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
    let axis = (lo..hi).log_scale().with_key_points(bold).with_light_points(light);
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
/// Scientific tick labels with a common exponent and just enough decimals to
/// tell ticks `step` apart, e.g. "−1.234e7".
pub(super) fn sci_ticks(lo: f64, hi: f64) -> impl Fn(&f64) -> String {
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
pub(super) fn int_ticks(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-6 {
        format!("{}", v.round() as i64)
    } else {
        String::new()
    }
}
