//! Trilinear interpolation on a cubic M × M × M grid of f32 values (`[z][y][x]`, x fastest, the
//! layout of [`crate::volume::Volume`]): the one place that finds the cell around a point, weighs
//! its eight corners and decides what happens at the grid's edge. Every trilinear sampler in the
//! crate goes through it.
//!
//! Points are in voxel units with voxel (0, 0, 0) at the origin. A point p lies in the cell whose
//! lowest corner is `base` (per axis) with fractions f = p − base; the corner with offsets
//! (ox, oy, oz) ∈ {0, 1}³ has weight wx·wy·wz, w = f along an axis where the offset is 1 and
//! 1 − f where it is 0. Corners are visited in the order 000, 100, 010, 110, 001, 101, 011, 111
//! (x fastest).
//!
//! **Edge rules** ([`Edge`]), one per kind of user:
//!
//! | rule | cell | fully inside | straddling the edge | fully outside | used by |
//! |---|---|---|---|---|---|
//! | [`Edge::ZeroOutside`] | ⌊p⌋ | interpolant | corners outside read as 0 | 0 | X-RAI decoder (the learned volume is zero beyond its grid, like `grid_sample`'s zero padding); `eval::align` (a map is zero outside its box) |
//! | [`Edge::NoneOutside`] | ⌊p⌋ clamped to [0, M − 2] | interpolant | `None` unless p is on the closed box [0, M − 1]³ (p = M − 1 reads the last cell with f = 1) | `None` | [`Volume::sample`](crate::volume::Volume::sample) and `resampled` (voxels the source grid does not cover keep the caller's marker) |
//! | [`Edge::ClampCell`] | ⌊p⌋ clamped to [0, M − 2] | interpolant | the edge cell's interpolant extended linearly (f outside [0, 1]) | the same extrapolation | `physics::slice` (the slicer's bricks, its AVX2 twin and its orientation average; EMC compress uses the same cell): the grid is checked to cover the detector when the slicer is built, so the clamp only keeps reads in bounds |
//!
//! **Evaluation forms.** The value is Σ w_c v_c over the corners; three arithmetic orders of it
//! exist, equal up to rounding, each kept because it is the one its user's results and timings
//! were established with (outputs stay bit-identical):
//! - [`Cell::interpolate`], the reference: Σ_c ((wx·wy)·wz)·v_c in corner order, skipping
//!   corners outside the grid and corners of weight 0 (a point on a grid plane never reads the
//!   plane beyond it). Used by `Volume::sample`, `eval::align`, the slicer's orientation average
//!   and the decoder's straddling cells;
//! - [`Cell::interpolate_factorised`]: for a cell fully inside, the weights from shared
//!   y·z products ([`corner_weights`], 12 multiplies instead of 16); the X-RAI decoder's hot
//!   kernel, whose backward uses [`corner_weights`] and [`gradient`] the same way;
//! - [`lerp_xyz`]: nested linear interpolation along x, then y, then z (7 lerps), for the
//!   slicer's bricked layout, where the eight values arrive as x-pairs.
//!
//! Generic over f32 and f64 ([`Real`]): the position, fractions, weights and result are `T`; voxel
//! values are read as f32 and widened. Everything here is `#[inline(always)]`: the decoder's
//! forward and backward call it once per sample.

use std::ops::{Add, AddAssign, Mul, Sub};

/// The floating-point type of positions, weights and results: f32 or f64.
pub trait Real:
    Copy + PartialEq + PartialOrd + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + AddAssign
{
    const ZERO: Self;
    const ONE: Self;
    /// ⌊x⌋ as an integer without a libm call (`floor` is not inlined on baseline x86-64, where it
    /// cost more than the interpolation itself). Exact for |x| < 2⁶³; NaN gives 0.
    fn floor_i64(self) -> i64;
    /// x rounded toward zero, saturating; NaN gives 0.
    fn trunc_i64(self) -> i64;
    fn from_i64(i: i64) -> Self;
    fn from_f32(v: f32) -> Self;
}

impl Real for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
    #[inline(always)]
    fn floor_i64(self) -> i64 {
        let t = self as i64;
        t - ((t as f32) > self) as i64
    }
    #[inline(always)]
    fn trunc_i64(self) -> i64 {
        self as i64
    }
    #[inline(always)]
    fn from_i64(i: i64) -> f32 {
        i as f32
    }
    #[inline(always)]
    fn from_f32(v: f32) -> f32 {
        v
    }
}

