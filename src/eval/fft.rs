//! Three-dimensional FFTs over the [`Volume`](crate::volume::Volume) layout, and the shifts between
//! the centred grid (origin at voxel `m/2`, integer division) and FFT order (origin at index 0).
//!
//! For odd `m` the centre `m/2 = (m−1)/2` has as many voxels on each side; for even `m` it is the
//! FFT convention (numpy's `fftshift`): frequencies −m/2 … m/2 − 1, the unpaired Nyquist index −m/2
//! at the low end.
//!
//! rustfft only transforms contiguous lines, so a 3D transform is three passes of 1D transforms
//! along the fastest axis, each followed by a cyclic axis permutation `(z, y, x) → (x, z, y)`;
//! three permutations restore the original layout. Lines and permutation planes run in parallel
//! with rayon. Transforms are unnormalised, like rustfft's.

use rayon::prelude::*;
use rustfft::{num_complex::Complex, FftDirection, FftNum, FftPlanner};

/// Reusable 3D FFT plan for an `m³` grid in one direction.
pub struct Fft3<T: FftNum> {
    m: usize,
    fft: std::sync::Arc<dyn rustfft::Fft<T>>,
}

impl<T: FftNum> Fft3<T> {
    pub fn new(m: usize, direction: FftDirection) -> Self {
        let fft = FftPlanner::new().plan_fft(m, direction);
        Fft3 { m, fft }
    }

    /// Transforms `data` (length `m³`, x fastest) in place; `work` is scratch of the same length.
    pub fn process(&self, data: &mut [Complex<T>], work: &mut Vec<Complex<T>>) {
        let m = self.m;
        assert_eq!(data.len(), m * m * m, "3D FFT: data is not m³ long");
        work.resize(data.len(), Complex::new(T::zero(), T::zero()));
        for pass in 0..3 {
            let (src, dst): (&mut [Complex<T>], &mut [Complex<T>]) = if pass % 2 == 0 {
                (&mut *data, &mut work[..])
            } else {
                (&mut work[..], &mut *data)
            };
            let scratch_len = self.fft.get_inplace_scratch_len();
            src.par_chunks_mut(m * m).for_each_init(
                || vec![Complex::new(T::zero(), T::zero()); scratch_len],
                |scratch, plane| self.fft.process_with_scratch(plane, scratch),
            );
            permute(src, dst, m);
        }
        // Three passes leave the result in `work`.
        data.copy_from_slice(work);
    }
}

/// Cyclic axis permutation: `dst[(ix·m + iz)·m + iy] = src[(iz·m + iy)·m + ix]`, so the second
/// axis becomes the fastest. Output planes go in groups of `TILE` so that each source cache line
/// read serves several of them.
fn permute<T: Copy + Send + Sync>(src: &[T], dst: &mut [T], m: usize) {
    const TILE: usize = 8;
    dst.par_chunks_mut(TILE * m * m)
        .enumerate()
        .for_each(|(block, planes)| {
            let ix0 = block * TILE;
            let width = planes.len() / (m * m);
            for iz in 0..m {
                for iy in 0..m {
                    let from = &src[(iz * m + iy) * m + ix0..(iz * m + iy) * m + ix0 + width];
                    for (t, v) in from.iter().enumerate() {
                        planes[(t * m + iz) * m + iy] = *v;
                    }
                }
            }
        });
}

/// Rolls every axis by `shift` (`dst[(i + shift) mod m] = src[i]`).
fn roll<T: Copy + Send + Sync>(src: &[T], m: usize, shift: usize) -> Vec<T> {
    assert_eq!(src.len(), m * m * m, "roll: data is not m³ long");
    let mut dst = src.to_vec();
    let target = |i: usize| (i + shift) % m;
    dst.par_chunks_mut(m * m).enumerate().for_each(|(oz, plane)| {
        let iz = (oz + m - shift % m) % m;
        for iy in 0..m {
            let src_row = &src[(iz * m + iy) * m..(iz * m + iy + 1) * m];
            let oy = target(iy);
            let out_row = &mut plane[oy * m..(oy + 1) * m];
            for (ix, v) in src_row.iter().enumerate() {
                out_row[target(ix)] = *v;
            }
        }
    });
    dst
}

/// Centred grid → FFT order (numpy's `ifftshift`): the centre voxel `m/2` moves to index 0.
pub fn ifftshift<T: Copy + Send + Sync>(centred: &[T], m: usize) -> Vec<T> {
    roll(centred, m, m - m / 2)
}

/// FFT order → centred grid (numpy's `fftshift`): index 0 moves to the centre voxel `m/2`.
pub fn fftshift<T: Copy + Send + Sync>(fft_order: &[T], m: usize) -> Vec<T> {
    roll(fft_order, m, m / 2)
}

/// Signed frequency (or offset) of FFT-order index `u` on an axis of `m` samples, numpy's
/// `fftfreq · m`: 0 … ⌈m/2⌉ − 1, then −⌊m/2⌋ … −1 (so −m/2 for the Nyquist index of even `m`).
pub fn signed_index(u: usize, m: usize) -> i64 {
    if u < m.div_ceil(2) {
        u as i64
    } else {
        u as i64 - m as i64
    }
}

/// Gaussian blur (standard deviation `sigma` voxels) of a periodic real `m³` map, by multiplying
/// its spectrum with the Gaussian's transfer function. Works on either layout, since blurring
/// commutes with the cyclic shifts between them.
pub fn gaussian_blur(data: &[f32], m: usize, sigma: f64) -> Vec<f32> {
    let mut buf: Vec<Complex<f32>> = data.iter().map(|&v| Complex::new(v, 0.0)).collect();
    let mut work = Vec::new();
    Fft3::new(m, FftDirection::Forward).process(&mut buf, &mut work);
    let transfer: Vec<f32> = (0..m)
        .map(|u| {
            let f = signed_index(u, m) as f64 / m as f64;
            (-2.0 * std::f64::consts::PI.powi(2) * sigma * sigma * f * f).exp() as f32
        })
        .collect();
    let scale = 1.0 / (m * m * m) as f32;
    buf.par_chunks_mut(m * m).enumerate().for_each(|(w, plane)| {
        for (v, row) in plane.chunks_mut(m).enumerate() {
            let gzy = transfer[w] * transfer[v] * scale;
            for (g, &gx) in row.iter_mut().zip(&transfer) {
                *g *= gzy * gx;
            }
        }
    });
    Fft3::new(m, FftDirection::Inverse).process(&mut buf, &mut work);
    buf.iter().map(|v| v.re).collect()
}
