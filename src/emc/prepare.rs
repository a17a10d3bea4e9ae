//! The first pass over the data before EMC iterates: the frames' mean photon total and
//! density (which picks the likelihood path), a fresh model scaled to them, and with `scale`
//! every frame's starting φ_i.

use std::time::Instant;

use anyhow::ensure;

use super::engine::{Emc, READ_BATCH};
use crate::data::Source;

/// Frames [`Emc::prepare`] reads for the data's means when it needs no per-frame totals.
pub const PREPARE_SAMPLE: usize = 65_536;

impl Emc {
    /// The data's mean photon total and density (which picks the likelihood path), to scale a
    /// fresh model to the data (mean slice total = mean frame total); with `scale`, also every
    /// frame's total, which starts its φ_i at its total over the mean slice total.
    ///
    /// With `scale` this is a pass over every frame. Without it, up to [`PREPARE_SAMPLE`] frames
    /// in blocks spread evenly over the source are enough for two means (relative error ~1/√65536
    /// of the frames' spread), and on millions of frames the full pass would cost as much as
    /// simulating or reading them once more.
    pub fn prepare(&mut self, source: &Source) -> anyhow::Result<()> {
        let done = self.prepare_until(source, None, &|_| {})?;
        debug_assert!(done);
        Ok(())
    }

    /// [`prepare`](Self::prepare) that gives up (returning false, nothing changed) once
    /// `deadline` passes: on millions of frames this first pass over the data is itself long.
    /// `progress` receives the number of frames read.
    pub fn prepare_until(
        &mut self,
        source: &Source,
        deadline: Option<Instant>,
        progress: &dyn Fn(usize),
    ) -> anyhow::Result<bool> {
        ensure!(
            source.pixels() == self.pixels(),
            "frames have {} pixels, the detector {}",
            source.pixels(),
            self.pixels()
        );
        ensure!(!source.is_empty(), "no frames");
        let n = source.count()?;
        let own = self.own_frames(n);
        // Per-frame totals are kept only to start the scale factors (this rank's frames); the
        // mean is summed in frame order either way.
        let mut totals = Vec::with_capacity(if self.params.scale { own.len() } else { 0 });
        let (mut sum_total, mut read) = (0.0f64, 0usize);
        let mut nonzero = 0usize;
        // Reads of up to READ_BATCH frames: with `scale` this rank's frames, else every frame
        // or the sample's blocks, shared among the ranks.
        let reads: Vec<(usize, usize)> = if self.params.scale {
            own.clone()
                .step_by(READ_BATCH)
                .map(|s| (s, READ_BATCH.min(own.end - s)))
                .collect()
        } else {
            let starts: Vec<usize> = if n <= PREPARE_SAMPLE {
                (0..n).step_by(READ_BATCH).collect()
            } else {
                let blocks = PREPARE_SAMPLE / READ_BATCH;
                (0..blocks).map(|k| k * (n - READ_BATCH) / (blocks - 1)).collect()
            };
            starts[self.own_frames(starts.len())]
                .iter()
                .map(|&s| (s, READ_BATCH.min(n - s)))
                .collect()
        };
        let expected: usize = reads.iter().map(|&(_, k)| k).sum();
        let mut gave_up = false;
        for (start, count) in reads {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                gave_up = true;
                break;
            }
            progress(start);
            let frames = source.read(start as u64, count)?;
            for f in frames.chunks_exact(self.pixels()) {
                let total = self.lik_pixels.iter().map(|&p| f[p as usize] as f64).sum::<f64>() as f32;
                sum_total += total as f64;
                read += 1;
                if self.params.scale {
                    totals.push(total);
                }
                nonzero += f.iter().filter(|&&x| x != 0.0).count();
            }
        }
        // All ranks give up together when any one's deadline passed.
        if self.comm.any(gave_up) {
            return Ok(false);
        }
        ensure!(
            read == expected,
            "the source returned {read} frames, expected {expected}"
        );
        let mut sums = [sum_total, read as f64, nonzero as f64];
        self.comm.sum_f64(&mut sums);
        let [sum_total, read, nonzero] = sums;
        self.density = Some(nonzero / (read * self.pixels() as f64));
        let mean_total = sum_total / read;
        ensure!(
            mean_total > 0.0,
            "the frames hold no signal inside the likelihood pixels"
        );
        let slicer = self.slicer()?;
        let t = self.slice_totals(&slicer);
        let bt = self.background_total as f64;
        let mut mean_t = t.iter().map(|&x| x as f64).sum::<f64>() / t.len() as f64;
        ensure!(
            mean_t - bt > 0.0,
            "the model is zero on the detector: start from a random or given model"
        );
        // A fresh model's level is the data's signal (mean slice total = mean frame total, the
        // background's share taken from both); with a background the level is no longer free
        // under a fitted scale, so it is set then too.
        if self.iteration == 0 && (!self.params.scale || bt > 0.0) {
            let k = (mean_total - bt).max(0.05 * mean_total) / (mean_t - bt);
            self.model.data.iter_mut().for_each(|v| *v *= k as f32);
            mean_t = (mean_t - bt) * k + bt;
        }
        if self.params.scale {
            totals.iter_mut().for_each(|k| *k = (*k as f64 / mean_t) as f32);
            self.scales = totals;
        } else {
            self.scales = Vec::new();
        }
        self.prepared = n;
        Ok(true)
    }
}
