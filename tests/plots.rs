//! Renders every report figure from synthetic data and checks the PNG + SVG
//! outputs. Set `XRAI_PLOTS_PREVIEW=/some/dir` to also copy the PNGs there for
//! a visual check.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use xrai_bench::report::plots::{
    emc_log_likelihood, fsc_curves, image_gallery, pose_error_distribution, scaling, training_curves, volume_slices,
    EmcIteration, TrainingPoint,
};

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Small deterministic generator (xorshift64*), so the test needs no RNG crate.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos()
    }
}

fn check(paths: &[PathBuf], stem: &Path, title: &str) {
    assert_eq!(paths.len(), 2, "expected a PNG and an SVG, got {paths:?}");
    let png = paths
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "png"))
        .expect("png path");
    let svg = paths
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "svg"))
        .expect("svg path");
    assert_eq!(png.with_extension(""), stem);
    assert_eq!(svg.with_extension(""), stem);

    let bytes = std::fs::read(png).unwrap();
    assert!(bytes.starts_with(PNG_SIGNATURE), "{} is not a PNG", png.display());
    assert!(
        bytes.len() > 8 * 1024,
        "{} is suspiciously small ({} bytes)",
        png.display(),
        bytes.len()
    );

    let text = std::fs::read_to_string(svg).unwrap();
    assert!(text.contains("<svg"), "{} is not an SVG", svg.display());
    assert!(text.contains(title), "{} lacks the title {title:?}", svg.display());

    preview(paths);
}

/// Copies the PNGs to `$XRAI_PLOTS_PREVIEW` when that is set.
fn preview(paths: &[PathBuf]) {
    if let Some(dir) = std::env::var_os("XRAI_PLOTS_PREVIEW") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        for png in paths.iter().filter(|p| p.extension().is_some_and(|e| e == "png")) {
            std::fs::copy(png, dir.join(png.file_name().unwrap())).unwrap();
        }
    }
}

fn fsc_data() -> Vec<(String, Vec<(f64, f64)>)> {
    let mut rng = Rng(7);
    [
        ("X-RAI", 0.16, 0.012),
        ("EMC", 0.11, 0.015),
        ("EMC (oracle poses)", 0.19, 0.01),
    ]
    .into_iter()
    .map(|(label, q0, w)| {
        let pts = (1..=100)
            .map(|k| {
                let q = k as f64 * 0.0025;
                let fsc = 1.0 / (1.0 + ((q - q0) / w).exp()) + 0.03 * rng.normal();
                (q, if k == 50 { f64::NAN } else { fsc.min(1.0) })
            })
            .collect();
        (label.to_string(), pts)
    })
    .collect()
}

#[test]
fn fsc_plot() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("fsc");
    let paths = fsc_curves(&stem, &fsc_data()).unwrap();
    check(&paths, &stem, "FSC against the ground truth");
}

#[test]
fn pose_error_plot() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("pose_errors");
    let mut rng = Rng(11);
    let xrai: Vec<f64> = (0..2000).map(|_| (0.7 + 0.6 * rng.normal()).exp()).collect();
    let mut emc: Vec<f64> = (0..1500)
        .map(|_| {
            if rng.uniform() < 0.04 {
                180.0 - 12.0 * rng.uniform()
            } else {
                (1.6 + 0.5 * rng.normal()).exp()
            }
        })
        .collect();
    emc.push(f64::NAN);
    emc.push(0.0);
    let series = vec![("X-RAI".to_string(), xrai), ("EMC".to_string(), emc)];
    let paths = pose_error_distribution(&stem, &series).unwrap();
    check(&paths, &stem, "Pose-error distribution");
    let svg = std::fs::read_to_string(&paths[1]).unwrap();
    assert!(
        svg.contains("X-RAI (median 2."),
        "legend label with the median is missing"
    );
}

