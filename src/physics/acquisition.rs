//! What an experiment adds to the ideal pattern before the detector counts it: the pulse's
//! fluence varies from shot to shot, the particle crosses the focus anywhere, and the gas and
//! the jet scatter a background. A pattern's scale is unknown to the methods, as in a real
//! run; the background's expected photons per pixel are known to them
//! ([`crate::data::Source::expected_background`]), as an experiment knows it from the mean of
//! its blank shots (Dragonfly's background-aware EMC takes it the same way). The background
//! here does not follow the pulse's fluence.
//!
//! * **Fluence jitter** (`--fluence-jitter σ`): the pulse's fluence times a gamma variate of
//!   mean 1 and relative spread σ (shape 1/σ², scale σ²), as Dragonfly's simulator draws it.
//! * **Gaussian focus** (`--focus-profile gaussian`): the beam's intensity falls as
//!   exp(−2r²/w²) from the axis, w the focus radius; the particle's transverse position is
//!   uniform over the disc r ≤ w (a hit further out scatters too little to be recorded). Its
//!   fluence factor exp(−2u), u = r²/w² uniform in [0, 1), is divided by its mean (1 − e⁻²)/2,
//!   so it runs from 0.31 to 2.31 with mean 1 and `--mean-photons` keeps its meaning.
//! * **Background** (`--background B`): B expected photons per pattern over the unmasked pixels,
//!   added to the pattern's expected photons before counting, spread flat or as 1/|q|²
//!   (`--background-profile`; the default: gas and jet scattering rise towards the beam; the
//!   smallest |q| of the detector bounds it at the centre).
//!
//! Each effect draws from its own generator (a stream keyed by the effect, the seed, the split
//! and the image index: [`crate::data::ImageSimulator`]), so switching one on changes neither
//! the poses, the photon noise's random numbers nor the other effects.
//!
//! No crate models an SPI shot's fluence or background; these few lines are the physics.

use anyhow::ensure;
use rand::Rng;
use rand_distr::{Distribution, Gamma};
use serde::{Deserialize, Serialize};

use super::detector::{PixelDetector, PixelMask};

/// Where the particle sits in the beam.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FocusProfile {
    /// Every particle sees the beam's mean fluence.
    #[default]
    Flat,
    /// Anywhere within the focus radius of a Gaussian focus.
    Gaussian,
}

/// How the background's photons spread over the detector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BackgroundProfile {
    /// The same expected photons in every unmasked pixel.
    Flat,
    /// Falling as 1/|q|² from the beam.
    #[default]
    InverseQ2,
}

/// Mean of exp(−2u) for u uniform in [0, 1): the Gaussian focus's mean fluence factor.
pub const GAUSSIAN_FOCUS_MEAN: f64 = 0.432_332_358_381_693_6; // (1 − e⁻²)/2

/// The shot-to-shot effects of the simulation, as recorded in `meta.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Acquisition {
    /// Relative spread (σ / mean) of the pulse fluence; 0: none.
    pub fluence_jitter: f64,
    pub focus: FocusProfile,
    /// Mean background photons per pattern over the unmasked pixels; 0: none.
    pub background: f64,
    pub background_profile: BackgroundProfile,
}

impl Acquisition {
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            self.fluence_jitter.is_finite() && self.fluence_jitter >= 0.0,
            "--fluence-jitter must be a relative spread, 0 or more (0.2: 20 %), got {}",
            self.fluence_jitter
        );
        ensure!(
            self.background.is_finite() && self.background >= 0.0,
            "--background must be photons per pattern, 0 or more, got {}",
            self.background
        );
        Ok(())
    }

    /// Whether each pattern's scale varies.
    pub fn varies(&self) -> bool {
        self.fluence_jitter > 0.0 || self.focus == FocusProfile::Gaussian
    }

    /// A pattern's scale (mean 1): the fluence variate from `fluence` times the focus factor
    /// from `focus`, each generator used only when its effect is on.
    pub fn pattern_scale<R: Rng + ?Sized>(&self, fluence: &mut R, focus: &mut R) -> f64 {
        let mut phi = 1.0;
        if self.fluence_jitter > 0.0 {
            let k = 1.0 / (self.fluence_jitter * self.fluence_jitter);
            // Gamma::new fails only for non-positive or non-finite parameters, excluded by
            // validate (k is finite for any positive finite σ above ~1e-154).
            if let Ok(g) = Gamma::new(k, 1.0 / k) {
                phi *= g.sample(fluence);
            }
        }
        if self.focus == FocusProfile::Gaussian {
            let u: f64 = focus.random();
            phi *= (-2.0 * u).exp() / GAUSSIAN_FOCUS_MEAN;
        }
        phi
    }

    /// Expected background photons per pixel: `background` over the unmasked pixels, spread by
    /// the profile (empty when there is no background).
    pub fn background_per_pixel(&self, detector: &PixelDetector) -> Vec<f32> {
        if self.background <= 0.0 {
            return Vec::new();
        }
        let q2: Vec<f64> = detector
            .s
            .iter()
            .map(|s| s[0] * s[0] + s[1] * s[1] + s[2] * s[2])
            .collect();
        let floor = q2
            .iter()
            .zip(&detector.mask)
            .filter(|(&q, &m)| q > 0.0 && m != PixelMask::Bad)
            .map(|(&q, _)| q)
            .fold(f64::INFINITY, f64::min);
        let weights: Vec<f64> = q2
            .iter()
            .zip(&detector.mask)
            .map(|(&q, &m)| match (m, self.background_profile) {
                (PixelMask::Bad, _) => 0.0,
                (_, BackgroundProfile::Flat) => 1.0,
                (_, BackgroundProfile::InverseQ2) => 1.0 / q.max(floor),
            })
            .collect();
        let total: f64 = weights.iter().sum();
        if total <= 0.0 || !total.is_finite() {
            return vec![0.0; weights.len()];
        }
        weights.iter().map(|w| (self.background * w / total) as f32).collect()
    }
}
