//! `xrai-bench simulate` end to end, and every bad input it must refuse with a clear message.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use npyz::WriterBuilder;

fn xrai(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xrai-bench"));
    cmd.args(args).env_remove("XRAI_PDB_DIR").env("XRAI_OFFLINE", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

const ATOM: &str = "ATOM      1  N   ASP A   2      14.312   3.902  -7.338  1.00 34.33           N  ";
const ATOM2: &str = "ATOM      2  CA  ASP A   2      14.303   4.751  -6.109  1.00 33.69           C  ";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn simulate_writes_a_numpy_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = xrai(
        &[
            "simulate",
            "--n",
            "5",
            "--rescale-total",
            "20000",
            "--out",
            out.to_str().unwrap(),
            "--save-volume",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (shape, images) = npy_f64(&out.join("images.npy"));
    assert_eq!(shape, vec![5, 128, 128]);
    for im in images.chunks(128 * 128) {
        assert!((im.iter().sum::<f64>() / 20000.0 - 1.0).abs() < 1e-4);
    }
    let poses = std::fs::read_to_string(out.join("poses.csv")).unwrap();
    assert_eq!(poses.lines().next(), Some("w,x,y,z"));
    assert_eq!(poses.lines().count(), 6);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["config"]["seed"], 0);
    assert_eq!(meta["molecule"]["atoms"], 2362);
    for map in ["intensity.mrc", "amplitude.mrc", "density.mrc"] {
        assert!(out.join(map).exists(), "{map} missing");
    }
    let density = xrai_bench::mrc::read_mrc(out.join("density.mrc")).unwrap();
    let electrons: f64 = density.data.iter().map(|&v| v as f64).sum::<f64>() * density.spacing.powi(3);
    assert!(
        (electrons / cex_a().forward_scattering() - 1.0).abs() < 1e-3,
        "{electrons} electrons"
    );
    // No staging directories left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().filter_map(|e| e.ok()).collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");

    // Given poses reproduce the same images.
    let again = dir.path().join("again");
    let poses_path = out.join("poses.csv");
    let o = xrai(
        &[
            "simulate",
            "--poses",
            poses_path.to_str().unwrap(),
            "--rescale-total",
            "20000",
            "--out",
            again.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, replay) = npy_f64(&again.join("images.npy"));
    assert!(rel_rms(&replay, &images) < 1e-6);

    // The same poses as an (n, 4) float64 .npy file.
    let quats: Vec<f64> = poses
        .lines()
        .skip(1)
        .flat_map(|l| l.split(',').map(|v| v.parse::<f64>().unwrap()).collect::<Vec<_>>())
        .collect();
    let npy = dir.path().join("poses.npy");
    npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[5, 4])
        .writer(std::io::BufWriter::new(std::fs::File::create(&npy).unwrap()))
        .begin_nd()
        .and_then(|mut w| {
            w.extend(quats.iter().copied())?;
            w.finish()
        })
        .unwrap();
    let from_npy = dir.path().join("from_npy");
    let o = xrai(
        &[
            "simulate",
            "--poses",
            npy.to_str().unwrap(),
            "--rescale-total",
            "20000",
            "--out",
            from_npy.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, replay) = npy_f64(&from_npy.join("images.npy"));
    assert!(rel_rms(&replay, &images) < 1e-6);
}

#[test]
fn existing_output_is_never_overwritten_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let keep = write(dir.path(), "precious.txt", "keep me");
    let o = xrai(&["simulate", "--n", "2", "--out", dir.path().to_str().unwrap()], &[]);
    fails_with(&o, &["not empty", "--force"]);
    assert_eq!(std::fs::read_to_string(keep).unwrap(), "keep me");
}

#[test]
fn missing_pdb_id_offline_says_where_it_looked_and_how_to_supply_it() {
    let cache = tempfile::tempdir().unwrap();
    let t0 = std::time::Instant::now();
    let o = xrai(
        &[
            "simulate",
            "--pdb",
            "1O9K",
            "--n",
            "10",
            "--out",
            "/nonexistent/never-created",
        ],
        &[("XRAI_CACHE_DIR", cache.path().to_str().unwrap())],
    );
    assert!(t0.elapsed().as_secs_f64() < 1.0, "took {:?}", t0.elapsed());
    fails_with(
        &o,
        &["1O9K", "datasets/pdb/1o9k", "XRAI_PDB_DIR", "download", "rcsb.org"],
    );
    assert!(!Path::new("/nonexistent/never-created").exists());
}

#[test]
fn ids_resolve_through_xrai_pdb_dir_with_a_chain_filter() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join("datasets/pdb/2cex.pdb"), dir.path().join("9XYZ.pdb")).unwrap();
    let out = dir.path().join("out");
    let o = xrai(
        &[
            "simulate",
            "--pdb",
            "9xyz_a",
            "--n",
            "1",
            "--out",
            out.to_str().unwrap(),
        ],
        &[("XRAI_PDB_DIR", dir.path().to_str().unwrap())],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta.json")).unwrap()).unwrap();
    // 2cex.pdb chain A without waters or HETATM = the 2362 atoms of 2cex_a.pdb.
    assert_eq!(meta["molecule"]["atoms"], 2362);
}

#[test]
fn bad_structure_files_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let run = |pdb: &str, extra: &[&str]| {
        let mut args = vec!["simulate", "--pdb", pdb, "--n", "1", "--out", out];
        args.extend_from_slice(extra);
        xrai(&args, &[])
    };
    let missing = dir.path().join("absent.pdb");
    fails_with(&run(missing.to_str().unwrap(), &[]), &["absent.pdb"]);
    let empty = write(dir.path(), "empty.pdb", "");
    fails_with(&run(&empty, &[]), &["empty.pdb", "no ATOM or HETATM"]);
    let truncated = write(dir.path(), "trunc.pdb", &format!("{ATOM}\n{}\n", &ATOM2[..40]));
    fails_with(&run(&truncated, &[]), &["trunc.pdb", "line 2", "truncated"]);
    let garbled = write(
        dir.path(),
        "garbled.pdb",
        &format!("{ATOM}\n{}\n", ATOM2.replace("4.751", "4.7x1")),
    );
    fails_with(&run(&garbled, &[]), &["garbled.pdb", "line 2", "not a number"]);
    let unknown = write(
        dir.path(),
        "unknown.pdb",
        &format!("{ATOM}\n{}\n", ATOM2.replace("           C  ", "          QZ  ")),
    );
    fails_with(&run(&unknown, &[]), &["unknown.pdb", "line 2", "QZ"]);
    let ok = write(dir.path(), "ok.pdb", &format!("{ATOM}\n{ATOM2}\n"));
    fails_with(
        &run(&ok, &["--chain", "Z"]),
        &["ok.pdb", "\"Z\"", "chains in the file: A"],
    );
    let het = write(
        dir.path(),
        "het.pdb",
        &format!("{}\n", ATOM.replace("ATOM  ", "HETATM")),
    );
    fails_with(&run(&het, &[]), &["het.pdb", "--include-hetatm"]);
    assert!(!Path::new(out).exists(), "nothing is written on bad input");
}

