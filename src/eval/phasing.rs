//! Phase retrieval: from Fourier amplitudes |F| on the centred reciprocal grid to a real-space
//! electron density.
//!
//! Iterative projection between the Fourier-modulus constraint (keep the phases, impose the measured
//! amplitudes) and the real-space constraints (inside the support, non-negative):
//! - error reduction (ER, Gerchberg–Saxton as generalised by Fienup 1982, Appl. Opt. 21, 2758) and
//!   hybrid input–output (HIO, same paper, feedback β ≈ 0.9) alternate: HIO escapes the stagnation
//!   of ER, ER settles each cycle into the constraint set;
//! - the support starts as the thresholded autocorrelation (the inverse transform of |F|², whose
//!   support is the object's convolved with itself, so it contains a translate of the object) and
//!   is updated by shrink-wrap (Marchesini et al. 2003, Phys. Rev. B 68, 140101): the current
//!   density blurred by a Gaussian, thresholded at a fraction of its maximum, with σ shrinking;
//! - several starts from seeded random phases; the one with the smallest Fourier error
//!   ‖ |F(ρ)| − |F| ‖ / ‖ |F| ‖ of its final ER iterate is kept.
//!
//! The density is determined up to a translation and inversion (ρ(r) and ρ(−r) share |F|); the
//! output is rolled so that its centre of mass sits at the centre voxel, and [`super::align`]
//! resolves the rest against a reference. Voxels whose amplitude is negative or not finite are
//! treated as unmeasured: their Fourier coefficient is left free.
//!
//! Grids of either parity work: the centre is voxel m/2 (for even m the FFT convention, see
//! [`super::fft`]); the unpaired Nyquist planes of an even grid are their own Friedel mates.
//!
//! Internally everything runs in FFT order in f32 (half the memory traffic of f64; the
//! constraints, not rounding, limit the accuracy).

use num_complex::Complex32;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use rustfft::FftDirection;

use super::density::real_space_voxel;
use super::fft::{fftshift, gaussian_blur, ifftshift, Fft3};
use crate::volume::{DensityMap, IntensityVolume, Volume};

/// Settings of [`phase`]; the defaults phase 2CEX chain A on a ~101³ grid.
#[derive(Clone, Debug)]
pub struct PhasingParams {
    /// Independent random starts; the best by Fourier error is kept.
    pub starts: usize,
    /// Iterations per start (HIO and ER together).
    pub iterations: usize,
    /// HIO feedback β.
    pub beta: f32,
    /// Each cycle runs this many HIO iterations, then `er_per_cycle` ER iterations.
    pub hio_per_cycle: usize,
    pub er_per_cycle: usize,
    /// ER iterations that end every start.
    pub final_er: usize,
    /// Shrink-wrap the support every this many iterations.
    pub shrinkwrap_every: usize,
    /// Shrink-wrap blur σ in voxels, from the first to the last update (geometric).
    pub sigma_start: f64,
    pub sigma_end: f64,
    /// Shrink-wrap threshold, as a fraction of the blurred density's maximum.
    pub threshold: f32,
    /// Threshold of the starting support, as a fraction of the autocorrelation's maximum.
    pub autocorrelation_threshold: f32,
    pub seed: u64,
}

impl Default for PhasingParams {
    fn default() -> Self {
        PhasingParams {
            starts: 4,
            iterations: 240,
            beta: 0.9,
            hio_per_cycle: 40,
            er_per_cycle: 10,
            final_er: 50,
            shrinkwrap_every: 10,
            sigma_start: 3.0,
            sigma_end: 1.0,
            threshold: 0.12,
            autocorrelation_threshold: 0.04,
            seed: 0,
        }
    }
}

/// Outcome of [`phase`].
#[derive(Clone, Debug)]
pub struct Phased {
    /// Density of the best start, centred by its centre of mass; voxel size 1 / (m Δs), in
    /// electrons/Å³ if the amplitudes are |F| in electrons.
    pub density: DensityMap,
    /// Fourier error of each start's final iterate.
    pub start_errors: Vec<f64>,
    /// Index of the kept start.
    pub best_start: usize,
}

impl Phased {
    pub fn fourier_error(&self) -> f64 {
        self.start_errors[self.best_start]
    }
}

