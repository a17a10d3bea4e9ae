//! How cost grows with the dataset size, from a sweep's rows: EMC's seconds per iteration
//! against N with a least-squares line (the paper's "search cost grows linearly in N"), and
//! X-RAI's spread in wall time and test pose error across N at a fixed step count (its flat
//! curve), with its steps and images per second at each N. Written beside the sweep's table
//! as `scaling.md`.

use std::fmt::Write;

use super::table::ResultRow;
use crate::stats::linear_fit;

/// Measured seconds per pass over all N frames of a row, where its params record them: the
/// mean of completed iterations, else the stopped pass's cost scaled to N (seconds per frame
/// and iteration × N).
pub fn seconds_per_iteration(row: &ResultRow) -> Option<f64> {
    let p: serde_json::Value = serde_json::from_str(&row.params).ok()?;
    let full = p
        .get("seconds_per_iteration")
        .and_then(|v| v.as_f64())
        .filter(|v| v.is_finite() && *v > 0.0);
    let iterations = p.get("iterations").and_then(|v| v.as_u64()).unwrap_or(0);
    if iterations > 0 {
        if let Some(s) = full {
            return Some(s);
        }
    }
    p.get("seconds_per_frame_iteration")
        .and_then(|v| v.as_f64())
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(|s| s * row.n_train as f64)
}

/// The Markdown summary: one line per method and protein.
pub fn scaling_summary(rows: &[ResultRow]) -> String {
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in rows {
        let k = (r.method.clone(), r.pdb_id.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut out = String::from("# Cost against dataset size\n\n");
    for (method, pdb) in keys {
        let mut group: Vec<&ResultRow> = rows.iter().filter(|r| r.method == method && r.pdb_id == pdb).collect();
        group.sort_by_key(|r| r.n_train);
        let ns: Vec<String> = group.iter().map(|r| r.n_train.to_string()).collect();
        let _ = write!(out, "- **{method}, {pdb}** (N = {}): ", ns.join(", "));
        let per_iter: Vec<(f64, f64)> = group
            .iter()
            .filter_map(|r| seconds_per_iteration(r).map(|s| (r.n_train as f64, s)))
            .collect();
        if per_iter.len() == group.len() && per_iter.len() >= 2 {
            let (slope, intercept, r2) = linear_fit(&per_iter);
            let each: Vec<String> = per_iter.iter().map(|(n, s)| format!("{s:.0} s at {n}")).collect();
            let _ = writeln!(
                out,
                "seconds per iteration {}; least-squares line {:.3} ms per frame + {intercept:.0} s, R² = {r2:.4}",
                each.join(", "),
                slope * 1e3
            );
        } else if group.len() >= 2 {
            let spread = |f: fn(&ResultRow) -> f64| {
                let v: Vec<f64> = group.iter().map(|r| f(r)).filter(|x| x.is_finite()).collect();
                let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
                let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                (lo, hi)
            };
            let (tlo, thi) = spread(|r| r.wall_time_s);
            let (elo, ehi) = spread(|r| r.test_median_deg);
            let work: Vec<String> = group
                .iter()
                .map(|r| {
                    let steps = serde_json::from_str::<serde_json::Value>(&r.params)
                        .ok()
                        .and_then(|p| p.get("steps").and_then(|v| v.as_u64()));
                    match steps {
                        Some(k) => format!("{k} steps at {:.0} images/s", r.images_per_s),
                        None => format!("{:.0} images/s", r.images_per_s),
                    }
                })
                .collect();
            let _ = writeln!(
                out,
                "wall time {tlo:.0}–{thi:.0} s ({:.1} % spread), median test pose error {elo:.2}–{ehi:.2}° ({:.2}° spread); {}",
                100.0 * (thi / tlo - 1.0),
                ehi - elo,
                work.join(", ")
            );
        } else {
            let _ = writeln!(out, "one size only");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(method: &str, n: u64, params: &str, wall: f64, err: f64) -> ResultRow {
        ResultRow {
            images_per_s: 64.0 * 20_000.0 / wall,
            pdb_id: "2CEX_A".into(),
            method: method.into(),
            n_train: n,
            params: params.into(),
            wall_time_s: wall,
            test_median_deg: err,
            ..Default::default()
        }
    }

    #[test]
    fn emc_cost_is_fitted_and_xrai_spread_reported() {
        let rows = vec![
            row(
                "emc",
                50_000,
                r#"{"iterations":16,"seconds_per_iteration":100.0}"#,
                1700.0,
                6.0,
            ),
            // stopped in its first pass: 2 ms per frame measured → 1,000 s per iteration
            row(
                "emc",
                500_000,
                r#"{"iterations":0,"seconds_per_iteration":null,"seconds_per_frame_iteration":0.002}"#,
                600.0,
                90.0,
            ),
            row(
                "emc",
                5_000_000,
                r#"{"iterations":0,"seconds_per_frame_iteration":0.002}"#,
                600.0,
                90.0,
            ),
            row("xrai", 50_000, r#"{"steps":20000}"#, 1200.0, 2.5),
            row("xrai", 500_000, r#"{"steps":20000}"#, 1260.0, 2.7),
        ];
        let s = scaling_summary(&rows);
        assert!(
            s.contains("100 s at 50000, 1000 s at 500000, 10000 s at 5000000"),
            "{s}"
        );
        assert!(s.contains("2.000 ms per frame"), "{s}");
        assert!(s.contains("R² = 1.0000"), "{s}");
        assert!(s.contains("wall time 1200–1260 s (5.0 % spread)"), "{s}");
        assert!(s.contains("2.50–2.70° (0.20° spread)"), "{s}");
        assert!(
            s.contains("20000 steps at 1067 images/s, 20000 steps at 1016 images/s"),
            "{s}"
        );
    }
}
