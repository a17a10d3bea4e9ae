//! The one grid type every stage hands to the next: a cubic M × M × M array.
//!
//! Layout: `data[(iz * m + iy) * m + ix]` (x fastest, C order of an `[z][y][x]` array, the same
//! order numpy and MRC files use). The grid is centred: voxel `(c, c, c)` with `c = m / 2` sits at
//! the origin. Grids the program makes have odd `m`, so that the origin has as many voxels on each
//! side (DESIGN.md, "Volume grid"); maps read from other programs may be even, and then
//! `c = m / 2` is the FFT convention (numpy's `fftshift`).
//!
//! The same type carries a reciprocal-space volume (`spacing` = Δs in Å⁻¹: intensity |F|²,
//! amplitude |F| or the complex transform F) and a real-space map (`spacing` = voxel size in Å:
//! electron density). For a reciprocal grid of spacing Δs the matching real-space grid has voxel
//! size 1 / (m · Δs).

use num_complex::Complex64;

use crate::trilinear::Cell;

#[derive(Clone, Debug, PartialEq)]
pub struct Volume<T> {
    /// Voxels along each axis (odd for the grids this program makes; maps read from files may be
    /// even).
    pub m: usize,
    /// Δs in Å⁻¹ for reciprocal volumes, voxel size in Å for real-space maps.
    pub spacing: f64,
    pub data: Vec<T>,
}

/// |F|² or |F| sampled on the reciprocal grid.
pub type IntensityVolume = Volume<f32>;
/// The complex molecular transform F(s) on the reciprocal grid.
pub type ComplexVolume = Volume<Complex64>;
/// A real-space map (electron density), voxel size in Å.
pub type DensityMap = Volume<f32>;

impl<T: Clone> Volume<T> {
    pub fn filled(m: usize, spacing: f64, value: T) -> Self {
        Volume {
            m,
            spacing,
            data: vec![value; m * m * m],
        }
    }
}

impl<T> Volume<T> {
    /// Index of the centre voxel along each axis: `m / 2` (`(m − 1)/2` for odd `m`).
    pub fn centre(&self) -> usize {
        self.m / 2
    }

    pub fn index(&self, ix: usize, iy: usize, iz: usize) -> usize {
        (iz * self.m + iy) * self.m + ix
    }

    /// Coordinate (Å⁻¹ or Å) of voxel index `i` along any axis.
    pub fn coordinate(&self, i: usize) -> f64 {
        (i as f64 - self.centre() as f64) * self.spacing
    }

    pub fn map<U>(&self, f: impl Fn(&T) -> U) -> Volume<U> {
        Volume {
            m: self.m,
            spacing: self.spacing,
            data: self.data.iter().map(f).collect(),
        }
    }
}

impl ComplexVolume {
    /// |F|² as f32, the intensity volume the slicer samples.
    pub fn intensity(&self) -> IntensityVolume {
        self.map(|f| f.norm_sqr() as f32)
    }

    /// |F| as f32, the amplitude volume phasing starts from.
    pub fn amplitude(&self) -> IntensityVolume {
        self.map(|f| f.norm() as f32)
    }
}

impl Volume<f32> {
    /// Trilinear value at a physical coordinate (Å⁻¹ or Å); `None` outside the grid
    /// ([`Edge::NoneOutside`](crate::trilinear::Edge::NoneOutside): a point on the grid's outer
    /// planes still has a value). The position is located in f64, the weights are f32.
    pub fn sample(&self, p: [f64; 3]) -> Option<f32> {
        let c = self.centre() as f64;
        let u = p.map(|x| x / self.spacing + c);
        Cell::none_outside(self.m, u).map(|cell| cell.map_frac(|f| f as f32).interpolate(&self.data, self.m))
    }

    /// This volume trilinearly resampled onto the centred `m`³ grid of spacing `spacing`
    /// (e.g. a method's own grid onto the evaluation grid, so FSC and phasing compare like with
    /// like). Voxels beyond `limit` (|s|, same units) or outside this grid get `outside`; −1
    /// means "not measured", which phasing leaves free.
    pub fn resampled(&self, m: usize, spacing: f64, limit: f64, outside: f32) -> Volume<f32> {
        let c = (m / 2) as f64;
        let mut data = vec![outside; m * m * m];
        use rayon::prelude::*;
        data.par_chunks_mut(m * m).enumerate().for_each(|(iz, plane)| {
            let z = (iz as f64 - c) * spacing;
            for iy in 0..m {
                let y = (iy as f64 - c) * spacing;
                for ix in 0..m {
                    let x = (ix as f64 - c) * spacing;
                    if (x * x + y * y + z * z).sqrt() > limit {
                        continue;
                    }
                    if let Some(v) = self.sample([x, y, z]) {
                        plane[iy * m + ix] = v;
                    }
                }
            }
        });
        Volume { m, spacing, data }
    }
}
