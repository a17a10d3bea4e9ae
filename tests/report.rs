//! The report: Table 1 schema (CSV + Parquet round trip), the Markdown layout, the cumulative
//! summary, and the `run` command's atomic directories, refusal to overwrite, resume, and the
//! fast 1O9K error.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use xrai_bench::report::table::{
    append_summary, hours_minutes, markdown, read_table, to_dataframe, write_table, ResultRow,
};

fn row(pdb: &str, n: u64, method: &str, res: f64, med: f64, status: &str) -> ResultRow {
    ResultRow {
        pdb_id: pdb.into(),
        chain: "A".into(),
        n_train: n,
        n_test: 10_000,
        method: method.into(),
        status: status.into(),
        wall_time_s: 3600.0 + n as f64 / 1000.0,
        wall_time_hm: hours_minutes(3600.0),
        projected_time_s: f64::NAN,
        resolution_px: res,
        resolution_angstrom: res * 3.6,
        resolution_limit_px: 2.05,
        resolution_limit_angstrom: 7.36,
        resolution_at_limit: false,
        time_to_3deg_s: 1200.0,
        time_to_2deg_s: f64::NAN,
        train_median_deg: med,
        train_rms_deg: med * 1.5,
        test_median_deg: med + 0.1,
        test_rms_deg: med * 1.6,
        images_per_s: 700.0,
        peak_memory_mib: 300.0,
        ranks: 1,
        threads_per_rank: 2,
        seed: 0,
        noise: "none".into(),
        mean_photons: f64::NAN,
        realism: "none".into(),
        crate_version: "0.1.0".into(),
        git_commit: "abc".into(),
        params: r#"{"budget":"60m"}"#.into(),
        run_dir: "results/x".into(),
        timestamp: "2026-01-01T00:00:00Z".into(),
    }
}

const COLUMNS: [&str; 33] = [
    "pdb_id",
    "chain",
    "n_train",
    "n_test",
    "method",
    "status",
    "wall_time_s",
    "wall_time_hm",
    "projected_time_s",
    "resolution_px",
    "resolution_angstrom",
    "resolution_limit_px",
    "resolution_limit_angstrom",
    "resolution_at_limit",
    "time_to_3deg_s",
    "time_to_2deg_s",
    "train_median_deg",
    "train_rms_deg",
    "test_median_deg",
    "test_rms_deg",
    "images_per_s",
    "peak_memory_mib",
    "ranks",
    "threads_per_rank",
    "seed",
    "noise",
    "mean_photons",
    "realism",
    "crate_version",
    "git_commit",
    "params",
    "run_dir",
    "timestamp",
];

#[test]
fn table_schema_round_trips_through_csv_and_parquet() {
    let rows = vec![
        row("2CEX_A", 50_000, "xrai", 4.8, 2.1, "ok"),
        row("2CEX_A", 50_000, "emc", f64::NAN, f64::NAN, "> budget"),
    ];
    let df = to_dataframe(&rows).unwrap();
    let names: Vec<String> = df.get_column_names().iter().map(|s| s.to_string()).collect();
    assert_eq!(
        names,
        COLUMNS.to_vec(),
        "column names and order are the published schema"
    );
    let dir = tempfile::tempdir().unwrap();
    let (csv, parquet) = write_table(dir.path(), &rows).unwrap();
    for path in [&parquet, &csv] {
        let back = read_table(path).unwrap();
        assert_eq!(back.len(), 2, "{}", path.display());
        // (Debug text: NaN fields, e.g. an unprojected time, compare equal there)
        assert_eq!(format!("{:?}", back[0]), format!("{:?}", rows[0]), "{}", path.display());
        assert_eq!(back[1].status, "> budget");
        assert!(back[1].resolution_px.is_nan());
    }
    let header = std::fs::read_to_string(&csv)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(header, COLUMNS.join(","));
}

#[test]
fn summary_appends_without_losing_rows() {
    let dir = tempfile::tempdir().unwrap();
    append_summary(dir.path(), &[row("2CEX_A", 5000, "xrai", 5.0, 2.0, "ok")]).unwrap();
    append_summary(
        dir.path(),
        &[
            row("2CEX_A", 50_000, "xrai", 4.0, 1.5, "ok"),
            row("2CEX_A", 50_000, "emc", 7.0, 9.0, "ok"),
        ],
    )
    .unwrap();
    let all = read_table(&dir.path().join("summary.parquet")).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].n_train, 5000);
    assert_eq!(read_table(&dir.path().join("summary.csv")).unwrap().len(), 3);
}

