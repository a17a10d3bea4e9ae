//! Superposing a map on a reference before comparing them (FSC).
//!
//! A phased map is known only up to a translation and an inversion ρ(r) → ρ(−r) (both leave |F|
//! unchanged), and a method that fixes no frame also returns it rotated. The steps:
//! - **translation and inversion** by FFT cross-correlation: the peak of
//!   IFFT(F_ref · conj F_mov) gives the shift (refined to sub-voxel by a parabola through the
//!   peak), and the inverted map's spectrum is conj F_mov, so both hands cost one FFT each;
//! - **rotation** (optional): both maps are centred on their centres of mass; a coarse search over a
//!   uniform SO(3) set (super-Fibonacci spirals, Alexa 2022) and both hands scores the Pearson
//!   correlation of Gaussian-blurred maps on a coarse grid of points; the best few are refined by
//!   a pattern search over rotation and translation on finer points; the map is resampled with
//!   Catmull–Rom cubic interpolation and the translation is finished by cross-correlation.

use nalgebra::{Matrix3, Quaternion, Rotation3, UnitQuaternion, Vector3};
use num_complex::Complex64;
use rayon::prelude::*;
use rustfft::FftDirection;

use super::fft::{fftshift, gaussian_blur, ifftshift, signed_index, Fft3};
use super::phasing::centre_by_mass;
use super::{check_same_grid, EvalError};
use crate::trilinear::Cell;
use crate::volume::{DensityMap, Volume};

/// What to search over.
#[derive(Clone, Debug)]
pub struct AlignParams {
    /// Search rotations (needed for maps from methods that fix no frame).
    pub rotation: bool,
    /// Try the inverted map ρ(−r) too.
    pub inversion: bool,
    /// Rotations in the coarse SO(3) search (≈ 15° apart for 3000).
    pub coarse_rotations: usize,
}

impl Default for AlignParams {
    fn default() -> Self {
        AlignParams {
            rotation: true,
            inversion: true,
            coarse_rotations: 3000,
        }
    }
}

/// The transform that was applied to the moving map.
#[derive(Clone, Debug)]
pub struct Alignment {
    /// The moving map was inverted through its centre.
    pub inverted: bool,
    /// aligned(p) = moving(c_mov + R (p − c_ref)) before the final shift (identity without rotation
    /// search).
    pub rotation: Rotation3<f64>,
    /// Shift of the last, cross-correlation step, voxels (x, y, z).
    pub shift: Vector3<f64>,
    /// Normalised cross-correlation with the reference after alignment.
    pub correlation: f64,
}

/// Aligns `moving` onto `reference`; returns the aligned copy and the transform.
pub fn align(
    reference: &DensityMap,
    moving: &DensityMap,
    params: &AlignParams,
) -> Result<(DensityMap, Alignment), EvalError> {
    check_same_grid(reference, moving)?;
    if !params.rotation {
        return Ok(align_translation(reference, moving, params.inversion));
    }
    let (rotated, inverted, rotation) = align_rotation(reference, moving, params);
    let (aligned, mut alignment) = align_translation(reference, &rotated, false);
    alignment.inverted = inverted;
    alignment.rotation = rotation;
    Ok((aligned, alignment))
}

fn spectrum(map: &[f32], m: usize) -> Vec<Complex64> {
    let data: Vec<Complex64> = map.iter().map(|&v| Complex64::new(v as f64, 0.0)).collect();
    let mut data = ifftshift(&data, m);
    Fft3::new(m, FftDirection::Inverse).process(&mut data, &mut Vec::new());
    data
}

