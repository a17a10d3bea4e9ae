//! Batches of simulated images, generated on demand: memory is one batch, whatever N.

use nalgebra::UnitQuaternion;
use rayon::prelude::*;

use super::simulator::{ImageSimulator, Split};

/// Images `start .. start + len` of a stream, row-major `[image][pixel]`.
#[derive(Clone, Debug)]
pub struct Batch {
    pub start: u64,
    pub images: Vec<f32>,
    pub poses: Vec<UnitQuaternion<f64>>,
    pub pixels: usize,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.poses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.poses.is_empty()
    }

    /// An empty batch to pass to [`ImageStream::next_into`].
    pub fn empty() -> Batch {
        Batch {
            start: 0,
            images: Vec::new(),
            poses: Vec::new(),
            pixels: 0,
        }
    }

    pub fn image(&self, k: usize) -> &[f32] {
        &self.images[k * self.pixels..(k + 1) * self.pixels]
    }
}

/// Iterator over batches of images `0 .. n` of one split. Images are generated in parallel
/// within a batch; each is a pure function of (seed, split, index).
pub struct ImageStream<'a> {
    simulator: &'a ImageSimulator,
    split: Split,
    /// Fixed poses (from `--poses`) instead of random ones.
    poses: Option<&'a [UnitQuaternion<f64>]>,
    next: u64,
    end: u64,
    batch_size: usize,
}

impl<'a> ImageStream<'a> {
    pub fn new(simulator: &'a ImageSimulator, split: Split, n: u64, batch_size: usize) -> Self {
        ImageStream {
            simulator,
            split,
            poses: None,
            next: 0,
            end: n,
            batch_size: batch_size.max(1),
        }
    }

    /// A stream over given poses (noise still keyed by image index).
    pub fn with_poses(
        simulator: &'a ImageSimulator,
        split: Split,
        poses: &'a [UnitQuaternion<f64>],
        batch_size: usize,
    ) -> Self {
        ImageStream {
            simulator,
            split,
            poses: Some(poses),
            next: 0,
            end: poses.len() as u64,
            batch_size: batch_size.max(1),
        }
    }

    /// Starts at image `start` instead of 0 (resuming, or reading a window of the stream).
    pub fn starting_at(mut self, start: u64) -> Self {
        self.next = start.min(self.end);
        self
    }
}

impl ImageStream<'_> {
    /// Fills `batch` with the next images, reusing its buffers (no allocation once warm);
    /// false at the end of the stream.
    pub fn next_into(&mut self, batch: &mut Batch) -> bool {
        if self.next >= self.end {
            return false;
        }
        let start = self.next;
        let len = (self.end - start).min(self.batch_size as u64) as usize;
        self.next += len as u64;
        let pixels = self.simulator.pixels();
        batch.start = start;
        batch.pixels = pixels;
        batch.images.resize(len * pixels, 0.0);
        batch.poses.clear();
        let (simulator, split, fixed) = (self.simulator, self.split, self.poses);
        batch.images[..len * pixels]
            .par_chunks_mut(pixels)
            .enumerate()
            .map(|(k, out)| {
                let index = start + k as u64;
                match fixed {
                    Some(p) => {
                        simulator.image_at_pose(split, index, &p[index as usize], out);
                        p[index as usize]
                    }
                    None => simulator.image(split, index, out),
                }
            })
            .collect_into_vec(&mut batch.poses);
        true
    }
}

impl Iterator for ImageStream<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let mut batch = Batch::empty();
        self.next_into(&mut batch).then_some(batch)
    }
}
