//! Summary statistics of samples, one definition each: the median (the mean of the two middle
//! values for an even count), a nearest-rank percentile, the mean and the root mean square.
//! Used by the pose-error summaries (`eval::pose_error`) and meant for the report's plots.
//! Empty input gives NaN rather than a panic: a summary of no images is "no number".

/// Median of values already sorted ascending; NaN when empty.
pub fn median_sorted(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]),
    }
}

/// Median of `values`, which it sorts in place (IEEE total order, `f64::total_cmp`); NaN when
/// empty.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    median_sorted(values)
}

/// Nearest-rank percentile of values sorted ascending: the ⌈q · n⌉-th smallest for q in
/// (0, 1] (q ≤ 0 gives the smallest); NaN when empty.
pub fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Arithmetic mean; NaN when empty.
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Root mean square, √(Σ x² / n); NaN when empty.
pub fn rms(values: &[f64]) -> f64 {
    (values.iter().map(|x| x * x).sum::<f64>() / values.len() as f64).sqrt()
}

/// Least-squares line y = slope·x + intercept through the points, and its coefficient of
/// determination R² (1 − residual / total sum of squares; NaN for fewer than two distinct x).
pub fn linear_fit(points: &[(f64, f64)]) -> (f64, f64, f64) {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if points.len() < 2 || sxx == 0.0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let total: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    let residual: f64 = points.iter().map(|p| (p.1 - slope * p.0 - intercept).powi(2)).sum();
    let r2 = if total == 0.0 { 1.0 } else { 1.0 - residual / total };
    (slope, intercept, r2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_fit_of_a_line_and_of_noise() {
        let (a, b, r2) = linear_fit(&[(5e4, 105.0), (5e5, 1005.0), (5e6, 10005.0)]);
        assert!((a - 0.002).abs() < 1e-12 && (b - 5.0).abs() < 1e-6 && (r2 - 1.0).abs() < 1e-12);
        // a V shape has no linear trend: slope 0, R² 0
        let (a, _, r2) = linear_fit(&[(-1.0, 1.0), (0.0, 0.0), (1.0, 1.0)]);
        assert!(a.abs() < 1e-12 && r2.abs() < 1e-12);
        assert!(linear_fit(&[(1.0, 2.0)]).0.is_nan());
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median_sorted(&[1.0, 2.0, 10.0, 11.0]), 6.0);
        assert_eq!(median(&mut [7.0]), 7.0);
        assert!(median(&mut []).is_nan());
        assert!(median_sorted(&[]).is_nan());
    }

    #[test]
    fn median_sorts_in_place() {
        let mut v = [5.0, -1.0, 3.0];
        median(&mut v);
        assert_eq!(v, [-1.0, 3.0, 5.0]);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile_sorted(&v, 0.99), 99.0);
        assert_eq!(percentile_sorted(&v, 0.5), 50.0);
        assert_eq!(percentile_sorted(&v, 1.0), 100.0);
        assert_eq!(percentile_sorted(&v, 0.0), 1.0);
        // ⌈0.99 · 10⌉ = 10: the largest of ten
        assert_eq!(percentile_sorted(&v[..10], 0.99), 10.0);
        assert!(percentile_sorted(&[], 0.5).is_nan());
    }

    #[test]
    fn mean_and_rms() {
        assert_eq!(mean(&[1.0, 2.0, 6.0]), 3.0);
        // 3-4-5: √((9 + 16) / 2)
        assert_eq!(rms(&[3.0, -4.0]), 12.5f64.sqrt());
        assert!(mean(&[]).is_nan() && rms(&[]).is_nan());
    }
}
