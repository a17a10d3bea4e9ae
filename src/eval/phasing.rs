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
            iterations: 300,
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
    let runs: Vec<(f64, Vec<f32>)> = (0..params.starts.max(1))
        .map(|start| {
            let seed = params
                .seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(start as u64);
            problem.run(&start_support, params, &mut ChaCha8Rng::seed_from_u64(seed))
        })
        .collect();
    let best_start = (0..runs.len())
        .min_by(|&a, &b| runs[a].0.total_cmp(&runs[b].0))
        .expect("one start");
    let start_errors = runs.iter().map(|r| r.0).collect();
    let rho = &runs[best_start].1;
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

    /// One start; returns (Fourier error, density in FFT order in the internal units).
    fn run(
        &self,
        start_support: &[bool],
        p: &PhasingParams,
        rng: &mut ChaCha8Rng,
    ) -> (f64, Vec<f32>) {
        let n = self.amp.len();
        let mut buf: Vec<Complex32> = self
            .amp
            .iter()
            .zip(&self.known)
            .map(|(&a, &k)| {
                let a = if k { a } else { 0.0 };
                Complex32::from_polar(a, rng.random::<f32>() * std::f32::consts::TAU)
            })
            .collect();
        let mut work = Vec::with_capacity(n);
        self.backward.process(&mut buf, &mut work);
        let mut support = start_support.to_vec();
        let mut rho: Vec<f32> = buf
            .par_iter()
            .zip(&support)
            .map(|(v, &s)| if s { (v.re * self.scale).max(0.0) } else { 0.0 })
            .collect();

        let updates = (p.iterations / p.shrinkwrap_every.max(1)).max(1) as f64;
        let shrink = (p.sigma_end / p.sigma_start).powf(1.0 / updates);
        let mut sigma = p.sigma_start;
        let cycle = p.hio_per_cycle + p.er_per_cycle;
        let last_hio = p.iterations.saturating_sub(p.final_er);
        for it in 0..p.iterations {
            let hio = it < last_hio && it % cycle.max(1) < p.hio_per_cycle;
            self.project_modulus(&rho, &mut buf, &mut work);
            let beta = p.beta;
            rho.par_iter_mut()
                .zip(buf.par_iter())
                .zip(support.par_iter())
                .for_each(|((r, g), &s)| {
                    let g = g.re;
                    *r = if s && g >= 0.0 {
                        g
                    } else if hio {
                        *r - beta * g
                    } else {
                        0.0
                    };
                });
            if p.shrinkwrap_every > 0 && (it + 1) % p.shrinkwrap_every == 0 && it + 1 < p.iterations
            {
                support = self.shrinkwrap(&rho, sigma, p.threshold);
                sigma = (sigma * shrink).max(p.sigma_end.min(p.sigma_start));
            }
        }
        (self.fourier_error(&rho, &mut buf, &mut work), rho)
    }

    /// buf ← P_M(ρ) in real space: the density whose transform has ρ's phases and the measured moduli.
    fn project_modulus(&self, rho: &[f32], buf: &mut Vec<Complex32>, work: &mut Vec<Complex32>) {
        buf.par_iter_mut()
            .zip(rho.par_iter())
            .for_each(|(b, &r)| *b = Complex32::new(r, 0.0));
        self.forward.process(buf, work);
        buf.par_iter_mut()
            .zip(self.amp.par_iter())
            .zip(self.known.par_iter())
            .for_each(|((g, &a), &k)| {
                if k {
                    let norm = g.norm();
                    *g = if norm > 0.0 {
                        *g * (a / norm)
                    } else {
                        Complex32::new(a, 0.0)
                    };
                }
            });
        self.backward.process(buf, work);
        let scale = self.scale;
        buf.par_iter_mut().for_each(|g| *g *= scale);
    }

    /// ‖ |F(ρ)| − |F| ‖ / ‖ |F| ‖ over the measured voxels.
    fn fourier_error(
        &self,
        rho: &[f32],
        buf: &mut Vec<Complex32>,
        work: &mut Vec<Complex32>,
    ) -> f64 {
        buf.par_iter_mut()
            .zip(rho.par_iter())
            .for_each(|(b, &r)| *b = Complex32::new(r, 0.0));
        self.forward.process(buf, work);
        let (num, den) = buf
            .par_iter()
            .zip(self.amp.par_iter())
            .zip(self.known.par_iter())
            .filter(|(_, &k)| k)
            .map(|((g, &a), _)| {
                let d = g.norm() as f64 - a as f64;
                (d * d, a as f64 * a as f64)
            })
            .reduce(|| (0.0, 0.0), |x, y| (x.0 + y.0, x.1 + y.1));
        (num / den.max(f64::MIN_POSITIVE)).sqrt()
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
/// per axis) lands on the centre voxel.
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
    let c = (m - 1) / 2;
    let shift: Vec<usize> = sums
        .iter()
        .map(|&(cos, sin)| {
            let com =
                sin.atan2(cos).rem_euclid(std::f64::consts::TAU) * m as f64 / std::f64::consts::TAU;
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