/// Why an amplitude volume cannot be phased.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AmplitudeError {
    #[error("no voxel holds a measured amplitude: all {0} voxels are negative or not finite")]
    NothingMeasured(usize),
    #[error("every measured amplitude is zero ({0} voxels): there is nothing to phase")]
    AllZero(usize),
}

/// Checks that `amplitude` has something to phase; returns the number of unmeasured voxels
/// (negative or not finite, left free by [`phase`]).
pub fn check_amplitudes(amplitude: &IntensityVolume) -> Result<usize, AmplitudeError> {
    let measured = amplitude.data.iter().filter(|a| a.is_finite() && **a >= 0.0);
    let (count, positive) = measured.fold((0usize, 0usize), |(c, p), &a| (c + 1, p + usize::from(a > 0.0)));
    if count == 0 {
        return Err(AmplitudeError::NothingMeasured(amplitude.data.len()));
    }
    if positive == 0 {
        return Err(AmplitudeError::AllZero(count));
    }
    Ok(amplitude.data.len() - count)
}

/// Phases an amplitude volume |F| (centred reciprocal grid, spacing Δs) into a density.
pub fn phase(amplitude: &IntensityVolume, params: &PhasingParams) -> Phased {
    let m = amplitude.m;
    let n = m * m * m;
    let amp = ifftshift(&amplitude.data, m);
    let problem = Problem {
        m,
        known: amp.iter().map(|a| a.is_finite() && *a >= 0.0).collect(),
        amp,
        forward: Fft3::new(m, FftDirection::Inverse),
        backward: Fft3::new(m, FftDirection::Forward),
        scale: 1.0 / n as f32,
    };
    let start_support = problem.autocorrelation_support(params.autocorrelation_threshold);
    // Two real starts share every complex FFT (one as the real, one as the imaginary part).
    // Only the best density so far is kept, so memory does not grow with the number of starts.
    let starts = params.starts.max(1);
    let mut start_errors: Vec<f64> = Vec::with_capacity(starts);
    let mut best: Option<(usize, Vec<f32>)> = None;
    for first in (0..starts).step_by(2) {
        let mut rngs: Vec<ChaCha8Rng> = (first..(first + 2).min(starts))
            .map(|start| {
                let seed = params
                    .seed
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add(start as u64);
                ChaCha8Rng::seed_from_u64(seed)
            })
            .collect();
        for (error, rho) in problem.run(&start_support, params, &mut rngs) {
            let index = start_errors.len();
            if best
                .as_ref()
                .is_none_or(|(b, _)| error.total_cmp(&start_errors[*b]).is_lt())
            {
                best = Some((index, rho));
            }
            start_errors.push(error);
        }
    }
    let (best_start, rho) = best.expect("at least one start");
    let rho = &rho;
    // g = (1/m³) Σ G e^{−2πi k·j/m}; ρ = Δs³ Σ F e^{−…} = (m Δs)³ g.
    let units = (m as f64 * amplitude.spacing).powi(3) as f32;
    let centred = centre_by_mass(&fftshift(rho, m), m);
    Phased {
        density: Volume {
            m,
            spacing: real_space_voxel(m, amplitude.spacing),
            data: centred.into_iter().map(|v| v * units).collect(),
        },
        start_errors,
        best_start,
    }
}

/// The fixed data of one phasing problem, in FFT order.
struct Problem {
    m: usize,
    amp: Vec<f32>,
    known: Vec<bool>,
    /// Real → reciprocal: G = Σ g e^{+2πi k·j/m} (the project's sign).
    forward: Fft3<f32>,
    /// Reciprocal → real, times `scale` = 1/m³.
    backward: Fft3<f32>,
    scale: f32,
}

impl Problem {
    fn autocorrelation_support(&self, threshold: f32) -> Vec<bool> {
        let mut buf: Vec<Complex32> = self
            .amp
            .iter()
            .zip(&self.known)
            .map(|(&a, &k)| Complex32::new(if k { a * a } else { 0.0 }, 0.0))
            .collect();
        self.backward.process(&mut buf, &mut Vec::new());
        let max = buf.iter().map(|v| v.re).fold(f32::MIN, f32::max);
        buf.iter().map(|v| v.re > threshold * max).collect()
    }