/// Translation (and optionally inversion) by FFT cross-correlation; exact for periodic maps.
pub fn align_translation(reference: &DensityMap, moving: &DensityMap, inversion: bool) -> (DensityMap, Alignment) {
    let m = reference.m;
    let fr = spectrum(&reference.data, m);
    let fm = spectrum(&moving.data, m);
    let energy = |f: &[Complex64]| f.iter().skip(1).map(|v| v.norm_sqr()).sum::<f64>();
    let norm = (energy(&fr) * energy(&fm)).sqrt().max(f64::MIN_POSITIVE);
    let forward = Fft3::new(m, FftDirection::Forward);
    let hands: &[bool] = if inversion { &[false, true] } else { &[false] };
    let (inverted, shift, correlation) = hands
        .iter()
        .map(|&inv| {
            // Spectrum of the inverted map is conj(F_mov): the product loses its conjugate.
            let mut product: Vec<Complex64> = fr
                .par_iter()
                .zip(fm.par_iter())
                .map(|(a, b)| if inv { a * b } else { a * b.conj() })
                .collect();
            product[0] = Complex64::new(0.0, 0.0);
            let mut cc = product.clone();
            forward.process(&mut cc, &mut Vec::new());
            let (start, _) = subvoxel_peak(&cc, m);
            let (shift, peak) = refine_peak(&product, m, start);
            (inv, shift, peak / norm)
        })
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .expect("one hand");
    // aligned(x) = mov(±x − t)  ⇔  A(k) = M(k) e^{+2πi k·t/m}, M = F_mov or its conjugate.
    let mut shifted: Vec<Complex64> = fm
        .par_iter()
        .enumerate()
        .map(|(i, f)| {
            let (u, v, w) = (i % m, (i / m) % m, i / (m * m));
            let k = [signed_index(u, m), signed_index(v, m), signed_index(w, m)];
            let phase = std::f64::consts::TAU * (k[0] as f64 * shift.x + k[1] as f64 * shift.y + k[2] as f64 * shift.z)
                / m as f64;
            let f = if inverted { f.conj() } else { *f };
            f * Complex64::from_polar(1.0, phase)
        })
        .collect();
    forward.process(&mut shifted, &mut Vec::new());
    let scale = 1.0 / (m * m * m) as f64;
    let data = fftshift(&shifted, m).iter().map(|v| (v.re * scale) as f32).collect();
    let aligned = Volume {
        m,
        spacing: moving.spacing,
        data,
    };
    (
        aligned,
        Alignment {
            inverted,
            rotation: Rotation3::identity(),
            shift,
            correlation,
        },
    )
}

/// Integer peak of a real cross-correlation in FFT order, refined by a parabola per axis.
/// Returns the signed shift and the peak value.
fn subvoxel_peak(cc: &[Complex64], m: usize) -> (Vector3<f64>, f64) {
    let (imax, peak) = cc
        .iter()
        .enumerate()
        .map(|(i, v)| (i, v.re))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("non-empty");
    let idx = [imax % m, (imax / m) % m, imax / (m * m)];
    let at = |d: [i64; 3]| {
        let j: Vec<usize> = (0..3)
            .map(|a| (idx[a] as i64 + d[a]).rem_euclid(m as i64) as usize)
            .collect();
        cc[(j[2] * m + j[1]) * m + j[0]].re
    };
    let mut shift = Vector3::zeros();
    for axis in 0..3 {
        let mut d = [0i64; 3];
        d[axis] = -1;
        let lo = at(d);
        d[axis] = 1;
        let hi = at(d);
        let curvature = lo - 2.0 * peak + hi;
        let offset = if curvature < 0.0 {
            (0.5 * (lo - hi) / curvature).clamp(-0.5, 0.5)
        } else {
            0.0
        };
        shift[axis] = signed_index(idx[axis], m) as f64 + offset;
    }
    (shift, peak)
}

/// Newton steps on the continuous cross-correlation c(t) = Σ_k Re(C_k e^{−2πi k·t/m}) from `start`,
/// so the sub-voxel shift is exact for band-limited maps (the parabola is only a start).
/// Returns the shift and c at it.
fn refine_peak(product: &[Complex64], m: usize, start: Vector3<f64>) -> (Vector3<f64>, f64) {
    let w = std::f64::consts::TAU / m as f64;
    let evaluate = |t: &Vector3<f64>| {
        product
            .par_iter()
            .enumerate()
            .map(|(i, c)| {
                let k = Vector3::new(
                    signed_index(i % m, m) as f64,
                    signed_index((i / m) % m, m) as f64,
                    signed_index(i / (m * m), m) as f64,
                ) * w;
                // z = c e^{−i k·t}: ∂/∂t Re z = k Im z, ∂²/∂t² Re z = −k kᵀ Re z.
                let z = c * Complex64::from_polar(1.0, -k.dot(t));
                (z.re, k * z.im, k * k.transpose() * (-z.re))
            })
            .reduce(
                || (0.0, Vector3::zeros(), Matrix3::zeros()),
                |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2),
            )
    };
    let mut t = start;
    let (mut value, mut grad, mut hess) = evaluate(&t);
    for _ in 0..8 {
        let Some(step) = hess.try_inverse().map(|h| -(h * grad)) else {
            break;
        };
        if !step.iter().all(|s| s.is_finite()) || step.norm() > 1.0 {
            break;
        }
        let next = t + step;
        let (v, g, h) = evaluate(&next);
        if v < value {
            break;
        }
        (t, value, grad, hess) = (next, v, g, h);
        if step.norm() < 1e-6 {
            break;
        }
    }
    (t, value)
}

/// A map with the positions at which it is compared: reference values (mean-free, unit norm) at
/// points around the reference's centre of mass.
struct Probe {
    points: Vec<Vector3<f64>>,
    values: Vec<f64>,
}

