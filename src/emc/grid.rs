//! Orientation grid: Dragonfly's refinement of the 600-cell (Loh & Elser 2009, appendix;
//! Ayyer et al. 2016, `quat.c`).
//!
//! The 120 vertices of the 600-cell are unit quaternions spread evenly over S³. Every edge,
//! triangle and tetrahedral cell is subdivided into n parts per edge and the lattice points are
//! projected onto S³; q and −q are one rotation, so half the points are kept: 10(5n³ + n)
//! rotations at level n. The quadrature weight of a point is the Jacobian of the projection from
//! the flat cell onto the sphere, (v·c)/(|v|⁴|c|) for the unprojected point v and the centre c of
//! a cell containing it, times Dragonfly's correction for points shared between cells (5/6 on
//! vertices, 35/36 on edges).

use std::collections::HashMap;

use anyhow::ensure;
use nalgebra::{Quaternion, Rotation3, UnitQuaternion};
use rayon::prelude::*;

use crate::rotation::canonical;

/// A finite set of rotations with quadrature weights (summing to 1).
#[derive(Clone, Debug)]
pub struct OrientationGrid {
    /// Refinement level n (0 for a grid given explicitly).
    pub level: usize,
    /// Unit quaternions, w ≥ 0.
    pub quaternions: Vec<UnitQuaternion<f64>>,
    /// Quadrature weights, normalised to sum to 1.
    pub weights: Vec<f64>,
}

impl OrientationGrid {
    /// The 600-cell grid at refinement level `level` ≥ 1.
    pub fn new(level: usize) -> anyhow::Result<OrientationGrid> {
        ensure!(
            level >= 1,
            "--level must be at least 1 (level n has 10(5n³+n) rotations)"
        );
        ensure!(
            level <= 60,
            "--level {level} is too large (10(5n³+n) = {} rotations)",
            num_rotations(level)
        );
        let (quaternions, weights) = refine_600_cell(level);
        ensure!(
            quaternions.len() == num_rotations(level),
            "internal error: level {level} gave {} rotations, expected {}",
            quaternions.len(),
            num_rotations(level)
        );
        Ok(OrientationGrid::with_weights(level, quaternions, weights))
    }

    /// An explicit grid (e.g. the true poses of a tiny test problem); weights are normalised.
    pub fn with_weights(level: usize, quaternions: Vec<UnitQuaternion<f64>>, weights: Vec<f64>) -> OrientationGrid {
        assert_eq!(quaternions.len(), weights.len(), "one weight per rotation");
        let total: f64 = weights.iter().sum();
        OrientationGrid {
            level,
            quaternions: quaternions.into_iter().map(canonical).collect(),
            weights: weights.iter().map(|w| w / total).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.quaternions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.quaternions.is_empty()
    }

    pub fn rotations(&self) -> Vec<Rotation3<f64>> {
        self.quaternions.iter().map(|q| q.to_rotation_matrix()).collect()
    }

    /// Mean angle (degrees) from a grid rotation to its nearest neighbour in the grid, over up
    /// to 512 evenly chosen rotations (exact for grids that small). Rotation angle, not the
    /// quaternion angle on S³ (which is half of it).
    pub fn mean_spacing_deg(&self) -> f64 {
        let n = self.len();
        if n < 2 {
            return 360.0;
        }
        let step = n.div_ceil(512);
        let q: Vec<[f64; 4]> = self.quaternions.iter().map(|q| [q.w, q.i, q.j, q.k]).collect();
        let sample: Vec<usize> = (0..n).step_by(step).collect();
        let total: f64 = sample
            .par_iter()
            .map(|&i| {
                let a = q[i];
                let best = q
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, b)| (a[0] * b[0] + a[1] * b[1] + a[2] * b[2] + a[3] * b[3]).abs())
                    .fold(0.0f64, f64::max);
                2.0 * best.min(1.0).acos().to_degrees()
            })
            .sum();
        total / sample.len() as f64
    }
}

/// 10(5n³ + n): the number of rotations at level n.
pub fn num_rotations(level: usize) -> usize {
    10 * (5 * level * level * level + level)
}

/// The 120 vertices of the 600-cell (unit quaternions): 8 of type (±1,0,0,0), 16 of type
/// (±½,±½,±½,±½) and 96 even permutations of (±τ/2, ±½, ±1/(2τ), 0).
fn vertices() -> Vec<[f64; 4]> {
    let tau = (1.0 + 5f64.sqrt()) / 2.0;
    let mut v = Vec::with_capacity(120);
    for i in 0..4 {
        for s in [-1.0, 1.0] {
            let mut x = [0.0; 4];
            x[i] = s;
            v.push(x);
        }
    }
    for bits in 0..16u32 {
        v.push([0, 1, 2, 3].map(|k| if bits >> k & 1 == 1 { 0.5 } else { -0.5 }));
    }
    const EVEN: [[usize; 4]; 12] = [
        [0, 1, 2, 3],
        [0, 2, 3, 1],
        [0, 3, 1, 2],
        [1, 2, 0, 3],
        [1, 0, 3, 2],
        [1, 3, 2, 0],
        [2, 0, 1, 3],
        [2, 3, 0, 1],
        [2, 1, 3, 0],
        [3, 1, 0, 2],
        [3, 0, 2, 1],
        [3, 2, 1, 0],
    ];
    for sa in [-1.0, 1.0] {
        for sb in [-1.0, 1.0] {
            for sc in [-1.0, 1.0] {
                let base = [sa * tau / 2.0, sb * 0.5, sc / (2.0 * tau), 0.0];
                for p in EVEN {
                    v.push([base[p[0]], base[p[1]], base[p[2]], base[p[3]]]);
                }
            }
        }
    }
    v
}

