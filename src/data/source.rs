//! One data source for every method: the simulator's seeded stream, an on-disk dataset, a
//! Dragonfly photon file, a CXI file (with the `hdf5` feature), or frames held in memory — with the detector they come from
//! ([`PixelDetector`]: per-pixel s, correction, mask, frame shape), read by index range in
//! chunks so that N never has to fit in memory, masked pixels read as 0, and binned in one place.
//!
//! A [`Source`] is the seam where new data plugs in: another file format is another
//! [`Origin`], a real detector (masks, gaps, off-centre beams, non-square frames) is the
//! [`Source::detector`] it carries. Methods only ever ask for frames `start .. start + count`,
//! their true poses where known, the frame count, and the detector.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Mutex;

use anyhow::{bail, ensure, Result};
use nalgebra::UnitQuaternion;

use super::dataset::Dataset;
use super::simulator::{ImageSimulator, Split};
use super::stream::ImageStream;
use crate::formats::dragonfly::EmcReader;
use crate::physics::acquisition::Acquisition;
use crate::physics::beam::Beam;
use crate::physics::detector::{PixelDetector, PixelMask};
use crate::physics::symmetry::PointGroup;

pub use crate::physics::detector::bin_frames_into as bin_frames_shaped_into;

/// Frames [`Source::holds_counts`] looks at.
pub const COUNT_PROBE_FRAMES: usize = 32;

/// Where the frames come from.
pub enum Origin<'a> {
    /// Frames generated on demand from (seed, split, index): the same frame for any read.
    Stream { sim: &'a ImageSimulator, split: Split },
    /// A dataset written by `xrai-bench simulate` (`images.npy`).
    Dataset(Dataset),
    /// A Dragonfly photon file (`.emc`), read by frame range; true poses where known (a file
    /// written by `simulate --format emc` has them in `poses.csv` beside it).
    Emc {
        reader: Mutex<EmcReader>,
        poses: Option<Vec<UnitQuaternion<f64>>>,
    },
    /// A CXI (HDF5) file's frames (cargo feature `hdf5`), read by frame range by hyperslab;
    /// true poses where the file has them.
    #[cfg(feature = "hdf5")]
    Cxi {
        reader: Mutex<crate::formats::cxi::CxiReader>,
        poses: Option<Vec<UnitQuaternion<f64>>>,
    },
    /// Full-size frames in memory, row-major `[frame][pixel]`.
    Memory {
        frames: Vec<f32>,
        poses: Option<Vec<UnitQuaternion<f64>>>,
    },
}

/// Frames of one detector, optionally a range of them, optionally binned.
pub struct Source<'a> {
    origin: Origin<'a>,
    /// The full-size detector and the beam the frames were recorded with.
    full: PixelDetector,
    beam: Beam,
    /// The detector of the frames as read (the full one binned).
    detector: PixelDetector,
    /// Full-detector pixels that read as 0.
    bad: Vec<usize>,
    /// Frame `i` of this source is frame `offset + i` of the origin.
    offset: u64,
    /// Frames available (None: an endless stream).
    len: Option<u64>,
    /// Sum b × b pixel blocks on reading (1: full size).
    bin: usize,
    /// The rotations under which the true poses are known only up to one (the molecule's
    /// symmetry, [`crate::physics::symmetry`]); the identity alone where none is known.
    symmetry: PointGroup,
}

