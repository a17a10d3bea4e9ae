//! Compress: the adjoint of the slicer's trilinear interpolation (Loh & Elser 2009, eq. 9).
//! Each pixel value of a slice at rotation R is scattered into the eight voxels around R·s_p
//! with the same trilinear weights the slicer reads them with, and the weights themselves are
//! accumulated in a second volume so that merged / weights is a weighted mean.

use nalgebra::Rotation3;

/// The detector's s-vectors in voxel units, ready to scatter slices into an m³ grid.
#[derive(Clone, Debug)]
pub struct Merger {
    m: usize,
    centre: f32,
    points: Vec<[f32; 3]>,
    /// Per-pixel factor c_p of the forward model W_rp = c_p M(R_r s_p) (polarisation × solid
    /// angle, relative); it weights the denominator.
    factors: Vec<f32>,
}

impl Merger {
    /// `s` in Å⁻¹, `spacing` = Δs of the m³ grid.
    pub fn new(m: usize, spacing: f64, s: &[[f64; 3]], factors: Vec<f32>) -> Merger {
        assert_eq!(factors.len(), s.len(), "one factor per pixel");
        let inv = 1.0 / spacing;
        Merger {
            m,
            centre: ((m - 1) / 2) as f32,
            points: s.iter().map(|p| p.map(|x| (x * inv) as f32)).collect(),
            factors,
        }
    }

    pub fn pixels(&self) -> usize {
        self.points.len()
    }

    /// `num[x] += Σ_p t(x; R s_p) · values[p]` and `den[x] += weight · Σ_p c_p t(x; R s_p)`, with
    /// t the trilinear weights (the slicer's: base voxel clamped to [0, m − 2]).
    pub fn merge(&self, rotation: &Rotation3<f64>, values: &[f32], weight: f32, num: &mut [f32], den: &mut [f32]) {
        let m = self.m;
        assert_eq!(values.len(), self.points.len(), "one value per pixel");
        assert!(num.len() == m * m * m && den.len() == m * m * m, "volumes must be m³");
        let r = rotation.matrix().map(|x| x as f32);
        let c = self.centre;
        let max_base = (m - 2) as i32;
        let (sy, sz) = (m, m * m);
        for ((p, &v), &c_p) in self.points.iter().zip(values).zip(&self.factors) {
            let wc = weight * c_p;
            let g = [
                r[(0, 0)] * p[0] + r[(0, 1)] * p[1] + r[(0, 2)] * p[2] + c,
                r[(1, 0)] * p[0] + r[(1, 1)] * p[1] + r[(1, 2)] * p[2] + c,
                r[(2, 0)] * p[0] + r[(2, 1)] * p[1] + r[(2, 2)] * p[2] + c,
            ];
            let i = g.map(|x| (x as i32).clamp(0, max_base));
            let t = [g[0] - i[0] as f32, g[1] - i[1] as f32, g[2] - i[2] as f32];
            let base = (i[2] as usize * m + i[1] as usize) * m + i[0] as usize;
            let wx = [1.0 - t[0], t[0]];
            let wy = [1.0 - t[1], t[1]];
            let wz = [1.0 - t[2], t[2]];
            for (dz, &fz) in wz.iter().enumerate() {
                for (dy, &fy) in wy.iter().enumerate() {
                    let row = base + dz * sz + dy * sy;
                    let fzy = fz * fy;
                    // SAFETY: base voxel ≤ m − 2 per axis, so row + 1 < m³.
                    unsafe {
                        for (dx, &fx) in wx.iter().enumerate() {
                            let w = fzy * fx;
                            *num.get_unchecked_mut(row + dx) += w * v;
                            *den.get_unchecked_mut(row + dx) += w * wc;
                        }
                    }
                }
            }
        }
    }
}
