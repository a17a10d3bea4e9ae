//! A run the budget stopped carries its projected full-run time: a `projected_time_s` column
//! in the table (CSV and Parquet; NaN when not projected, and for tables written before the
//! column existed), labelled as projected in the Markdown, and hollow markers in the
//! runtime-against-N figure.

use xrai_bench::report::plots::scaling_projected;
use xrai_bench::report::table::{hours_minutes, markdown, read_table, time_cell, write_table, ResultRow};

fn row(n: u64, method: &str, status: &str, wall: f64, projected: f64) -> ResultRow {
    ResultRow {
        pdb_id: "2CEX_A".into(),
        chain: "A".into(),
        n_train: n,
        n_test: 1000,
        method: method.into(),
        status: status.into(),
        wall_time_s: wall,
        wall_time_hm: hours_minutes(wall),
        projected_time_s: projected,
        resolution_px: if status == "ok" { 3.0 } else { f64::NAN },
        train_median_deg: if status == "ok" { 2.0 } else { f64::NAN },
        ..Default::default()
    }
}

#[test]
fn markdown_labels_the_projection() {
    let rows = vec![
        row(5_000_000, "xrai", "ok", 3000.0, f64::NAN),
        row(5_000_000, "emc", "> budget", 3600.0, 11_520.0),
        row(50_000, "emc", "> budget", 3600.0, f64::NAN),
    ];
    assert_eq!(time_cell(&rows[1]), "> 1:00h (proj. 3:12h)");
    assert_eq!(time_cell(&rows[2]), "> budget");
    let md = markdown(&rows);
    assert!(md.contains("| EMC | > 1:00h (proj. 3:12h) | | | |"), "{md}");
    assert!(md.contains("| EMC | > budget | | | |"), "{md}");
    assert!(md.contains("| X-RAI | 0:50h |"), "{md}");
}

#[test]
fn projected_time_round_trips_and_old_tables_read_as_unprojected() {
    let rows = vec![
        row(5_000_000, "emc", "> budget", 3600.0, 11_520.5),
        row(50_000, "xrai", "ok", 3000.0, f64::NAN),
    ];
    let dir = tempfile::tempdir().unwrap();
    let (csv, parquet) = write_table(dir.path(), &rows).unwrap();
    let header = std::fs::read_to_string(&csv)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert!(header.contains(",wall_time_hm,projected_time_s,"), "{header}");
    for path in [&csv, &parquet] {
        let back = read_table(path).unwrap();
        assert_eq!(back[0].projected_time_s, 11_520.5, "{}", path.display());
        assert!(back[1].projected_time_s.is_nan(), "{}", path.display());
    }
    // a table from before the column: every row unprojected
    let text = std::fs::read_to_string(&csv).unwrap();
    let old: String = text
        .lines()
        .map(|l| {
            let mut cells: Vec<&str> = l.split(',').collect();
            cells.remove(8);
            cells.join(",") + "\n"
        })
        .collect();
    let old_csv = dir.path().join("old.csv");
    std::fs::write(&old_csv, old).unwrap();
    let back = read_table(&old_csv).unwrap();
    assert_eq!(back.len(), 2);
    assert!(back.iter().all(|r| r.projected_time_s.is_nan()));
    assert_eq!(back[0].wall_time_s, 3600.0);
}

#[test]
fn runtime_figure_draws_projections() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("runtime_vs_n");
    let series = vec![
        ("X-RAI".to_string(), vec![(5e4, 3000.0), (5e5, 3010.0), (5e6, 3020.0)]),
        ("EMC".to_string(), vec![(5e4, 900.0), (5e6, f64::INFINITY)]),
    ];
    let projected = vec![vec![], vec![(5e5, 9000.0)]];
    let paths = scaling_projected(
        &stem,
        "Wall-clock time against dataset size",
        "wall-clock time (s)",
        &series,
        &projected,
        Some(3600.0),
    )
    .unwrap();
    assert!(
        paths
            .iter()
            .all(|p| p.exists() && std::fs::metadata(p).unwrap().len() > 1000),
        "{paths:?}"
    );
    let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();
    assert!(
        svg.contains("projected (hollow)"),
        "the legend does not label the projection"
    );
    let too_many = vec![vec![], vec![], vec![(5e5, 1.0)]];
    let e = scaling_projected(&stem, "t", "y", &series, &too_many, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("projected"), "{e}");
}