impl<'a> Source<'a> {
    fn new(origin: Origin<'a>, full: PixelDetector, beam: Beam, len: Option<u64>) -> Source<'a> {
        let bad = (0..full.len()).filter(|&t| full.mask[t] == PixelMask::Bad).collect();
        Source {
            origin,
            detector: full.clone(),
            full,
            beam,
            bad,
            offset: 0,
            len,
            bin: 1,
            symmetry: PointGroup::trivial(),
        }
    }

    /// Frames `0 .. n` of one split of the simulator's stream (`n` None: endless).
    pub fn stream(sim: &'a ImageSimulator, split: Split, n: Option<u64>) -> Source<'a> {
        Source::new(
            Origin::Stream { sim, split },
            sim.geometry.clone(),
            sim.config.beam.clone(),
            n,
        )
        .with_pose_symmetry(sim.symmetry().clone())
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
        let full = config.detector.geometry(&config.beam);
        Ok(Source::new(Origin::Dataset(dataset), full, config.beam, len))
    }

    /// The frames of a Dragonfly photon file on `detector` (its pixel count must be the file's).
    pub fn emc(
        reader: EmcReader,
        detector: PixelDetector,
        beam: Beam,
        poses: Option<Vec<UnitQuaternion<f64>>>,
    ) -> Result<Source<'static>> {
        ensure!(
            reader.num_pixels() == detector.len(),
            "{}: frames of {} pixels, but the detector has {} pixels (--detector must be the detector file \
             of this photon file)",
            reader.path().display(),
            reader.num_pixels(),
            detector.len()
        );
        let n = reader.num_frames() as u64;
        check_pose_count(reader.path(), poses.as_deref(), n)?;
        let origin = Origin::Emc {
            reader: Mutex::new(reader),
            poses,
        };
        Ok(Source::new(origin, detector, beam, Some(n)))
    }

    /// The frames of a CXI file on `detector` (its frame shape must be the file's).
    #[cfg(feature = "hdf5")]
    pub fn cxi(
        reader: crate::formats::cxi::CxiReader,
        detector: PixelDetector,
        beam: Beam,
        poses: Option<Vec<UnitQuaternion<f64>>>,
    ) -> Result<Source<'static>> {
        let (rows, cols) = reader.shape();
        ensure!(
            (rows, cols) == (detector.rows, detector.cols),
            "{}: frames of {rows} × {cols} pixels, but the detector is {} × {}",
            reader.path().display(),
            detector.rows,
            detector.cols
        );
        let n = reader.num_frames() as u64;
        check_pose_count(reader.path(), poses.as_deref(), n)?;
        let origin = Origin::Cxi {
            reader: Mutex::new(reader),
            poses,
        };
        Ok(Source::new(origin, detector, beam, Some(n)))
    }