/// Errors beyond the histogram's bins are counted in a labelled overflow bar
/// instead of being dropped: 995 errors below 10° and 5 at 150° give bins of
/// 0.2° up to 10° (the 99th percentile, 9.89°, rounded up to a bin edge).
#[test]
fn pose_error_histogram_shows_outliers() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("pose_outliers");
    let mut errors: Vec<f64> = (0..995).map(|k| k as f64 * 0.01).collect();
    errors.extend([150.0; 5]);
    let paths = pose_error_distribution(&stem, &[("EMC".to_string(), errors)]).unwrap();
    check(&paths, &stem, "Pose-error distribution");
    let svg = std::fs::read_to_string(&paths[1]).unwrap();
    assert!(svg.contains("bins of 0.2°"), "unexpected bin width");
    assert!(svg.contains("all &gt; 10°"), "overflow bar label is missing");
}

#[test]
fn training_plot() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("training");
    let mut rng = Rng(3);
    let points: Vec<TrainingPoint> = (0..400)
        .map(|k| {
            let t = k as f64 * 7.0; // seconds
            let m = t / 60.0;
            TrainingPoint {
                elapsed_s: t,
                step: k * 25,
                loss: (0.8 * (-m / 6.0).exp() + 0.02) * (1.0 + 0.15 * rng.normal()).abs(),
                test_median_deg: if k % 20 == 0 {
                    60.0 * (-m / 5.0).exp() + 1.8
                } else {
                    f64::NAN
                },
            }
        })
        .collect();
    let paths = training_curves(&stem, &points).unwrap();
    check(&paths, &stem, "Training progress");
}

#[test]
fn emc_plot() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("emc");
    let iters: Vec<EmcIteration> = (1..=30)
        .map(|i| EmcIteration {
            iteration: i,
            log_likelihood: -1.2345e7 - 4.0e5 * (-(i as f64) / 4.0).exp(),
            beta: (1e-3 * 1.35f64.powi(i as i32 - 1)).min(1.0),
        })
        .collect();
    let paths = emc_log_likelihood(&stem, &iters).unwrap();
    check(&paths, &stem, "EMC convergence");
}

/// A speckled, radially decaying synthetic diffraction pattern.
fn diffraction(side: usize, seed: u64, noise: bool) -> Vec<f32> {
    let mut rng = Rng(seed);
    let c = side as f64 / 2.0;
    let phase = seed as f64;
    (0..side * side)
        .map(|k| {
            let (y, x) = ((k / side) as f64 - c, (k % side) as f64 - c);
            let r = (x * x + y * y).sqrt();
            let speckle = 1.0 + (0.45 * x + phase).cos() * (0.38 * y - phase).cos();
            let mut v = 1e4 * (-r / 6.0).exp() * speckle + 0.5;
            if noise {
                v *= (1.0 + 0.3 * rng.normal()).max(0.0);
            }
            v as f32
        })
        .collect()
}

#[test]
fn gallery_plot() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("gallery");
    let side = 64;
    let rows: Vec<(String, Vec<f32>, Vec<f32>)> = (0..3)
        .map(|k| {
            (
                format!("test image {}", k + 1),
                diffraction(side, k + 1, true),
                diffraction(side, k + 1, false),
            )
        })
        .collect();
    let paths = image_gallery(&stem, side, &rows).unwrap();
    check(&paths, &stem, "Input and reconstructed images");
}

#[test]
fn volume_slice_plot() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("slices");
    let columns: Vec<String> = ["truth", "X-RAI", "EMC"].iter().map(|s| s.to_string()).collect();
    let side = 48;
    let c = side as f64 / 2.0;
    let amplitude = |blur: f64| -> Vec<f32> {
        (0..side * side)
            .map(|k| {
                let (y, x) = ((k / side) as f64 - c, (k % side) as f64 - c);
                let r = (x * x + y * y).sqrt();
                if r > c - 1.0 {
                    -1.0 // not measured
                } else {
                    (300.0 * (-r / (5.0 + blur)).exp() * (1.0 + 0.8 * (0.6 * x).cos() * (0.5 * y).sin()).abs()) as f32
                }
            })
            .collect()
    };
    let density = |blur: f64| -> Vec<f32> {
        (0..side * side)
            .map(|k| {
                let (y, x) = ((k / side) as f64 - c, (k % side) as f64 - c);
                let blob = |cx: f64, cy: f64, s: f64| (-((x - cx).powi(2) + (y - cy).powi(2)) / (2.0 * s * s)).exp();
                let s = 2.5 + blur;
                (blob(-6.0, -4.0, s) + 0.8 * blob(5.0, 3.0, s) + 0.6 * blob(0.0, 8.0, s) - 0.05 * blur) as f32
            })
            .collect()
    };
    let rows = vec![
        (
            "amplitude |F|".to_string(),
            side,
            vec![amplitude(0.0), amplitude(0.8), amplitude(2.0)],
        ),
        (
            "electron density".to_string(),
            side,
            vec![density(0.0), density(0.7), density(1.8)],
        ),
    ];
    let paths = volume_slices(&stem, &columns, &rows, &[true, false]).unwrap();
    check(&paths, &stem, "Volume slices");
}

