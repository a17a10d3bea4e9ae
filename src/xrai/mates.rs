//! Near-2-fold mates in the refinement stage. A compact particle's low-resolution shape is close
//! to an ellipsoid, whose three 2-folds (turns by π about its principal axes) leave the
//! low-resolution intensity nearly unchanged. An image posed at the mate A·R of its true pose R
//! fits the speckles near the beam almost as well; only the finer speckles tell them apart, and
//! descent on the rotation, which sees a neighbourhood, does not cross the 180° between them. The
//! encoder lands there for a share of the images: on 2CEX_A, of the test images more than 45° off
//! after the refinement stage, 93 % at 20,000 photons per pattern (45 % at 1,000) were turned by
//! 170–180° about one axis, the molecule's shortest principal axis. The in-plane π partner, the
//! other near-symmetry of a pattern, is among the encoder's hypotheses already; these are not.
//!
//! With `RefineOptions::mates`, the first pose pass also refines each image from the three mates
//! of its best rotation and keeps whichever ends with the lowest loss. The axes are read off the
//! decoder's own volume: the principal axes of its Patterson map (the density's autocorrelation,
//! the transform of the intensity), whose second moments are twice the density's, so they are the
//! particle's principal axes without a window to choose. Measured on 2CEX_A: the true volume's
//! and X-RAI's learned volume at 20,000 photons (once aligned) both give the atoms' principal axes
//! within 1.6°, and the 2-fold the wrong images sat at was within 3° of the shortest of them. The
//! intensity's own second moments would need a window around the central speckle (off by 11° over
//! the inner third of the grid).
//!
//! Written here because the mates are a property of this method's failure, not a general
//! algorithm any crate offers; the FFT is rustfft's, the eigen-decomposition nalgebra's.

use anyhow::{ensure, Result};
use nalgebra::{Matrix3, Rotation3, SymmetricEigen, Unit, Vector3};
use rustfft::{num_complex::Complex, FftDirection};

use super::refine::{best_of, keep_lower, refine_rotations, RefineOptions};
use super::trainer::Trainer;
use crate::eval::fft::{signed_index, Fft3};

/// Mates tried per image (one per principal axis).
pub const MATES: usize = 3;

/// The principal axes of the particle behind an amplitude volume `[m, m, m]` (x fastest, the
/// decoder's layout, centre voxel (m − 1)/2), largest extent first: the principal axes of the
/// positive part of its Patterson map P(r) = Σ_k A(k)² e^{2πi k·r/m}, the density's
/// autocorrelation, whose second moments are twice the density's.
pub fn near_twofold_axes(amplitudes: &[f32], m: usize) -> Result<[Unit<Vector3<f64>>; MATES]> {
    ensure!(
        m >= 3 && amplitudes.len() == m * m * m,
        "{} values are not a volume of side {m}",
        amplitudes.len()
    );
    let mut p: Vec<Complex<f64>> = amplitudes
        .iter()
        .map(|&a| Complex::new((a as f64).powi(2), 0.0))
        .collect();
    Fft3::<f64>::new(m, FftDirection::Inverse).process(&mut p, &mut Vec::new());
    // the transform of the raw index k is the Patterson's times e^{2πi c·r/m}, c the centre
    let c = (m - 1) as f64 / 2.0;
    let mut moments = Matrix3::<f64>::zeros();
    for (i, v) in p.iter().enumerate() {
        let r = Vector3::new(
            signed_index(i % m, m) as f64,
            signed_index((i / m) % m, m) as f64,
            signed_index(i / (m * m), m) as f64,
        );
        let phase = -2.0 * std::f64::consts::PI * c * r.sum() / m as f64;
        let value = v.re * phase.cos() - v.im * phase.sin();
        if value > 0.0 {
            moments += r * r.transpose() * value;
        }
    }
    ensure!(
        moments.iter().all(|v| v.is_finite()) && moments.trace() > 0.0,
        "the volume holds no intensity"
    );
    let eig = SymmetricEigen::new(moments);
    let mut order = [0, 1, 2];
    order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    Ok(order.map(|k| Unit::new_normalize(eig.eigenvectors.column(k).into_owned())))
}

/// The turns by π about `axes`.
pub fn twofolds(axes: &[Unit<Vector3<f64>>; MATES]) -> [Matrix3<f64>; MATES] {
    axes.map(|a| Rotation3::from_axis_angle(&a, std::f64::consts::PI).into_inner())
}

/// Refines each image of `amps` from the mates A·R of its rotation in `best` (A: each of
/// `twofolds`) and keeps a mate that ends with a lower loss than `best_e`; returns how many
/// images moved by more than [`super::refine::DISTINCT_DEG`].
pub fn try_mates(
    t: &Trainer,
    amps: &[f32],
    twofolds: &[Matrix3<f64>; MATES],
    best: &mut [Matrix3<f64>],
    best_e: &mut [f32],
    opts: &RefineOptions,
) -> Result<usize> {
    let n = best.len();
    ensure!(best_e.len() == n, "{} losses for {n} rotations", best_e.len());
    let starts: Vec<Matrix3<f64>> = best.iter().flat_map(|r| twofolds.map(|a| a * r)).collect();
    let (r, e) = refine_rotations(t, amps, &starts, MATES, opts.pose_steps, opts.schedule())?;
    let (b, be) = best_of(&r, &e, MATES);
    let all: Vec<usize> = (0..n).collect();
    Ok(keep_lower(best, best_e, &all, &b, &be).1)
}
