//! Agreement with an independent simulator (skopi 0.6) for 2CEX chain A at 0.1 m
//! (tests/data/skopi_2cex_a_d0.1, see its README).

mod common;

use common::*;
use nalgebra::UnitQuaternion;
use xrai_bench::physics::beam::Beam;
use xrai_bench::physics::detector::Detector;
use xrai_bench::physics::slice::Slicer;
use xrai_bench::physics::transform::{direct_transform, grid_transform, GridSpec, DEFAULT_OVERSAMPLING};
use xrai_bench::rotation::{from_wxyz, to_matrix};

fn reference_setup() -> (Detector, Beam) {
    (
        Detector {
            pixels: 128,
            side_m: 0.1,
            distance_m: 0.1,
            ..Default::default()
        },
        Beam::default(),
    )
}

/// skopi rotated the molecule by R(q); in this project's convention that is pose Rᵀ.
fn reference_poses() -> Vec<UnitQuaternion<f64>> {
    let (_, q) = npy_f64(&reference_dir().join("quaternions.npy"));
    q.chunks_exact(4)
        .map(|v| from_wxyz([v[0], -v[1], -v[2], -v[3]]).unwrap())
        .collect()
}

fn reference_patterns() -> Vec<Vec<f64>> {
    let (shape, p) = npy_f64(&reference_dir().join("patterns_direct.npy"));
    assert_eq!(shape, vec![10, 1, 128, 128]);
    p.chunks_exact(128 * 128).map(|c| c.to_vec()).collect()
}

#[test]
fn pixel_corrections_match_the_reference_geometry() {
    let (det, beam) = reference_setup();
    let g = det.geometry(&beam);
    let (_, linear) = npy_f64(&reference_dir().join("linear_correction.npy"));
    let (_, s_ref) = npy_f64(&reference_dir().join("pixel_position_reciprocal_per_m.npy"));
    assert!(
        rel_rms(&g.scale(&beam), &linear) < 2e-4,
        "scale vs linear_correction: {}",
        rel_rms(&g.scale(&beam), &linear)
    );
    let s_mine: Vec<f64> = g.s.iter().flatten().copied().collect();
    let s_ref: Vec<f64> = s_ref.iter().map(|x| x * 1e-10).collect();
    assert!(
        rel_rms(&s_mine, &s_ref) < 1e-6,
        "s-vectors: {}",
        rel_rms(&s_mine, &s_ref)
    );
}

#[test]
fn direct_images_match_the_reference_within_half_a_percent() {
    let (det, beam) = reference_setup();
    let g = det.geometry(&beam);
    let mol = cex_a();
    for (i, (pose, reference)) in reference_poses().iter().zip(reference_patterns()).enumerate() {
        let r = to_matrix(pose);
        let rotated: Vec<[f64; 3]> = g.s.iter().map(|s| (r * nalgebra::Vector3::from(*s)).into()).collect();
        let f = direct_transform(&mol, &rotated);
        let image: Vec<f64> = f.iter().zip(&g.scale(&beam)).map(|(f, w)| w * f.norm_sqr()).collect();
        let err = rel_rms(&image, &reference);
        let total: f64 = image.iter().sum();
        let total_ref: f64 = reference.iter().sum();
        eprintln!("image {i}: rel RMS {err:.5}, total {total:.4} vs {total_ref:.4}");
        assert!(err < 0.005, "image {i}: relative RMS {err}");
        assert!(
            (total / total_ref - 1.0).abs() < 0.005,
            "image {i}: total {total} vs {total_ref}"
        );
    }
}

#[test]
fn grid_images_match_the_reference_within_two_percent() {
    let (det, beam) = reference_setup();
    let g = det.geometry(&beam);
    let mol = cex_a();
    let spec = GridSpec::for_molecule(mol.radius(), g.s_max(), DEFAULT_OVERSAMPLING).unwrap();
    let t0 = std::time::Instant::now();
    let volume = grid_transform(&mol, &spec);
    eprintln!(
        "grid M = {}, Δs = {:.5}, transform {:.2} s",
        spec.m,
        spec.spacing,
        t0.elapsed().as_secs_f64()
    );
    let slicer = Slicer::new(&volume.intensity(), &g, &beam).unwrap();
    for (i, (pose, reference)) in reference_poses().iter().zip(reference_patterns()).enumerate() {
        let image: Vec<f64> = slicer.slice(&to_matrix(pose)).into_iter().map(f64::from).collect();
        let err = rel_rms(&image, &reference);
        let total: f64 = image.iter().sum();
        let total_ref: f64 = reference.iter().sum();
        eprintln!("image {i}: rel RMS {err:.5}, total ratio {:.5}", total / total_ref);
        assert!(err < 0.02, "image {i}: relative RMS {err}");
        assert!(
            (total / total_ref - 1.0).abs() < 0.02,
            "image {i}: total {total} vs {total_ref}"
        );
    }
}
