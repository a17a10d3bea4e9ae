//! Ewald-sphere slices of an intensity volume: I_i(p) = scale_p · |F|²(R_i s_p), with |F|²
//! read by trilinear interpolation (DESIGN.md: the pose R_i maps detector-frame s into the
//! molecule frame). The interpolation is [`crate::trilinear`]'s with the cell clamped to the
//! grid ([`Edge::ClampCell`](crate::trilinear::Edge::ClampCell)); the grid is checked to cover
//! the detector when a [`Slicer`] is built, so the clamp only keeps reads in bounds.

use anyhow::ensure;
use nalgebra::Rotation3;

use super::beam::Beam;
use super::detector::PixelDetector;
use crate::trilinear::{lerp_xyz, Cell};
use crate::volume::IntensityVolume;

/// A volume and a detector, prepared for fast slicing (f32, pixel s-vectors in voxel units).
#[derive(Clone, Debug)]
pub struct Slicer {
    m: usize,
    centre: f32,
    /// The volume in the layout the fast path reads (see [`Bricks`]).
    bricks: Bricks,
    /// The volume in plain layout, for orientation averages.
    volume: Vec<f32>,
    /// s_p / Δs per pixel.
    points: Vec<[f32; 3]>,
    /// The same points as three columns (x, y, z) for the vector path.
    soa: [Vec<f32>; 3],
    /// Multiplier per pixel (expected photons per |F|², or 1).
    scale: Vec<f32>,
}

impl Slicer {
    /// Slices that return expected photons for `beam`: scale_p · I(R s_p).
    pub fn new(volume: &IntensityVolume, geometry: &PixelDetector, beam: &Beam) -> anyhow::Result<Slicer> {
        let scale: Vec<f32> = geometry.scale(beam).iter().map(|&x| x as f32).collect();
        Slicer::with_scale(volume, &geometry.s, scale)
    }

    /// Slices at arbitrary points `s` (Å⁻¹) with a per-point multiplier (e.g. all ones for the
    /// raw volume, as EMC's expand step needs).
    pub fn with_scale(volume: &IntensityVolume, s: &[[f64; 3]], scale: Vec<f32>) -> anyhow::Result<Slicer> {
        ensure!(scale.len() == s.len(), "one scale factor per point is needed");
        let reach = (volume.m - 1) / 2 - 1;
        let s_max = s
            .iter()
            .map(|s| (s[0] * s[0] + s[1] * s[1] + s[2] * s[2]).sqrt())
            .fold(0.0, f64::max);
        ensure!(
            s_max <= reach as f64 * volume.spacing * (1.0 + 1e-9),
            "grid too small to cover the detector: the largest |s| is {s_max:.4} Å⁻¹ but a {m}³ grid of spacing \
             {ds:.5} Å⁻¹ reaches only {cover:.4} Å⁻¹ in every direction; use a larger grid",
            m = volume.m,
            ds = volume.spacing,
            cover = reach as f64 * volume.spacing
        );
        let inv = 1.0 / volume.spacing;
        Ok(Slicer {
            m: volume.m,
            centre: ((volume.m - 1) / 2) as f32,
            bricks: Bricks::new(volume),
            volume: volume.data.clone(),
            points: s.iter().map(|p| p.map(|x| (x * inv) as f32)).collect(),
            soa: [0, 1, 2].map(|a| s.iter().map(|p| (p[a] * inv) as f32).collect()),
            scale,
        })
    }

    pub fn pixels(&self) -> usize {
        self.points.len()
    }