fn dot(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2] + a[3] * b[3]
}

/// Lattice points of the subdivided 600-cell, one of each ± pair, with their weights.
fn refine_600_cell(n: usize) -> (Vec<UnitQuaternion<f64>>, Vec<f64>) {
    let v = vertices();
    // Neighbours: the shortest chord is 1/τ (squared 0.382); the next is 1 (squared 1).
    let d2 = |a: usize, b: usize| (0..4).map(|k| (v[a][k] - v[b][k]).powi(2)).sum::<f64>();
    let adjacent = |a: usize, b: usize| d2(a, b) < 0.5;
    let nv = v.len();
    // Higher-numbered neighbours of each vertex.
    let neighbours: Vec<Vec<usize>> = (0..nv)
        .map(|a| (a + 1..nv).filter(|&b| adjacent(a, b)).collect())
        .collect();
    let mut cells = Vec::with_capacity(600);
    for a in 0..nv {
        for &b in &neighbours[a] {
            for &c in &neighbours[b] {
                if !adjacent(a, c) {
                    continue;
                }
                for &d in &neighbours[c] {
                    if adjacent(a, d) && adjacent(b, d) {
                        cells.push([a, b, c, d]);
                    }
                }
            }
        }
    }
    debug_assert_eq!(cells.len(), 600);
    // A containing cell (its centre direction) for every vertex, edge and face.
    let mut vertex_cell = vec![usize::MAX; nv];
    let mut edge_cell: HashMap<(usize, usize), usize> = HashMap::new();
    let mut face_cell: HashMap<(usize, usize, usize), usize> = HashMap::new();
    for (ci, c) in cells.iter().enumerate() {
        for i in 0..4 {
            if vertex_cell[c[i]] == usize::MAX {
                vertex_cell[c[i]] = ci;
            }
            for j in i + 1..4 {
                edge_cell.entry((c[i], c[j])).or_insert(ci);
                for k in j + 1..4 {
                    face_cell.entry((c[i], c[j], c[k])).or_insert(ci);
                }
            }
        }
    }
    let centre = |ci: usize| {
        let c = cells[ci];
        [0, 1, 2, 3].map(|k| c.iter().map(|&i| v[i][k]).sum::<f64>())
    };
    let mut points: Vec<([f64; 4], f64)> = Vec::with_capacity(2 * num_rotations(n));
    let mut push = |q: [f64; 4], cell: usize, factor: f64| {
        let c = centre(cell);
        let nq = dot(&q, &q).sqrt();
        let weight = factor * dot(&q, &c) / (nq.powi(4) * dot(&c, &c).sqrt());
        points.push((q.map(|x| x / nq), weight));
    };
    let nf = n as f64;
    let lerp = |base: usize, steps: &[(usize, usize)]| {
        let mut q = v[base];
        for &(to, k) in steps {
            for a in 0..4 {
                q[a] += k as f64 / nf * (v[to][a] - v[base][a]);
            }
        }
        q
    };
    for (i, &cell) in vertex_cell.iter().enumerate() {
        push(v[i], cell, 5.0 / 6.0);
    }
    let mut edges: Vec<_> = edge_cell.iter().map(|(&e, &c)| (e, c)).collect();
    edges.sort_unstable();
    for ((a, b), cell) in edges {
        for j in 1..n {
            push(lerp(a, &[(b, j)]), cell, 35.0 / 36.0);
        }
    }
    let mut faces: Vec<_> = face_cell.iter().map(|(&f, &c)| (f, c)).collect();
    faces.sort_unstable();
    for ((a, b, c), cell) in faces {
        for j in 1..n {
            for k in 1..n.saturating_sub(j) {
                push(lerp(a, &[(b, j), (c, k)]), cell, 1.0);
            }
        }
    }
    for (ci, c) in cells.iter().enumerate() {
        for j in 1..n {
            for k in 1..n.saturating_sub(j) {
                for l in 1..n.saturating_sub(j + k) {
                    push(lerp(c[0], &[(c[1], j), (c[2], k), (c[3], l)]), ci, 1.0);
                }
            }
        }
    }
    // Keep the member of each ± pair whose first non-zero component is positive.
    let (quaternions, weights) = points
        .into_iter()
        .filter(|(q, _)| q.iter().find(|x| x.abs() > 1e-9).is_some_and(|&x| x > 0.0))
        .map(|(q, w)| {
            (
                canonical(UnitQuaternion::new_unchecked(Quaternion::new(q[0], q[1], q[2], q[3]))),
                w,
            )
        })
        .unzip();
    (quaternions, weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_weights() {
        for n in 1..=4 {
            let g = OrientationGrid::new(n).unwrap();
            assert_eq!(g.len(), num_rotations(n));
            assert!((g.weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            assert!(g.weights.iter().all(|&w| w > 0.0));
        }
    }
}
