//! Photon shot noise: each pixel's count is Poisson with the expected photons as its mean.
//!
//! [`poisson_counts_in_place`] draws a whole pattern from one unit-rate Poisson process laid
//! along the pixels' cumulative mean: pixel p owns the interval [Λ_{p−1}, Λ_p) of length λ_p,
//! and the process's points in disjoint intervals are independent Poisson counts with the
//! intervals' lengths as means — exactly the pattern's distribution. The gaps between points are
//! Exp(1) draws, so a pattern costs one pass over its pixels plus one draw per photon, where one
//! Poisson draw per pixel ([`poisson_in_place`]) pays for each of 16,384 pixels holding a
//! fraction of a photon. rand_distr samples Poisson and exponential variates but has no such
//! pattern sampler, hence these lines.

use rand::Rng;
use rand_distr::{Distribution, Exp1, Poisson};

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

/// Replaces expected photons by Poisson counts (in place), from one Poisson process along the
/// pattern's cumulative mean (module docs): the same distribution as [`poisson_in_place`], in
/// O(pixels + photons). Pixels with mean ≤ 0 (or not finite) get 0 counts.
pub fn poisson_counts_in_place<R: Rng + ?Sized>(image: &mut [f32], rng: &mut R) {
    // Means that are not finite count as 0 (checked once: a test per pixel inside the walk
    // cost 2.5 times the walk itself); negative ones are 0 through max below.
    if !image.iter().all(|v| v.is_finite()) {
        image.iter_mut().filter(|v| !v.is_finite()).for_each(|v| *v = 0.0);
    }
    // the next point of the process, and the cumulative mean at the current pixel's end
    let mut next: f64 = Distribution::<f64>::sample(&Exp1, rng);
    let mut upper = 0.0f64;
    for v in image.iter_mut() {
        upper += v.max(0.0) as f64;
        let mut count = 0u32;
        while next < upper {
            count += 1;
            next += Distribution::<f64>::sample(&Exp1, rng);
        }
        *v = count as f32;
    }
}
