//! CXI files as the methods' data (feature `hdf5`): `simulate --format cxi` read back through
//! `emc --data DIR/data.cxi` reconstructs as the in-memory stream does; a CXIDB-58-like file
//! (260 × 257 pnCCD frames binned 4 × 4, a beamstop in the mask, frames at
//! photonConverter/pnccdBack/photonCount, no geometry in the file) opens with the geometry from the
//! command line as the detector it describes and runs through both methods; bad inputs are refused
//! by argument before anything is written.
#![cfg(feature = "hdf5")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clap::Parser;
use common::{fails_with, ok};
use rand::SeedableRng;
use rand_distr::Distribution;
use xrai_bench::data::options::{DataArgs, PhysicsArgs};
use xrai_bench::formats::cxi::{CxiReader, CxiWriter};
use xrai_bench::physics::beam::HC_EV_ANGSTROM;
use xrai_bench::physics::detector::PixelMask;

fn xrai(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xrai-bench"))
        .args(args)
        .env_remove("XRAI_PDB_DIR")
        .env("XRAI_OFFLINE", "1")
        .env("RAYON_NUM_THREADS", "2")
        // The tests run in threads of one process, and the HDF5 library opens files without
        // close-on-exec: a command started while another test writes its CXI file inherits that
        // descriptor and, with it, HDF5's exclusive lock on the file, which then refuses this
        // command's own read of that file ("unable to lock file") until the other command ends.
        .env("HDF5_USE_FILE_LOCKING", "FALSE")
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn output_json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("output.json")).unwrap()).unwrap()
}

fn test_median(dir: &Path) -> f64 {
    output_json(dir)["pose_error"]["test"]["median_deg"]
        .as_f64()
        .unwrap_or_else(|| panic!("{}: no test pose error", dir.display()))
}

const EMC_SMALL: [&str; 8] = ["--level", "3", "--bin", "4", "--iters", "10", "--model-seed", "5"];

#[test]
fn simulate_format_cxi_reads_back_as_the_in_memory_stream() {
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n);
    let sim_args = [
        "--rescale-total",
        "20000",
        "--rescale",
        "mean",
        "--poisson",
        "--seed",
        "7",
    ];
    for (name, n, split) in [("train", "2000", "train"), ("test", "300", "test")] {
        let out = path(name);
        let mut a = vec![
            "simulate",
            "--n",
            n,
            "--split",
            split,
            "--format",
            "cxi",
            "--out",
            s(&out),
        ];
        a.extend(sim_args);
        ok(&xrai(&a));
        for f in ["data.cxi", "poses.csv", "meta.json"] {
            assert!(path(name).join(f).is_file(), "{name}/{f} missing");
        }
        assert!(!path(name).join("images.npy").exists());
    }
    // the file holds the geometry, an all-good mask and the poses of poses.csv
    let reader = CxiReader::open(path("train").join("data.cxi"), None).unwrap();
    assert_eq!((reader.num_frames(), reader.shape()), (2000, (128, 128)));
    let g = reader.geometry().expect("geometry written");
    assert!((g.distance_m - 0.2).abs() < 1e-12 && (g.pixel_size_m - 0.1 / 128.0).abs() < 1e-15);
    assert!((g.photon_energy_ev - 4600.0).abs() < 1e-9);
    assert!(reader.mask().unwrap().iter().all(|&b| !b));
    let csv = xrai_bench::rotation::read_poses(&path("train").join("poses.csv")).unwrap();
    let file = reader.poses().unwrap();
    assert_eq!(csv.len(), file.len());
    for (a, b) in csv.iter().zip(&file) {
        let a = xrai_bench::rotation::to_wxyz(a);
        assert!((0..4).all(|k| (a[k] - b[k]).abs() < 1e-12), "{a:?} vs {b:?}");
    }
    drop(reader);
    // the in-memory stream with the same seed and settings
    let (stream_dir, files_dir) = (path("stream"), path("files"));
    let mut a = vec!["emc", "--n", "2000", "--n-test", "300", "--out", s(&stream_dir)];
    a.extend(sim_args);
    a.extend(EMC_SMALL);
    ok(&xrai(&a));
    let (train, test) = (path("train").join("data.cxi"), path("test").join("data.cxi"));
    let mut a = vec![
        "emc",
        "--data",
        s(&train),
        "--test-data",
        s(&test),
        "--out",
        s(&files_dir),
    ];
    a.extend(EMC_SMALL);
    ok(&xrai(&a));
    let (stream, files) = (test_median(&path("stream")), test_median(&path("files")));
    eprintln!("EMC test median pose error: {stream:.3}° (stream), {files:.3}° (CXI files)");
    assert!(stream < 20.0, "EMC did not converge on the stream: {stream}°");
    assert!(
        (stream - files).abs() <= 0.5,
        "test pose error {stream}° (stream) vs {files}° (CXI files)"
    );
}

