//! The method contract and the budget, through the benchmark: a method output missing a field
//! is an error that names it (never a NaN in Table 1), and a budget means the same for every
//! method — counted from the method's process start, stopping it within 10 s, and equal to the
//! table's time.

use std::path::Path;
use std::process::Command;

use xrai_bench::method::output::{
    BudgetRecord, MethodOutput, Objective, PoseCounts, PoseErrors, ProgressPoint, Software, Timings, VolumeGrid,
};
use xrai_bench::report::table::read_table;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xrai-bench"));
    c.env("XRAI_OFFLINE", "1")
        .env("CANDLE_NUM_THREADS", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn sample_output() -> MethodOutput {
    MethodOutput {
        method: "xrai".into(),
        software: Software::this(),
        amplitude: VolumeGrid {
            m: 41,
            spacing_per_angstrom: 0.01,
        },
        poses: PoseCounts { train: 10, test: 5 },
        pose_error: PoseErrors {
            train: None,
            test: None,
        },
        timings: Timings {
            wall_s: 10.0,
            preparation_s: 1.0,
            reconstruction_s: 8.0,
            test_s: 0.5,
        },
        budget: BudgetRecord {
            budget_s: Some(60.0),
            out_of_budget: false,
        },
        peak_memory_mib: 300.0,
        images_per_s: 1000.0,
        objective: Objective::Loss,
        progress: vec![ProgressPoint {
            step: 1,
            elapsed_s: 2.0,
            objective: 0.5,
            test_median_deg: Some(40.0),
            beta: None,
        }],
        params: serde_json::json!({"steps": 1}),
        projected_wall_s: None,
        world: Default::default(),
    }
}

/// Writes `out` with one top-level key removed.
fn write_without(dir: &Path, out: &MethodOutput, key: &str) {
    let mut v = serde_json::to_value(out).unwrap();
    v.as_object_mut().unwrap().remove(key).expect("the key exists");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("output.json"), serde_json::to_string(&v).unwrap()).unwrap();
}

#[test]
fn output_record_round_trips_and_a_missing_field_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = sample_output();
    out.write(dir.path()).unwrap();
    assert_eq!(MethodOutput::read(dir.path()).unwrap(), out);
    for key in ["peak_memory_mib", "pose_error", "timings", "amplitude", "progress"] {
        write_without(dir.path(), &out, key);
        let e = format!("{:#}", MethodOutput::read(dir.path()).unwrap_err());
        assert!(e.contains(key) && e.contains("output.json"), "{key}: {e}");
    }
    // a nested field too, and a renamed one (unknown fields are refused, not ignored)
    let mut v = serde_json::to_value(&out).unwrap();
    v["timings"].as_object_mut().unwrap().remove("wall_s");
    std::fs::write(dir.path().join("output.json"), v.to_string()).unwrap();
    let e = format!("{:#}", MethodOutput::read(dir.path()).unwrap_err());
    assert!(e.contains("wall_s"), "{e}");
    let mut v = serde_json::to_value(&out).unwrap();
    let x = v.as_object_mut().unwrap().remove("images_per_s").unwrap();
    v["images_per_second"] = x;
    std::fs::write(dir.path().join("output.json"), v.to_string()).unwrap();
    let e = format!("{:#}", MethodOutput::read(dir.path()).unwrap_err());
    assert!(e.contains("images_per_s"), "{e}");
}

#[test]
fn the_benchmark_refuses_a_method_output_with_a_missing_field() {
    // An interrupted run whose X-RAI stage "finished" with an incomplete record: resuming it
    // reads the record (the stage is not rerun) and must fail naming the field and the file.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let staging = dir.path().join(".run.partial");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(
        staging.join("run.toml"),
        "pdb = \"2CEX_A\"\nn = [256]\nn_test = 64\nmethods = [\"xrai\"]\ngrid = 41\nphasing_starts = 1\n",
    )
    .unwrap();
    write_without(&staging.join("xrai"), &sample_output(), "peak_memory_mib");
    let o = bin()
        .args(["run", "--no-plots", "--resume"])
        .arg(&out)
        .arg("--summary-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("peak_memory_mib") && err.contains("xrai/output.json"),
        "{err}"
    );
    assert!(
        !out.exists() && !dir.path().join("summary.parquet").exists(),
        "a table was written"
    );
}

