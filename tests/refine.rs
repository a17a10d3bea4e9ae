//! The refinement stage (src/xrai/refine.rs) on a known volume: the 2CEX_A amplitudes on the
//! decoder's 41³ grid, frozen, with images the decoder makes at known poses, so the loss's
//! minimum is the true pose and any residual is the descent's.

mod common;

use candle_core::Device;
use nalgebra::{Matrix3, Rotation3, UnitQuaternion, Vector3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use xrai_bench::rotation::{random_rotation, to_matrix};
use xrai_bench::xrai::init::{true_amplitude_volume, InputStats};
use xrai_bench::xrai::mates;
use xrai_bench::xrai::refine::{self, best_of, refine_rotations, RefineOptions};
use xrai_bench::xrai::trainer::VolumeInit;
use xrai_bench::xrai::{Trainer, WorkingGeometry, XraiConfig};

/// A trainer holding the true volume, and `n` images it predicts at random poses.
fn setup(n: usize, seed: u64) -> (Trainer, Vec<f32>, Vec<Matrix3<f64>>) {
    xrai_bench::xrai::configure_cpu();
    let sim = common::cex_a_simulator();
    let cfg = XraiConfig::default();
    let geo = WorkingGeometry::new(&sim, cfg.working_size).unwrap();
    let m = cfg.volume_size;
    let truth = true_amplitude_volume(&sim, m, geo.volume_spacing(m));
    // any input statistics: the encoder is not used
    let stats = InputStats::from_amplitudes(&vec![1.0; geo.pixels() * 2], geo.pixels());
    let t = Trainer::new(cfg, geo, Some(&stats), VolumeInit::Frozen(truth), None, Device::Cpu).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let poses: Vec<Matrix3<f64>> = (0..n)
        .map(|_| *to_matrix(&random_rotation(&mut rng)).matrix())
        .collect();
    let amps = t
        .decoder
        .forward(&xrai_bench::xrai::trainer::matrices_tensor(&poses, &Device::Cpu).unwrap())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    (t, amps, poses)
}

fn angle_deg(a: &Matrix3<f64>, b: &Matrix3<f64>) -> f64 {
    (((a.transpose() * b).trace() - 1.0) / 2.0)
        .clamp(-1.0, 1.0)
        .acos()
        .to_degrees()
}

/// `r` turned by `deg` about a random axis.
fn perturbed(r: &Matrix3<f64>, deg: f64, rng: &mut impl Rng) -> Matrix3<f64> {
    let axis = Vector3::new(
        rng.random::<f64>() - 0.5,
        rng.random::<f64>() - 0.5,
        rng.random::<f64>() - 0.5,
    )
    .normalize();
    r * Rotation3::from_axis_angle(&nalgebra::Unit::new_normalize(axis), deg.to_radians()).into_inner()
}

fn rz_pi() -> Matrix3<f64> {
    Matrix3::new(-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
}

#[test]
fn refinement_recovers_a_pose_perturbed_by_10_degrees() {
    let (t, amps, truth) = setup(24, 1);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let start: Vec<Matrix3<f64>> = truth.iter().map(|r| perturbed(r, 10.0, &mut rng)).collect();
    let o = RefineOptions::default();
    let (out, _) = refine_rotations(&t, &amps, &start, 1, o.pose_steps, o.schedule()).unwrap();
    let errs: Vec<f64> = out.iter().zip(&truth).map(|(a, b)| angle_deg(a, b)).collect();
    let worst = errs.iter().cloned().fold(0.0, f64::max);
    eprintln!("10° starts refined to: worst {worst:.3}°, all {errs:.2?}");
    assert!(worst < 1.0, "a 10° start ended {worst:.2}° from the truth");
    // the same descent with no steps leaves them where they were (the check can fail)
    let (same, _) = refine_rotations(&t, &amps, &start, 1, 0, o.schedule()).unwrap();
    assert!(same
        .iter()
        .zip(&truth)
        .all(|(a, b)| (angle_deg(a, b) - 10.0).abs() < 1e-6));
}

#[test]
fn a_pi_flipped_start_is_recovered_with_its_pi_partner() {
    let (t, amps, truth) = setup(24, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    // the encoder's typical confusion: the in-plane π partner, a few degrees off
    let flipped: Vec<Matrix3<f64>> = truth.iter().map(|r| perturbed(&(r * rz_pi()), 3.0, &mut rng)).collect();
    let o = RefineOptions::default();
    let lr = o.schedule();
    let (alone, _) = refine_rotations(&t, &amps, &flipped, 1, o.pose_steps, lr).unwrap();
    let stuck = alone.iter().zip(&truth).filter(|(a, b)| angle_deg(a, b) > 90.0).count();
    let with_partner: Vec<Matrix3<f64>> = flipped.iter().flat_map(|r| [*r, r * rz_pi()]).collect();
    let (r, e) = refine_rotations(&t, &amps, &with_partner, 2, o.pose_steps, lr).unwrap();
    let (best, _) = best_of(&r, &e, 2);
    let errs: Vec<f64> = best.iter().zip(&truth).map(|(a, b)| angle_deg(a, b)).collect();
    let worst = errs.iter().cloned().fold(0.0, f64::max);
    eprintln!("π-flipped starts: {stuck} of 24 stay flipped alone; with the partner the worst is {worst:.3}°");
    assert!(
        stuck > 12,
        "refinement alone left the π minimum in {} of 24 images",
        24 - stuck
    );
    assert!(worst < 1.0, "with the π partner the worst pose is {worst:.2}° off");
}

#[test]
fn the_global_search_finds_a_pose_with_no_start() {
    let (t, amps, truth) = setup(4, 5);
    let (found, _) = refine::search(&t, &amps, &RefineOptions::default()).unwrap();
    let errs: Vec<f64> = found.iter().zip(&truth).map(|(a, b)| angle_deg(a, b)).collect();
    eprintln!("search from nothing: {errs:.3?}°");
    // either the pose or its in-plane π partner (equal up to the Ewald sphere's curvature)
    for (f, (r, e)) in found.iter().zip(truth.iter().zip(&errs)) {
        let e = e.min(angle_deg(f, &(r * rz_pi())));
        assert!(e < 1.0, "the search ended {e:.2}° from the pose");
    }
    let q: Vec<UnitQuaternion<f64>> = xrai_bench::rotation::from_matrices(&found);
    assert_eq!(q.len(), 4);
}

/// The near-2-fold axes of 2CEX_A's true amplitude volume are the molecule's principal axes
/// (from its atoms), each within 5°; and an image started at the mate of its pose (turned by π
/// about a principal axis of the atoms) is brought back by trying the mates about the axes
/// found (within 10°, and within 1° after one more pose pass), where descent alone stays there.
#[test]
fn near_twofold_mates_are_found_and_left() {
    let (t, amps, truth) = setup(24, 6);
    let m = t.decoder.m;
    let axes = mates::near_twofold_axes(&t.decoder.symmetrized_volume().unwrap(), m).unwrap();
    let mol = common::cex_a();
    let mut inertia = nalgebra::Matrix3::<f64>::zeros();
    for p in &mol.positions {
        let x = Vector3::from(*p);
        inertia += x * x.transpose();
    }
    let principal = nalgebra::SymmetricEigen::new(inertia).eigenvectors;
    for a in &axes {
        let best = (0..3)
            .map(|k| a.dot(&principal.column(k)).abs().min(1.0).acos().to_degrees())
            .fold(f64::INFINITY, f64::min);
        eprintln!(
            "near-2-fold axis {:.3?}: {best:.2}° from a principal axis of the atoms",
            a.as_ref()
        );
        assert!(best < 5.0, "axis {a:?} is {best:.1}° from every principal axis");
    }
    // starts at the mates of the true poses about the atoms' principal axes, a few degrees off,
    // one axis per image in turn; the mates tried are about the axes found
    let atoms = [0, 1, 2].map(|k| nalgebra::Unit::new_normalize(principal.column(k).into_owned()));
    let atom_twofolds = mates::twofolds(&atoms);
    let twofolds = mates::twofolds(&axes);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let start: Vec<Matrix3<f64>> = truth
        .iter()
        .enumerate()
        .map(|(i, r)| perturbed(&(atom_twofolds[i % 3] * r), 3.0, &mut rng))
        .collect();
    let o = RefineOptions::default();
    let (mut best, mut best_e) = refine_rotations(&t, &amps, &start, 1, o.pose_steps, o.schedule()).unwrap();
    let stuck = best.iter().zip(&truth).filter(|(a, b)| angle_deg(a, b) > 90.0).count();
    let moved = mates::try_mates(&t, &amps, &twofolds, &mut best, &mut best_e, &o).unwrap();
    // a mate of a rotation at the wrong minimum starts up to ~10° off; the stage's later pose
    // passes finish it, as here
    let far = best
        .iter()
        .zip(&truth)
        .filter(|(a, b)| angle_deg(a, b).min(angle_deg(a, &(*b * rz_pi()))) > 10.0)
        .count();
    assert_eq!(
        far, 0,
        "{far} of 24 images still more than 10° off after trying the mates"
    );
    let best = refine::refine_again(&t, &amps, &best, &o).unwrap();
    let errs: Vec<f64> = best
        .iter()
        .zip(&truth)
        .map(|(a, b)| angle_deg(a, b).min(angle_deg(a, &(b * rz_pi()))))
        .collect();
    let worst = errs.iter().cloned().fold(0.0, f64::max);
    eprintln!("mate starts: {stuck} of 24 stay alone; with the mates {moved} moved, worst {worst:.3}°: {errs:.2?}");
    assert!(stuck > 12, "descent alone left the mate in {} of 24 images", 24 - stuck);
    assert!(worst < 1.0, "with the mates the worst pose is {worst:.2}° off");
}