impl Real for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
    #[inline(always)]
    fn floor_i64(self) -> i64 {
        let t = self as i64;
        t - ((t as f64) > self) as i64
    }
    #[inline(always)]
    fn trunc_i64(self) -> i64 {
        self as i64
    }
    #[inline(always)]
    fn from_i64(i: i64) -> f64 {
        i as f64
    }
    #[inline(always)]
    fn from_f32(v: f32) -> f64 {
        v as f64
    }
}

/// What a sampler does at the edge of the grid (see the module table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    /// Corners outside the grid read as zero; a point far outside gives 0.
    ZeroOutside,
    /// No value (`None`) for a point outside the closed box [0, M − 1]³.
    NoneOutside,
    /// The cell is clamped to the grid, so a point outside is extrapolated linearly from the
    /// edge cell.
    ClampCell,
}

impl Edge {
    /// The cell that `p` is interpolated in under this rule (`None` only for
    /// [`Edge::NoneOutside`] outside the box).
    #[inline(always)]
    pub fn cell<T: Real>(self, m: usize, p: [T; 3]) -> Option<Cell<T>> {
        match self {
            Edge::ZeroOutside => Some(Cell::zero_outside(p)),
            Edge::NoneOutside => Cell::none_outside(m, p),
            Edge::ClampCell => Some(Cell::clamped(m, p)),
        }
    }
}

/// The trilinear value of `vol` (`m`³) at `p` under `edge`, in the reference form
/// ([`Cell::interpolate`]).
#[inline(always)]
pub fn sample<T: Real>(vol: &[f32], m: usize, p: [T; 3], edge: Edge) -> Option<T> {
    edge.cell(m, p).map(|c| c.interpolate(vol, m))
}

/// The cell a point is interpolated in: its lowest corner and the point's fractions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cell<T> {
    /// Voxel indices (x, y, z) of the lowest corner; may lie outside the grid under
    /// [`Edge::ZeroOutside`].
    pub base: [i64; 3],
    /// p − base per axis: in [0, 1) under [`Edge::ZeroOutside`], in [0, 1] under
    /// [`Edge::NoneOutside`], any value under [`Edge::ClampCell`].
    pub frac: [T; 3],
}

impl<T: Real> Cell<T> {
    #[inline(always)]
    fn at(base: [i64; 3], p: [T; 3]) -> Cell<T> {
        Cell {
            base,
            frac: [
                p[0] - T::from_i64(base[0]),
                p[1] - T::from_i64(base[1]),
                p[2] - T::from_i64(base[2]),
            ],
        }
    }

    /// [`Edge::ZeroOutside`]: the cell ⌊p⌋, wherever it is.
    #[inline(always)]
    pub fn zero_outside(p: [T; 3]) -> Cell<T> {
        Cell::at([p[0].floor_i64(), p[1].floor_i64(), p[2].floor_i64()], p)
    }

    /// [`Edge::NoneOutside`]: `None` outside [0, m − 1]³, else ⌊p⌋ clamped to [0, m − 2]
    /// (the last cell for a point on the last plane).
    #[inline(always)]
    pub fn none_outside(m: usize, p: [T; 3]) -> Option<Cell<T>> {
        let last = T::from_i64(m as i64 - 1);
        if !p.iter().all(|&x| T::ZERO <= x && x <= last) {
            return None;
        }
        let hi = m as i64 - 2;
        Some(Cell::at(p.map(|x| x.floor_i64().min(hi).max(0)), p))
    }

    /// [`Edge::ClampCell`]: ⌊p⌋ clamped to [0, m − 2] (m ≥ 2). Truncation gives the same
    /// clamped index as ⌊p⌋ (they differ only on (−1, 0), where both clamp to 0) and is cheaper.
    #[inline(always)]
    pub fn clamped(m: usize, p: [T; 3]) -> Cell<T> {
        let hi = m as i64 - 2;
        Cell::at(p.map(|x| x.trunc_i64().min(hi).max(0)), p)
    }

    /// The same cell with the fractions converted (e.g. an f64 position interpolated in f32).
    #[inline(always)]
    pub fn map_frac<U>(self, f: impl Fn(T) -> U) -> Cell<U> {
        Cell {
            base: self.base,
            frac: self.frac.map(f),
        }
    }

