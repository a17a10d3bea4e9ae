//! Ewald-sphere slices of an intensity volume: I_i(p) = scale_p · |F|²(R_i s_p), with |F|²
//! read by trilinear interpolation (DESIGN.md: the pose R_i maps detector-frame s into the
//! molecule frame).

use anyhow::ensure;
use nalgebra::Rotation3;

use super::detector::PixelGeometry;
use crate::volume::IntensityVolume;

/// A volume and a detector, prepared for fast slicing (f32, pixel s-vectors in voxel units).
#[derive(Clone, Debug)]
pub struct Slicer {
    m: usize,
    centre: f32,
    volume: Vec<f32>,
    /// s_p / Δs per pixel.
    points: Vec<[f32; 3]>,
    /// Multiplier per pixel (expected photons per |F|², or 1).
    scale: Vec<f32>,
}

impl Slicer {
    /// Slices that return expected photons: scale_p · I(R s_p).
    pub fn new(volume: &IntensityVolume, geometry: &PixelGeometry) -> anyhow::Result<Slicer> {
        let scale: Vec<f32> = geometry.scale.iter().map(|&x| x as f32).collect();
        Slicer::with_scale(volume, &geometry.s, scale)
    }

    /// Slices at arbitrary points `s` (Å⁻¹) with a per-point multiplier (e.g. all ones for the
    /// raw volume, as EMC's expand step needs).
    pub fn with_scale(volume: &IntensityVolume, s: &[[f64; 3]], scale: Vec<f32>) -> anyhow::Result<Slicer> {
        ensure!(scale.len() == s.len(), "one scale factor per point is needed");
        let reach = (volume.m - 1) / 2 - 1;
        let s_max = s.iter().map(|s| (s[0] * s[0] + s[1] * s[1] + s[2] * s[2]).sqrt()).fold(0.0, f64::max);
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
            volume: volume.data.clone(),
            points: s.iter().map(|p| p.map(|x| (x * inv) as f32)).collect(),
            scale,
        })
    }

    pub fn pixels(&self) -> usize {
        self.points.len()
    }

    /// Fills `out` (one value per pixel) with the slice at pose `rotation`.
    pub fn slice_into(&self, rotation: &Rotation3<f64>, out: &mut [f32]) {
        assert_eq!(out.len(), self.points.len(), "output buffer must hold one value per pixel");
        let r = rotation.matrix().map(|x| x as f32);
        let m = self.m;
        let plane = m * m;
        let vol = &self.volume[..];
        for ((o, p), &w) in out.iter_mut().zip(&self.points).zip(&self.scale) {
            // Voxel coordinates of R·s; non-negative and ≤ m − 2 because the constructor checked
            // |s| ≤ (c − 1)Δs, so truncation is floor and every neighbour exists.
            let gx = r[(0, 0)] * p[0] + r[(0, 1)] * p[1] + r[(0, 2)] * p[2] + self.centre;
            let gy = r[(1, 0)] * p[0] + r[(1, 1)] * p[1] + r[(1, 2)] * p[2] + self.centre;
            let gz = r[(2, 0)] * p[0] + r[(2, 1)] * p[1] + r[(2, 2)] * p[2] + self.centre;
            let (ix, iy, iz) = (gx as usize, gy as usize, gz as usize);
            let (tx, ty, tz) = (gx - ix as f32, gy - iy as f32, gz - iz as f32);
            let i = (iz * m + iy) * m + ix;
            let corner = |d: usize| -> (f32, f32) { (vol[i + d], vol[i + d + 1]) };
            let (c000, c100) = corner(0);
            let (c010, c110) = corner(m);
            let (c001, c101) = corner(plane);
            let (c011, c111) = corner(plane + m);
            let c00 = c000 + tx * (c100 - c000);
            let c10 = c010 + tx * (c110 - c010);
            let c01 = c001 + tx * (c101 - c001);
            let c11 = c011 + tx * (c111 - c011);
            let c0 = c00 + ty * (c10 - c00);
            let c1 = c01 + ty * (c11 - c01);
            *o = w * (c0 + tz * (c1 - c0));
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
        let r_max = self.points.iter().map(|p| (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt()).fold(0.0, f32::max);
        // Radial profile at RADII evenly spaced radii, then linear interpolation per pixel.
        let profile: Vec<f64> = (0..RADII)
            .map(|j| {
                let radius = r_max * j as f32 / (RADII - 1) as f32;
                dirs.iter().map(|d| self.sample_voxels([d[0] * radius, d[1] * radius, d[2] * radius]) as f64).sum::<f64>()
                    / DIRECTIONS as f64
            })
            .collect();
        self.points
            .iter()
            .zip(&self.scale)
            .map(|(p, &w)| {
                let r = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
                let x = if r_max > 0.0 { (r / r_max) as f64 * (RADII - 1) as f64 } else { 0.0 };
                let j = (x.floor() as usize).min(RADII - 2);
                let t = x - j as f64;
                w as f64 * (profile[j] * (1.0 - t) + profile[j + 1] * t)
            })
            .sum()
    }

    /// Trilinear value at a point given in voxel units relative to the centre.
    fn sample_voxels(&self, p: [f32; 3]) -> f32 {
        let m = self.m;
        let g = p.map(|x| x + self.centre);
        let i0 = g.map(|x| (x as usize).min(m - 2));
        let t = [g[0] - i0[0] as f32, g[1] - i0[1] as f32, g[2] - i0[2] as f32];
        let mut v = 0.0;
        for dz in 0..2 {
            for dy in 0..2 {
                for dx in 0..2 {
                    let w = (if dx == 1 { t[0] } else { 1.0 - t[0] })
                        * (if dy == 1 { t[1] } else { 1.0 - t[1] })
                        * (if dz == 1 { t[2] } else { 1.0 - t[2] });
                    v += w * self.volume[((i0[2] + dz) * m + i0[1] + dy) * m + i0[0] + dx];
                }
            }
        }
        v
    }
}