    /// Fills `out` (one value per pixel) with the slice at pose `rotation`.
    pub fn slice_into(&self, rotation: &Rotation3<f64>, out: &mut [f32]) {
        assert_eq!(
            out.len(),
            self.points.len(),
            "output buffer must hold one value per pixel"
        );
        let r = rotation.matrix().map(|x| x as f32);
        let rows = [
            [r[(0, 0)], r[(0, 1)], r[(0, 2)]],
            [r[(1, 0)], r[(1, 1)], r[(1, 2)]],
            [r[(2, 0)], r[(2, 1)], r[(2, 2)]],
        ];
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU supports the features the function is compiled for.
                unsafe { self.slice_avx2(&rows, out) };
                return;
            }
        }
        self.slice_generic(&rows, out);
    }

    /// Eight pixels per step with AVX2: rotation by FMAs, brick addressing in integer lanes,
    /// the eight trilinear neighbours by gathers: the vector twin of `Bricks::trilinear` (same
    /// clamped cell, same nested lerps up to FMA rounding); the scalar path finishes the tail.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn slice_avx2(&self, r: &[[f32; 3]; 3], out: &mut [f32]) {
        use std::arch::x86_64::*;
        let n = self.points.len();
        let full = n - n % 8;
        let (px, py, pz) = (&self.soa[0], &self.soa[1], &self.soa[2]);
        let b = &self.bricks;
        let c = _mm256_set1_ps(self.centre);
        let rr = r.map(|row| row.map(|x| _mm256_set1_ps(x)));
        let zero = _mm256_setzero_si256();
        let max_base = _mm256_set1_epi32(b.max_base);
        let seven = _mm256_set1_epi32(7);
        let per_axis = _mm256_set1_epi32(b.per_axis as i32);
        let s3 = _mm256_set1_epi32(S3 as i32);
        let nine = _mm256_set1_epi32(S as i32);
        let data = b.data.as_ptr();
        for start in (0..full).step_by(8) {
            // SAFETY (loads/stores): start + 8 ≤ full ≤ n for the point, scale and out slices.
            let x = _mm256_loadu_ps(px.as_ptr().add(start));
            let y = _mm256_loadu_ps(py.as_ptr().add(start));
            let z = _mm256_loadu_ps(pz.as_ptr().add(start));
            let rot = |row: &[__m256; 3]| {
                _mm256_fmadd_ps(row[0], x, _mm256_fmadd_ps(row[1], y, _mm256_fmadd_ps(row[2], z, c)))
            };
            let (gx, gy, gz) = (rot(&rr[0]), rot(&rr[1]), rot(&rr[2]));
            let clamp = |v: __m256| _mm256_min_epi32(_mm256_max_epi32(_mm256_cvttps_epi32(v), zero), max_base);
            let (ix, iy, iz) = (clamp(gx), clamp(gy), clamp(gz));
            let tx = _mm256_sub_ps(gx, _mm256_cvtepi32_ps(ix));
            let ty = _mm256_sub_ps(gy, _mm256_cvtepi32_ps(iy));
            let tz = _mm256_sub_ps(gz, _mm256_cvtepi32_ps(iz));
            let brick = _mm256_mullo_epi32(
                _mm256_add_epi32(
                    _mm256_mullo_epi32(
                        _mm256_add_epi32(
                            _mm256_mullo_epi32(_mm256_srli_epi32(iz, 3), per_axis),
                            _mm256_srli_epi32(iy, 3),
                        ),
                        per_axis,
                    ),
                    _mm256_srli_epi32(ix, 3),
                ),
                s3,
            );
            let local = _mm256_add_epi32(
                _mm256_mullo_epi32(
                    _mm256_add_epi32(
                        _mm256_mullo_epi32(_mm256_and_si256(iz, seven), nine),
                        _mm256_and_si256(iy, seven),
                    ),
                    nine,
                ),
                _mm256_and_si256(ix, seven),
            );
            let base = _mm256_add_epi32(brick, local);
            // SAFETY (gathers): indices are clamped as in `Bricks::trilinear`, so every
            // neighbour lies inside its brick.
            // Each x-neighbour pair (v[k], v[k+1]) is one 8-byte element: four 64-bit gathers
            // per 8 pixels fetch half the elements that eight 32-bit gathers would.
            let pair = |k: i32| {
                let idx = _mm256_add_epi32(base, _mm256_set1_epi32(k));
                let lo = _mm256_castpd_ps(_mm256_i32gather_pd::<4>(
                    data as *const f64,
                    _mm256_castsi256_si128(idx),
                ));
                let hi = _mm256_castpd_ps(_mm256_i32gather_pd::<4>(
                    data as *const f64,
                    _mm256_extracti128_si256::<1>(idx),
                ));
                // lo = a0 b0 a1 b1 | a2 b2 a3 b3, hi likewise for pixels 4..8 → a0..a7 and b0..b7.
                let order = |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)));
                (
                    order(_mm256_shuffle_ps::<0b10_00_10_00>(lo, hi)),
                    order(_mm256_shuffle_ps::<0b11_01_11_01>(lo, hi)),
                )
            };
            let lerp = |a: __m256, b: __m256, t: __m256| _mm256_fmadd_ps(t, _mm256_sub_ps(b, a), a);
            let (s, s2) = (S as i32, S2 as i32);
            let x_lerp = |k: i32| {
                let (a, b) = pair(k);
                lerp(a, b, tx)
            };
            let c00 = x_lerp(0);
            let c10 = x_lerp(s);
            let c01 = x_lerp(s2);
            let c11 = x_lerp(s2 + s);
            let v = lerp(lerp(c00, c10, ty), lerp(c01, c11, ty), tz);
            let w = _mm256_loadu_ps(self.scale.as_ptr().add(start));
            _mm256_storeu_ps(out.as_mut_ptr().add(start), _mm256_mul_ps(w, v));
        }
        let (pts, scale) = (&self.points[full..], &self.scale[full..]);
        for ((o, p), w) in out[full..].iter_mut().zip(pts).zip(scale) {
            *o = w * b.trilinear(rotate(r, p, self.centre));
        }
    }

    /// The portable path: one pixel at a time.
    #[inline(always)]
    fn slice_generic(&self, r: &[[f32; 3]; 3], out: &mut [f32]) {
        let c = self.centre;
        let bricks = &self.bricks;
        debug_assert_eq!(out.len(), self.points.len());
        for ((o, p), w) in out.iter_mut().zip(&self.points).zip(&self.scale) {
            *o = w * bricks.trilinear(rotate(r, p, c));
        }
    }

    /// A new buffer with the slice at pose `rotation`.
    pub fn slice(&self, rotation: &Rotation3<f64>) -> Vec<f32> {
        let mut out = vec![0.0; self.points.len()];
        self.slice_into(rotation, &mut out);
        out
    }

    /// The orientation average of the slice total, Σ_p scale_p ⟨I(R s_p)⟩_R, from the spherical
    /// mean of the volume at each pixel's |s| (Fibonacci-sphere directions, same trilinear
    /// sampling as the slices). This is the mean total intensity over uniform random poses.
    pub fn mean_total(&self) -> f64 {
        const DIRECTIONS: usize = 2000;
        const RADII: usize = 512;
        let golden = std::f64::consts::PI * (3.0 - 5f64.sqrt());
        let dirs: Vec<[f32; 3]> = (0..DIRECTIONS)
            .map(|k| {
                let z = 1.0 - 2.0 * (k as f64 + 0.5) / DIRECTIONS as f64;
                let rho = (1.0 - z * z).sqrt();
                let phi = golden * k as f64;
                [(rho * phi.cos()) as f32, (rho * phi.sin()) as f32, z as f32]
            })
            .collect();
        let r_max = self
            .points
            .iter()
            .map(|p| (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt())
            .fold(0.0, f32::max);
        // Radial profile at RADII evenly spaced radii, then linear interpolation per pixel.
        let profile: Vec<f64> = (0..RADII)
            .map(|j| {
                let radius = r_max * j as f32 / (RADII - 1) as f32;
                dirs.iter()
                    .map(|d| self.sample_voxels([d[0] * radius, d[1] * radius, d[2] * radius]) as f64)
                    .sum::<f64>()
                    / DIRECTIONS as f64
            })
            .collect();
        self.points
            .iter()
            .zip(&self.scale)
            .map(|(p, &w)| {
                let r = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
                let x = if r_max > 0.0 {
                    (r / r_max) as f64 * (RADII - 1) as f64
                } else {
                    0.0
                };
                let j = (x.floor() as usize).min(RADII - 2);
                let t = x - j as f64;
                w as f64 * (profile[j] * (1.0 - t) + profile[j + 1] * t)
            })
            .sum()
    }

    /// Trilinear value at a point given in voxel units relative to the centre (the cell
    /// clamped to the grid, [`Edge::ClampCell`](crate::trilinear::Edge::ClampCell)).
    fn sample_voxels(&self, p: [f32; 3]) -> f32 {
        let g = p.map(|x| x + self.centre);
        Cell::clamped(self.m, g).interpolate(&self.volume, self.m)
    }
}