    /// One or two starts (one per generator) advanced together: each complex FFT carries
    /// ρ₁ + iρ₂, and the two transforms are separated by Hermitian symmetry, F(ρ₁)(k) =
    /// (G(k) + G(−k)*)/2 and F(ρ₂)(k) = (G(k) − G(−k)*)/2i, which halves the FFT work of
    /// independent starts. Returns (Fourier error, density in FFT order) per start.
    fn run(&self, start_support: &[bool], p: &PhasingParams, rngs: &mut [ChaCha8Rng]) -> Vec<(f64, Vec<f32>)> {
        assert!((1..=2).contains(&rngs.len()), "one or two starts at a time");
        let n = self.amp.len();
        let mut buf: Vec<Complex32> = Vec::with_capacity(n);
        let mut work = Vec::with_capacity(n);
        let mut supports: Vec<Vec<bool>> = vec![start_support.to_vec(); rngs.len()];
        let mut rhos: Vec<Vec<f32>> = rngs
            .iter_mut()
            .map(|rng| {
                buf.clear();
                buf.extend(self.amp.iter().zip(&self.known).map(|(&a, &k)| {
                    let a = if k { a } else { 0.0 };
                    Complex32::from_polar(a, rng.random::<f32>() * std::f32::consts::TAU)
                }));
                self.backward.process(&mut buf, &mut work);
                buf.par_iter()
                    .zip(start_support)
                    .map(|(v, &s)| if s { (v.re * self.scale).max(0.0) } else { 0.0 })
                    .collect()
            })
            .collect();

        let updates = (p.iterations / p.shrinkwrap_every.max(1)).max(1) as f64;
        let shrink = (p.sigma_end / p.sigma_start).powf(1.0 / updates);
        let mut sigma = p.sigma_start;
        let cycle = p.hio_per_cycle + p.er_per_cycle;
        let last_hio = p.iterations.saturating_sub(p.final_er);
        for it in 0..p.iterations {
            let hio = it < last_hio && it % cycle.max(1) < p.hio_per_cycle;
            self.project_modulus(&rhos, &mut buf, &mut work);
            let beta = p.beta;
            for (slot, (rho, support)) in rhos.iter_mut().zip(&supports).enumerate() {
                rho.par_iter_mut()
                    .zip(buf.par_iter())
                    .zip(support.par_iter())
                    .for_each(|((r, g), &s)| {
                        let g = if slot == 0 { g.re } else { g.im };
                        *r = if s && g >= 0.0 {
                            g
                        } else if hio {
                            *r - beta * g
                        } else {
                            0.0
                        };
                    });
            }
            if p.shrinkwrap_every > 0 && (it + 1) % p.shrinkwrap_every == 0 && it + 1 < p.iterations {
                for (support, rho) in supports.iter_mut().zip(&rhos) {
                    *support = self.shrinkwrap(rho, sigma, p.threshold);
                }
                sigma = (sigma * shrink).max(p.sigma_end.min(p.sigma_start));
            }
        }
        let errors = self.fourier_errors(&rhos, &mut buf, &mut work);
        errors.into_iter().zip(rhos).collect()
    }

    /// G = F(ρ₁ + iρ₂) in `buf`, FFT order.
    fn transform_pair(&self, rhos: &[Vec<f32>], buf: &mut Vec<Complex32>, work: &mut Vec<Complex32>) {
        let n = self.amp.len();
        buf.resize(n, Complex32::new(0.0, 0.0));
        let second = rhos.get(1);
        buf.par_iter_mut().enumerate().for_each(|(j, b)| {
            *b = Complex32::new(rhos[0][j], second.map_or(0.0, |r| r[j]));
        });
        self.forward.process(buf, work);
    }

    /// Index of −k for every k (FFT order).
    fn mirror(&self, i: usize) -> usize {
        let m = self.m;
        let (ix, iy, iz) = (i % m, (i / m) % m, i / (m * m));
        (((m - iz) % m) * m + (m - iy) % m) * m + (m - ix) % m
    }