    /// Flat index of the lowest corner when all eight corners lie inside the `m`³ grid.
    #[inline(always)]
    pub fn interior(&self, m: usize) -> Option<usize> {
        let hi = m as i64 - 2;
        let b = self.base;
        if b.iter().all(|&v| (0..=hi).contains(&v)) {
            Some((b[2] as usize * m + b[1] as usize) * m + b[0] as usize)
        } else {
            None
        }
    }

    /// Calls `f(index, weight, ∂weight/∂p)` for the eight corners in corner order; `index` is
    /// the flat voxel index, `None` for a corner outside the `m`³ grid.
    #[inline(always)]
    pub fn corners(&self, m: usize, mut f: impl FnMut(Option<usize>, T, [T; 3])) {
        let mi = m as i64;
        for c in 0..8 {
            let o = [c & 1, (c >> 1) & 1, (c >> 2) & 1];
            let mut w = [T::ZERO; 3];
            let mut dw = [T::ZERO; 3];
            for a in 0..3 {
                if o[a] == 1 {
                    w[a] = self.frac[a];
                    dw[a] = T::ONE;
                } else {
                    w[a] = T::ONE - self.frac[a];
                    dw[a] = T::ZERO - T::ONE;
                }
            }
            let i = [0, 1, 2].map(|a| self.base[a].saturating_add(o[a] as i64));
            let inside = i.iter().all(|&v| v >= 0 && v < mi);
            let index = inside.then(|| ((i[2] * mi + i[1]) * mi + i[0]) as usize);
            let d = [dw[0] * w[1] * w[2], w[0] * dw[1] * w[2], w[0] * w[1] * dw[2]];
            f(index, w[0] * w[1] * w[2], d);
        }
    }

    /// Σ_c w_c v_c, the reference form: ((wx·wy)·wz)·v_c summed in corner order over the corners
    /// inside the grid with non-zero weight.
    #[inline(always)]
    pub fn interpolate(&self, vol: &[f32], m: usize) -> T {
        let mut acc = T::ZERO;
        self.corners(m, |index, w, _| {
            if let Some(i) = index {
                if w != T::ZERO {
                    acc += w * T::from_f32(vol[i]);
                }
            }
        });
        acc
    }

    /// Σ_c w_c v_c with the factorised weights ([`corner_weights`]) when the cell is fully
    /// inside (all eight corners are read, whatever their weight), the reference form otherwise
    /// (the X-RAI decoder's forward).
    #[inline(always)]
    pub fn interpolate_factorised(&self, vol: &[f32], m: usize) -> T {
        match self.interior(m) {
            Some(i0) => {
                let off = corner_offsets(m);
                let w = corner_weights(self.frac);
                let v = &vol[i0..=i0 + off[7]];
                let mut acc = T::ZERO;
                for c in 0..8 {
                    acc += w[c] * T::from_f32(v[off[c]]);
                }
                acc
            }
            None => self.interpolate(vol, m),
        }
    }
}

/// Flat offsets of the eight corners from the lowest one in an `m`³ grid, in corner order.
#[inline(always)]
pub fn corner_offsets(m: usize) -> [usize; 8] {
    let mm = m * m;
    [0, 1, m, m + 1, mm, mm + 1, mm + m, mm + m + 1]
}

/// The eight corner weights (corner order) for fractions f, factorised as wx·(wy·wz) so the
/// four y·z products are shared.
#[inline(always)]
pub fn corner_weights<T: Real>(f: [T; 3]) -> [T; 8] {
    let g = [T::ONE - f[0], T::ONE - f[1], T::ONE - f[2]];
    let (yz00, yz10, yz01, yz11) = (g[1] * g[2], f[1] * g[2], g[1] * f[2], f[1] * f[2]);
    [
        g[0] * yz00,
        f[0] * yz00,
        g[0] * yz10,
        f[0] * yz10,
        g[0] * yz01,
        f[0] * yz01,
        g[0] * yz11,
        f[0] * yz11,
    ]
}

/// ∇ of the interpolant with corner values `v` (corner order) at fractions f, per unit of
/// voxel: differences along each axis weighted by the other two axes' weights.
#[inline(always)]
pub fn gradient<T: Real>(v: [T; 8], f: [T; 3]) -> [T; 3] {
    let g = [T::ONE - f[0], T::ONE - f[1], T::ONE - f[2]];
    let dx =
        g[2] * (g[1] * (v[1] - v[0]) + f[1] * (v[3] - v[2])) + f[2] * (g[1] * (v[5] - v[4]) + f[1] * (v[7] - v[6]));
    let dy =
        g[2] * (g[0] * (v[2] - v[0]) + f[0] * (v[3] - v[1])) + f[2] * (g[0] * (v[6] - v[4]) + f[0] * (v[7] - v[5]));
    let dz =
        g[1] * (g[0] * (v[4] - v[0]) + f[0] * (v[5] - v[1])) + f[1] * (g[0] * (v[6] - v[2]) + f[0] * (v[7] - v[3]));
    [dx, dy, dz]
}

