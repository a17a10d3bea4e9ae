//! The fixed input statistics and the starting volume.

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::geometry::WorkingGeometry;
use crate::data::ImageSimulator;

/// Fixed per-pixel input statistics and the mean squared amplitude (the loss normaliser).
#[derive(Clone, Debug)]
pub struct InputStats {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub mean_sq: f64,
}

impl InputStats {
    pub fn from_amplitudes(amps: &[f32], pixels: usize) -> InputStats {
        let n = (amps.len() / pixels).max(1);
        let mut s1 = vec![0f64; pixels];
        let mut s2 = vec![0f64; pixels];
        for img in amps.chunks_exact(pixels) {
            for p in 0..pixels {
                s1[p] += img[p] as f64;
                s2[p] += (img[p] as f64).powi(2);
            }
        }
        let mean: Vec<f32> = s1.iter().map(|s| (s / n as f64) as f32).collect();
        let global_sd = {
            let var: f64 = (0..pixels)
                .map(|p| s2[p] / n as f64 - (s1[p] / n as f64).powi(2))
                .sum::<f64>()
                / pixels as f64;
            var.max(0.0).sqrt()
        };
        let std = (0..pixels)
            .map(|p| {
                let v = (s2[p] / n as f64 - (s1[p] / n as f64).powi(2)).max(0.0).sqrt();
                v.max(1e-3 * global_sd + 1e-12) as f32
            })
            .collect();
        let mean_sq = s2.iter().sum::<f64>() / (n * pixels) as f64;
        InputStats { mean, std, mean_sq }
    }

    /// The statistics of the images each normalised to their mean total ([`normalize_totals`]),
    /// as the encoder sees them with a fitted pattern scale.
    pub fn from_normalized_amplitudes(amps: &[f32], pixels: usize) -> candle_core::Result<InputStats> {
        let total = InputStats::from_amplitudes(amps, pixels).mean_sq * pixels as f64;
        let images = Tensor::from_slice(amps, (amps.len() / pixels, pixels), &Device::Cpu)?;
        let normalized = normalize_totals(&images, total)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(InputStats::from_amplitudes(&normalized, pixels))
    }
}

/// Amplitude images `[B, P]` each scaled so that its total intensity (Σ amplitude²) is `total`
/// (an empty image stays empty): the encoder's input with a fitted pattern scale.
pub fn normalize_totals(amps: &Tensor, total: f64) -> candle_core::Result<Tensor> {
    let sums = (amps.sqr()?.sum_keepdim(1)? + 1e-12)?;
    amps.broadcast_mul(&(sums.recip()? * total)?.sqrt()?)
}

/// The orientation-free starting volume: the radial average of the data's amplitudes
/// (divided by the pixel factor), placed on the M³ grid by |s|, times (1 + noise · N(0, 1)).
pub fn radial_volume(geo: &WorkingGeometry, amps: &[f32], m: usize, spacing: f64, noise: f64, seed: u64) -> Vec<f32> {
    let p = geo.pixels();
    let nbins = 2 * m;
    let mut sum = vec![0f64; nbins];
    let mut count = vec![0f64; nbins];
    for img in amps.chunks_exact(p) {
        for (j, s) in geo.s.iter().enumerate() {
            if geo.pixel_weight[j] <= 0.0 {
                continue; // not measured (mask, padding)
            }
            let r = (s[0] * s[0] + s[1] * s[1] + s[2] * s[2]).sqrt() / spacing;
            let b = (r.round() as usize).min(nbins - 1);
            sum[b] += (img[j] / geo.pixel_weight[j]) as f64;
            count[b] += 1.0;
        }
    }
    // Fill empty bins from the nearest filled one below (or above for the centre).
    let mut prof: Vec<Option<f64>> = (0..nbins)
        .map(|b| (count[b] > 0.0).then(|| sum[b] / count[b]))
        .collect();
    let first = prof
        .iter()
        .position(|v| v.is_some())
        .map(|i| prof[i].unwrap())
        .unwrap_or(1.0);
    let mut last = first;
    for v in prof.iter_mut() {
        match v {
            Some(x) => last = *x,
            None => *v = Some(last),
        }
    }
    let prof: Vec<f64> = prof.into_iter().map(|v| v.unwrap()).collect();
    let mean = prof.iter().sum::<f64>() / nbins as f64;
    let c = ((m - 1) / 2) as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x766f_6c75_6d65);
    let mut out = vec![0f32; m * m * m];
    for iz in 0..m {
        for iy in 0..m {
            for ix in 0..m {
                let r = ((ix as f64 - c).powi(2) + (iy as f64 - c).powi(2) + (iz as f64 - c).powi(2)).sqrt();
                let b0 = (r.floor() as usize).min(nbins - 1);
                let b1 = (b0 + 1).min(nbins - 1);
                let f = r - r.floor();
                let v = prof[b0] * (1.0 - f) + prof[b1] * f;
                let z: f64 = StandardNormal.sample(&mut rng);
                out[(iz * m + iy) * m + ix] = (v + noise * mean * z) as f32;
            }
        }
    }
    out
}

/// |F| of the simulator's true transform resampled (trilinearly) on the M³ grid of spacing
/// `spacing`, in the molecule frame; unit scale (fit it with [`Trainer::fit_volume_scale`]).
pub fn true_amplitude_volume(sim: &ImageSimulator, m: usize, spacing: f64) -> Vec<f32> {
    sim.transform.amplitude().resampled(m, spacing, f64::INFINITY, 0.0).data
}