/// Voxel coordinates of R·p (p in voxel units relative to the centre).
#[inline(always)]
fn rotate(r: &[[f32; 3]; 3], p: &[f32; 3], centre: f32) -> [f32; 3] {
    [
        r[0][0] * p[0] + r[0][1] * p[1] + r[0][2] * p[2] + centre,
        r[1][0] * p[0] + r[1][1] * p[1] + r[1][2] * p[2] + centre,
        r[2][0] * p[0] + r[2][1] * p[1] + r[2][2] * p[2] + centre,
    ]
}

/// The intensity volume cut into 8³ bricks, each stored with a one-voxel apron (9³ values) so
/// that all eight trilinear neighbours of a point lie in one brick at fixed offsets. A slice
/// then touches a few hundred kilobytes of bricks instead of megabytes of scattered cache
/// lines, which is what bounds slicing speed.
#[derive(Clone, Debug)]
struct Bricks {
    /// Voxels per axis of the volume.
    m: usize,
    /// Bricks per axis.
    per_axis: usize,
    /// Largest valid voxel index for a trilinear base (m − 2).
    max_base: i32,
    data: Vec<f32>,
}

const B: usize = 8;
const S: usize = B + 1; // stored brick side, apron included
const S2: usize = S * S;
const S3: usize = S * S * S;