/// Every method, budget-bound (more steps and iterations than fit), stops within 10 s of its
/// 2-minute budget counted from its process start, and the table's time is that process's
/// wall time, within 1 s of the method's own clock.
#[test]
fn a_budget_means_the_same_for_every_method() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = bin()
        .args([
            "run",
            "--n",
            "20000",
            "--n-test",
            "2000",
            "--grid",
            "41",
            "--budget",
            "2m",
            "--xrai-steps",
            "1000000",
            "--emc-level",
            "4",
            "--emc-bin",
            "4",
            "--emc-iters",
            "1000",
            "--phasing-starts",
            "1",
            "--no-plots",
            "--xrai-args",
            "--eval-every 500 --eval-images 200",
        ])
        .arg("--out")
        .arg(&out)
        .arg("--summary-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = read_table(&out.join("table.parquet")).unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        let own = MethodOutput::read(&out.join(&r.method)).unwrap();
        assert!(
            (r.wall_time_s - 120.0).abs() <= 10.0,
            "{}: {:.1} s for a 2-minute budget",
            r.method,
            r.wall_time_s
        );
        assert!(
            (r.wall_time_s - own.timings.wall_s).abs() <= 1.0,
            "{}: table {:.2} s, process clock {:.2} s",
            r.method,
            r.wall_time_s,
            own.timings.wall_s
        );
        assert_eq!(r.status, "> budget", "{}: a budget-bound run must say so", r.method);
        assert!(own.budget.out_of_budget);
        assert!(
            r.test_median_deg.is_finite() && r.train_median_deg.is_finite(),
            "{}: no pose errors",
            r.method
        );
        // EMC projects the full run's time from its measured cost; X-RAI projects nothing.
        if r.method == "emc" {
            assert!(
                r.projected_time_s > r.wall_time_s,
                "emc: projected {} s",
                r.projected_time_s
            );
        } else {
            assert!(
                r.projected_time_s.is_nan(),
                "{}: projected {} s",
                r.method,
                r.projected_time_s
            );
        }
    }
}

/// Settings that cannot work fail before anything is written (no staging directory to trip
/// over on the rerun), and a resume given settings other than its run's refuses, naming them.
#[test]
fn bad_settings_fail_before_any_file_and_resume_refuses_other_settings() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    for (args, named) in [
        (vec!["--grid", "4"], "grid"),
        (vec!["--rescale-total", "inf"], "--rescale-total"),
        (vec!["--rescale-total=-3"], "--rescale-total"),
        (vec!["--budget", "1e30"], "--budget"),
        (vec!["--methods", "mtip"], "mtip"),
        (vec!["--args", "nope=--x 1"], "nope"),
    ] {
        let o = bin()
            .args(["run", "--n", "16", "--summary-dir"])
            .arg(dir.path())
            .args(&args)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} was accepted");
        assert!(err.contains(named), "{args:?}: {err}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "{args:?} wrote something"
        );
    }
    // an interrupted run of grid 41 continues only with grid 41
    let staging = dir.path().join(".r.partial");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("run.toml"), "pdb = \"2CEX_A\"\nn = [256]\ngrid = 41\n").unwrap();
    let o = bin()
        .args(["run", "--resume"])
        .arg(&out)
        .args(["--grid", "31", "--seed", "4"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("--grid 31") && err.contains("grid = 41") && err.contains("--seed 4"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&staging).unwrap().count(),
        1,
        "the staging directory was changed"
    );
}

/// Patterns whose scale varies give EMC its per-frame scale (once, also when asked for), and
/// patterns of one scale do not.
#[test]
fn emc_fits_the_scale_when_patterns_vary() {
    use xrai_bench::pipeline::settings::{method_settings, RunArgs};
    let count = |args: &RunArgs| {
        let (_, extra) = method_settings(args, "emc");
        extra.iter().filter(|w| *w == "--scale").count()
    };
    let plain = RunArgs::default();
    assert_eq!(count(&plain), 0);
    let jitter = RunArgs {
        fluence_jitter: 0.2,
        ..RunArgs::default()
    };
    assert_eq!(count(&jitter), 1);
    let asked = RunArgs {
        emc_args: Some("--scale --beta 0.01".into()),
        ..jitter.clone()
    };
    assert_eq!(count(&asked), 1);
    let (_, xrai) = method_settings(&jitter, "xrai");
    assert!(!xrai.iter().any(|w| w == "--scale"));
}