#[test]
fn markdown_has_the_paper_layout() {
    let rows = vec![
        row("2CEX_A", 50_000, "emc", 11.52, 53.4, "ok"),
        row("2CEX_A", 50_000, "xrai", 5.15, 2.0, "ok"),
        row("2CEX_A", 5_000_000, "emc", f64::NAN, f64::NAN, "> budget"),
        row("2CEX_A", 5_000_000, "xrai", 4.87, 1.4, "ok"),
    ];
    let md = markdown(&rows);
    let lines: Vec<&str> = md.lines().collect();
    assert_eq!(
        lines[0],
        "| Dataset | Method | Time | Time to 3° / 2° | Resolution (px) ↓ | Train error (med / RMS, °) ↓ | Test error (med / RMS, °) ↓ |"
    );
    assert_eq!(lines.len(), 6, "{md}");
    // grouped by dataset size, X-RAI first, the label only on a group's first row
    assert!(
        lines[2].starts_with("| 2CEX_A (Train: 50K) | X-RAI | 1:00h | 0:20h / not reached | 5.15 |"),
        "{}",
        lines[2]
    );
    assert!(lines[3].starts_with("|  | EMC |"), "{}", lines[3]);
    assert!(lines[4].starts_with("| 2CEX_A (Train: 5M) | X-RAI |"), "{}", lines[4]);
    // the best resolution and pose errors of the protein in bold, the rest plain
    assert!(
        lines[4].contains("**4.87**") && lines[4].contains("**1.4 / 2.1**"),
        "{}",
        lines[4]
    );
    assert!(!lines[2].contains("**5.15**") && lines[3].contains("| 11.52 |"), "{md}");
    // out of budget: the paper's "> 24h" form
    assert_eq!(lines[5], "|  | EMC | > budget | | | | |");
}

#[test]
fn markdown_marks_a_map_at_the_grid_limit() {
    let mut at_limit = row("2CEX_A", 50_000, "xrai", 2.02, 0.3, "ok");
    at_limit.resolution_at_limit = true;
    let crossed = row("2CEX_A", 50_000, "emc", 2.81, 5.6, "ok");
    let md = markdown(&[at_limit.clone(), crossed]);
    // the detector's limit (2.05 px) when the grid's last shell (2.02 px) lies beyond it
    assert!(md.contains("≥ limit (2.05)"), "{md}");
    assert!(md.contains("| 2.81 |"), "{md}");
    // the flag and the detector limit survive the table files
    let dir = tempfile::tempdir().unwrap();
    let (csv, parquet) = write_table(dir.path(), &[at_limit]).unwrap();
    for path in [csv, parquet] {
        let back = &read_table(&path).unwrap()[0];
        assert!(back.resolution_at_limit, "{}", path.display());
        assert_eq!(back.resolution_limit_px, 2.05);
        assert_eq!(back.time_to_3deg_s, 1200.0);
        assert!(back.time_to_2deg_s.is_nan());
    }
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xrai-bench"));
    c.env("XRAI_OFFLINE", "1")
        .env("CANDLE_NUM_THREADS", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// Settings of a run small enough for a test: 41³ grid, a few hundred images, short budgets.
fn tiny(out: &Path, summary: &Path) -> Vec<String> {
    [
        "run",
        "--n",
        "256",
        "--n-test",
        "64",
        "--grid",
        "41",
        "--xrai-steps",
        "30",
        "--budget",
        "5m",
        "--emc-level",
        "1",
        "--emc-bin",
        "4",
        "--emc-iters",
        "2",
        "--phasing-starts",
        "1",
        "--xrai-args",
        "--eval-every 0 --checkpoint-every 10",
        "--no-plots",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "--out".into(),
        out.display().to_string(),
        "--summary-dir".into(),
        summary.display().to_string(),
    ])
    .collect()
}

#[test]
fn missing_pdb_fails_fast_before_any_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let t = Instant::now();
    let o = bin()
        .args(["--pdb", "1O9K", "--n", "1000", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("1O9K") && err.contains("XRAI_PDB_DIR"), "{err}");
    assert!(secs < 1.0, "took {secs:.2} s");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "something was written"
    );
}

