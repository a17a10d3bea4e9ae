//! The X-ray pulse: photon energy, photons per pulse and focal spot.

use anyhow::ensure;
use serde::{Deserialize, Serialize};

/// hc in eV·Å: λ[Å] = 12398.42 / E[eV] (DESIGN.md).
pub const HC_EV_ANGSTROM: f64 = 12398.42;
/// Classical electron radius r_e in metres (CODATA 2018); r_e² is the Thomson cross-section
/// per steradian for one electron.
pub const CLASSICAL_ELECTRON_RADIUS_M: f64 = 2.817_940_326_2e-15;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Beam {
    /// Photon energy in eV.
    pub energy_ev: f64,
    /// Photons per pulse.
    pub photons_per_pulse: f64,
    /// Radius of the (flat-top) focal spot in metres; the beam area is π r².
    pub focus_radius_m: f64,
}

impl Default for Beam {
    /// The paper's beam (appendix A.1): 4.6 keV, 10¹² photons per pulse, 0.5 µm focus radius.
    fn default() -> Self {
        Beam {
            energy_ev: 4600.0,
            photons_per_pulse: 1e12,
            focus_radius_m: 0.5e-6,
        }
    }
}

impl Beam {
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            self.energy_ev.is_finite() && self.energy_ev > 0.0,
            "--energy must be a positive number of eV, got {}",
            self.energy_ev
        );
        ensure!(
            self.photons_per_pulse.is_finite() && self.photons_per_pulse > 0.0,
            "--photons must be positive, got {}",
            self.photons_per_pulse
        );
        ensure!(
            self.focus_radius_m.is_finite() && self.focus_radius_m > 0.0,
            "--focus-radius must be positive (metres), got {}",
            self.focus_radius_m
        );
        Ok(())
    }

    /// Wavelength in Å.
    pub fn wavelength(&self) -> f64 {
        HC_EV_ANGSTROM / self.energy_ev
    }

    /// Photons per m² in one pulse (flat-top spot of radius `focus_radius_m`).
    pub fn fluence_per_m2(&self) -> f64 {
        self.photons_per_pulse / (std::f64::consts::PI * self.focus_radius_m * self.focus_radius_m)
    }
}
