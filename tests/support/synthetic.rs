//! A test-scale ground truth built without the simulator: the atoms of 2CEX chain A as Gaussian
//! blobs (f(s) = Z exp(−B s²/4)), their transform F(s) = Σ f(s) exp(+2πi s·r) on a centred grid
//! by direct summation with separable per-axis phase factors.

use nalgebra::{Matrix3, Vector3};
use num_complex::Complex64;
use rayon::prelude::*;
use xrai_bench::volume::{ComplexVolume, Volume};

pub struct Atoms {
    pub positions: Vec<Vector3<f64>>,
    pub electrons: Vec<f64>,
}

impl Atoms {
    /// ATOM records of `datasets/pdb/2cex_a.pdb` (columns 31–54), centred on their mean.
    pub fn cex_a() -> Atoms {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/datasets/pdb/2cex_a.pdb");
        let text = std::fs::read_to_string(path).expect("datasets/pdb/2cex_a.pdb");
        let mut positions = Vec::new();
        let mut electrons = Vec::new();
        for line in text.lines().filter(|l| l.starts_with("ATOM")) {
            let field = |a: usize, b: usize| line.get(a..b).unwrap_or("").trim().to_string();
            let xyz: Vec<f64> = [(30, 38), (38, 46), (46, 54)]
                .iter()
                .map(|&(a, b)| field(a, b).parse().expect("coordinate"))
                .collect();
            let element = field(76, 78);
            let element = if element.is_empty() {
                field(12, 14).chars().take(1).collect()
            } else {
                element
            };
            let z = match element.as_str() {
                "N" => 7.0,
                "O" => 8.0,
                "S" => 16.0,
                _ => 6.0,
            };
            positions.push(Vector3::new(xyz[0], xyz[1], xyz[2]));
            electrons.push(z);
        }
        let mean = positions.iter().sum::<Vector3<f64>>() / positions.len() as f64;
        positions.iter_mut().for_each(|p| *p -= mean);
        Atoms {
            positions,
            electrons,
        }
    }

    pub fn radius(&self) -> f64 {
        self.positions.iter().map(|p| p.norm()).fold(0.0, f64::max)
    }

    /// The molecule turned by `rotation` and moved by `shift` (Å).
    pub fn transformed(&self, rotation: &Matrix3<f64>, shift: &Vector3<f64>) -> Atoms {
        Atoms {
            positions: self
                .positions
                .iter()
                .map(|p| rotation * p + shift)
                .collect(),
            electrons: self.electrons.clone(),
        }
    }

    /// F(s) on the centred `m³` grid of spacing `ds`, atoms of temperature factor `b` (Å²).
    pub fn transform(&self, m: usize, ds: f64, b: f64) -> ComplexVolume {
        let c = (m - 1) / 2;
        let s = |k: usize| (k as f64 - c as f64) * ds;
        // Per-atom, per-axis phase factors exp(2πi s_k x).
        let factors = |axis: usize| -> Vec<Vec<Complex64>> {
            self.positions
                .iter()
                .map(|p| {
                    (0..m)
                        .map(|k| Complex64::from_polar(1.0, std::f64::consts::TAU * s(k) * p[axis]))
                        .collect()
                })
                .collect()
        };
        let (fx, fy, fz) = (factors(0), factors(1), factors(2));
        let mut data = vec![Complex64::new(0.0, 0.0); m * m * m];
        data.par_chunks_mut(m * m)
            .enumerate()
            .for_each(|(iz, plane)| {
                for a in 0..self.positions.len() {
                    let ez = fz[a][iz] * self.electrons[a];
                    for iy in 0..m {
                        let eyz = fy[a][iy] * ez;
                        let row = &mut plane[iy * m..(iy + 1) * m];
                        for (out, ex) in row.iter_mut().zip(&fx[a]) {
                            *out += ex * eyz;
                        }
                    }
                }
                for iy in 0..m {
                    for ix in 0..m {
                        let s2 = s(ix).powi(2) + s(iy).powi(2) + s(iz).powi(2);
                        plane[iy * m + ix] *= (-b * s2 / 4.0).exp();
                    }
                }
            });
        Volume {
            m,
            spacing: ds,
            data,
        }
    }
}
