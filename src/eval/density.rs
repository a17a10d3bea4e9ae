//! Ground-truth electron density on the real-space grid that matches a reciprocal grid.
//!
//! The transform follows the project's convention F(s) = ∫ ρ(r) exp(+2πi s·r) dr (DESIGN.md), so
//! ρ(r) = ∫ F(s) exp(−2πi s·r) ds. On a centred `m³` grid of spacing Δs the discrete version is
//! ρ(r_j) = Δs³ Σ_k F(s_k) exp(−2πi k·j / m) with r_j = j / (m Δs): the density lives on a centred
//! `m³` grid of voxel size 1 / (m Δs) and comes out in electrons per Å³.

use num_complex::Complex64;
use rustfft::FftDirection;

use super::fft::{fftshift, ifftshift, Fft3};
use crate::volume::{ComplexVolume, DensityMap, Volume};

/// Real-space density (electrons/Å³) of a complex transform sampled on the centred reciprocal grid.
///
/// The imaginary part of the inverse transform (zero for a Friedel-symmetric F) is dropped.
pub fn density_from_transform(transform: &ComplexVolume) -> DensityMap {
    let m = transform.m;
    let mut data = ifftshift(&transform.data, m);
    Fft3::new(m, FftDirection::Forward).process(&mut data, &mut Vec::new());
    let scale = transform.spacing.powi(3);
    let centred = fftshift(&data, m);
    Volume {
        m,
        spacing: real_space_voxel(m, transform.spacing),
        data: centred.iter().map(|v| (v.re * scale) as f32).collect(),
    }
}

/// Transform (Fourier coefficients on the centred reciprocal grid) of a real-space map; the inverse
/// of [`density_from_transform`].
pub fn transform_from_density(density: &DensityMap) -> ComplexVolume {
    let m = density.m;
    let data: Vec<Complex64> = density.data.iter().map(|&v| Complex64::new(v as f64, 0.0)).collect();
    let mut data = ifftshift(&data, m);
    Fft3::new(m, FftDirection::Inverse).process(&mut data, &mut Vec::new());
    let scale = density.spacing.powi(3);
    let data = fftshift(&data, m).into_iter().map(|v| v * scale).collect();
    Volume {
        m,
        spacing: real_space_voxel(m, density.spacing),
        data,
    }
}

/// Voxel size of the real-space grid matching `m` reciprocal samples of spacing `ds` (and the
/// reciprocal spacing matching a real-space voxel; the relation is its own inverse).
pub fn real_space_voxel(m: usize, ds: f64) -> f64 {
    1.0 / (m as f64 * ds)
}
