//! The working geometry: the detector binned to X-RAI's working size, and working-size
//! amplitude images read from a [`Source`].

use anyhow::ensure;
use nalgebra::UnitQuaternion;

use crate::data::{bin_frames_into, ImageSimulator, SimulationConfig, Source, Split};
use crate::physics::detector::Detector;

/// The detector binned to the working size: per-pixel s-vectors at the block centres and the
/// per-pixel amplitude factor √(Σ polarisation × solid angle over the block), normalised to
/// mean 1.
#[derive(Clone, Debug)]
pub struct WorkingGeometry {
    pub side: usize,
    pub factor: usize,
    pub full_side: usize,
    pub s: Vec<[f64; 3]>,
    pub pixel_weight: Vec<f32>,
    /// Largest |s| among the working pixels (Å⁻¹).
    pub s_max: f64,
}

impl WorkingGeometry {
    pub fn new(sim: &ImageSimulator, side: usize) -> anyhow::Result<WorkingGeometry> {
        WorkingGeometry::from_config(&sim.config, side)
    }

    /// From a simulation config alone (e.g. an on-disk dataset's meta.json).
    pub fn from_config(config: &SimulationConfig, side: usize) -> anyhow::Result<WorkingGeometry> {
        let det = &config.detector;
        let full_geometry = det.geometry(&config.beam);
        let full = det.pixels;
        ensure!(
            side <= full && full % side == 0,
            "--working-size {side} must divide the detector's {full} pixels (images are binned by summing blocks)"
        );
        let factor = full / side;
        let small = Detector {
            pixels: side,
            side_m: det.side_m,
            distance_m: det.distance_m,
        };
        let g = small.geometry(&config.beam);
        let mut block = vec![0f64; side * side];
        for (i, w) in full_geometry.scale.iter().enumerate() {
            let (r, c) = (i / full, i % full);
            block[(r / factor) * side + c / factor] += w;
        }
        let mean = block.iter().sum::<f64>() / block.len() as f64;
        let pixel_weight = block.iter().map(|b| (b / mean).sqrt() as f32).collect();
        Ok(WorkingGeometry {
            side,
            factor,
            full_side: full,
            s_max: g.s_max(),
            s: g.s,
            pixel_weight,
        })
    }

    pub fn pixels(&self) -> usize {
        self.side * self.side
    }

    /// Full-size intensity images → working-size amplitude images (block sums, square root).
    pub fn amplitudes(&self, images: &[f32], out: &mut Vec<f32>) {
        bin_frames_into(images, self.full_side, self.factor, out);
        out.iter_mut().for_each(|v| *v = v.max(0.0).sqrt());
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
    ensure!(
        source.bin() == 1 && source.full_detector().pixels == geo.full_side,
        "images are {}² but the working geometry is for {}² pixels",
        source.full_detector().pixels / source.bin(),
        geo.full_side
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
