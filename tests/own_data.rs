//! Both methods on data from the field's files: `simulate --format emc` read back through
//! `emc --data` reconstructs as the in-memory stream does; a non-square, off-centre detector with
//! a beamstop runs through both methods; garbage in masked pixels changes nothing; bad inputs
//! are refused by argument before anything is written.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use xrai_bench::data::{ImageSimulator, ImageStream, Rescale, SimulationConfig, Split};
use xrai_bench::formats::dragonfly::{write_detector, DragonflyDetector, EmcWriter};
use xrai_bench::physics::detector::{Detector, PixelDetector, PixelMask};

fn xrai(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xrai-bench"))
        .args(args)
        .env_remove("XRAI_PDB_DIR")
        .env("XRAI_OFFLINE", "1")
        .env("RAYON_NUM_THREADS", "2")
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
fn simulate_format_emc_reads_back_as_the_in_memory_stream() {
    let dir = tempfile::tempdir().unwrap();
    let paths: std::collections::HashMap<&str, PathBuf> = ["x", "train", "test", "stream", "files", "bare", "bare_out"]
        .into_iter()
        .map(|n| (n, dir.path().join(n)))
        .collect();
    let data = |name: &str| -> &PathBuf { &paths[name] };
    let sim_args = [
        "--rescale-total",
        "20000",
        "--rescale",
        "mean",
        "--poisson",
        "--seed",
        "7",
    ];
    // expected photons cannot be written as photon counts: refused naming the option
    let o = xrai(
        &[
            &["simulate", "--n", "5", "--format", "emc", "--out", s(data("x"))][..],
            &sim_args[..4],
        ]
        .concat(),
    );
    fails_with(&o, &["--format emc", "--poisson"]);
    assert!(!data("x").exists());
    for (name, n, split) in [("train", "2000", "train"), ("test", "300", "test")] {
        let mut a = vec![
            "simulate",
            "--n",
            n,
            "--split",
            split,
            "--format",
            "emc",
            "--out",
            s(data(name)),
        ];
        a.extend(sim_args);
        ok(&xrai(&a));
        for f in ["photons.emc", "detector.dat", "poses.csv", "meta.json"] {
            assert!(data(name).join(f).is_file(), "{name}/{f} missing");
        }
        assert!(!data(name).join("images.npy").exists());
    }
    // the in-memory stream with the same seed and settings
    let mut a = vec!["emc", "--n", "2000", "--n-test", "300", "--out", s(data("stream"))];
    a.extend(sim_args);
    a.extend(EMC_SMALL);
    ok(&xrai(&a));
    // the same frames read from the Dragonfly files, truth from poses.csv beside them
    let (train_emc, test_emc) = (data("train").join("photons.emc"), data("test").join("photons.emc"));
    let det = data("train").join("detector.dat");
    let bare = data("bare").join("frames.emc");
    let bare_det = data("bare").join("det.dat");
    let mut a = vec![
        "emc",
        "--data",
        s(&train_emc),
        "--detector",
        s(&det),
        "--test-data",
        s(&test_emc),
    ];
    a.extend(["--out", s(data("files"))]);
    a.extend(EMC_SMALL);
    ok(&xrai(&a));
    let (stream, files) = (test_median(data("stream")), test_median(data("files")));
    eprintln!("EMC test median pose error: {stream:.3}° (stream), {files:.3}° (files)");
    assert!(stream < 20.0, "EMC did not converge on the stream: {stream}°");
    assert!(
        (stream - files).abs() <= 0.5,
        "test pose error {stream}° (stream) vs {files}° (files)"
    );

    // A bare .emc (no meta.json, no poses.csv beside it): runs, reports no pose error.
    std::fs::create_dir(data("bare")).unwrap();
    std::fs::copy(&train_emc, data("bare").join("frames.emc")).unwrap();
    std::fs::copy(&det, &bare_det).unwrap();
    let mut a = vec!["emc", "--data", s(&bare), "--detector", s(&bare_det)];
    a.extend([
        "--frames",
        "0..500",
        "--test-frames",
        "500..600",
        "--out",
        s(data("bare_out")),
    ]);
    a.extend(["--level", "2", "--bin", "4", "--iters", "2"]);
    ok(&xrai(&a));
    let out = output_json(data("bare_out"));
    assert!(
        out["pose_error"]["train"].is_null() && out["pose_error"]["test"].is_null(),
        "{out}"
    );
    assert_eq!(out["poses"]["test"], 100);
    assert_eq!(out["poses"]["train"], 500);
}

/// 66 × 66 simulated frames cropped to 66 × 64 (the beam one column off the centre), a
/// beamstop of bad pixels around the beam and merge-only pixels in one corner; `garbage` is
/// written into the bad pixels. Returns (photons.emc, detector.dat).
fn off_centre_dataset(dir: &Path, n: u64, garbage: Option<f32>) -> (PathBuf, PathBuf) {
    let config = SimulationConfig {
        detector: Detector {
            pixels: 66,
            side_m: 0.1 * 66.0 / 128.0,
            distance_m: 0.2,
            ..Default::default()
        },
        rescale: Rescale::MeanTotal(5000.0),
        poisson: true,
        seed: 3,
        ..Default::default()
    };
    let sim = ImageSimulator::new(cex_a(), config).unwrap();
    let full = &sim.geometry;
    let (rows, cols) = (66, 64);
    let keep = |t: usize| t % 66 < cols;
    let mut det = PixelDetector {
        rows,
        cols,
        s: (0..full.len()).filter(|&t| keep(t)).map(|t| full.s[t]).collect(),
        correction: (0..full.len())
            .filter(|&t| keep(t))
            .map(|t| full.correction[t])
            .collect(),
        mask: vec![PixelMask::Good; rows * cols],
        wavelength: full.wavelength,
    };
    let step = det.pixel_spacing();
    for t in 0..det.len() {
        let r = det.s[t][0].hypot(det.s[t][1]) / step;
        if r < 10.0 {
            det.mask[t] = PixelMask::Bad;
        } else if t / cols < 3 && t % cols < 3 {
            det.mask[t] = PixelMask::MergeOnly;
        }
    }
    det.validate().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let dat = dir.join("detector.dat");
    let detd = 0.2 / (0.1 / 128.0);
    write_detector(&dat, &DragonflyDetector::from_pixels(&det, detd, detd), false).unwrap();
    let emc = dir.join("photons.emc");
    let mut writer = EmcWriter::create(&emc, det.len(), false).unwrap();
    let batch = ImageStream::new(&sim, Split::Train, n, n as usize).next().unwrap();
    for image in batch.images.chunks_exact(66 * 66) {
        let mut frame: Vec<f32> = (0..image.len()).filter(|&t| keep(t)).map(|t| image[t]).collect();
        if let Some(g) = garbage {
            for t in 0..frame.len() {
                if det.mask[t] == PixelMask::Bad {
                    frame[t] = g;
                }
            }
        }
        writer.write_dense(&frame).unwrap();
    }
    writer.finish().unwrap();
    (emc, dat)
}

fn emc_args<'a>(emc: &'a Path, dat: &'a Path, out: &'a Path) -> Vec<&'a str> {
    let mut a = vec!["emc", "--data", s(emc), "--detector", s(dat), "--frames", "0..240"];
    a.extend([
        "--test-frames",
        "240..300",
        "--level",
        "2",
        "--bin",
        "2",
        "--iters",
        "3",
        "--out",
        s(out),
    ]);
    a
}

