//! The benchmark on a file's frames (`xrai-bench run --data`): scored against a named structure
//! on each method's own grid, or, without one, by the half-set FSC of two independent halves.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::ok;
use xrai_bench::report::table::read_table;

fn xrai(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xrai-bench"))
        .args(args)
        .arg("--summary-dir")
        .arg(dir)
        .env_remove("XRAI_PDB_DIR")
        .env("XRAI_OFFLINE", "1")
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .unwrap()
}

const EMC: [&str; 10] = [
    "--methods",
    "emc",
    "--emc-level",
    "3",
    "--emc-bin",
    "4",
    "--emc-iters",
    "6",
    "--phasing-starts",
    "1",
];

#[test]
fn a_files_frames_are_scored_against_a_structure_or_by_half_sets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sim = Command::new(env!("CARGO_BIN_EXE_xrai-bench"))
        .args([
            "simulate",
            "--n",
            "1400",
            "--format",
            "emc",
            "--poisson",
            "--rescale-total",
            "20000",
        ])
        .args(["--rescale", "mean", "--seed", "3", "--out"])
        .arg(&data)
        .env("XRAI_OFFLINE", "1")
        .output()
        .unwrap();
    ok(&sim);
    let emc = data.join("photons.emc");
    let emc = emc.to_str().unwrap();

    // More frames than the file holds: refused by argument, nothing written.
    let out = dir.path().join("too_many");
    let o = xrai(
        &[
            &[
                "run",
                "--data",
                emc,
                "--n",
                "1300",
                "--n-test",
                "200",
                "--out",
                out.to_str().unwrap(),
            ][..],
            &EMC[..],
        ]
        .concat(),
        dir.path(),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("holds 1400 frames") && err.contains("--n-test"),
        "{err}"
    );
    assert!(!out.exists());

    // Against 2CEX_A: the truth on EMC's grid; the frames' true poses (poses.csv) are scored.
    let out = dir.path().join("vs_pdb");
    let o = xrai(
        &[
            &[
                "run", "--data", emc, "--pdb", "2CEX_A", "--n", "1200", "--n-test", "200", "--out",
            ][..],
            &[out.to_str().unwrap()],
            &EMC[..],
        ]
        .concat(),
        dir.path(),
    );
    ok(&o);
    let rows = read_table(&out.join("table.parquet")).unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r.pdb_id, "photons.emc vs 2CEX_A");
    assert_eq!(r.noise, "poisson", "a photon file's frames are counts: {r:?}");
    assert!(r.resolution_px.is_finite() && r.resolution_px > 0.0, "{r:?}");
    assert!(r.test_median_deg.is_finite(), "the file's poses were not scored: {r:?}");

    // Without a structure: the two halves are reconstructed apart and compared.
    let out = dir.path().join("half_sets");
    let o = xrai(
        &[
            &["run", "--data", emc, "--n", "1200", "--n-test", "200", "--out"][..],
            &[out.to_str().unwrap()],
            &EMC[..],
        ]
        .concat(),
        dir.path(),
    );
    let err = ok(&o);
    assert!(err.contains("half-set FSC 0.143"), "{err}");
    for d in ["emc", "emc-half1", "emc-half2"] {
        assert!(out.join(d).join("amplitude.mrc").is_file(), "{d} missing");
    }
    let half: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("emc-half1/output.json")).unwrap()).unwrap();
    assert_eq!(half["poses"]["train"], 600, "half 1 trains on 600 frames: {half}");
    let rows = read_table(&out.join("table.parquet")).unwrap();
    assert_eq!(rows[0].pdb_id, "photons.emc");
    assert!(rows[0].resolution_px.is_finite(), "{:?}", rows[0]);
}
