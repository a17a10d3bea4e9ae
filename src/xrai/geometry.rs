//! The working geometry: any detector ([`PixelDetector`]) binned and placed into X-RAI's square
//! working image, and working-size amplitude images read from a [`Source`].
//!
//! **Binning.** Frames of rows × cols are binned by f = max(1, ⌊max(rows, cols) / S⌋) for a
//! working side S (128² → 32² at f = 4, as before; 66 × 64 → 33 × 32 at f = 2; partial blocks
//! as [`PixelDetector::binned`] documents).
//!
//! **Placement.** The binned frame is placed into the S × S working image so that the beam
//! ([`PixelDetector::beam_position`]) falls on the image centre, (S − 1)/2, to the nearest pixel:
//! binned pixels outside the S × S window are **cropped**, working pixels without a detector
//! pixel are **padded** with zeros and masked. A centred square detector whose binned side is S
//! is placed as it is.
//!
//! **Masks.** Bad pixels and padding are 0 in the encoder's input. The loss (the symmetric loss
//! compares every image with its in-plane π rotation, the point reflection through the image
//! centre) uses the working pixels that are measured *and* whose π partner is measured; there the
//! per-pixel amplitude factor is √(P · Ω) of the binned pixel relative to its mean, elsewhere 0,
//! and the target is zeroed, so unmeasured pixels add nothing to the loss or its gradients. The
//! decoder slices the volume at the binned pixels' real s-vectors.

use anyhow::ensure;
use nalgebra::UnitQuaternion;

use crate::data::{bin_frames_shaped_into, ImageSimulator, SimulationConfig, Source, Split};
use crate::physics::detector::{PixelDetector, PixelMask};

/// The detector as X-RAI's working images see it (see the module docs).
#[derive(Clone, Debug)]
pub struct WorkingGeometry {
    /// Working side S.
    pub side: usize,
    /// Binning factor f.
    pub factor: usize,
    /// The full detector's frame shape.
    pub full_rows: usize,
    pub full_cols: usize,
    /// The binned detector.
    pub binned: PixelDetector,
    /// Binned pixel of each working pixel (u32::MAX: padding).
    source_pixel: Vec<u32>,
    /// Per working pixel: s (Å⁻¹; 0 for padding).
    pub s: Vec<[f64; 3]>,
    /// Per working pixel: √(relative P·Ω) where the loss uses the pixel, else 0.
    pub pixel_weight: Vec<f32>,
    /// Per working pixel: 1 where the loss uses it, else 0 (None: every pixel is used).
    pub loss_mask: Option<Vec<f32>>,
    /// Largest |s| among the working pixels the loss uses (Å⁻¹).
    pub s_max: f64,
}

impl WorkingGeometry {
    pub fn new(sim: &ImageSimulator, side: usize) -> anyhow::Result<WorkingGeometry> {
        WorkingGeometry::from_detector(&sim.geometry, side)
    }

    /// From a simulation config alone (e.g. an on-disk dataset's meta.json).
    pub fn from_config(config: &SimulationConfig, side: usize) -> anyhow::Result<WorkingGeometry> {
        WorkingGeometry::from_detector(&config.detector.geometry(&config.beam), side)
    }

    /// Any full-size detector, binned and placed into S × S working images.
    pub fn from_detector(full: &PixelDetector, side: usize) -> anyhow::Result<WorkingGeometry> {
        ensure!(side >= 2, "--working-size must be at least 2");
        ensure!(
            full.rows >= 2 && full.cols >= 2,
            "X-RAI needs frames with a 2D pixel layout, but the detector is {} × {} (a pixel list); EMC takes any \
             pixel list",
            full.rows,
            full.cols
        );
        let factor = (full.rows.max(full.cols) / side).max(1);
        let binned = full.binned(factor)?;
        let (r0, c0) = binned.beam_position();
        let centre = (side as f64 - 1.0) / 2.0;
        let (dr, dc) = ((centre - r0).round() as i64, (centre - c0).round() as i64);
        let mut source_pixel = vec![u32::MAX; side * side];
        for r in 0..binned.rows {
            for c in 0..binned.cols {
                let (wr, wc) = (r as i64 + dr, c as i64 + dc);
                if (0..side as i64).contains(&wr) && (0..side as i64).contains(&wc) {
                    source_pixel[wr as usize * side + wc as usize] = (r * binned.cols + c) as u32;
                }
            }
        }
        let p = side * side;
        let measured: Vec<bool> = source_pixel
            .iter()
            .map(|&b| b != u32::MAX && binned.mask[b as usize] != PixelMask::Bad)
            .collect();
        let used: Vec<bool> = (0..p).map(|j| measured[j] && measured[p - 1 - j]).collect();
        let n_used = used.iter().filter(|&&u| u).count();
        ensure!(
            n_used > 0,
            "no working pixel of X-RAI's {side}² image is measured together with its π partner (the mask and \
             the beam position leave nothing for the loss)"
        );
        let corr = |j: usize| binned.correction[source_pixel[j] as usize];
        let mean = (0..p).filter(|&j| used[j]).map(corr).sum::<f64>() / n_used as f64;
        ensure!(mean > 0.0, "the detector's corrections are all 0");
        let pixel_weight = (0..p)
            .map(|j| if used[j] { (corr(j) / mean).sqrt() as f32 } else { 0.0 })
            .collect();
        let s: Vec<[f64; 3]> = source_pixel
            .iter()
            .map(|&b| if b == u32::MAX { [0.0; 3] } else { binned.s[b as usize] })
            .collect();
        let s_max = (0..p)
            .filter(|&j| used[j])
            .map(|j| (s[j][0] * s[j][0] + s[j][1] * s[j][1] + s[j][2] * s[j][2]).sqrt())
            .fold(0.0, f64::max);
        let loss_mask = (n_used < p).then(|| used.iter().map(|&u| u as u8 as f32).collect());
        Ok(WorkingGeometry {
            side,
            factor,
            full_rows: full.rows,
            full_cols: full.cols,
            binned,
            source_pixel,
            s,
            pixel_weight,
            loss_mask,
            s_max,
        })
    }