#[test]
fn scaling_plot() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("scaling_time");
    let ns = [1e3, 3e3, 1e4, 3e4, 1e5];
    let xrai: Vec<(f64, f64)> = ns.iter().map(|&n| (n, 30.0 + 0.012 * n)).collect();
    let emc: Vec<(f64, f64)> = ns
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            let y = match k {
                3 => f64::INFINITY,
                4 => f64::NAN,
                _ => 5.0 + 0.2 * n,
            };
            (n, y)
        })
        .collect();
    let series = vec![("X-RAI".to_string(), xrai), ("EMC".to_string(), emc)];
    let title = "Reconstruction time against data-set size";
    let paths = scaling(&stem, title, "wall-clock time (s)", &series, Some(3600.0)).unwrap();
    check(&paths, &stem, title);
}

#[test]
fn empty_inputs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("empty");
    let msg = |r: anyhow::Result<Vec<PathBuf>>| format!("{:#}", r.expect_err("empty input must be an error"));
    assert!(msg(fsc_curves(&stem, &[])).contains("FSC"));
    assert!(msg(pose_error_distribution(&stem, &[])).contains("pose"));
    assert!(msg(training_curves(&stem, &[])).contains("training"));
    assert!(msg(emc_log_likelihood(&stem, &[])).contains("EMC"));
    assert!(msg(image_gallery(&stem, 8, &[])).contains("gallery"));
    assert!(msg(volume_slices(&stem, &[], &[], &[])).contains("volume"));
    assert!(msg(scaling(&stem, "t", "y", &[], None)).contains("scaling"));
    assert!(!stem.with_extension("png").exists());
}

#[test]
fn degenerate_inputs_still_render() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // all-NaN and single-point series
    let fsc = vec![
        ("all NaN".to_string(), vec![(0.1, f64::NAN), (f64::NAN, 0.5)]),
        ("single".to_string(), vec![(0.05, 0.9)]),
    ];
    preview(&fsc_curves(&d.join("fsc_degenerate"), &fsc).unwrap());
    let none = [("none".to_string(), vec![f64::NAN])];
    preview(&pose_error_distribution(&d.join("pose_degenerate"), &none).unwrap());
    let one = TrainingPoint {
        elapsed_s: 0.0,
        step: 0,
        loss: f64::NAN,
        test_median_deg: f64::NAN,
    };
    preview(&training_curves(&d.join("training_degenerate"), &[one]).unwrap());
    let it = EmcIteration {
        iteration: 0,
        log_likelihood: -5.0e6,
        beta: 1.0,
    };
    preview(&emc_log_likelihood(&d.join("emc_degenerate"), &[it]).unwrap());
    let zeros = [("zeros".to_string(), vec![0.0; 16], vec![f32::NAN; 16])];
    preview(&image_gallery(&d.join("gallery_degenerate"), 4, &zeros).unwrap());
    // missing slice (fewer slices than columns), constant slice
    let cols = ["a".to_string(), "b".to_string()];
    let rows = [("row".to_string(), 3, vec![vec![1.0; 9]])];
    preview(&volume_slices(&d.join("slices_degenerate"), &cols, &rows, &[false]).unwrap());
    // only runs over the budget, but no budget given
    let over = [("over".to_string(), vec![(100.0, f64::INFINITY)])];
    preview(&scaling(&d.join("scaling_degenerate"), "t", "y", &over, None).unwrap());
    // wrong image size is an error, not a panic
    let bad = [("x".to_string(), vec![0.0; 15], vec![0.0; 16])];
    assert!(image_gallery(&d.join("bad"), 4, &bad).is_err());
}
