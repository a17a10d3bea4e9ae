//! Photon-limited data as experiments record them: `--mean-photons`, Poisson counts drawn by
//! one Poisson process along the pattern, fluence jitter, a Gaussian focus, background, beamstop, gaps
//! and masks; each effect on its own generator; bad settings refused by name before anything
//! is written.

mod common;

use std::process::{Command, Output};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use xrai_bench::data::{ImageSimulator, Rescale, SimulationConfig, Split};
use xrai_bench::physics::acquisition::{Acquisition, BackgroundProfile, FocusProfile};
use xrai_bench::physics::detector::Detector;
use xrai_bench::physics::noise::poisson_counts_in_place;

/// 2CEX_A on a coarse detector and a 41³ grid: quick to build.
fn simulator(mean_photons: f64, detector: Detector, acquisition: Acquisition, poisson: bool) -> ImageSimulator {
    ImageSimulator::new(
        common::cex_a(),
        SimulationConfig {
            detector,
            grid: Some(41),
            rescale: Rescale::MeanTotal(mean_photons),
            poisson,
            seed: 11,
            acquisition,
            ..Default::default()
        },
    )
    .unwrap()
}

fn small_detector() -> Detector {
    Detector {
        pixels: 64,
        beamstop_radius_px: 4.0,
        gap_px: 2,
        ..Default::default()
    }
}

fn images(sim: &ImageSimulator, n: u64) -> Vec<Vec<f32>> {
    (0..n)
        .map(|i| {
            let mut out = vec![0.0f32; sim.pixels()];
            sim.image(Split::Train, i, &mut out);
            out
        })
        .collect()
}

#[test]
fn mean_photons_hold_over_the_unmasked_pixels_and_masked_pixels_are_zero() {
    let acq = Acquisition {
        fluence_jitter: 0.2,
        ..Default::default()
    };
    let sim = simulator(1000.0, small_detector(), acq, true);
    let bad = sim.config.detector.mask();
    // the two 2-pixel bands through the centre (rows and columns 31 and 32: 4 × 64 − 4 pixels)
    // and the beamstop's pixels outside them (centres closer than 4 px to (31.5, 31.5): 24)
    assert_eq!(bad.iter().filter(|&&b| b).count(), 4 * 64 - 4 + 24);
    let n = 10_000;
    let mut total = 0.0f64;
    for img in images(&sim, n) {
        for (v, &b) in img.iter().zip(&bad) {
            if b {
                assert_eq!(*v, 0.0, "a bad pixel holds photons");
            }
            assert_eq!(v.fract(), 0.0, "counts are integers");
        }
        total += img.iter().map(|&v| v as f64).sum::<f64>();
    }
    let mean = total / n as f64;
    assert!(
        (mean / 1000.0 - 1.0).abs() < 0.01,
        "mean {mean:.1} photons per pattern for --mean-photons 1000"
    );
}

