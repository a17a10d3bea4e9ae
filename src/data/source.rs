//! One data source for every method: the simulator's seeded stream, an on-disk dataset, or
//! frames held in memory — with the detector they come from, read by index range in chunks so
//! that N never has to fit in memory, and binned in one place.
//!
//! A [`Source`] is the seam where new data plugs in: another file format is another
//! [`Origin`], a real detector (masks, gaps, off-centre beams) is the [`Source::detector`] it
//! carries. Methods only ever ask for frames `start .. start + count`, their true poses where
//! known, the frame count, and the detector.

use std::borrow::Cow;

use anyhow::{bail, ensure, Result};
use nalgebra::UnitQuaternion;

use super::dataset::Dataset;
use super::simulator::{ImageSimulator, Split};
use super::stream::ImageStream;
use crate::physics::beam::Beam;
use crate::physics::detector::Detector;

/// Where the frames come from.
pub enum Origin<'a> {
    /// Frames generated on demand from (seed, split, index): the same frame for any read.
    Stream { sim: &'a ImageSimulator, split: Split },
    /// A dataset written by `xrai-bench simulate`.
    Dataset(Dataset),
    /// Full-size frames in memory, row-major `[frame][row][col]`.
    Memory {
        frames: Vec<f32>,
        poses: Option<Vec<UnitQuaternion<f64>>>,
    },
}

/// Frames of one detector, optionally binned.
pub struct Source<'a> {
    origin: Origin<'a>,
    /// The full-size detector and beam the frames were recorded with.
    detector: Detector,
    beam: Beam,
    /// Frames available (None: an endless stream).
    len: Option<u64>,
    /// Sum b × b pixel blocks on reading (1: full size).
    bin: usize,
}

impl<'a> Source<'a> {
    /// Frames `0 .. n` of one split of the simulator's stream (`n` None: endless).
    pub fn stream(sim: &'a ImageSimulator, split: Split, n: Option<u64>) -> Source<'a> {
        Source {
            origin: Origin::Stream { sim, split },
            detector: sim.config.detector.clone(),
            beam: sim.config.beam.clone(),
            len: n,
            bin: 1,
        }
    }

    /// The frames of a dataset, with the detector recorded in its meta.json.
    pub fn dataset(dataset: Dataset) -> Result<Source<'static>> {
        let config = dataset.config()?;
        ensure!(
            dataset.side == config.detector.pixels,
            "{}: images are {}² but meta.json's detector has {}² pixels",
            dataset.dir.display(),
            dataset.side,
            config.detector.pixels
        );
        let len = Some(dataset.len);
        Ok(Source {
            origin: Origin::Dataset(dataset),
            detector: config.detector,
            beam: config.beam,
            len,
            bin: 1,
        })
    }