/// The interpolant as nested lerps a + t (b − a): along x for the four x-pairs, then y, then z.
/// `v` in corner order.
#[inline(always)]
pub fn lerp_xyz<T: Real>(v: [T; 8], f: [T; 3]) -> T {
    let lerp = |a: T, b: T, t: T| a + t * (b - a);
    let c00 = lerp(v[0], v[1], f[0]);
    let c10 = lerp(v[2], v[3], f[0]);
    let c01 = lerp(v[4], v[5], f[0]);
    let c11 = lerp(v[6], v[7], f[0]);
    lerp(lerp(c00, c10, f[1]), lerp(c01, c11, f[1]), f[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: usize = 4;

    /// v = 1 + 2x + 3y + 5z on a 4³ grid: trilinear interpolation reproduces a linear function
    /// exactly, and with quarter fractions every product and sum here is exact in f32.
    fn linear(p: [f64; 3]) -> f64 {
        1.0 + 2.0 * p[0] + 3.0 * p[1] + 5.0 * p[2]
    }

    fn grid() -> Vec<f32> {
        let mut v = vec![0f32; M * M * M];
        for z in 0..M {
            for y in 0..M {
                for x in 0..M {
                    v[(z * M + y) * M + x] = linear([x as f64, y as f64, z as f64]) as f32;
                }
            }
        }
        v
    }

    /// Checks one point under every rule, in f32 and f64: `zero` is the expected
    /// ZeroOutside value, `none` the NoneOutside one; ClampCell must extrapolate the linear
    /// function exactly.
    fn check(p: [f64; 3], zero: f64, none: Option<f64>) {
        let vol = grid();
        let p32 = p.map(|x| x as f32);
        assert_eq!(
            sample(&vol, M, p, Edge::ZeroOutside),
            Some(zero),
            "ZeroOutside f64 at {p:?}"
        );
        assert_eq!(
            sample(&vol, M, p32, Edge::ZeroOutside),
            Some(zero as f32),
            "ZeroOutside f32 at {p:?}"
        );
        assert_eq!(sample(&vol, M, p, Edge::NoneOutside), none, "NoneOutside f64 at {p:?}");
        assert_eq!(
            sample(&vol, M, p32, Edge::NoneOutside),
            none.map(|v| v as f32),
            "NoneOutside f32 at {p:?}"
        );
        assert_eq!(
            sample(&vol, M, p, Edge::ClampCell),
            Some(linear(p)),
            "ClampCell f64 at {p:?}"
        );
        assert_eq!(
            sample(&vol, M, p32, Edge::ClampCell),
            Some(linear(p) as f32),
            "ClampCell f32 at {p:?}"
        );
        // The fast forms agree with the reference under their rules.
        let zero_cell = Cell::zero_outside(p32);
        assert_eq!(
            zero_cell.interpolate_factorised(&vol, M),
            zero as f32,
            "factorised at {p:?}"
        );
        let c = Cell::clamped(M, p32);
        let b = c.base.map(|x| x as usize);
        let i0 = (b[2] * M + b[1]) * M + b[0];
        let v = corner_offsets(M).map(|o| vol[i0 + o]);
        assert_eq!(lerp_xyz(v, c.frac), linear(p) as f32, "nested lerps at {p:?}");
    }

    #[test]
    fn cell_fully_inside_reads_the_interpolant_under_every_rule() {
        let p = [1.25, 0.5, 2.75];
        check(p, linear(p), Some(linear(p)));
        let cell = Cell::zero_outside(p.map(|x| x as f32));
        assert_eq!(cell.base, [1, 0, 2]);
        assert_eq!(cell.frac, [0.25, 0.5, 0.75]);
        assert_eq!(cell.interior(M), Some((2 * M) * M + 1));
        // the gradient of 1 + 2x + 3y + 5z, from the cell's values and from the corner derivatives
        let vol = grid();
        let v = corner_offsets(M).map(|o| vol[cell.interior(M).unwrap() + o]);
        assert_eq!(gradient(v, cell.frac), [2.0, 3.0, 5.0]);
        let mut d = [0f32; 3];
        cell.corners(M, |i, _, dw| (0..3).for_each(|a| d[a] += dw[a] * vol[i.unwrap()]));
        assert_eq!(d, [2.0, 3.0, 5.0]);
    }

    #[test]
    fn cell_straddling_the_edge_follows_each_rule() {
        // below x = 0: the corners at x = −1 (weight ¼) read as zero under ZeroOutside
        let p = [-0.25, 1.5, 1.5];
        check(p, 0.75 * linear([0.0, 1.5, 1.5]), None);
        // above x = M − 1 in x and y: only the corner plane x = y = 3 (weight ¾ · ½) is inside
        let p = [3.25, 3.5, 0.5];
        check(p, 0.75 * 0.5 * linear([3.0, 3.0, 0.5]), None);
        assert_eq!(Cell::zero_outside(p).interior(M), None);
        // on the last plane: inside the closed box, so NoneOutside has a value (last cell, f = 1)
        let p = [3.0, 1.5, 0.0];
        check(p, linear(p), Some(linear(p)));
        assert_eq!(Cell::none_outside(M, p).unwrap().base, [2, 1, 0]);
        assert_eq!(Cell::none_outside(M, p).unwrap().frac, [1.0, 0.5, 0.0]);
    }

    #[test]
    fn cell_fully_outside_is_zero_none_or_extrapolated() {
        check([-3.5, 1.5, 1.5], 0.0, None);
        check([1.0, 7.25, -2.0], 0.0, None);
        let c = Cell::clamped(M, [-3.5f32, 1.5, 9.0]);
        assert_eq!(c.base, [0, 1, 2]);
        assert_eq!(c.frac, [-3.5, 0.5, 7.0]);
    }

    #[test]
    fn corners_of_weight_zero_are_not_read() {
        // A point on the plane x = 2 reads cell 2 with f = 0: the plane x = 3 must not leak in.
        let mut vol = grid();
        for z in 0..M {
            for y in 0..M {
                vol[(z * M + y) * M + 3] = f32::NAN;
            }
        }
        let p = [2.0f32, 1.25, 0.5];
        let want = linear(p.map(f64::from)) as f32;
        for edge in [Edge::ZeroOutside, Edge::NoneOutside, Edge::ClampCell] {
            assert_eq!(sample(&vol, M, p, edge), Some(want), "{edge:?}");
        }
    }

    #[test]
    fn fast_forms_match_the_reference_to_rounding() {
        let m = 7;
        let vol: Vec<f32> = (0..m * m * m).map(|i| ((i * 7919) % 101) as f32 / 13.0).collect();
        for k in 0..2000 {
            let p = [0, 1, 2].map(|a| ((k * (a + 3) * 37) % 700) as f32 / 100.0 - 0.7);
            let cell = Cell::zero_outside(p);
            let reference = cell.interpolate(&vol, m);
            let fast = cell.interpolate_factorised(&vol, m);
            assert!(
                (reference - fast).abs() <= 1e-5 * reference.abs().max(1.0),
                "{p:?}: {reference} vs {fast}"
            );
            if let Some(i0) = cell.interior(m) {
                let v = corner_offsets(m).map(|o| vol[i0 + o]);
                let lerp = lerp_xyz(v, cell.frac);
                assert!(
                    (reference - lerp).abs() <= 1e-5 * reference.abs().max(1.0),
                    "{p:?}: {reference} vs {lerp}"
                );
                let mut d = [0f32; 3];
                cell.corners(m, |i, _, dw| (0..3).for_each(|a| d[a] += dw[a] * vol[i.unwrap()]));
                let g = gradient(v, cell.frac);
                for a in 0..3 {
                    assert!(
                        (d[a] - g[a]).abs() <= 1e-4 * d[a].abs().max(1.0),
                        "{p:?}: {d:?} vs {g:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn floor_and_trunc_match_std() {
        for x in [-2.5f32, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 2.999, 1e7, -1e7] {
            assert_eq!(x.floor_i64(), x.floor() as i64, "{x}");
            assert_eq!((x as f64).floor_i64(), (x as f64).floor() as i64, "{x}");
            assert_eq!(x.trunc_i64(), x.trunc() as i64, "{x}");
        }
        assert_eq!(f32::NAN.floor_i64(), 0);
    }
}