fn xrai_args<'a>(emc: &'a Path, dat: &'a Path, out: &'a Path) -> Vec<&'a str> {
    let mut a = vec!["xrai", "--data", s(emc), "--detector", s(dat), "--frames", "0..240"];
    a.extend([
        "--test-frames",
        "240..300",
        "--steps",
        "3",
        "--batch",
        "8",
        "--working-size",
        "16",
    ]);
    a.extend([
        "--volume-size",
        "21",
        "--test-images",
        "60",
        "--eval-images",
        "20",
        "--eval-every",
        "1000",
    ]);
    a.extend(["--train-pose-images", "40", "--out", s(out)]);
    a
}

#[test]
fn an_off_centre_non_square_masked_detector_runs_through_both_methods_and_ignores_masked_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let (emc, dat) = off_centre_dataset(&dir.path().join("clean"), 300, None);
    let (emc_g, dat_g) = off_centre_dataset(&dir.path().join("garbage"), 300, Some(1e6));
    let out = |name: &str| dir.path().join(name);
    type Args = for<'a> fn(&'a Path, &'a Path, &'a Path) -> Vec<&'a str>;
    let methods: [(&str, Args); 2] = [("emc", emc_args), ("xrai", xrai_args)];
    for (method, args) in methods {
        let clean = out(&format!("{method}_clean"));
        let garbage = out(&format!("{method}_garbage"));
        let log = ok(&xrai(&args(&emc, &dat, &clean)));
        eprintln!("{method}:\n{log}");
        ok(&xrai(&args(&emc_g, &dat_g, &garbage)));
        let o = output_json(&clean);
        assert!(
            o["pose_error"]["test"].is_null(),
            "{method}: no truth, no pose error: {o}"
        );
        assert_eq!(o["poses"]["test"], 60, "{method}");
        for f in ["output.json", "amplitude.mrc", "poses_train.csv", "poses_test.csv"] {
            assert!(clean.join(f).is_file(), "{method}: {f} missing\n{log}");
        }
        // the bad pixels' garbage changes neither the map nor the poses
        for f in ["amplitude.mrc", "poses_train.csv", "poses_test.csv"] {
            assert_eq!(
                std::fs::read(clean.join(f)).unwrap(),
                std::fs::read(garbage.join(f)).unwrap(),
                "{method}: {f} changed with garbage in the masked pixels"
            );
        }
    }
    // Without the mask the garbage shows (the comparison above can fail).
    let mut unmasked = xrai_bench::formats::dragonfly::read_detector(&dat_g).unwrap();
    unmasked.mask.iter_mut().for_each(|m| *m = 0);
    let dat_u = dir.path().join("unmasked.dat");
    write_detector(&dat_u, &unmasked, false).unwrap();
    let loud = out("emc_unmasked");
    ok(&xrai(&emc_args(&emc_g, &dat_u, &loud)));
    assert_ne!(
        std::fs::read(out("emc_clean").join("amplitude.mrc")).unwrap(),
        std::fs::read(loud.join("amplitude.mrc")).unwrap()
    );
}

