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
        ImageStream { simulator, split, poses: None, next: 0, end: n, batch_size: batch_size.max(1) }
    }

    /// A stream over given poses (noise still keyed by image index).
    pub fn with_poses(simulator: &'a ImageSimulator, split: Split, poses: &'a [UnitQuaternion<f64>], batch_size: usize) -> Self {
        ImageStream { simulator, split, poses: Some(poses), next: 0, end: poses.len() as u64, batch_size: batch_size.max(1) }
    }

    /// Starts at image `start` instead of 0 (resuming, or reading a window of the stream).
    pub fn starting_at(mut self, start: u64) -> Self {
        self.next = start.min(self.end);
        self
    }
}

impl Iterator for ImageStream<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.end {
            return None;
        }
        let start = self.next;
        let len = (self.end - start).min(self.batch_size as u64) as usize;
        self.next += len as u64;
        let pixels = self.simulator.pixels();
        let mut images = vec![0.0f32; len * pixels];
        let poses: Vec<UnitQuaternion<f64>> = images
            .par_chunks_mut(pixels)
            .enumerate()
            .map(|(k, out)| {
                let index = start + k as u64;
                match self.poses {
                    Some(p) => {
                        self.simulator.image_at_pose(self.split, index, &p[index as usize], out);
                        p[index as usize]
                    }
                    None => self.simulator.image(self.split, index, out),
                }
            })
            .collect();
        Some(Batch { start, images, poses, pixels })
    }
}