#[test]
fn impossible_parameters_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["simulate", "--out", out];
        args.extend_from_slice(extra);
        xrai(&args, &[])
    };
    fails_with(&run(&["--n", "0"]), &["--n"]);
    fails_with(&run(&["--n", "5000000000"]), &["GiB", "stream"]);
    fails_with(&run(&["--n", "2", "--energy", "0"]), &["--energy"]);
    fails_with(&run(&["--n", "2", "--energy=-5"]), &["--energy"]);
    fails_with(&run(&["--n", "2", "--det-dist", "0"]), &["--det-dist"]);
    fails_with(&run(&["--n", "2", "--pixels", "0"]), &["--pixels"]);
    fails_with(
        &run(&["--n", "2", "--grid", "21"]),
        &["--grid 21", "too small to cover the detector"],
    );
    fails_with(&run(&["--n", "2", "--grid", "100"]), &["odd"]);
    let poses = write(dir.path(), "poses.csv", "w,x,y,z\n1,0,0,0\n0.5,0.5,0.5\n");
    fails_with(&run(&["--poses", &poses]), &["poses.csv", "line 3"]);
    let poses = write(dir.path(), "poses2.csv", "w,x,y,z\n2,0,0,0\n");
    fails_with(&run(&["--poses", &poses]), &["poses2.csv", "line 2", "norm"]);
    assert!(!Path::new(out).exists());
}