    /// Full-size frames held in memory.
    pub fn memory(
        frames: Vec<f32>,
        detector: Detector,
        beam: Beam,
        poses: Option<Vec<UnitQuaternion<f64>>>,
    ) -> Result<Source<'static>> {
        let per = detector.pixels * detector.pixels;
        ensure!(
            per > 0 && frames.len() % per == 0,
            "{} values are not whole {}² frames",
            frames.len(),
            detector.pixels
        );
        let n = (frames.len() / per) as u64;
        if let Some(p) = &poses {
            ensure!(p.len() as u64 == n, "{} poses for {n} frames", p.len());
        }
        Ok(Source {
            origin: Origin::Memory { frames, poses },
            detector,
            beam,
            len: Some(n),
            bin: 1,
        })
    }

    /// The same frames with b × b pixel blocks summed (counts stay counts).
    pub fn binned(self, bin: usize) -> Result<Source<'a>> {
        binned_detector(&self.detector, bin)?;
        Ok(Source { bin, ..self })
    }

    /// Only the first `n` frames (a dataset larger than the training set asked for).
    pub fn take(self, n: u64) -> Source<'a> {
        let len = Some(self.len.map_or(n, |l| l.min(n)));
        Source { len, ..self }
    }

    /// Frames available; None for an endless stream.
    pub fn len(&self) -> Option<u64> {
        self.len
    }

    /// Frames available, for a method that needs a finite set.
    pub fn count(&self) -> Result<usize> {
        match self.len {
            Some(n) => Ok(usize::try_from(n)?),
            None => bail!("an endless stream has no frame count: give the number of frames (--n)"),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == Some(0)
    }

    /// The full-size detector the frames come from.
    pub fn full_detector(&self) -> &Detector {
        &self.detector
    }

    /// The detector of the frames as read (binned when [`Source::binned`]).
    pub fn detector(&self) -> Detector {
        binned_detector(&self.detector, self.bin).expect("binning checked in Source::binned")
    }

    pub fn beam(&self) -> &Beam {
        &self.beam
    }

    pub fn bin(&self) -> usize {
        self.bin
    }

    /// Pixels per frame as read.
    pub fn pixels(&self) -> usize {
        let side = self.detector.pixels / self.bin;
        side * side
    }

    /// The simulator behind a stream.
    pub fn simulator(&self) -> Option<&'a ImageSimulator> {
        match &self.origin {
            Origin::Stream { sim, .. } => Some(sim),
            _ => None,
        }
    }

    /// Frames `start .. start + count` (clamped to the end), row-major `[frame][pixel]`.
    pub fn read(&self, start: u64, count: usize) -> Result<Vec<f32>> {
        let count = self.clamp(start, count);
        if count == 0 {
            return Ok(Vec::new());
        }
        let full: Cow<[f32]> = match &self.origin {
            Origin::Stream { sim, split } => {
                let batch = ImageStream::new(sim, *split, start + count as u64, count)
                    .starting_at(start)
                    .next()
                    .expect("a non-empty range yields a batch");
                Cow::Owned(batch.images)
            }
            Origin::Dataset(d) => Cow::Owned(d.read_images(start, count)?),
            Origin::Memory { frames, .. } => {
                let per = self.detector.pixels * self.detector.pixels;
                Cow::Borrowed(&frames[start as usize * per..(start as usize + count) * per])
            }
        };
        if self.bin == 1 {
            return Ok(full.into_owned());
        }
        Ok(bin_frames(&full, self.detector.pixels, self.bin))
    }

    /// True poses of frames `start .. start + count` (clamped), where the source knows them.
    pub fn poses(&self, start: u64, count: usize) -> Result<Option<Vec<UnitQuaternion<f64>>>> {
        let count = self.clamp(start, count);
        let range = start..start + count as u64;
        Ok(match &self.origin {
            Origin::Stream { sim, split } => Some(range.map(|i| sim.pose(*split, i)).collect()),
            Origin::Dataset(d) => Some(d.poses[range.start as usize..range.end as usize].to_vec()),
            Origin::Memory { poses, .. } => poses
                .as_ref()
                .map(|p| p[range.start as usize..range.end as usize].to_vec()),
        })
    }

    fn clamp(&self, start: u64, count: usize) -> usize {
        match self.len {
            Some(n) => (count as u64).min(n.saturating_sub(start)) as usize,
            None => count,
        }
    }
}

/// The detector whose pixels are the b × b blocks of `detector` (block centres are its pixel
/// centres, so its s-vectors are those of the binned frames).
pub fn binned_detector(detector: &Detector, bin: usize) -> Result<Detector> {
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

/// Sums b × b blocks of square `side × side` frames (the one binning of the program: EMC's
/// frames and X-RAI's working images are both made by it).
pub fn bin_frames(frames: &[f32], side: usize, bin: usize) -> Vec<f32> {
    if bin == 1 {
        return frames.to_vec();
    }
    let mut out = Vec::new();
    bin_frames_into(frames, side, bin, &mut out);
    out
}

/// [`bin_frames`] into a reused buffer.
pub fn bin_frames_into(frames: &[f32], side: usize, bin: usize, out: &mut Vec<f32>) {
    let out_side = side / bin;
    let per = side * side;
    out.clear();
    out.resize(frames.len() / per * out_side * out_side, 0.0);
    for (frame, o) in frames.chunks_exact(per).zip(out.chunks_exact_mut(out_side * out_side)) {
        for row in 0..side {
            let orow = &mut o[(row / bin) * out_side..(row / bin + 1) * out_side];
            for (col, &v) in frame[row * side..(row + 1) * side].iter().enumerate() {
                orow[col / bin] += v;
            }
        }
    }
}