#[test]
fn process_poisson_counts_have_the_poisson_mean_and_variance() {
    // 400 pixels with means from 0 to 4, a zero-mean pixel among them
    let means: Vec<f32> = (0..400)
        .map(|p| if p == 7 { 0.0 } else { 4.0 * (p as f32 / 400.0).powi(2) })
        .collect();
    let reps = 40_000;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (mut sum, mut sum2) = (vec![0.0f64; 400], vec![0.0f64; 400]);
    let mut img = vec![0.0f32; 400];
    for _ in 0..reps {
        img.copy_from_slice(&means);
        poisson_counts_in_place(&mut img, &mut rng);
        for (p, &c) in img.iter().enumerate() {
            sum[p] += c as f64;
            sum2[p] += (c as f64) * (c as f64);
        }
    }
    assert_eq!(sum[7], 0.0, "a pixel of mean 0 got photons");
    let (mut z_mean, mut z_var, mut checked) = (0.0f64, 0.0f64, 0);
    for p in 0..400 {
        let lambda = means[p] as f64;
        if lambda < 0.05 {
            continue;
        }
        let m = sum[p] / reps as f64;
        let var = sum2[p] / reps as f64 - m * m;
        // standard errors of the sample mean and variance of a Poisson(λ)
        let se_mean = (lambda / reps as f64).sqrt();
        let se_var = ((lambda + 2.0 * lambda * lambda) / reps as f64).sqrt();
        assert!(
            (m - lambda).abs() < 5.0 * se_mean,
            "pixel {p}: mean {m:.4} for λ = {lambda:.4}"
        );
        assert!(
            (var - lambda).abs() < 5.0 * se_var,
            "pixel {p}: variance {var:.4} for λ = {lambda:.4}"
        );
        z_mean += (m - lambda) / se_mean;
        z_var += (var - lambda) / se_var;
        checked += 1;
    }
    // no bias across pixels either (the sums of z-scores are N(0, checked) if unbiased)
    let s = (checked as f64).sqrt();
    assert!(
        z_mean.abs() < 4.0 * s && z_var.abs() < 4.0 * s,
        "bias: Σz {z_mean:.1} / {z_var:.1} over {checked}"
    );
}

#[test]
fn fluence_jitter_has_the_spread_set_and_each_effect_its_own_generator() {
    let with = |fluence_jitter, focus| Acquisition {
        fluence_jitter,
        focus,
        ..Default::default()
    };
    let det = Detector {
        pixels: 32,
        ..Default::default()
    };
    let jitter = simulator(1000.0, det.clone(), with(0.2, FocusProfile::Flat), true);
    let focus = simulator(1000.0, det.clone(), with(0.0, FocusProfile::Gaussian), true);
    let both = simulator(1000.0, det.clone(), with(0.2, FocusProfile::Gaussian), true);
    let none = simulator(1000.0, det, with(0.0, FocusProfile::Flat), true);
    let n = 10_000u64;
    let scales: Vec<f64> = (0..n).map(|i| jitter.pattern_scale(Split::Train, i)).collect();
    let mean = scales.iter().sum::<f64>() / n as f64;
    let sd = (scales.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    assert!((mean - 1.0).abs() < 0.01, "mean scale {mean:.4}");
    assert!(
        (sd / mean / 0.2 - 1.0).abs() < 0.05,
        "relative spread {:.4} for 0.2",
        sd / mean
    );
    let focus_mean = (0..n).map(|i| focus.pattern_scale(Split::Train, i)).sum::<f64>() / n as f64;
    assert!(
        (focus_mean - 1.0).abs() < 0.02,
        "Gaussian focus: mean scale {focus_mean:.4}"
    );
    for i in 0..200 {
        // switching the focus on leaves the fluence draw alone, and neither moves the pose
        let product = jitter.pattern_scale(Split::Train, i) * focus.pattern_scale(Split::Train, i);
        assert!((both.pattern_scale(Split::Train, i) - product).abs() < 1e-12);
        assert_eq!(none.pattern_scale(Split::Train, i), 1.0);
        assert_eq!(both.pose(Split::Train, i), none.pose(Split::Train, i));
    }
}

#[test]
fn the_background_adds_the_photons_set() {
    let acq = |background| Acquisition {
        background,
        background_profile: BackgroundProfile::InverseQ2,
        ..Default::default()
    };
    // expected photons: exactly the background's total more, none of it in bad pixels
    let (on, off) = (
        simulator(1000.0, small_detector(), acq(300.0), false),
        simulator(1000.0, small_detector(), acq(0.0), false),
    );
    let bad = on.config.detector.mask();
    for (a, b) in images(&on, 20).iter().zip(images(&off, 20)) {
        let diff: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) as f64).sum();
        assert!((diff - 300.0).abs() < 0.01, "background {diff:.3} of 300");
        assert!(a.iter().zip(&bad).all(|(v, &m)| !m || *v == 0.0));
        // 1/q²: more background near the beam than at the edge
        let centre = (30 * 64 + 26) as usize;
        let corner = 0usize;
        assert!(a[centre] - b[centre] > 10.0 * (a[corner] - b[corner]));
    }
    // counted: the mean total rises by the background
    let (on, off) = (
        simulator(1000.0, small_detector(), acq(300.0), true),
        simulator(1000.0, small_detector(), acq(0.0), true),
    );
    let n = 4000;
    let mean = |s: &ImageSimulator| {
        images(s, n)
            .iter()
            .map(|i| i.iter().map(|&v| v as f64).sum::<f64>())
            .sum::<f64>()
            / n as f64
    };
    let added = mean(&on) - mean(&off);
    assert!(
        (added / 300.0 - 1.0).abs() < 0.05,
        "counted background {added:.1} of 300"
    );
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xrai-bench"));
    c.env("XRAI_OFFLINE", "1");
    c
}

