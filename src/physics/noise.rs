//! Photon shot noise: each pixel's count is Poisson with the expected photons as its mean.

use rand::Rng;
use rand_distr::{Distribution, Poisson};

/// Replaces expected photons by one Poisson draw per pixel (in place). Pixels with mean ≤ 0
/// (or not finite) get 0 counts.
pub fn poisson_in_place<R: Rng + ?Sized>(image: &mut [f32], rng: &mut R) {
    for v in image.iter_mut() {
        let mean = *v as f64;
        *v = if mean > 0.0 && mean.is_finite() {
            // Poisson::new only fails for non-positive or non-finite means, excluded above.
            Poisson::new(mean).map(|d| d.sample(rng) as f32).unwrap_or(0.0)
        } else {
            0.0
        };
    }
}
