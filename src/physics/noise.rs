//! Photon shot noise: each pixel's count is Poisson with the expected photons as its mean.
//!
//! [`poisson_counts_in_place`] draws a whole pattern by splitting, exact for any means:
//! independent Poisson counts with means λ_p are the same, in distribution, as a total
//! K ~ Poisson(Σ λ_p) whose photons fall in pixel p with probability λ_p / Σ λ. The K photons'
//! positions on [0, Σ λ) come as descending order statistics of uniforms
//! (U_(K) = V^(1/K), U_(k) = U_(k+1) V^(1/k)), matched against the pixels' cumulative means in
//! one backward pass: O(pixels + photons), where one Poisson draw per pixel
//! ([`poisson_in_place`]) pays an exponential for each of 16,384 pixels holding a fraction of
//! a photon. rand_distr has a Poisson sampler but no multinomial, hence these lines.

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

/// Replaces expected photons by Poisson counts (in place), by splitting the pattern's total
/// (module docs): the same distribution as [`poisson_in_place`], in O(pixels + photons).
/// Pixels with mean ≤ 0 (or not finite) get 0 counts.
pub fn poisson_counts_in_place<R: Rng + ?Sized>(image: &mut [f32], rng: &mut R) {
    let mean = |v: f32| if v > 0.0 && v.is_finite() { v as f64 } else { 0.0 };
    let total: f64 = image.iter().map(|&v| mean(v)).sum();
    let photons: u64 = if total > 0.0 {
        // Poisson::new fails only for non-positive or non-finite means, excluded here.
        Poisson::new(total).map(|d| d.sample(rng) as u64).unwrap_or(0)
    } else {
        0
    };
    // Walk the pixels from the last, with the cumulative mean `upper` at the top of the current
    // pixel, and the photons from the highest position down; the first pixel with a mean takes
    // whatever rounding leaves below it.
    let first = image.iter().position(|&v| mean(v) > 0.0);
    let next = |left: u64, position: f64, rng: &mut R| -> f64 {
        let v: f64 = rng.random();
        position * v.powf(1.0 / left as f64)
    };
    let mut left = photons;
    let mut photon = if left > 0 {
        next(left, total, rng)
    } else {
        f64::NEG_INFINITY
    };
    let mut upper = total;
    for (i, v) in image.iter_mut().enumerate().rev() {
        let m = mean(*v);
        let mut count = 0u32;
        if m > 0.0 {
            let lower = if Some(i) == first { f64::NEG_INFINITY } else { upper - m };
            while left > 0 && photon >= lower {
                count += 1;
                left -= 1;
                photon = if left > 0 {
                    next(left, photon, rng)
                } else {
                    f64::NEG_INFINITY
                };
            }
            upper -= m;
        }
        *v = count as f32;
    }
}