impl Probe {
    /// Points of a grid with `step` voxels within `radius` of `centre`, values from `map`.
    fn new(map: &[f32], m: usize, centre: &Vector3<f64>, radius: f64, step: usize) -> Self {
        let mut points = Vec::new();
        let mut values = Vec::new();
        for iz in (0..m).step_by(step) {
            for iy in (0..m).step_by(step) {
                for ix in (0..m).step_by(step) {
                    let p = Vector3::new(ix as f64, iy as f64, iz as f64);
                    if (p - centre).norm() <= radius {
                        points.push(p - centre);
                        values.push(map[(iz * m + iy) * m + ix] as f64);
                    }
                }
            }
        }
        normalise(&mut values);
        Probe { points, values }
    }

    /// Pearson correlation with `map` sampled at `centre + t + A p`.
    fn score(&self, map: &[f32], m: usize, centre: &Vector3<f64>, a: &Matrix3<f64>, t: &Vector3<f64>) -> f64 {
        let mut sampled: Vec<f64> = self
            .points
            .iter()
            .map(|p| trilinear(map, m, &(centre + t + a * p)))
            .collect();
        normalise(&mut sampled);
        sampled.iter().zip(&self.values).map(|(x, y)| x * y).sum()
    }
}

fn normalise(values: &mut [f64]) {
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    values.iter_mut().for_each(|v| *v -= mean);
    let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
    values.iter_mut().for_each(|v| *v /= norm);
}

/// Trilinear value, zero outside the box ([`Edge::ZeroOutside`](crate::trilinear::Edge::ZeroOutside)).
fn trilinear(map: &[f32], m: usize, x: &Vector3<f64>) -> f64 {
    Cell::zero_outside([x.x, x.y, x.z]).interpolate(map, m)
}

/// Catmull–Rom cubic interpolation (64 taps): sharper than trilinear for the final resampling.
fn cubic(map: &[f32], m: usize, x: &Vector3<f64>) -> f64 {
    let f = x.map(|c| c.floor());
    let (i, j, k) = (f.x as i64, f.y as i64, f.z as i64);
    let weights = |t: f64| {
        let (t2, t3) = (t * t, t * t * t);
        [
            0.5 * (-t3 + 2.0 * t2 - t),
            0.5 * (3.0 * t3 - 5.0 * t2 + 2.0),
            0.5 * (-3.0 * t3 + 4.0 * t2 + t),
            0.5 * (t3 - t2),
        ]
    };
    let (wx, wy, wz) = (weights(x.x - f.x), weights(x.y - f.y), weights(x.z - f.z));
    let mut sum = 0.0;
    for (dz, wz) in wz.iter().enumerate() {
        for (dy, wy) in wy.iter().enumerate() {
            let w = wz * wy;
            for (dx, wx) in wx.iter().enumerate() {
                sum += w * wx * voxel(map, m, i + dx as i64 - 1, j + dy as i64 - 1, k + dz as i64 - 1);
            }
        }
    }
    sum
}

/// Voxel value, zero outside the box.
fn voxel(map: &[f32], m: usize, ix: i64, iy: i64, iz: i64) -> f64 {
    let n = m as i64;
    if ix < 0 || iy < 0 || iz < 0 || ix >= n || iy >= n || iz >= n {
        0.0
    } else {
        map[((iz * n + iy) * n + ix) as usize] as f64
    }
}

fn centre_of_mass(map: &[f32], m: usize) -> Vector3<f64> {
    let mut sum = Vector3::zeros();
    let mut total = 0.0;
    for (i, &v) in map.iter().enumerate() {
        if v > 0.0 {
            let v = v as f64;
            sum += v * Vector3::new((i % m) as f64, ((i / m) % m) as f64, (i / (m * m)) as f64);
            total += v;
        }
    }
    if total > 0.0 {
        sum / total
    } else {
        Vector3::repeat((m / 2) as f64)
    }
}

/// Uniform-ish rotations: super-Fibonacci spirals (Alexa 2022, CVPR).
pub fn super_fibonacci(n: usize) -> Vec<UnitQuaternion<f64>> {
    const PHI: f64 = std::f64::consts::SQRT_2;
    const PSI: f64 = 1.533_751_168_755_204_3;
    (0..n)
        .map(|i| {
            let s = i as f64 + 0.5;
            let r = (s / n as f64).sqrt();
            let big_r = (1.0 - s / n as f64).sqrt();
            let alpha = std::f64::consts::TAU * s / PHI;
            let beta = std::f64::consts::TAU * s / PSI;
            UnitQuaternion::from_quaternion(Quaternion::new(
                r * alpha.sin(),
                r * alpha.cos(),
                big_r * beta.sin(),
                big_r * beta.cos(),
            ))
        })
        .collect()
}

/// One candidate superposition: hand, rotation and translation, and its score.
#[derive(Clone, Copy)]
struct Pose {
    sign: f64,
    rotation: Rotation3<f64>,
    shift: Vector3<f64>,
    score: f64,
}

