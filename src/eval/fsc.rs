//! Fourier shell correlation (van Heel & Schatz 2005, "Fourier shell correlation threshold
//! criteria"; Harauz & van Heel 1986) between two maps on the same grid.
//!
//! Shell k holds the Fourier coefficients whose index radius |(kx, ky, kz)| rounds to k (shells one
//! voxel wide), k = 0 … ⌊(m−1)/2⌋, the last shell whose Friedel mates all lie on the grid: for odd
//! m that is (m−1)/2, for even m it is m/2 − 1 (of the Nyquist shell m/2 only the −m/2 face is on
//! the grid, so it is left out); the corners beyond the inscribed sphere are left out too. Maps of
//! either parity have their centre at voxel m/2 (see [`super::fft`]). Shell k has
//! spatial frequency k / (m · voxel) Å⁻¹ and period m / k voxels, so the last shell is (almost)
//! Nyquist, period 2. A resolution is the period at which the curve first falls below a threshold,
//! with the crossing shell interpolated linearly between the two shells around it.

use num_complex::Complex64;
use rayon::prelude::*;
use rustfft::FftDirection;

use super::fft::{ifftshift, signed_index, Fft3};
use super::{check_same_grid, EvalError};
use crate::volume::DensityMap;

/// The usual half-map-free criterion for comparing a map with the truth (the paper's cutoff).
pub const THRESHOLD_HALF: f64 = 0.5;
/// The 1/7 criterion (Rosenthal & Henderson 2003).
pub const THRESHOLD_1_7: f64 = 0.143;

/// FSC between two maps, shell by shell.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FscCurve {
    /// Voxels per side of the maps.
    pub m: usize,
    /// Voxel size of the maps, Å.
    pub voxel_size: f64,
    /// FSC of shell k, k = 0 … ⌊(m−1)/2⌋.
    pub fsc: Vec<f64>,
    /// Fourier coefficients in shell k.
    pub counts: Vec<usize>,
}

/// Where a curve crosses a threshold.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Resolution {
    pub threshold: f64,
    /// Interpolated crossing, in shells (Fourier index).
    pub shell: f64,
    /// Full period at the crossing in voxels (Nyquist = 2): the paper's "resolution (pixels)".
    pub resolution_px: f64,
    /// The same in Å.
    pub resolution_angstrom: f64,
    /// False when the curve stays above the threshold to the last shell: the resolution is then
    /// at least as good as the reported (grid-limited) value.
    pub crossed: bool,
}

/// FSC between `a` and `b`, which must share size and voxel size.
pub fn fsc(a: &DensityMap, b: &DensityMap) -> Result<FscCurve, EvalError> {
    check_same_grid(a, b)?;
    let m = a.m;
    let fa = spectrum(a);
    let fb = spectrum(b);
    let shells = (m - 1) / 2 + 1;
    let zero = || {
        (
            vec![0.0f64; shells],
            vec![0.0f64; shells],
            vec![0.0f64; shells],
            vec![0usize; shells],
        )
    };
    let (num, da, db, counts) = (0..m)
        .into_par_iter()
        .fold(zero, |mut acc, w| {
            let kz = signed_index(w, m) as f64;
            for v in 0..m {
                let ky = signed_index(v, m) as f64;
                for u in 0..m {
                    let kx = signed_index(u, m) as f64;
                    let k = (kx * kx + ky * ky + kz * kz).sqrt().round() as usize;
                    if k < shells {
                        let i = (w * m + v) * m + u;
                        let (x, y) = (fa[i], fb[i]);
                        acc.0[k] += (x * y.conj()).re;
                        acc.1[k] += x.norm_sqr();
                        acc.2[k] += y.norm_sqr();
                        acc.3[k] += 1;
                    }
                }
            }
            acc
        })
        .reduce(zero, |mut x, y| {
            for k in 0..shells {
                x.0[k] += y.0[k];
                x.1[k] += y.1[k];
                x.2[k] += y.2[k];
                x.3[k] += y.3[k];
            }
            x
        });
    let fsc = (0..shells)
        .map(|k| {
            let d = (da[k] * db[k]).sqrt();
            if d > 0.0 {
                num[k] / d
            } else {
                0.0
            }
        })
        .collect();
    Ok(FscCurve {
        m,
        voxel_size: a.spacing,
        fsc,
        counts,
    })
}

fn spectrum(map: &DensityMap) -> Vec<Complex64> {
    let data: Vec<Complex64> = map.data.iter().map(|&v| Complex64::new(v as f64, 0.0)).collect();
    let mut data = ifftshift(&data, map.m);
    Fft3::new(map.m, FftDirection::Inverse).process(&mut data, &mut Vec::new());
    data
}

impl FscCurve {
    /// Spatial frequency of shell k, Å⁻¹.
    pub fn frequency(&self, shell: f64) -> f64 {
        shell / (self.m as f64 * self.voxel_size)
    }

    /// Full period of shell k in voxels.
    pub fn period_px(&self, shell: f64) -> f64 {
        self.m as f64 / shell
    }

    /// First crossing below `threshold` after the origin shell, interpolated between shells.
    pub fn resolution(&self, threshold: f64) -> Resolution {
        let last = self.fsc.len() - 1;
        let shell = (1..=last).find(|&k| self.fsc[k] < threshold).map(|k| {
            let (hi, lo) = (self.fsc[k - 1], self.fsc[k]);
            let t = if hi > lo {
                ((hi - threshold) / (hi - lo)).clamp(0.0, 1.0)
            } else {
                0.0
            };
            (k - 1) as f64 + t
        });
        let crossed = shell.is_some();
        let shell = shell.unwrap_or(last as f64).max(f64::MIN_POSITIVE);
        let resolution_px = self.period_px(shell);
        Resolution {
            threshold,
            shell,
            resolution_px,
            resolution_angstrom: resolution_px * self.voxel_size,
            crossed,
        }
    }
}