    /// buf.re ← P_M(ρ₁), buf.im ← P_M(ρ₂): each density's transform given the measured moduli,
    /// keeping its phases, then its Hermitian part (so each result is real).
    fn project_modulus(&self, rhos: &[Vec<f32>], buf: &mut Vec<Complex32>, work: &mut Vec<Complex32>) {
        self.transform_pair(rhos, buf, work);
        let project = |g: Complex32, i: usize| -> Complex32 {
            if !self.known[i] {
                return g;
            }
            let norm = g.norm();
            if norm > 0.0 {
                g * (self.amp[i] / norm)
            } else {
                Complex32::new(self.amp[i], 0.0)
            }
        };
        let half_i = Complex32::new(0.0, -0.5);
        let g = &*buf;
        work.resize(g.len(), Complex32::new(0.0, 0.0));
        work.par_iter_mut().enumerate().for_each(|(i, out)| {
            let j = self.mirror(i);
            let (gk, gm) = (g[i], g[j].conj());
            let (g1, g2) = ((gk + gm) * 0.5, (gk - gm) * half_i);
            // At −k the separated transforms are g1*, g2* (real densities).
            let p1 = (project(g1, i) + project(g1.conj(), j).conj()) * 0.5;
            let p2 = (project(g2, i) + project(g2.conj(), j).conj()) * 0.5;
            *out = p1 + Complex32::new(0.0, 1.0) * p2;
        });
        std::mem::swap(buf, work);
        self.backward.process(buf, work);
        let scale = self.scale;
        buf.par_iter_mut().for_each(|g| *g *= scale);
    }

    /// ‖ |F(ρ)| − |F| ‖ / ‖ |F| ‖ over the measured voxels, per density.
    fn fourier_errors(&self, rhos: &[Vec<f32>], buf: &mut Vec<Complex32>, work: &mut Vec<Complex32>) -> Vec<f64> {
        self.transform_pair(rhos, buf, work);
        let g = &*buf;
        let half_i = Complex32::new(0.0, -0.5);
        (0..rhos.len())
            .map(|slot| {
                let (num, den) = (0..g.len())
                    .into_par_iter()
                    .filter(|&i| self.known[i])
                    .map(|i| {
                        let (gk, gm) = (g[i], g[self.mirror(i)].conj());
                        let f = if slot == 0 { (gk + gm) * 0.5 } else { (gk - gm) * half_i };
                        let a = self.amp[i] as f64;
                        let d = f.norm() as f64 - a;
                        (d * d, a * a)
                    })
                    .reduce(|| (0.0, 0.0), |x, y| (x.0 + y.0, x.1 + y.1));
                (num / den.max(f64::MIN_POSITIVE)).sqrt()
            })
            .collect()
    }

    /// Shrink-wrap: support = { blur_σ(max(ρ, 0)) > threshold · max }.
    fn shrinkwrap(&self, rho: &[f32], sigma: f64, threshold: f32) -> Vec<bool> {
        let positive: Vec<f32> = rho.par_iter().map(|r| r.max(0.0)).collect();
        let blurred = gaussian_blur(&positive, self.m, sigma);
        let max = blurred.par_iter().copied().reduce(|| f32::MIN, f32::max);
        blurred.par_iter().map(|&v| v > threshold * max).collect()
    }
}

/// Rolls a periodic centred map so that its centre of mass (circular mean of the positive part,
/// per axis) lands on the centre voxel `m/2` (either parity of `m`).
pub fn centre_by_mass(data: &[f32], m: usize) -> Vec<f32> {
    let mut sums = [(0.0f64, 0.0f64); 3];
    for iz in 0..m {
        for iy in 0..m {
            for ix in 0..m {
                let v = data[(iz * m + iy) * m + ix].max(0.0) as f64;
                if v > 0.0 {
                    for (axis, i) in [ix, iy, iz].into_iter().enumerate() {
                        let a = std::f64::consts::TAU * i as f64 / m as f64;
                        sums[axis].0 += v * a.cos();
                        sums[axis].1 += v * a.sin();
                    }
                }
            }
        }
    }
    let c = m / 2;
    let shift: Vec<usize> = sums
        .iter()
        .map(|&(cos, sin)| {
            let com = sin.atan2(cos).rem_euclid(std::f64::consts::TAU) * m as f64 / std::f64::consts::TAU;
            let s = (c as f64 - com).round() as i64;
            s.rem_euclid(m as i64) as usize
        })
        .collect();
    let mut out = vec![0.0; data.len()];
    for iz in 0..m {
        let oz = (iz + shift[2]) % m;
        for iy in 0..m {
            let oy = (iy + shift[1]) % m;
            for ix in 0..m {
                out[(oz * m + oy) * m + (ix + shift[0]) % m] = data[(iz * m + iy) * m + ix];
            }
        }
    }
    out
}