impl Pose {
    fn matrix(&self) -> Matrix3<f64> {
        self.sign * self.rotation.matrix()
    }
}

/// Rotation (and hand) search; returns the moving map resampled onto the reference's frame.
fn align_rotation(
    reference: &DensityMap,
    moving: &DensityMap,
    params: &AlignParams,
) -> (DensityMap, bool, Rotation3<f64>) {
    let m = reference.m;
    let mov = centre_by_mass(&moving.data, m);
    let c_ref = centre_of_mass(&reference.data, m);
    let c_mov = centre_of_mass(&mov, m);

    // Extent of the reference: farthest significant voxel of the lightly blurred map.
    let ref_smooth = gaussian_blur(&reference.data, m, 1.0);
    let max = ref_smooth.iter().copied().fold(f32::MIN, f32::max);
    let radius = ref_smooth
        .iter()
        .enumerate()
        .filter(|(_, &v)| v > 0.1 * max)
        .map(|(i, _)| (Vector3::new((i % m) as f64, ((i / m) % m) as f64, (i / (m * m)) as f64) - c_ref).norm())
        .fold(2.0, f64::max);

    // Coarse: ~7 points per radius, blur to match.
    let step = ((radius / 7.0).round() as usize).max(1);
    let sigma = step as f64;
    let ref_coarse = gaussian_blur(&reference.data, m, sigma);
    let mov_coarse = gaussian_blur(&mov, m, sigma);
    let probe = Probe::new(&ref_coarse, m, &c_ref, radius + sigma, step);
    let signs: &[f64] = if params.inversion { &[1.0, -1.0] } else { &[1.0] };
    let rotations = super_fibonacci(params.coarse_rotations.max(1));
    let mut coarse: Vec<Pose> = signs
        .iter()
        .flat_map(|&sign| rotations.iter().map(move |q| (sign, q.to_rotation_matrix())))
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|(sign, rotation)| {
            let mut pose = Pose {
                sign,
                rotation,
                shift: Vector3::zeros(),
                score: 0.0,
            };
            pose.score = probe.score(&mov_coarse, m, &c_mov, &pose.matrix(), &pose.shift);
            pose
        })
        .collect();
    coarse.sort_by(|a, b| b.score.total_cmp(&a.score));

    // Refine the best few: medium (blurred, every other voxel), then fine (raw map, every voxel).
    let medium_ref = gaussian_blur(&reference.data, m, 1.0);
    let medium_mov = gaussian_blur(&mov, m, 1.0);
    let medium = Probe::new(&medium_ref, m, &c_ref, radius + 2.0, 2);
    let fine = Probe::new(&reference.data, m, &c_ref, radius + 2.0, 1);
    let best = coarse
        .iter()
        .take(6)
        .map(|&start| {
            let p = pattern_search(start, 0.15, 1.0, 0.005, |pose| {
                medium.score(&medium_mov, m, &c_mov, &pose.matrix(), &pose.shift)
            });
            pattern_search(p, 0.01, 0.2, 2e-4, |pose| {
                fine.score(&mov, m, &c_mov, &pose.matrix(), &pose.shift)
            })
        })
        .max_by(|a, b| a.score.total_cmp(&b.score))
        .expect("at least one coarse rotation");

    let a = best.matrix();
    let data: Vec<f32> = (0..m * m * m)
        .into_par_iter()
        .map(|i| {
            let p = Vector3::new((i % m) as f64, ((i / m) % m) as f64, (i / (m * m)) as f64);
            cubic(&mov, m, &(c_mov + best.shift + a * (p - c_ref))) as f32
        })
        .collect();
    (
        Volume {
            m,
            spacing: moving.spacing,
            data,
        },
        best.sign < 0.0,
        best.rotation,
    )
}

/// Compass (pattern) search over a rotation-vector perturbation and a translation: tries ± each
/// of the six steps, keeps any improvement, halves the steps when none helps.
fn pattern_search(
    start: Pose,
    rot_step: f64,
    shift_step: f64,
    min_rot_step: f64,
    score: impl Fn(&Pose) -> f64,
) -> Pose {
    let mut best = start;
    best.score = score(&best);
    let (mut rs, mut ts) = (rot_step, shift_step);
    while rs > min_rot_step {
        let mut improved = false;
        for axis in 0..6 {
            for dir in [1.0, -1.0] {
                let mut trial = best;
                if axis < 3 {
                    let mut v = Vector3::zeros();
                    v[axis] = dir * rs;
                    trial.rotation = best.rotation * Rotation3::new(v);
                } else {
                    trial.shift[axis - 3] += dir * ts;
                }
                trial.score = score(&trial);
                if trial.score > best.score {
                    best = trial;
                    improved = true;
                    break;
                }
            }
        }
        if !improved {
            rs *= 0.5;
            ts *= 0.5;
        }
    }
    best
}