#[test]
fn run_is_atomic_refuses_to_overwrite_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let summary = dir.path().join("summary");
    let staging = dir.path().join(".run.partial");
    // start, and kill the run once X-RAI has finished but before the run completes
    let mut child = bin()
        .args(tiny(&out, &summary))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !staging.join("xrai/summary.json").exists() {
        assert!(t.elapsed() < Duration::from_secs(300), "X-RAI stage never finished");
        assert!(child.try_wait().unwrap().is_none(), "run exited early");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.exists(), "a killed run must not appear under its final name");
    assert!(staging.join("run.toml").exists());
    // as if X-RAI had run under an earlier build: its row must name that build, not this one
    let output = staging.join("xrai/output.json");
    let mut record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    let this_build = record["software"]["git_commit"].as_str().unwrap().to_string();
    record["software"]["git_commit"] = "0123456789ab".into();
    std::fs::write(&output, serde_json::to_string(&record).unwrap()).unwrap();
    let xrai_written = std::fs::metadata(staging.join("xrai/summary.json"))
        .unwrap()
        .modified()
        .unwrap();
    // a new run with the same --out refuses while the interrupted one is there
    let o = bin().args(tiny(&out, &summary)).output().unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--resume"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // resume: the finished X-RAI stage is kept, EMC and the evaluation run, the directory appears
    let o = bin()
        .args(["run", "--resume"])
        .arg(&out)
        .args(["--summary-dir"])
        .arg(&summary)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!staging.exists());
    assert_eq!(
        std::fs::metadata(out.join("xrai/summary.json"))
            .unwrap()
            .modified()
            .unwrap(),
        xrai_written,
        "X-RAI was rerun"
    );
    for f in [
        "run.json",
        "run.toml",
        "table.csv",
        "table.parquet",
        "table.md",
        "emc/meta.json",
        "eval/xrai/fsc.csv",
        "eval/emc/density.mrc",
    ] {
        assert!(out.join(f).exists(), "missing {f}");
    }
    let rows = read_table(&out.join("table.parquet")).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows
        .iter()
        .all(|r| r.n_train == 256 && r.resolution_px.is_finite() && r.test_median_deg.is_finite()));
    for r in &rows {
        let expected = if r.method == "xrai" {
            "0123456789ab"
        } else {
            this_build.as_str()
        };
        assert_eq!(
            r.git_commit, expected,
            "{}: the build that produced its output",
            r.method
        );
    }
    assert_eq!(read_table(&summary.join("summary.parquet")).unwrap().len(), 2);
    // and a finished run is never overwritten
    let before = std::fs::read(out.join("table.csv")).unwrap();
    let o = bin().args(tiny(&out, &summary)).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    assert_eq!(std::fs::read(out.join("table.csv")).unwrap(), before);
    // the saved settings reproduce the run: --config run.toml parses back to the same settings
    let toml_text = std::fs::read_to_string(out.join("run.toml")).unwrap();
    assert!(
        toml_text.contains("grid = 41") && toml_text.contains("n = [256]"),
        "{toml_text}"
    );
}

/// `--config run.toml` reproduces a run's settings; options given on the command line as well
/// override the file's, and a misspelt key is refused.
#[test]
fn config_file_sets_and_command_line_overrides() {
    use clap::{CommandFactory, FromArgMatches};
    use xrai_bench::pipeline::settings::{merge_config, RunArgs};
    #[derive(clap::Parser)]
    struct W {
        #[command(flatten)]
        run: RunArgs,
    }
    let dir = tempfile::tempdir().unwrap();
    let saved = RunArgs {
        n: vec![5000],
        seed: 7,
        budget: "10m".into(),
        repeats: 3,
        ..RunArgs::default()
    };
    let path = dir.path().join("run.toml");
    std::fs::write(&path, toml::to_string_pretty(&saved).unwrap()).unwrap();
    let parse = |argv: &[&str]| {
        let m = W::command().get_matches_from(argv);
        let args = W::from_arg_matches(&m).unwrap().run;
        merge_config(args, Some(&m), Some(&path)).unwrap()
    };
    let same = parse(&["x"]);
    assert_eq!(
        (same.n.clone(), same.seed, same.budget.clone(), same.repeats),
        (vec![5000], 7, "10m".to_string(), 3)
    );
    let over = parse(&["x", "--seed", "9", "--n", "100,200"]);
    assert_eq!(
        (over.n.clone(), over.seed, over.budget.clone(), over.repeats),
        (vec![100, 200], 9, "10m".to_string(), 3)
    );
    std::fs::write(&path, "n = [5000]\nbudgte = \"10m\"\n").unwrap();
    let m = W::command().get_matches_from(["x"]);
    let err = merge_config(W::from_arg_matches(&m).unwrap().run, Some(&m), Some(&path)).unwrap_err();
    assert!(format!("{err:#}").contains("budgte"), "{err:#}");
}

#[test]
fn time_to_an_error_is_the_first_evaluation_at_or_below_it() {
    use xrai_bench::report::table::time_to;
    // an encoder curve, then refinement's step down
    let curve = [(300.0, 40.0), (600.0, 3.5), (900.0, 2.9), (1400.0, 0.4)];
    assert_eq!(time_to(&curve, 0.4, 1500.0, 3.0), 900.0);
    assert_eq!(time_to(&curve, 0.4, 1500.0, 2.0), 1400.0);
    // no curve (EMC): the final score, at the wall time, or never
    assert_eq!(time_to(&[], 1.9, 1000.0, 2.0), 1000.0);
    assert!(time_to(&[], 5.6, 1000.0, 3.0).is_nan());
    assert!(time_to(&curve[..2], 3.5, 700.0, 3.0).is_nan());
}