fn fails_naming(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "accepted: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "error lacks {n:?}: {err}");
    }
}

#[test]
fn simulate_saves_the_mask_and_reads_it_back_and_bad_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a");
    let base = [
        "simulate",
        "--n",
        "20",
        "--pixels",
        "32",
        "--mean-photons",
        "500",
        "--seed",
        "2",
    ];
    let o = bin()
        .args(base)
        .args(["--beamstop-radius", "3", "--gap", "2", "--fluence-jitter", "0.2"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (shape, mask) = common::npy_bool(&out.join("mask.npy"));
    assert_eq!(shape, vec![32, 32]);
    let expected = Detector {
        pixels: 32,
        beamstop_radius_px: 3.0,
        gap_px: 2,
        ..Default::default()
    }
    .mask();
    assert_eq!(mask, expected);
    let (_, images) = common::npy_f64(&out.join("images.npy"));
    for (k, v) in images.iter().enumerate() {
        if mask[k % (32 * 32)] {
            assert_eq!(*v, 0.0);
        }
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["config"]["poisson"], true, "--mean-photons counts photons");
    assert_eq!(meta["config"]["acquisition"]["fluence_jitter"], 0.2);
    // the saved mask, given back, masks the same pixels
    let again = dir.path().join("b");
    let o = bin()
        .args(base)
        .arg("--mask")
        .arg(out.join("mask.npy"))
        .arg("--out")
        .arg(&again)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(common::npy_bool(&again.join("mask.npy")).1, mask);

    // refusals, each before anything is written
    let wrong_shape = dir.path().join("wrong_shape.npy");
    common::write_npy(&wrong_shape, &[16, 16], &vec![false; 256]);
    let wrong_type = dir.path().join("wrong_type.npy");
    common::write_npy(&wrong_type, &[32, 32], &vec![0.0f64; 1024]);
    let ws = wrong_shape.to_str().unwrap();
    let wt = wrong_type.to_str().unwrap();
    let target = dir.path().join("never");
    for (args, named) in [
        (vec!["--mean-photons", "0"], "--mean-photons"),
        (vec!["--mean-photons", "-5"], "--mean-photons"),
        (vec!["--mean-photons", "NaN"], "--mean-photons"),
        (vec!["--fluence-jitter", "-0.1"], "--fluence-jitter"),
        (vec!["--background", "nan"], "--background"),
        (vec!["--beamstop-radius", "-1"], "--beamstop-radius"),
        (vec!["--gap", "32"], "--gap"),
        (vec!["--mask", ws], "shape"),
        (vec!["--mask", wt], "booleans"),
        (vec!["--mask", "/nonexistent/mask.npy"], "--mask"),
    ] {
        let o = bin()
            .args(["simulate", "--n", "5", "--pixels", "32"])
            .args(&args)
            .arg("--out")
            .arg(&target)
            .output()
            .unwrap();
        fails_naming(&o, &[named]);
        assert!(!target.exists(), "{args:?} wrote {}", target.display());
    }
}