#[test]
fn bad_data_inputs_are_refused_by_argument_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (emc, dat) = off_centre_dataset(&dir.path().join("d"), 20, None);
    // a detector of another pixel count
    let other = dir.path().join("other.dat");
    write_detector(
        &other,
        &DragonflyDetector::from_detector(&Detector::default(), &Default::default()),
        false,
    )
    .unwrap();
    let out = dir.path().join("out");
    let cxi = dir.path().join("frames.cxi");
    std::fs::write(&cxi, b"not really").unwrap();
    for method in ["emc", "xrai"] {
        let run = |extra: &[&str]| {
            let mut a = vec![method, "--out", s(&out), "--steps", "1"];
            if method == "emc" {
                a.pop();
                a.pop();
            }
            a.extend(extra);
            xrai(&a)
        };
        fails_with(
            &run(&["--data", s(&emc), "--detector", s(&other)]),
            &["--detector", "16384 pixels", "4224"],
        );
        fails_with(
            &run(&["--data", s(&emc), "--detector", s(&dat), "--frames", "0..21"]),
            &["--frames 0..21", "20 frames"],
        );
        fails_with(
            &run(&[
                "--data",
                s(&emc),
                "--detector",
                s(&dat),
                "--frames",
                "0..10",
                "--test-frames",
                "5..15",
            ]),
            &["--test-frames 5..15", "overlaps"],
        );
        fails_with(&run(&["--data", s(&emc), "--frames", "5..2"]), &["--frames", "empty"]);
        // without the hdf5 feature, a CXI file is refused naming the feature; with it, as not HDF5
        let cxi_error: &[&str] = if cfg!(feature = "hdf5") {
            &["--data", "frames.cxi", "HDF5"]
        } else {
            &["--data", "frames.cxi", "hdf5 feature"]
        };
        fails_with(&run(&["--data", s(&cxi)]), cxi_error);
        fails_with(
            &run(&["--data", s(&emc), "--detector", s(&dir.path().join("nope.dat"))]),
            &["--detector", "nope.dat"],
        );
        fails_with(&run(&["--frames", "0..5", "--n", "10"]), &["--frames needs --data"]);
        assert!(!out.exists(), "{method} wrote {} before refusing", out.display());
    }
}

