//! A sweep over two proteins and two sizes is one resumable run per (protein, size): a sweep
//! stopped after some of them continues at the next unfinished one and keeps the finished ones.

use std::path::Path;
use std::process::Command;

use xrai_bench::report::table::read_table;

fn sweep(out: &Path, summary: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xrai-bench"))
        .env("XRAI_OFFLINE", "1")
        .args([
            "sweep",
            "--pdb",
            "2CEX_A,2DHB",
            "--n",
            "64,96",
            "--n-test",
            "16",
            "--methods",
            "emc",
            "--grid",
            "41",
            "--emc-level",
            "2",
            "--emc-bin",
            "8",
            "--emc-iters",
            "2",
            "--phasing-starts",
            "1",
            "--no-plots",
        ])
        .arg("--out")
        .arg(out)
        .arg("--summary-dir")
        .arg(summary)
        .output()
        .unwrap()
}

#[test]
fn a_two_protein_sweep_resumes_at_the_next_unfinished_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    let o = sweep(&out, dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = read_table(&out.join("table.parquet")).unwrap();
    let mut got: Vec<(String, u64)> = rows.iter().map(|r| (r.pdb_id.clone(), r.n_train)).collect();
    got.sort();
    let want: Vec<(String, u64)> = [("2CEX_A", 64), ("2CEX_A", 96), ("2DHB", 64), ("2DHB", 96)]
        .iter()
        .map(|&(p, n)| (p.to_string(), n))
        .collect();
    assert_eq!(got, want);
    // EMC's cost against N, fitted per protein.
    let scaling = std::fs::read_to_string(out.join("scaling.md")).unwrap();
    for p in ["2CEX_A", "2DHB"] {
        assert!(
            scaling.contains(&format!("**emc, {p}** (N = 64, 96): seconds per iteration")),
            "{scaling}"
        );
    }
    // The two proteins are different molecules: their simulated truths differ in size.
    for p in ["2CEX_A", "2DHB"] {
        for n in [64, 96] {
            assert!(
                out.join(p).join(format!("n{n}")).join("table.parquet").exists(),
                "{p} n{n}"
            );
        }
    }

    // Stop the sweep "after three runs": the last one's directory is gone, as if killed before
    // it finished. The rerun redoes only that one.
    let kept = out.join("2CEX_A/n64/table.parquet");
    let before = std::fs::metadata(&kept).unwrap().modified().unwrap();
    std::fs::remove_dir_all(out.join("2DHB/n96")).unwrap();
    let o = sweep(&out, dir.path());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(err.matches("already done").count(), 3, "{err}");
    assert!(err.contains("2DHB, N = 64 already done"), "{err}");
    assert!(out.join("2DHB/n96/table.parquet").exists());
    assert_eq!(std::fs::metadata(&kept).unwrap().modified().unwrap(), before);
    assert_eq!(read_table(&out.join("table.parquet")).unwrap().len(), 4);
    // EMC recorded each iteration's seconds, and the fit compares the same iterations.
    let scaling = std::fs::read_to_string(out.join("scaling.md")).unwrap();
    assert!(
        scaling.contains("(the mean of iterations 1–2, the same in every run)"),
        "{scaling}"
    );

    // A run kept only as its small outputs (a results/example copy: the CSV table, no Parquet,
    // no maps) counts as done, and its row joins the sweep's table.
    let small = out.join("2CEX_A/n96");
    let csv = std::fs::read(small.join("table.csv")).unwrap();
    std::fs::remove_dir_all(&small).unwrap();
    std::fs::create_dir_all(&small).unwrap();
    std::fs::write(small.join("table.csv"), csv).unwrap();
    let o = sweep(&out, dir.path());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(err.matches("already done").count(), 4, "{err}");
    assert!(!small.join("table.parquet").exists(), "the kept run was run again");
    let rows = read_table(&out.join("table.parquet")).unwrap();
    assert_eq!(rows.len(), 4);
    assert!(rows
        .iter()
        .any(|r| r.pdb_id == "2CEX_A" && r.n_train == 96 && r.method == "emc"));
}

#[test]
fn a_protein_list_with_a_repeat_or_a_gap_is_refused_before_any_file() {
    let dir = tempfile::tempdir().unwrap();
    for pdb in ["2CEX_A,2cex_a", "2CEX_A,,2DHB", "2CEX_A,NOPE_NOT_A_FILE.pdb"] {
        let out = dir.path().join("s");
        let o = Command::new(env!("CARGO_BIN_EXE_xrai-bench"))
            .env("XRAI_OFFLINE", "1")
            .args(["sweep", "--pdb", pdb, "--n", "64", "--methods", "emc"])
            .arg("--out")
            .arg(&out)
            .arg("--summary-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{pdb} accepted");
        assert!(err.contains("--pdb"), "{pdb}: {err}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "{pdb} wrote something"
        );
    }
}

/// A sweep over photon levels: one run per level and a noise-free reference, rows that carry
/// the level and the realism settings, the photon counts the methods were given, and the
/// figures against photons per pattern.
#[test]
fn a_photon_sweep_runs_each_level_and_a_noise_free_reference() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("photons");
    let o = Command::new(env!("CARGO_BIN_EXE_xrai-bench"))
        .env("XRAI_OFFLINE", "1")
        .args([
            "sweep",
            "--mean-photons",
            "2000,300",
            "--n",
            "64",
            "--n-test",
            "16",
            "--methods",
            "emc",
            "--grid",
            "41",
            "--emc-level",
            "2",
            "--emc-bin",
            "8",
            "--emc-iters",
            "2",
            "--phasing-starts",
            "1",
            "--beamstop-radius",
            "4",
            "--gap",
            "2",
            "--fluence-jitter",
            "0.2",
        ])
        .arg("--out")
        .arg(&out)
        .arg("--summary-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = read_table(&out.join("table.parquet")).unwrap();
    let mut levels: Vec<String> = rows.iter().map(|r| format!("{}", r.mean_photons)).collect();
    levels.sort();
    assert_eq!(levels, ["2000", "300", "NaN"]);
    for r in &rows {
        assert_eq!(r.realism, "beamstop 4 px, gaps 2 px, fluence jitter 0.2");
        assert_eq!(r.noise, if r.mean_photons.is_finite() { "poisson" } else { "none" });
    }
    for d in ["p2000/n64", "p300/n64", "noise-free/n64"] {
        assert!(out.join(d).join("table.parquet").exists(), "{d}");
    }
    // the method was given the photon level, the jitter and the mask
    let log = std::fs::read_to_string(out.join("p300/n64/emc.log")).unwrap();
    for flag in [
        "--mean-photons 300",
        "--fluence-jitter 0.2",
        "--beamstop-radius 4",
        "--gap 2",
    ] {
        assert!(log.contains(flag), "{flag} missing from {log}");
    }
    for f in ["test_error_vs_photons.png", "resolution_vs_photons.svg"] {
        assert!(out.join("plots").join(f).exists(), "{f}");
    }
    let md = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(md.contains("300 photons; beamstop 4 px"), "{md}");
}
