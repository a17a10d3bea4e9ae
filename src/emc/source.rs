//! Where EMC's frames come from, read in chunks so that N never has to fit in memory: the
//! seeded simulator stream (regenerated every iteration), an on-disk dataset, or a buffer.
//! Every source can bin b × b pixel blocks (summed, so counts stay counts).

use anyhow::ensure;
use nalgebra::UnitQuaternion;

use crate::data::{Dataset, ImageSimulator, ImageStream, Split};
use crate::physics::detector::Detector;

/// A sequence of frames of `pixels()` values each, readable by range.
pub trait FrameSource {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Pixels per frame (after binning).
    fn pixels(&self) -> usize;
    /// Frames `start .. start + count` (clamped to the end), row-major `[frame][pixel]`.
    fn read(&mut self, start: usize, count: usize) -> anyhow::Result<Vec<f32>>;
    /// True poses of those frames, where known.
    fn poses(
        &mut self,
        _start: usize,
        _count: usize,
    ) -> anyhow::Result<Option<Vec<UnitQuaternion<f64>>>> {
        Ok(None)
    }
}

/// The detector whose pixels are the b × b blocks of `detector` (block centres are its pixel
/// centres, so its s-vectors are those of the binned frames).
pub fn binned_detector(detector: &Detector, bin: usize) -> anyhow::Result<Detector> {
    ensure!(bin >= 1, "--bin must be at least 1");
    ensure!(
        detector.pixels % bin == 0,
        "--bin {bin} does not divide the detector's {} pixels per side",
        detector.pixels
    );
    Ok(Detector {
        pixels: detector.pixels / bin,
        ..detector.clone()
    })
}

/// Sums b × b blocks of square `side × side` frames.
pub fn bin_frames(frames: &[f32], side: usize, bin: usize) -> Vec<f32> {
    if bin == 1 {
        return frames.to_vec();
    }
    let out_side = side / bin;
    let per = side * side;
    let mut out = vec![0.0f32; frames.len() / per * out_side * out_side];
    for (frame, o) in frames
        .chunks_exact(per)
        .zip(out.chunks_exact_mut(out_side * out_side))
    {
        for row in 0..side {
            let orow = row / bin;
            for col in 0..side {
                o[orow * out_side + col / bin] += frame[row * side + col];
            }
        }
    }
    out
}

/// Frames held in memory.
pub struct MemoryFrames {
    pub frames: Vec<f32>,
    pub pixels: usize,
    pub poses: Option<Vec<UnitQuaternion<f64>>>,
}

impl FrameSource for MemoryFrames {
    fn len(&self) -> usize {
        self.frames.len() / self.pixels
    }
    fn pixels(&self) -> usize {
        self.pixels
    }
    fn read(&mut self, start: usize, count: usize) -> anyhow::Result<Vec<f32>> {
        let end = (start + count).min(self.len());
        Ok(self.frames[start * self.pixels..end * self.pixels].to_vec())
    }
    fn poses(
        &mut self,
        start: usize,
        count: usize,
    ) -> anyhow::Result<Option<Vec<UnitQuaternion<f64>>>> {
        let end = (start + count).min(self.len());
        Ok(self.poses.as_ref().map(|p| p[start..end].to_vec()))
    }
}

/// Frames `0 .. n` of one split of the simulator's seeded stream; every read regenerates them
/// (each frame is a pure function of (seed, split, index)), so memory is one chunk.
pub struct SimulatedFrames<'a> {
    pub simulator: &'a ImageSimulator,
    pub split: Split,
    pub n: usize,
    pub bin: usize,
}

impl FrameSource for SimulatedFrames<'_> {
    fn len(&self) -> usize {
        self.n
    }
    fn pixels(&self) -> usize {
        let side = self.simulator.config.detector.pixels / self.bin;
        side * side
    }
    fn read(&mut self, start: usize, count: usize) -> anyhow::Result<Vec<f32>> {
        let count = count.min(self.n.saturating_sub(start));
        if count == 0 {
            return Ok(Vec::new());
        }
        let batch = ImageStream::new(self.simulator, self.split, (start + count) as u64, count)
            .starting_at(start as u64)
            .next()
            .expect("a non-empty range yields a batch");
        Ok(bin_frames(
            &batch.images,
            self.simulator.config.detector.pixels,
            self.bin,
        ))
    }
    fn poses(
        &mut self,
        start: usize,
        count: usize,
    ) -> anyhow::Result<Option<Vec<UnitQuaternion<f64>>>> {
        let count = count.min(self.n.saturating_sub(start));
        let poses = (start..start + count)
            .map(|i| {
                crate::rotation::random_rotation(&mut self.simulator.rng(self.split, i as u64))
            })
            .collect();
        Ok(Some(poses))
    }
}

/// Frames of an on-disk dataset (`xrai-bench simulate`), read by seeking.
pub struct DatasetFrames {
    pub dataset: Dataset,
    pub bin: usize,
}

impl FrameSource for DatasetFrames {
    fn len(&self) -> usize {
        self.dataset.len as usize
    }
    fn pixels(&self) -> usize {
        let side = self.dataset.side / self.bin;
        side * side
    }
    fn read(&mut self, start: usize, count: usize) -> anyhow::Result<Vec<f32>> {
        let frames = self.dataset.read_images(start as u64, count)?;
        Ok(bin_frames(&frames, self.dataset.side, self.bin))
    }
    fn poses(
        &mut self,
        start: usize,
        count: usize,
    ) -> anyhow::Result<Option<Vec<UnitQuaternion<f64>>>> {
        let end = (start + count).min(self.len());
        Ok(Some(self.dataset.poses[start..end].to_vec()))
    }
}