/// The data model follows the frames read: X-RAI scores photon counts (a simulate directory drawn
/// with `--poisson`, any photon file) by the Poisson likelihood with each pattern's scale fitted,
/// fractional (noise-free) frames by squared error, and an explicit `--loss` wins; EMC fits each
/// frame's scale on a file's counts without a record of a constant fluence.
#[test]
fn a_files_photon_counts_choose_the_count_data_model() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let base = ["--n", "40", "--pixels", "64", "--seed", "2", "--rescale-total", "1000"];
    ok(&xrai(
        &[&["simulate", "--out", s(&p("expected"))][..], &base[..]].concat(),
    ));
    ok(&xrai(
        &[&["simulate", "--poisson", "--out", s(&p("counts"))][..], &base[..]].concat(),
    ));
    let counts_emc = p("counts_emc");
    ok(&xrai(
        &[
            &["simulate", "--poisson", "--format", "emc", "--out", s(&counts_emc)][..],
            &base[..],
        ]
        .concat(),
    ));
    let run = |data: &Path, out: &str, extra: &[&str]| -> serde_json::Value {
        let mut a = vec!["xrai", "--data", s(data), "--steps", "1", "--batch", "8"];
        a.extend(["--working-size", "16", "--volume-size", "11", "--eval-every", "1000"]);
        let dir = p(out);
        a.extend(["--train-pose-images", "8", "--refine-steps", "0", "--out", s(&dir)]);
        a.extend(extra);
        let log = ok(&xrai(&a));
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p(out).join("summary.json")).unwrap()).unwrap();
        eprintln!("{out}: {log}");
        summary
    };
    let model = |v: &serde_json::Value| {
        (
            v["data"]["photon_counts"].as_bool().unwrap(),
            v["config"]["loss"].as_str().unwrap().to_string(),
            v["config"]["pattern_scale"].as_str().unwrap().to_string(),
            v["config"]["standardize"].as_bool().unwrap(),
        )
    };
    let counted = (true, "poisson".to_string(), "fit".to_string(), false);
    assert_eq!(
        model(&run(&p("counts"), "c", &[])),
        counted,
        "simulate --poisson directory"
    );
    assert_eq!(
        model(&run(&counts_emc.join("photons.emc"), "e", &[])),
        counted,
        "photon file"
    );
    assert_eq!(
        model(&run(&p("expected"), "x", &[])),
        (false, "mse".to_string(), "fixed".to_string(), true),
        "noise-free directory"
    );
    assert_eq!(
        model(&run(&p("counts"), "m", &["--loss", "mse"])).1,
        "mse",
        "--loss wins"
    );

    // EMC fits each frame's scale on a file's counts unless the file's record says the fluence
    // is constant (this simulate directory's meta.json does: no jitter, no focus).
    let bare = p("bare");
    std::fs::create_dir(&bare).unwrap();
    std::fs::copy(counts_emc.join("photons.emc"), bare.join("frames.emc")).unwrap();
    std::fs::copy(counts_emc.join("detector.dat"), bare.join("detector.dat")).unwrap();
    let emc_scale = |data: &Path, out: &str, extra: &[&str]| -> bool {
        let mut a = vec!["emc", "--data", s(data), "--level", "1", "--bin", "4", "--iters", "1"];
        let dir = p(out);
        a.extend(["--out", s(&dir)]);
        a.extend(extra);
        let log = ok(&xrai(&a));
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
        let scale = meta["params"]["scale"].as_bool().unwrap();
        assert_eq!(scale, log.contains("fitting each frame's scale"), "{out}: {log}");
        scale
    };
    assert!(
        emc_scale(&bare.join("frames.emc"), "emc_bare", &[]),
        "a bare photon file"
    );
    assert!(
        !emc_scale(&bare.join("frames.emc"), "emc_bare_no", &["--no-scale"]),
        "--no-scale"
    );
    assert!(
        !emc_scale(&counts_emc, "emc_recorded", &[]),
        "a record of a constant fluence"
    );
    assert!(!emc_scale(&p("expected"), "emc_expected", &[]), "noise-free frames");
}