    /// Full-size frames held in memory (`detector.len()` values each).
    pub fn memory(
        frames: Vec<f32>,
        detector: PixelDetector,
        beam: Beam,
        poses: Option<Vec<UnitQuaternion<f64>>>,
    ) -> Result<Source<'static>> {
        let per = detector.len();
        ensure!(
            per > 0 && frames.len() % per == 0,
            "{} values are not whole frames of {per} pixels",
            frames.len(),
        );
        let n = (frames.len() / per) as u64;
        if let Some(p) = &poses {
            ensure!(p.len() as u64 == n, "{} poses for {n} frames", p.len());
        }
        Ok(Source::new(Origin::Memory { frames, poses }, detector, beam, Some(n)))
    }

    /// The same frames with b × b pixel blocks summed (counts stay counts; see
    /// [`PixelDetector::binned`] for partial blocks and masks).
    pub fn binned(self, bin: usize) -> Result<Source<'a>> {
        let detector = self.full.binned(bin)?;
        Ok(Source { bin, detector, ..self })
    }

    /// The expected background photons per pixel of these frames, binned like them, from the
    /// acquisition that made them (empty when it has none). The methods may use it as an
    /// experiment uses the mean of its blank shots; each pattern's scale stays unknown.
    pub fn expected_background(&self, acquisition: &Acquisition) -> Vec<f32> {
        let b = acquisition.background_per_pixel(&self.full);
        if b.is_empty() {
            return b;
        }
        self.as_read(Cow::Owned(b))
    }

    /// Only frames `range` of these (indices relative to this source); `what` names the
    /// argument that asked for them in the error when the range is not inside the frames.
    pub fn frames(self, range: Range<u64>, what: &str) -> Result<Source<'a>> {
        ensure!(
            range.start < range.end,
            "{what} {}..{}: an empty range of frames",
            range.start,
            range.end
        );
        if let Some(n) = self.len {
            ensure!(
                range.end <= n,
                "{what} {}..{}: the data have only {n} frames (0..{n})",
                range.start,
                range.end
            );
        }
        Ok(Source {
            offset: self.offset + range.start,
            len: Some(range.end - range.start),
            ..self
        })
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
    pub fn full_detector(&self) -> &PixelDetector {
        &self.full
    }

    /// The detector of the frames as read (binned when [`Source::binned`]).
    pub fn detector(&self) -> &PixelDetector {
        &self.detector
    }

    pub fn beam(&self) -> &Beam {
        &self.beam
    }

    pub fn bin(&self) -> usize {
        self.bin
    }

    /// Pixels per frame as read.
    pub fn pixels(&self) -> usize {
        self.detector.len()
    }

    /// The simulator behind a stream.
    pub fn simulator(&self) -> Option<&'a ImageSimulator> {
        match &self.origin {
            Origin::Stream { sim, .. } => Some(sim),
            _ => None,
        }
    }

    /// Frames `start .. start + count` (clamped to the end), row-major `[frame][pixel]`, bad
    /// pixels 0.
    pub fn read(&self, start: u64, count: usize) -> Result<Vec<f32>> {
        let count = self.clamp(start, count);
        if count == 0 {
            return Ok(Vec::new());
        }
        let at = self.offset + start;
        let per = self.full.len();
        let full: Cow<[f32]> = match &self.origin {
            Origin::Stream { sim, split } => {
                let batch = ImageStream::new(sim, *split, at + count as u64, count)
                    .starting_at(at)
                    .next()
                    .expect("a non-empty range yields a batch");
                Cow::Owned(batch.images)
            }
            Origin::Dataset(d) => Cow::Owned(d.read_images(at, count)?),
            Origin::Emc { reader, .. } => {
                let from = usize::try_from(at)?;
                let mut reader = reader.lock().map_err(|_| anyhow::anyhow!("a reader thread panicked"))?;
                Cow::Owned(reader.read_dense(from..from + count)?)
            }
            #[cfg(feature = "hdf5")]
            Origin::Cxi { reader, .. } => {
                let from = usize::try_from(at)?;
                let reader = reader.lock().map_err(|_| anyhow::anyhow!("a reader thread panicked"))?;
                Cow::Owned(reader.read_frames(from..from + count)?)
            }
            Origin::Memory { frames, .. } => Cow::Borrowed(&frames[at as usize * per..(at as usize + count) * per]),
        };
        Ok(self.as_read(full))
    }

    /// Full-detector frames as this source gives them: bad pixels 0, then binned.
    fn as_read(&self, mut full: Cow<[f32]>) -> Vec<f32> {
        if !self.bad.is_empty() {
            let frames = full.to_mut();
            for frame in frames.chunks_exact_mut(self.full.len()) {
                for &t in &self.bad {
                    frame[t] = 0.0;
                }
            }
        }
        if self.bin == 1 {
            return full.into_owned();
        }
        let mut out = Vec::new();
        bin_frames_shaped_into(&full, self.full.rows, self.full.cols, self.bin, &mut out);
        out
    }

    /// Whether the frames are photon counts, as a detector records them: a photon file always
    /// is; anything else is when its first [`COUNT_PROBE_FRAMES`] frames hold only whole numbers
    /// ≥ 0 (a noise-free pattern, rescaled or not, has fractional values in every frame). The
    /// methods choose their data model from it (X-RAI's loss, pattern scale and encoder input).
    pub fn holds_counts(&self) -> Result<bool> {
        if matches!(self.origin, Origin::Emc { .. }) {
            return Ok(true);
        }
        let frames = self.read(0, COUNT_PROBE_FRAMES)?;
        Ok(!frames.is_empty() && frames.iter().all(|&v| v >= 0.0 && v.fract() == 0.0))
    }

    /// The same frames, their true poses known up to the rotations of `symmetry` (a file's
    /// recorded molecule symmetry).
    pub fn with_pose_symmetry(self, symmetry: PointGroup) -> Source<'a> {
        Source { symmetry, ..self }
    }

    /// The rotations the true poses are known up to ([`Source::poses`]; the pose error is taken
    /// modulo them).
    pub fn pose_symmetry(&self) -> &PointGroup {
        &self.symmetry
    }

    /// True poses of frames `start .. start + count` (clamped), where the source knows them.
    pub fn poses(&self, start: u64, count: usize) -> Result<Option<Vec<UnitQuaternion<f64>>>> {
        let count = self.clamp(start, count);
        let range = self.offset + start..self.offset + start + count as u64;
        let slice = |p: &Vec<UnitQuaternion<f64>>| p[range.start as usize..range.end as usize].to_vec();
        Ok(match &self.origin {
            Origin::Stream { sim, split } => Some(range.map(|i| sim.pose(*split, i)).collect()),
            Origin::Dataset(d) => Some(slice(&d.poses)),
            Origin::Emc { poses, .. } | Origin::Memory { poses, .. } => poses.as_ref().map(slice),
            #[cfg(feature = "hdf5")]
            Origin::Cxi { poses, .. } => poses.as_ref().map(slice),
        })
    }

    fn clamp(&self, start: u64, count: usize) -> usize {
        match self.len {
            Some(n) => (count as u64).min(n.saturating_sub(start)) as usize,
            None => count,
        }
    }
}

/// Sums b × b blocks of square `side × side` frames (see [`bin_frames_shaped_into`] for any
/// frame shape).
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
    bin_frames_shaped_into(frames, side, side, bin, out)
}

/// A file's true poses, where it has them, are one per frame.
fn check_pose_count(path: &std::path::Path, poses: Option<&[UnitQuaternion<f64>]>, n: u64) -> Result<()> {
    if let Some(p) = poses {
        ensure!(
            p.len() as u64 == n,
            "{}: {} true poses for {n} frames",
            path.display(),
            p.len()
        );
    }
    Ok(())
}