/// CXIDB entry 58's layout and PR772's geometry: pnCCD frames binned 4 × 4 to 260 × 257 pixels
/// of 300 µm at 586 mm, 1.6 keV photons.
const ROWS: usize = 260;
const COLS: usize = 257;
const PIXEL_M: f64 = 4.0 * 75e-6;
const DISTANCE_M: f64 = 0.586;
const ENERGY_EV: f64 = 1600.0;
const BEAMSTOP_PIXELS: f64 = 40.0;
const PNCCD: &str = "photonConverter/pnccdBack/photonCount";

/// Whether pixel (row, col) is behind the beamstop (beam at the frame centre).
fn behind_beamstop(row: usize, col: usize) -> bool {
    let (dr, dc) = (
        row as f64 - (ROWS as f64 - 1.0) / 2.0,
        col as f64 - (COLS as f64 - 1.0) / 2.0,
    );
    dr.hypot(dc) < BEAMSTOP_PIXELS
}

/// `n` frames of Poisson counts from a uniform sphere of radius 350 Å (PR772's size), the
/// beamstop in the mask (1 = bad), at `PNCCD` with no geometry in the file. Returns the frames.
fn cxidb58_like(path: &Path, n: usize) -> Vec<f32> {
    let lambda = HC_EV_ANGSTROM / ENERGY_EV; // Å, the program's hc
    let radius = 350.0;
    let mut expected = vec![0.0f64; ROWS * COLS];
    for row in 0..ROWS {
        for col in 0..COLS {
            let (x, y) = (
                (col as f64 - (COLS as f64 - 1.0) / 2.0) * PIXEL_M,
                (row as f64 - (ROWS as f64 - 1.0) / 2.0) * PIXEL_M,
            );
            let two_theta = x.hypot(y).atan2(DISTANCE_M);
            let q = 2.0 * (two_theta / 2.0).sin() / lambda;
            let a = 2.0 * std::f64::consts::PI * q * radius;
            let f = if a < 1e-6 {
                1.0
            } else {
                3.0 * (a.sin() - a * a.cos()) / a.powi(3)
            };
            expected[row * COLS + col] = 2.0e4 * f * f;
        }
    }
    let mask: Vec<bool> = (0..ROWS * COLS).map(|t| behind_beamstop(t / COLS, t % COLS)).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(58);
    let mut frames = Vec::with_capacity(n * ROWS * COLS);
    for _ in 0..n {
        for &e in &expected {
            let c = if e > 0.0 {
                rand_distr::Poisson::new(e).unwrap().sample(&mut rng)
            } else {
                0.0
            };
            frames.push(c as f32);
        }
    }
    let mut w = CxiWriter::create(path, ROWS, COLS, None, Some(&mask), Some(PNCCD), false).unwrap();
    w.write_frames(&frames).unwrap();
    w.finish().unwrap();
    frames
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    physics: PhysicsArgs,
    #[command(flatten)]
    data: DataArgs,
}

fn open(args: &[&str]) -> anyhow::Result<xrai_bench::data::Opened> {
    let cli = Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied())).unwrap();
    Ok(xrai_bench::data::open(&cli.data, &cli.physics)?.expect("--data given"))
}