impl Bricks {
    fn new(volume: &IntensityVolume) -> Bricks {
        let m = volume.m;
        let per_axis = (m - 1).div_ceil(B);
        let mut data = vec![0.0f32; per_axis * per_axis * per_axis * S3];
        for bz in 0..per_axis {
            for by in 0..per_axis {
                for bx in 0..per_axis {
                    let base = ((bz * per_axis + by) * per_axis + bx) * S3;
                    for lz in 0..S {
                        for ly in 0..S {
                            for lx in 0..S {
                                let (x, y, z) = (bx * B + lx, by * B + ly, bz * B + lz);
                                if x < m && y < m && z < m {
                                    data[base + (lz * S + ly) * S + lx] = volume.data[(z * m + y) * m + x];
                                }
                            }
                        }
                    }
                }
            }
        }
        Bricks {
            m,
            per_axis,
            max_base: (m - 2) as i32,
            data,
        }
    }

    /// Trilinear value at voxel coordinates `g` (origin at voxel 0), the cell clamped into the
    /// grid ([`Edge::ClampCell`](crate::trilinear::Edge::ClampCell)), so every read is in
    /// bounds.
    #[inline(always)]
    fn trilinear(&self, g: [f32; 3]) -> f32 {
        let cell = Cell::clamped(self.m, g);
        let i = cell.base.map(|x| x as i32);
        let (b, l) = (B as i32, S as i32);
        let per_axis = self.per_axis as i32;
        let brick = ((i[2] / b * per_axis + i[1] / b) * per_axis + i[0] / b) * S3 as i32;
        let local = ((i[2] % b) * l + i[1] % b) * l + i[0] % b;
        let base = (brick + local) as usize;
        debug_assert!(base + S2 + S + 1 < self.data.len());
        // SAFETY: the cell is clamped to [0, m − 2] per axis, so the brick exists and the
        // furthest neighbour, base + S² + S + 1, lies inside the brick's S³ values.
        let v = |k: usize| unsafe { *self.data.get_unchecked(base + k) };
        lerp_xyz(
            [v(0), v(1), v(S), v(S + 1), v(S2), v(S2 + 1), v(S2 + S), v(S2 + S + 1)],
            cell.frac,
        )
    }
}