    pub fn pixels(&self) -> usize {
        self.side * self.side
    }

    /// Full-size intensity images → working-size amplitude images (block sums placed into the
    /// working image, square root; padding and bad pixels 0).
    pub fn amplitudes(&self, images: &[f32], out: &mut Vec<f32>) {
        self.place(images, out, |v| v.max(0.0).sqrt())
    }

    /// Full-size intensity images → working-size intensity images (block sums placed as
    /// [`Self::amplitudes`] places them, without the square root).
    pub fn intensities(&self, images: &[f32], out: &mut Vec<f32>) {
        self.place(images, out, |v| v.max(0.0))
    }

    fn place(&self, images: &[f32], out: &mut Vec<f32>, value: fn(f32) -> f32) {
        let mut binned = Vec::new();
        bin_frames_shaped_into(images, self.full_rows, self.full_cols, self.factor, &mut binned);
        let per = self.binned.len();
        let p = self.pixels();
        out.clear();
        out.resize(binned.len() / per * p, 0.0);
        for (frame, o) in binned.chunks_exact(per).zip(out.chunks_exact_mut(p)) {
            for (v, &b) in o.iter_mut().zip(&self.source_pixel) {
                if b != u32::MAX && self.binned.mask[b as usize] != PixelMask::Bad {
                    *v = value(frame[b as usize]);
                }
            }
        }
    }

    /// Δs of an M³ grid whose centred half-extent covers every working pixel's |s|.
    pub fn volume_spacing(&self, m: usize) -> f64 {
        self.s_max * 1.02 / ((m - 1) / 2) as f64
    }
}

/// Working-size amplitude images `start .. start + n` (clamped to the end) of a full-size
/// source and their true poses (empty where the source has none).
pub fn amplitudes(
    source: &Source,
    geo: &WorkingGeometry,
    start: u64,
    n: usize,
) -> anyhow::Result<(Vec<f32>, Vec<UnitQuaternion<f64>>)> {
    let full = source.full_detector();
    ensure!(
        source.bin() == 1 && (full.rows, full.cols) == (geo.full_rows, geo.full_cols),
        "frames are {} × {} (binned {}) but the working geometry is for {} × {} pixels",
        full.rows,
        full.cols,
        source.bin(),
        geo.full_rows,
        geo.full_cols
    );
    let mut amps = Vec::with_capacity(n.min(1 << 20) * geo.pixels());
    let mut poses = Vec::new();
    let mut tmp = Vec::new();
    let end = match source.len() {
        Some(len) => (start + n as u64).min(len),
        None => start + n as u64,
    };
    let mut at = start;
    while at < end {
        let count = ((end - at) as usize).min(READ_CHUNK);
        let images = source.read(at, count)?;
        geo.amplitudes(&images, &mut tmp);
        amps.extend_from_slice(&tmp);
        if let Some(p) = source.poses(at, count)? {
            poses.extend(p);
        }
        at += count as u64;
    }
    Ok((amps, poses))
}

/// Images per read while amplitudes are assembled.
const READ_CHUNK: usize = 256;

/// Working-size amplitude images `start .. start + n` of one split of the simulator's stream.
pub fn load_amplitudes(
    sim: &ImageSimulator,
    geo: &WorkingGeometry,
    split: Split,
    start: u64,
    n: usize,
) -> (Vec<f32>, Vec<UnitQuaternion<f64>>) {
    amplitudes(&Source::stream(sim, split, None), geo, start, n).expect("a stream of the geometry's own detector")
}