#[test]
fn a_cxidb58_like_file_opens_as_the_detector_it_describes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pr772.cxi");
    let frames = cxidb58_like(&file, 3);
    let geometry = ["--det-dist", "0.586", "--pixel-size", "300e-6", "--energy", "1600"];
    let mut a = vec!["--data", s(&file), "--dataset-path", PNCCD];
    a.extend(geometry);
    let opened = open(&a).unwrap();
    let src = &opened.train;
    let det = src.full_detector();
    assert_eq!((det.rows, det.cols, src.len()), (ROWS, COLS, Some(3)));
    let lambda = HC_EV_ANGSTROM / ENERGY_EV;
    assert!((det.wavelength - lambda).abs() < 1e-9 * lambda, "λ {}", det.wavelength);
    let (r, c) = det.beam_position();
    assert!((r - 129.5).abs() < 1e-9 && (c - 128.0).abs() < 1e-9, "beam at {r}, {c}");
    // one pixel step at the beam: 300 µm / 586 mm radians, |s| = 2 sin(θ/2)/λ ≈ θ/λ
    let step = (PIXEL_M / DISTANCE_M) / lambda;
    assert!(
        (det.pixel_spacing() - step).abs() < 1e-3 * step,
        "{} vs {step}",
        det.pixel_spacing()
    );
    let bad: Vec<bool> = det.mask.iter().map(|&m| m == PixelMask::Bad).collect();
    let expected: Vec<bool> = (0..ROWS * COLS).map(|t| behind_beamstop(t / COLS, t % COLS)).collect();
    assert_eq!(bad, expected);
    assert!(expected.iter().filter(|&&b| b).count() > 4900); // π 40² ≈ 5027
                                                             // frames as written, the beamstop read as 0; no poses in the file, none reported
    let read = src.read(0, 3).unwrap();
    for (t, (&got, &want)) in read.iter().zip(&frames).enumerate() {
        let want = if expected[t % (ROWS * COLS)] { 0.0 } else { want };
        assert_eq!(got, want, "value {t}");
    }
    assert!(src.poses(0, 3).unwrap().is_none());
    assert!(opened.config.is_none() && opened.grid.is_none());
    // an off-centre beam where given
    a.extend(["--beam-position", "100,140.5"]);
    let (r, c) = open(&a).unwrap().train.full_detector().beam_position();
    assert!((r - 100.0).abs() < 1e-9 && (c - 140.5).abs() < 1e-9, "beam at {r}, {c}");
}

fn method_args<'a>(method: &'a str, file: &'a Path, out: &'a Path) -> Vec<&'a str> {
    let mut a = vec![method, "--data", s(file), "--dataset-path", PNCCD];
    a.extend(["--det-dist", "0.586", "--pixel-size", "300e-6", "--energy", "1600"]);
    a.extend(["--frames", "0..40", "--test-frames", "40..50", "--out", s(out)]);
    if method == "emc" {
        a.extend(["--level", "2", "--bin", "8", "--iters", "2", "--grid", "21"]);
    } else {
        a.extend([
            "--steps",
            "3",
            "--batch",
            "8",
            "--working-size",
            "16",
            "--volume-size",
            "21",
        ]);
        a.extend(["--test-images", "10", "--eval-images", "10", "--eval-every", "1000"]);
        a.extend(["--train-pose-images", "10"]);
    }
    a
}

#[test]
fn a_cxidb58_like_file_runs_through_both_methods() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pr772.cxi");
    cxidb58_like(&file, 50);
    for method in ["emc", "xrai"] {
        let out = dir.path().join(method);
        let log = ok(&xrai(&method_args(method, &file, &out)));
        eprintln!("{method}:\n{log}");
        let o = output_json(&out);
        assert!(
            o["pose_error"]["test"].is_null(),
            "{method}: no truth, no pose error: {o}"
        );
        assert_eq!(o["poses"]["test"], 10, "{method}");
        let train = if method == "emc" { 40 } else { 10 }; // X-RAI scores --train-pose-images
        assert_eq!(o["poses"]["train"], train, "{method}");
        for f in ["output.json", "amplitude.mrc", "poses_train.csv", "poses_test.csv"] {
            assert!(out.join(f).is_file(), "{method}: {f} missing\n{log}");
        }
    }
}

