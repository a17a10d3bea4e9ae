//! How cost grows with the dataset size, from a sweep's rows: EMC's seconds per iteration
//! against N with a least-squares line (the paper's "search cost grows linearly in N"), and
//! X-RAI's spread in wall time and test pose error across N at a fixed step count (its flat
//! curve), with its steps and images per second at each N. Written beside the sweep's table
//! as `scaling.md`.

use std::fmt::Write;

use super::table::ResultRow;
use crate::stats::linear_fit;

/// What a row's params record of its cost per pass over all N frames.
struct IterationCost {
    /// Each completed iteration's seconds, where the run recorded them (`iteration_seconds`).
    each: Option<Vec<f64>>,
    /// Iterations completed.
    completed: usize,
    /// The mean over all completed iterations (`seconds_per_iteration`).
    mean: Option<f64>,
    /// The stopped pass's seconds per frame and iteration × N, where it measured one.
    stopped_pass: Option<f64>,
}

fn iteration_cost(row: &ResultRow) -> Option<IterationCost> {
    let p: serde_json::Value = serde_json::from_str(&row.params).ok()?;
    let positive = |v: &serde_json::Value| v.as_f64().filter(|x| x.is_finite() && *x > 0.0);
    let each: Option<Vec<f64>> = p
        .get("iteration_seconds")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(positive).collect());
    let completed = match &each {
        Some(e) => e.len(),
        None => p.get("iterations").and_then(|v| v.as_u64()).unwrap_or(0) as usize,
    };
    Some(IterationCost {
        each,
        completed,
        mean: p.get("seconds_per_iteration").and_then(positive),
        stopped_pass: p
            .get("seconds_per_frame_iteration")
            .and_then(positive)
            .map(|s| s * row.n_train as f64),
    })
}

/// Seconds per pass over all N frames for each row of one method's series, measured over the
/// same iterations in every row, and how many that is: EMC's iterations differ in cost (at
/// 50K, iterations 2–4 took 3× as long as iterations 6–16 once β had grown), so a mean over
/// all of a run's iterations is not comparable with one over another run's first three. `k`
/// is the fewest iterations any row completed (at least 1): each row gives the mean of its
/// first `k`; a row stopped in its first pass gives that pass's seconds per frame × N (it is
/// part of iteration 1). None when a row recorded neither (not an iterative method) or only
/// a mean over more than `k` iterations.
pub fn seconds_per_iteration(rows: &[&ResultRow]) -> Option<(usize, Vec<f64>)> {
    let costs: Vec<IterationCost> = rows.iter().map(|r| iteration_cost(r)).collect::<Option<_>>()?;
    let k = costs.iter().map(|c| c.completed).min()?.max(1);
    let values = costs
        .iter()
        .map(|c| {
            if c.completed == 0 {
                c.stopped_pass
            } else {
                match &c.each {
                    Some(e) => Some(e[..k].iter().sum::<f64>() / k as f64),
                    None if c.completed == k => c.mean,
                    None => None,
                }
            }
        })
        .collect::<Option<Vec<f64>>>()?;
    Some((k, values))
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
        let per_iter = seconds_per_iteration(&group);
        if let Some((k, seconds)) = per_iter.filter(|_| group.len() >= 2) {
            let points: Vec<(f64, f64)> = group.iter().map(|r| r.n_train as f64).zip(seconds).collect();
            let (slope, intercept, r2) = linear_fit(&points);
            let each: Vec<String> = points.iter().map(|(n, s)| format!("{s:.0} s at {n}")).collect();
            let which = if k == 1 {
                "iteration 1".to_string()
            } else {
                format!("the mean of iterations 1–{k}")
            };
            let stopped = if group
                .iter()
                .any(|r| iteration_cost(r).is_some_and(|c| c.completed == 0))
            {
                "; a run stopped in its first pass: that pass's seconds per frame × N"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "seconds per iteration ({which}, the same in every run{stopped}) {}; least-squares line {:.3} ms per frame {} {:.0} s, R² = {r2:.4}",
                each.join(", "),
                slope * 1e3,
                if intercept < 0.0 { "−" } else { "+" },
                intercept.abs()
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
                r#"{"iterations":16,"seconds_per_iteration":60.0,"iteration_seconds":[100.0,130.0,40.0]}"#,
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
        // iteration 1 in every run: 100 s at 50K (not its 60 s mean over all iterations)
        assert!(
            s.contains("(iteration 1, the same in every run; a run stopped in its first pass"),
            "{s}"
        );
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

    #[test]
    fn the_same_iterations_are_compared() {
        // 50K: costly early iterations then cheap ones; 500K stopped after 3. The means of all
        // completed iterations (75 s, 1,000 s) would read 13×; iterations 1–3 read 10×.
        let rows = vec![
            row(
                "emc",
                50_000,
                r#"{"iterations":6,"seconds_per_iteration":75.0,"iteration_seconds":[90,110,100,50,50,50]}"#,
                450.0,
                6.0,
            ),
            row(
                "emc",
                500_000,
                r#"{"iterations":3,"seconds_per_iteration":1000.0,"iteration_seconds":[1100,1000,900]}"#,
                3600.0,
                90.0,
            ),
        ];
        let refs: Vec<&ResultRow> = rows.iter().collect();
        let (k, s) = seconds_per_iteration(&refs).unwrap();
        assert_eq!(k, 3);
        assert!((s[0] - 100.0).abs() < 1e-9 && (s[1] - 1000.0).abs() < 1e-9, "{s:?}");
        assert!(scaling_summary(&rows).contains("(the mean of iterations 1–3, the same in every run)"));
        // a row with only a mean over more iterations than the others completed: no fit
        let old = row(
            "emc",
            50_000,
            r#"{"iterations":6,"seconds_per_iteration":75.0}"#,
            450.0,
            6.0,
        );
        assert!(seconds_per_iteration(&[&old, &rows[1]]).is_none());
        // … but a mean over exactly the compared iterations is used
        let same = row(
            "emc",
            50_000,
            r#"{"iterations":3,"seconds_per_iteration":100.0}"#,
            300.0,
            6.0,
        );
        assert_eq!(
            seconds_per_iteration(&[&same, &rows[1]]).unwrap().1,
            vec![100.0, 1000.0]
        );
    }
}
