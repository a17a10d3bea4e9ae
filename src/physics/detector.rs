//! A square, flat detector normal to the beam, and the per-pixel quantities of image formation:
//! scattering vectors on the Ewald sphere, polarisation, solid angle and the expected-photon
//! scale (DESIGN.md, "Physics conventions").

use anyhow::ensure;
use serde::{Deserialize, Serialize};

use super::beam::{Beam, CLASSICAL_ELECTRON_RADIUS_M};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detector {
    /// Pixels per side (N).
    pub pixels: usize,
    /// Side length L in metres.
    pub side_m: f64,
    /// Sample–detector distance D in metres.
    pub distance_m: f64,
}

impl Default for Detector {
    /// The paper's detector (appendix A.1; distance from DESIGN.md): 128 × 128 pixels, 0.1 m, 0.2 m.
    fn default() -> Self {
        Detector {
            pixels: 128,
            side_m: 0.1,
            distance_m: 0.2,
        }
    }
}

/// Everything image formation needs per pixel, row-major `[row][col]` with row = y, col = x.
#[derive(Clone, Debug)]
pub struct PixelGeometry {
    pub pixels: usize,
    /// Scattering vector s = (û − ẑ)/λ of each pixel, Å⁻¹, detector frame.
    pub s: Vec<[f64; 3]>,
    /// Polarisation factor P = 1 − (û·x̂)² (beam polarised along x).
    pub polarization: Vec<f64>,
    /// Solid angle Ω = A_pixel · D / r³, steradians.
    pub solid_angle: Vec<f64>,
    /// Expected photons per unit |F|²: (fluence) · r_e² · P · Ω.
    pub scale: Vec<f64>,
    /// Wavelength, Å.
    pub wavelength: f64,
}

impl Detector {
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.pixels > 0, "--pixels must be at least 1");
        ensure!(
            self.side_m.is_finite() && self.side_m > 0.0,
            "--det-size must be positive (metres), got {}",
            self.side_m
        );
        ensure!(
            self.distance_m.is_finite() && self.distance_m > 0.0,
            "--det-dist must be positive (metres), got {}",
            self.distance_m
        );
        Ok(())
    }

    /// Centre of pixel index i along either axis, metres: −L/2 + (i + ½) L/N.
    pub fn pixel_centre(&self, i: usize) -> f64 {
        -0.5 * self.side_m + (i as f64 + 0.5) * self.side_m / self.pixels as f64
    }

    pub fn geometry(&self, beam: &Beam) -> PixelGeometry {
        let n = self.pixels;
        let lambda = beam.wavelength();
        let pixel_area = (self.side_m / n as f64).powi(2);
        let r_e2 = CLASSICAL_ELECTRON_RADIUS_M * CLASSICAL_ELECTRON_RADIUS_M;
        let fluence = beam.fluence_per_m2();
        let mut g = PixelGeometry {
            pixels: n,
            s: Vec::with_capacity(n * n),
            polarization: Vec::with_capacity(n * n),
            solid_angle: Vec::with_capacity(n * n),
            scale: Vec::with_capacity(n * n),
            wavelength: lambda,
        };
        for row in 0..n {
            for col in 0..n {
                let (x, y, z) = (self.pixel_centre(col), self.pixel_centre(row), self.distance_m);
                let r = (x * x + y * y + z * z).sqrt();
                let u = [x / r, y / r, z / r];
                let polarization = 1.0 - u[0] * u[0];
                let solid_angle = pixel_area * z / (r * r * r);
                g.s.push([u[0] / lambda, u[1] / lambda, (u[2] - 1.0) / lambda]);
                g.polarization.push(polarization);
                g.solid_angle.push(solid_angle);
                g.scale.push(fluence * r_e2 * polarization * solid_angle);
            }
        }
        g
    }
}

impl PixelGeometry {
    /// Largest |s| on the detector (a corner pixel), Å⁻¹.
    pub fn s_max(&self) -> f64 {
        self.s
            .iter()
            .map(|s| (s[0] * s[0] + s[1] * s[1] + s[2] * s[2]).sqrt())
            .fold(0.0, f64::max)
    }

    pub fn len(&self) -> usize {
        self.s.len()
    }

    pub fn is_empty(&self) -> bool {
        self.s.is_empty()
    }
}