#[test]
fn bad_cxi_inputs_are_refused_by_argument_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pr772.cxi");
    cxidb58_like(&file, 4);
    let out = dir.path().join("out");
    for method in ["emc", "xrai"] {
        let run = |extra: &[&str]| {
            let mut a = vec![method, "--out", s(&out)];
            if method == "xrai" {
                a.extend(["--steps", "1"]);
            }
            a.extend(extra);
            xrai(&a)
        };
        // no geometry in the file and none given: every missing option named
        let e = fails_with(
            &run(&["--data", s(&file), "--dataset-path", PNCCD]),
            &[
                "pr772.cxi",
                "--det-dist",
                "--pixel-size",
                "--energy",
                "distance",
                "pixel size",
                "photon energy",
            ],
        );
        assert!(e.contains("records no"), "{e}");
        // only what is still missing is named
        let e = fails_with(
            &run(&[
                "--data",
                s(&file),
                "--dataset-path",
                PNCCD,
                "--det-dist",
                "0.586",
                "--energy",
                "1600",
            ]),
            &["--pixel-size"],
        );
        assert!(!e.contains("--det-dist") && !e.contains("--energy"), "{e}");
        // a dataset path that does not exist, and the default one absent
        fails_with(
            &run(&["--data", s(&file), "--dataset-path", "entry_1/nothing/here"]),
            &["pr772.cxi", "/entry_1/nothing/here", "no such dataset"],
        );
        fails_with(&run(&["--data", s(&file)]), &["pr772.cxi", "/entry_1/data_1/data"]);
        // geometry that is not a length
        fails_with(
            &run(&[
                "--data",
                s(&file),
                "--dataset-path",
                PNCCD,
                "--det-dist",
                "0.586",
                "--pixel-size=-3e-4",
                "--energy",
                "1600",
            ]),
            &["--pixel-size -0.0003", "positive"],
        );
        // CXI options with a file that is not CXI
        let npy = dir.path().join("frames.emc");
        std::fs::write(&npy, b"").unwrap();
        fails_with(
            &run(&["--data", s(&npy), "--pixel-size", "3e-4"]),
            &["--pixel-size", "CXI"],
        );
        assert!(!out.exists(), "{method} wrote {} before refusing", out.display());
    }
    // simulate: --dataset-path belongs to --format cxi, and must be a path
    let sim = dir.path().join("sim");
    fails_with(
        &xrai(&["simulate", "--n", "2", "--dataset-path", PNCCD, "--out", s(&sim)]),
        &["--dataset-path", "--format cxi"],
    );
    fails_with(
        &xrai(&[
            "simulate",
            "--n",
            "2",
            "--format",
            "cxi",
            "--dataset-path",
            "a//b",
            "--out",
            s(&sim),
        ]),
        &["--dataset-path", "a//b"],
    );
    assert!(!sim.exists());
}

#[test]
fn simulate_writes_the_frames_at_the_dataset_path_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let out: PathBuf = dir.path().join("sim");
    let a = [
        "simulate",
        "--n",
        "3",
        "--pixels",
        "32",
        "--format",
        "cxi",
        "--dataset-path",
        PNCCD,
        "--out",
        s(&out),
    ];
    ok(&xrai(&a));
    let reader = CxiReader::open(out.join("data.cxi"), Some(PNCCD)).unwrap();
    assert_eq!((reader.num_frames(), reader.shape()), (3, (32, 32)));
    assert!(reader.geometry().is_some() && reader.poses().is_some());
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["images"]["dataset"], format!("/{PNCCD}"));
    // not at the default path, so read without --dataset-path it is refused, naming where it looked
    assert!(CxiReader::open(out.join("data.cxi"), None).is_err());
}
