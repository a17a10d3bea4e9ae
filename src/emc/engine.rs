//! One EMC iteration (Loh & Elser 2009; Ayyer et al. 2016), streamed over chunks of frames:
//!
//! * **Expand**: W_rp = M(R_r s_p), trilinear slices of the model (the simulator's [`Slicer`]).
//! * **Likelihood**: L_ir = Σ_p K_ip ln W_rp − φ_i Σ_p W_rp (Poisson, eq. 4 of Loh & Elser, the
//!   data-only Σ ln K_ip! dropped), φ_i the frame's scale factor (1 unless `scale`). The first
//!   term is a dense f32 GEMM (frames × pixels)·(pixels × rotations) blocked over rotations, or,
//!   for photon-sparse frames, a sum over each frame's non-zero pixels only.
//! * **Probabilities**: P_ir = w_r exp(β(L_ir − max_r L_ir)) / Σ_r (…), β the deterministic-
//!   annealing exponent. Only entries within `threshold` of the maximum of β L + ln w are kept
//!   (Dragonfly's PDIFF_THRESH), so a frame's posterior is a short list.
//! * **Maximize + compress**: W'_r = Σ_i P_ir K_i / Σ_i P_ir merged into the volume with the
//!   trilinear weights times the rotation's total probability Σ_i P_ir φ_i. That weighting is the
//!   per-voxel maximiser of the EM objective Σ_ir P_ir Σ_p (K ln φW − φW) when each pixel falls
//!   in one voxel, and it makes the merge a plain sum over frames, so chunks of frames add up
//!   without holding a rotations × pixels accumulator (Dragonfly weights every touched rotation
//!   equally instead).
//! * **Background** (when the data have one): a known expected background b_p (photons per
//!   pixel, as an experiment measures it from blank shots) enters the model as
//!   λ_ip = φ_i (W_rp + b_p): the likelihood's logarithm is ln(W_rp + b_p), T_r gains Σ_p b_p,
//!   and the merge subtracts each frame's expected background before it averages, W'_r =
//!   Σ_i P_ir (K_i − φ_i b) / Σ_i P_ir φ_i (the average rule), or weights each photon by its
//!   signal share W/(W + b) (the EM rule). The model's background scales with the frame's φ
//!   (gas and jet scatter the same pulse), which keeps the likelihood one GEMM per rotation
//!   block, as without background (a per-frame b/φ_i inside the logarithm would not be); the
//!   simulator's background does not follow the fluence, so with a fitted scale a frame's
//!   background is off by its φ_i (±20 % at 20 % jitter). The model is clamped at 0.
//!   Dragonfly's background-aware EMC adds a known background the same way inside the logarithm.
//! * **Scale** (optional): φ_i = Σ_p K_ip / Σ_r P_ir Σ_p W_rp (Ayyer et al. 2016, eq. 7), updated
//!   after the E-step and before the merge, so the merge uses the new φ (conditional
//!   maximisation; updating φ after the merge with the old slices makes φ and the model's overall
//!   level see-saw and the likelihood oscillate).

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context};
use nalgebra::{Rotation3, UnitQuaternion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::compress::Merger;
use super::grid::OrientationGrid;
pub use super::params::{Assignment, EmcParams, IterationStats, LikelihoodPath, MergeRule, PartialPass};
use crate::comm::{share, Comm, Single};
use crate::data::Source;
use crate::physics::slice::Slicer;
use crate::volume::IntensityVolume;

/// Frames per read from the source while a chunk is assembled (and the deadline's grain
/// while reading: 256 simulated 128² frames take about 0.1 s on one core).
pub(super) const READ_BATCH: usize = 256;

/// EMC state: grid, detector, model, and per frame only its scale (with `scale`) and its latest
/// most likely rotation.
///
/// Over MPI ([`Emc::with_comm`]) every rank holds the model and the rotations and works on its
/// contiguous share of the frames ([`crate::comm::share`]), as Dragonfly does: the merge's sums
/// Σ_i P_ir φ_i K_i and Σ_i P_ir φ_i c, the log-likelihood and the data's means are summed over
/// ranks, so every rank computes the same next model; per-frame state (scales, assignments)
/// stays on its rank. The model equals the one-process run's up to the order of the sums.
pub struct Emc {
    pub grid: OrientationGrid,
    pub(super) rotations: Vec<Rotation3<f64>>,
    pub(super) ln_weights: Vec<f32>,
    pub(super) s: Vec<[f64; 3]>,
    /// Relative per-pixel factor c_p (polarisation × solid angle), mean 1.
    pub(super) factors: Vec<f32>,
    /// Pixels used in the likelihood (all, or those inside the cut-off).
    pub(super) lik_pixels: Vec<u32>,
    /// Σ_p b_p over the likelihood pixels (0 without a background).
    pub(super) background_total: f32,
    /// Full pixel index → likelihood index, or u32::MAX.
    pub(super) compact: Vec<u32>,
    pub model: IntensityVolume,
    pub params: EmcParams,
    pub(super) merger: Merger,
    /// φ_i per training frame (empty without `scale`: every φ_i is 1).
    pub(super) scales: Vec<f32>,
    /// Frames the last [`Emc::prepare`] counted (0: not prepared).
    pub(super) prepared: usize,
    pub(super) density: Option<f64>,
    /// Most likely rotation per training frame, from the last completed iteration.
    pub assignments: Vec<u32>,
    /// Where the last pass stopped, when its deadline passed.
    pub(super) stopped: Option<PartialPass>,
    /// Completed iterations.
    pub iteration: usize,
    /// Voxels that received merged data in the last iteration.
    pub(super) measured: Vec<bool>,
    /// The ranks sharing the frames ([`Single`] unless [`Emc::with_comm`]).
    pub(super) comm: Arc<dyn Comm>,
}

impl Emc {
    /// `s`: per-pixel scattering vectors (Å⁻¹) of the (binned) detector; `factors`: expected
    /// photons per unit intensity per pixel (polarisation × solid angle; any overall scale, or
    /// all ones), so that slices are W_rp = c_p M(R_r s_p). The model lives on an m³ grid of
    /// spacing Δs and starts at zero: call [`Emc::random_start`] or set it.
    pub fn new(
        grid: OrientationGrid,
        s: Vec<[f64; 3]>,
        factors: &[f64],
        m: usize,
        spacing: f64,
        params: EmcParams,
    ) -> anyhow::Result<Emc> {
        ensure!(factors.len() == s.len(), "one pixel factor per pixel is needed");
        let mean = factors.iter().sum::<f64>() / factors.len().max(1) as f64;
        ensure!(
            mean > 0.0 && factors.iter().all(|f| f.is_finite() && *f >= 0.0),
            "pixel factors must be non-negative"
        );
        let factors: Vec<f32> = factors.iter().map(|f| (f / mean) as f32).collect();
        ensure!(!grid.is_empty(), "the orientation grid is empty");
        ensure!(
            m % 2 == 1 && m >= 5,
            "the model grid must be odd and at least 5 voxels, got {m}"
        );
        ensure!(
            params.beta > 0.0 && params.beta.is_finite(),
            "--beta must be positive, got {}",
            params.beta
        );
        ensure!(params.rotation_block >= 1, "rotation block must be at least 1");
        ensure!(
            params.background.is_empty() || params.background.len() == s.len(),
            "the background has {} pixels, the detector {}",
            params.background.len(),
            s.len()
        );
        ensure!(
            params.background.iter().all(|b| b.is_finite() && *b >= 0.0),
            "the background must be finite and non-negative photons per pixel"
        );
        let compact_limit = params.max_s.unwrap_or(f64::INFINITY);
        ensure!(compact_limit > 0.0, "--max-s must be positive");
        // Pixels with factor 0 (bad: masked) carry no weight anywhere; merge-only pixels are
        // merged but not in the likelihood.
        let mut lik_pixels = Vec::new();
        let mut compact = vec![u32::MAX; s.len()];
        let mut in_likelihood: Vec<bool> = factors.iter().map(|&f| f > 0.0).collect();
        for &p in &params.merge_only {
            if let Some(v) = in_likelihood.get_mut(p as usize) {
                *v = false;
            }
        }
        for (p, v) in s.iter().enumerate() {
            if in_likelihood[p] && (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt() <= compact_limit {
                compact[p] = lik_pixels.len() as u32;
                lik_pixels.push(p as u32);
            }
        }
        ensure!(
            !lik_pixels.is_empty(),
            "no pixel is left for the likelihood (the mask and the resolution cut-off exclude all)"
        );
        let background_total = if params.background.is_empty() {
            0.0
        } else {
            lik_pixels
                .iter()
                .map(|&q| params.background[q as usize] as f64)
                .sum::<f64>() as f32
        };
        let model = IntensityVolume::filled(m, spacing, 0.0);
        // Checks that the grid covers the detector.
        Slicer::with_scale(&model, &s, vec![1.0; s.len()]).context("the model grid does not cover the detector")?;
        Ok(Emc {
            rotations: grid.rotations(),
            ln_weights: grid.weights.iter().map(|w| w.ln() as f32).collect(),
            grid,
            merger: Merger::new(m, spacing, &s, factors.clone()),
            s,
            factors,
            lik_pixels,
            compact,
            background_total,
            model,
            params,
            scales: Vec::new(),
            prepared: 0,
            density: None,
            assignments: Vec::new(),
            stopped: None,
            iteration: 0,
            measured: Vec::new(),
            comm: Arc::new(Single),
        })
    }

    /// Shares the frames with the other ranks of `comm` (every rank must build the same `Emc`
    /// and make the same calls: [`prepare`](Self::prepare), [`iterate`](Self::iterate),
    /// [`assign`](Self::assign) and [`train_assignments`](Self::train_assignments) are
    /// collective).
    pub fn with_comm(mut self, comm: Arc<dyn Comm>) -> Emc {
        self.comm = comm;
        self
    }

    /// This rank's frames of a source of `n`.
    pub(super) fn own_frames(&self, n: usize) -> Range<usize> {
        share(n, self.comm.rank(), self.comm.size())
    }

    /// Every training frame's most likely rotation from the last completed iteration, in frame
    /// order (collective: gathered from the ranks).
    pub fn train_assignments(&self) -> Vec<u32> {
        self.comm.gather_u32(&self.assignments)
    }

    pub fn pixels(&self) -> usize {
        self.s.len()
    }

    /// Pixels that enter the likelihood.
    /// Σ_p b_p over the likelihood pixels: the known background's photons per frame (0: none).
    pub fn background_photons(&self) -> f64 {
        self.background_total as f64
    }

    pub fn likelihood_pixels(&self) -> usize {
        self.lik_pixels.len()
    }

    /// A seeded random start (uniform in [0, 1) per voxel; scaled to the data by [`Emc::prepare`]).
    pub fn random_start(&mut self, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        self.model.data.iter_mut().for_each(|v| *v = rng.random::<f32>());
    }

    pub fn set_model(&mut self, model: IntensityVolume) -> anyhow::Result<()> {
        ensure!(
            model.m == self.model.m && model.spacing == self.model.spacing,
            "model grid does not match"
        );
        self.model = model;
        Ok(())
    }

    /// Whether each voxel received data in the last iteration (all false before the first).
    pub fn measured(&self) -> &[bool] {
        &self.measured
    }

    pub fn quaternion(&self, rotation: u32) -> UnitQuaternion<f64> {
        self.grid.quaternions[rotation as usize]
    }

    /// Fraction of non-zero pixels in the training frames (after [`Emc::prepare`]).
    pub fn density(&self) -> Option<f64> {
        self.density
    }

    /// Whether the likelihood uses the sparse-photon path.
    pub fn sparse(&self) -> bool {
        match self.params.path {
            LikelihoodPath::Dense => false,
            LikelihoodPath::Sparse => true,
            LikelihoodPath::Auto => self.density.is_some_and(|d| d < self.params.sparse_below),
        }
    }

    pub(super) fn slicer(&self) -> anyhow::Result<Slicer> {
        Slicer::with_scale(&self.model, &self.s, self.factors.clone())
    }

    /// T_r = Σ_p (W_rp + b_p) over the likelihood pixels, every rotation.
    pub(super) fn slice_totals(&self, slicer: &Slicer) -> Vec<f32> {
        let p = self.pixels();
        self.rotations
            .par_iter()
            .map_init(
                || vec![0.0f32; p],
                |buf, rot| {
                    slicer.slice_into(rot, buf);
                    self.lik_pixels.iter().map(|&q| buf[q as usize] as f64).sum::<f64>() as f32 + self.background_total
                },
            )
            .collect()
    }

    /// One EMC iteration over all training frames at the given β. Returns `None`, leaving the
    /// model, scales and assignments untouched, if `deadline` passes first; it is checked
    /// between reads of frames, between rotation blocks of the E-step and between rotation
    /// blocks of the merge, so the pass stops within one block of it whatever N is, and
    /// [`Emc::stopped_pass`] then says how far it got.
    pub fn iterate(
        &mut self,
        source: &Source,
        beta: f64,
        deadline: Option<Instant>,
        progress: &(dyn Fn(usize) + Sync),
    ) -> anyhow::Result<Option<IterationStats>> {
        let started = Instant::now();
        self.stopped = None;
        let n = source.count()?;
        if self.prepared != n && !self.prepare_until(source, deadline, &|_| {})? {
            self.stopped = Some(PartialPass::default());
            return Ok(None);
        }
        let sparse = self.sparse();
        let plan = self.chunk_plan(sparse, full_pixels(source))?;
        let slicer = self.slicer()?;
        let t = self.slice_totals(&slicer);
        let voxels = self.model.data.len();
        let mut num = vec![0.0f64; voxels];
        let mut den = vec![0.0f64; voxels];
        let mut volumes = vec![(vec![0.0f32; voxels], vec![0.0f32; voxels]); plan.merge_parts];
        let scale = self.params.scale;
        // This rank's frames; scales and assignments are indexed from its first.
        let own = self.own_frames(n);
        let first = own.start;
        let mut assignments = Vec::with_capacity(own.len());
        let mut scales = if scale { self.scales.clone() } else { Vec::new() };
        let ones = if scale {
            Vec::new()
        } else {
            vec![1.0f32; plan.frames.min(own.len())]
        };
        let (mut ll, mut mi, mut maxp) = (0.0f64, 0.0f64, 0.0f64);
        let mut through = PartialPass::default();
        let mut stopped = false;
        for start in own.clone().step_by(plan.frames) {
            let Some(chunk) = self.load_chunk(source, start, plan.frames.min(own.end - start), sparse, deadline)?
            else {
                stopped = true;
                break;
            };
            let at = start - first;
            let phi = if scale {
                &self.scales[at..at + chunk.n]
            } else {
                &ones[..chunk.n]
            };
            let chunk_progress = |f: f64| progress(at + (f * chunk.n as f64) as usize);
            let Some(posteriors) = self.e_step(&slicer, &t, &chunk, phi, beta, deadline, &chunk_progress) else {
                stopped = true;
                break;
            };
            // Conditional maximisation (ECM): φ first, with the current model and posterior,
            // then the model with the new φ; each step raises the EM objective.
            for (i, post) in posteriors.iter().enumerate() {
                // Σ_p K_ip ln φ_i is the same for every rotation, so L_ir leaves it out; the
                // likelihood needs it once φ changes between iterations (0 when φ_i = 1).
                let total = if scale { self.frame_total(&chunk, i) as f32 } else { 0.0 };
                ll += post.log_likelihood + total as f64 * (phi[i] as f64).ln();
                mi += post.mutual_information;
                maxp += post.best.probability as f64;
                assignments.push(post.best.rotation);
                if scale && post.expected_total > 0.0 {
                    scales[at + i] = (total as f64 / post.expected_total) as f32;
                }
            }
            let phi_new = if scale {
                &scales[at..at + chunk.n]
            } else {
                &ones[..chunk.n]
            };
            if !self.accumulate(
                &slicer,
                &chunk,
                &posteriors,
                phi_new,
                &mut num,
                &mut den,
                &mut volumes,
                deadline,
            ) {
                stopped = true;
                break;
            }
            through = PartialPass {
                frames: at + chunk.n,
                seconds: started.elapsed().as_secs_f64(),
            };
            progress(at + chunk.n);
        }
        // The pass counts only when every rank completed it; a stopped pass's completed frames
        // are summed over the ranks (its seconds are this rank's: they run side by side).
        if self.comm.any(stopped) {
            let mut frames = [through.frames as f64];
            self.comm.sum_f64(&mut frames);
            self.stopped = Some(PartialPass {
                frames: frames[0] as usize,
                seconds: through.seconds,
            });
            return Ok(None);
        }
        self.comm.sum_f64(&mut num);
        self.comm.sum_f64(&mut den);
        let mut sums = [ll, mi, maxp];
        self.comm.sum_f64(&mut sums);
        let [ll, mi, maxp] = sums;
        let mut sq = 0.0f64;
        self.measured = den.iter().map(|&b| b > 0.0).collect();
        for ((v, &a), &b) in self.model.data.iter_mut().zip(&num).zip(&den) {
            if b > 0.0 {
                // clamped: with a background subtracted a voxel's mean can fall below 0
                let ratio = ((a / b) as f32).max(0.0);
                let new = if self.params.merge == MergeRule::Em {
                    *v * ratio
                } else {
                    ratio
                };
                sq += ((new - *v) as f64).powi(2);
                *v = new;
            }
        }
        self.assignments = assignments;
        if scale {
            self.scales = scales;
        }
        self.iteration += 1;
        Ok(Some(IterationStats {
            iteration: self.iteration,
            seconds: started.elapsed().as_secs_f64(),
            log_likelihood: ll / n as f64,
            rms_change: (sq / voxels as f64).sqrt(),
            mutual_information: mi / n as f64,
            mean_max_probability: maxp / n as f64,
            beta,
            sparse,
        }))
    }

    /// How far the last [`Emc::iterate`] got when its deadline stopped it (None after a
    /// complete pass).
    pub fn stopped_pass(&self) -> Option<PartialPass> {
        self.stopped
    }

    /// The most likely rotation of every frame of `source` under the current model: one expand
    /// and likelihood step, no update (held-out test frames). Scale factors, if on, are each
    /// frame's total over the mean slice total. Collective: each rank assigns its share and
    /// every rank receives all.
    pub fn assign(&self, source: &Source, beta: f64) -> anyhow::Result<Vec<Assignment>> {
        let n = source.count()?;
        let own = self.assign_frames(source, self.own_frames(n), beta)?;
        let rotations = self
            .comm
            .gather_u32(&own.iter().map(|a| a.rotation).collect::<Vec<_>>());
        let probabilities = self
            .comm
            .gather_u32(&own.iter().map(|a| a.probability.to_bits()).collect::<Vec<_>>());
        Ok(rotations
            .into_iter()
            .zip(probabilities)
            .map(|(rotation, p)| Assignment {
                rotation,
                probability: f32::from_bits(p),
            })
            .collect())
    }

    /// [`assign`](Self::assign) for frames `frames` of `source` only, on this rank alone.
    pub fn assign_frames(&self, source: &Source, frames: Range<usize>, beta: f64) -> anyhow::Result<Vec<Assignment>> {
        ensure!(
            source.pixels() == self.pixels(),
            "frames have {} pixels, the detector {}",
            source.pixels(),
            self.pixels()
        );
        ensure!(
            frames.end <= source.count()?,
            "frames {frames:?} of a source of {}",
            source.count()?
        );
        let sparse = match self.params.path {
            LikelihoodPath::Dense => false,
            LikelihoodPath::Sparse => true,
            LikelihoodPath::Auto => self.density.unwrap_or(1.0) < self.params.sparse_below,
        };
        let slicer = self.slicer()?;
        let t = self.slice_totals(&slicer);
        let mean_t = t.iter().map(|&x| x as f64).sum::<f64>() / t.len() as f64;
        let per_chunk = self.chunk_plan(sparse, full_pixels(source))?.frames;
        let mut out = Vec::with_capacity(frames.len());
        let end = frames.end;
        for start in frames.step_by(per_chunk) {
            let chunk = self
                .load_chunk(source, start, per_chunk.min(end - start), sparse, None)?
                .expect("no deadline");
            let phi: Vec<f32> = if self.params.scale {
                (0..chunk.n)
                    .map(|i| (self.frame_total(&chunk, i) / mean_t) as f32)
                    .collect()
            } else {
                vec![1.0; chunk.n]
            };
            let posteriors = self
                .e_step(&slicer, &t, &chunk, &phi, beta, None, &|_| {})
                .expect("no deadline");
            out.extend(posteriors.iter().map(|p| p.best));
        }
        Ok(out)
    }
}

/// Pixels of the source's full-size frames (a read holds them before binning).
pub(super) fn full_pixels(source: &Source) -> usize {
    source.full_detector().len()
}
