//! Refinement after amortized inference: each image's pose by gradient descent on its own
//! rotation against the frozen decoder, then the volume with the poses fixed, alternated as the
//! budget allows. The encoder's estimate is a fast, slightly blurred start (the amortization
//! gap: one network for every image); a few steps per image against the decoder remove most of
//! it, and starting also from the other heads and the π partners (R·Rz(π)) removes the tail of
//! images sitting on a wrong head or the wrong symmetric minimum. This is the second stage of
//! cryoSPIN (Shekarforoush et al., NeurIPS 2024); the X-RAI paper stops at the encoder.
//!
//! Written here because no crate descends on SO(3) through a custom slice op. A rotation is
//! updated in its body frame: with G = ∂E/∂R from the decoder's own backward and A = RᵀG, the
//! gradient of E(R exp([ω]×)) at ω = 0 is g = (A₂₁ − A₁₂, A₀₂ − A₂₀, A₁₀ − A₀₁); each
//! hypothesis keeps Adam moments of g (so the step is in radians whatever the image's
//! brightness) and moves by R ← R exp([−δ]×) with a step size falling geometrically from
//! `lr_start_deg` to `lr_end_deg`. All hypotheses of a chunk of images go through the decoder
//! as one batch, so refinement runs at the decoder's images/s. The volume step is Adam on the
//! decoder's parameters alone with the loss of training.

use anyhow::{ensure, Result};
use candle_core::Var;
use nalgebra::{Matrix3, Rotation3, Vector3};
use serde::{Deserialize, Serialize};

use super::optim::{Adam, ParamGroup};
use super::trainer::{matrices_tensor, Trainer};

/// How the refinement stage runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RefineOptions {
    /// Gradient steps on each image's rotation in a pose pass (0: no refinement).
    pub pose_steps: usize,
    /// Encoder hypotheses (heads and π partners, lowest loss first, at least
    /// [`DISTINCT_DEG`] apart) refined per image in the first pass; the lowest final loss wins.
    pub candidates: usize,
    /// Step size of the first and the last pose step (degrees).
    pub lr_start_deg: f64,
    pub lr_end_deg: f64,
    /// Adam's first-moment decay for the pose steps (0.5: measured on 10° starts, 30 steps,
    /// 4° → 0.05°, worst final error 0.03°; Adam's usual 0.9 left 2.0°).
    pub momentum: f64,
    /// Passes over the training images with the poses fixed, per volume round.
    pub volume_epochs: usize,
    /// Adam learning rate of the volume rounds.
    pub lr_volume: f64,
    /// Images per volume step.
    pub volume_batch: usize,
    /// Share of images, those with the highest loss after the first pass, refined again from
    /// every encoder hypothesis.
    pub retry_fraction: f64,
    /// An image whose loss is still above this many times the median after the retry is
    /// searched for over all of SO(3) (at most `search_fraction` of the images, the worst first).
    pub lost_factor: f64,
    /// Rotations of the global search's uniform set (0: no search).
    pub search_rotations: usize,
    /// Most images searched for, as a share of the images.
    pub search_fraction: f64,
    /// Also refine each image from the near-2-fold mates of its best rotation in the first
    /// pass ([`super::mates`]).
    #[serde(default)]
    pub mates: bool,
}

impl Default for RefineOptions {
    fn default() -> Self {
        RefineOptions {
            pose_steps: 30,
            candidates: 4,
            lr_start_deg: 4.0,
            lr_end_deg: 0.05,
            momentum: 0.5,
            volume_epochs: 2,
            lr_volume: 1e-3,
            volume_batch: 128,
            retry_fraction: 0.05,
            lost_factor: 3.0,
            search_rotations: 8192,
            search_fraction: 0.005,
            mates: false,
        }
    }
}

/// Hypotheses closer than this to a better one are not refined again.
pub const DISTINCT_DEG: f64 = 3.0;

/// Hypotheses refined together (a chunk of images × their candidates).
const ROTATIONS_PER_CHUNK: usize = 512;

/// cos of the angle between two rotations: (tr(AᵀB) − 1) / 2.
fn cos_between(a: &Matrix3<f64>, b: &Matrix3<f64>) -> f64 {
    ((a.transpose() * b).trace() - 1.0) / 2.0
}

/// The images `indices` of `amps` (`p` values each), in that order.
fn gather(amps: &[f32], p: usize, indices: &[usize]) -> Vec<f32> {
    indices
        .iter()
        .flat_map(|&i| amps[i * p..(i + 1) * p].iter().copied())
        .collect()
}

/// Up to `c` starting rotations per image from the encoder's hypotheses (`per` per image, as
/// [`Trainer::hypotheses`] lists them): lowest error first, skipping any within
/// [`DISTINCT_DEG`] of one already taken; an image with fewer distinct ones repeats its best.
pub fn starts(rots: &[Matrix3<f64>], errs: &[f32], per: usize, c: usize) -> Vec<Matrix3<f64>> {
    let mut out = Vec::with_capacity(rots.len() / per.max(1) * c);
    let cos_limit = (DISTINCT_DEG.to_radians()).cos();
    for (r, e) in rots.chunks(per).zip(errs.chunks(per)) {
        let mut order: Vec<usize> = (0..r.len()).collect();
        order.sort_by(|&a, &b| e[a].total_cmp(&e[b]));
        let mut taken: Vec<Matrix3<f64>> = Vec::with_capacity(c);
        for &j in &order {
            if taken.len() == c {
                break;
            }
            let far = taken.iter().all(|t| cos_between(t, &r[j]) < cos_limit);
            if far {
                taken.push(r[j]);
            }
        }
        while taken.len() < c {
            taken.push(taken[0]);
        }
        out.extend(taken);
    }
    out
}

/// The pose steps' sizes (degrees, falling geometrically from the first to the last) and
/// Adam's first-moment decay.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub lr_start_deg: f64,
    pub lr_end_deg: f64,
    pub momentum: f64,
}

impl RefineOptions {
    /// The first pass's schedule.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            lr_start_deg: self.lr_start_deg,
            lr_end_deg: self.lr_end_deg,
            momentum: self.momentum,
        }
    }
}

/// Refines `c` rotations per image (`rots` image-major, `[n·c]`) of images `amps` `[n × P]` by
/// `steps` descent steps each; returns the refined rotations and their final data terms.
pub fn refine_rotations(
    t: &Trainer,
    amps: &[f32],
    rots: &[Matrix3<f64>],
    c: usize,
    steps: usize,
    schedule: Schedule,
) -> Result<(Vec<Matrix3<f64>>, Vec<f32>)> {
    let Schedule {
        lr_start_deg,
        lr_end_deg,
        momentum: b1,
    } = schedule;
    let p = t.geometry.pixels();
    let n = amps.len() / p;
    ensure!(
        c >= 1 && rots.len() == n * c,
        "{} rotations for {n} images × {c}",
        rots.len()
    );
    let images_per_chunk = (ROTATIONS_PER_CHUNK / c).max(1);
    let mut out = Vec::with_capacity(rots.len());
    let mut errors = Vec::with_capacity(rots.len());
    for (img, start) in amps.chunks(images_per_chunk * p).zip(rots.chunks(images_per_chunk * c)) {
        let (target, _) = t.targets(img)?;
        let mut r: Vec<Matrix3<f64>> = start.to_vec();
        let mut m1 = vec![Vector3::<f64>::zeros(); r.len()];
        let mut m2 = vec![Vector3::<f64>::zeros(); r.len()];
        let (b2, eps) = (0.999f64, 1e-12f64);
        for s in 0..steps {
            let frac = if steps > 1 { s as f64 / (steps - 1) as f64 } else { 0.0 };
            let lr = (lr_start_deg * (lr_end_deg / lr_start_deg).powf(frac)).to_radians();
            let var = Var::from_tensor(&matrices_tensor(&r, &t.device)?)?;
            let e = t.slice_errors(var.as_tensor(), &target, c)?;
            let grads = e.sum_all()?.backward()?;
            let g = match grads.get(var.as_tensor()) {
                Some(g) => g.flatten_all()?.to_vec1::<f32>()?,
                None => break,
            };
            let (bc1, bc2) = (1.0 - b1.powi(s as i32 + 1), 1.0 - b2.powi(s as i32 + 1));
            for (i, rot) in r.iter_mut().enumerate() {
                let gm = Matrix3::from_fn(|a, b| g[i * 9 + a * 3 + b] as f64);
                let a = rot.transpose() * gm;
                let gv = Vector3::new(a[(2, 1)] - a[(1, 2)], a[(0, 2)] - a[(2, 0)], a[(1, 0)] - a[(0, 1)]);
                m1[i] = m1[i] * b1 + gv * (1.0 - b1);
                m2[i] = m2[i] * b2 + gv.component_mul(&gv) * (1.0 - b2);
                let step = (m1[i] / bc1).zip_map(&(m2[i] / bc2), |m, v| lr * m / (v.sqrt() + eps));
                *rot *= Rotation3::new(-step).into_inner();
            }
        }
        // re-orthonormalise (a few dozen products drift by ~1e-15) and score the final poses
        for rot in r.iter_mut() {
            *rot = Rotation3::from_matrix(rot).into_inner();
        }
        let e = t.slice_errors(&matrices_tensor(&r, &t.device)?, &target, c)?;
        errors.extend(e.flatten_all()?.to_vec1::<f32>()?);
        out.extend(r);
    }
    Ok((out, errors))
}

/// The lowest-error rotation of each image's `c` and its error.
pub fn best_of(rots: &[Matrix3<f64>], errs: &[f32], c: usize) -> (Vec<Matrix3<f64>>, Vec<f32>) {
    rots.chunks(c)
        .zip(errs.chunks(c))
        .map(|(r, e)| {
            let j = (0..r.len()).fold(0, |a, j| if e[j] < e[a] { j } else { a });
            (r[j], e[j])
        })
        .unzip()
}

/// The first pose pass: the encoder's hypotheses of each image, its best `candidates` refined,
/// the lowest final loss kept; then the images whose loss is still among the worst
/// `opts.retry_fraction` are refined from every hypothesis (all heads and π partners) and keep
/// whichever ends lower.
pub fn refine_from_encoder(t: &Trainer, amps: &[f32], opts: &RefineOptions) -> Result<(Vec<Matrix3<f64>>, FirstPass)> {
    let p = t.geometry.pixels();
    let per = 2 * t.cfg.heads;
    let (hyp, errs) = t.hypotheses(amps)?;
    let c = opts.candidates.clamp(1, per);
    let lr = opts.schedule();
    let s = starts(&hyp, &errs, per, c);
    let (r, e) = refine_rotations(t, amps, &s, c, opts.pose_steps, lr)?;
    let (mut best, mut best_e) = best_of(&r, &e, c);
    let n = best.len();
    let retry = ((n as f64 * opts.retry_fraction).ceil() as usize).min(n);
    let mut report = FirstPass::default();
    if retry > 0 && per > c {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| best_e[b].total_cmp(&best_e[a]));
        order.truncate(retry);
        order.sort_unstable();
        let img = gather(amps, p, &order);
        let all: Vec<Matrix3<f64>> = order
            .iter()
            .flat_map(|&i| hyp[i * per..(i + 1) * per].iter().copied())
            .collect();
        let (r2, e2) = refine_rotations(t, &img, &all, per, opts.pose_steps, lr)?;
        let (b2, be2) = best_of(&r2, &e2, per);
        report.retried = retry;
        report.retry_moved = keep_lower(&mut best, &mut best_e, &order, &b2, &be2).1;
    }
    // the near-2-fold mates of each image's best rotation, which no hypothesis covers
    if opts.mates && n > 0 {
        let axes = super::mates::near_twofold_axes(&t.decoder.symmetrized_volume()?, t.decoder.m)?;
        let twofolds = super::mates::twofolds(&axes);
        report.mates_moved = super::mates::try_mates(t, amps, &twofolds, &mut best, &mut best_e, opts)?;
        report.mates_tried = n;
    }
    // images still far above the typical loss: no hypothesis was near; search all of SO(3)
    let median = crate::stats::median(&mut best_e.iter().map(|&e| e as f64).collect::<Vec<_>>());
    let mut lost: Vec<usize> = (0..n)
        .filter(|&i| best_e[i] as f64 > opts.lost_factor * median)
        .collect();
    lost.sort_by(|&a, &b| best_e[b].total_cmp(&best_e[a]));
    lost.truncate(((n as f64 * opts.search_fraction).ceil() as usize).max(1));
    lost.sort_unstable();
    let lost = &lost[..];
    if !lost.is_empty() && opts.search_rotations > 0 {
        let (b2, be2) = search(t, &gather(amps, p, lost), opts)?;
        report.searched = lost.len();
        report.search_improved = keep_lower(&mut best, &mut best_e, lost, &b2, &be2).0;
    }
    Ok((best, report))
}

/// Replaces image `indices[k]`'s rotation and error by candidate k where the candidate's error
/// is lower; returns how many were replaced and how many of those moved by more than
/// [`DISTINCT_DEG`].
pub(super) fn keep_lower(
    best: &mut [Matrix3<f64>],
    best_e: &mut [f32],
    indices: &[usize],
    cand: &[Matrix3<f64>],
    cand_e: &[f32],
) -> (usize, usize) {
    let cos_limit = DISTINCT_DEG.to_radians().cos();
    let (mut replaced, mut moved) = (0, 0);
    for (k, &i) in indices.iter().enumerate() {
        if cand_e[k] < best_e[i] {
            replaced += 1;
            if cos_between(&best[i], &cand[k]) < cos_limit {
                moved += 1;
            }
            best[i] = cand[k];
            best_e[i] = cand_e[k];
        }
    }
    (replaced, moved)
}

/// What the first pose pass did beyond refining each image's best hypotheses.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct FirstPass {
    /// Images refined again from every hypothesis, and those that moved by more than
    /// [`DISTINCT_DEG`] to a lower loss.
    pub retried: usize,
    pub retry_moved: usize,
    /// Images searched for over SO(3), and those that found a lower loss.
    pub searched: usize,
    pub search_improved: usize,
    /// Images refined from their near-2-fold mates, and those that moved to one.
    pub mates_tried: usize,
    pub mates_moved: usize,
}

/// A global search for images `amps` whose hypotheses all missed: every rotation of a fixed
/// seeded uniform set of `opts.search_rotations` is scored against each image, the best
/// `opts.candidates` distinct ones are refined from a step the size of the set's spacing, and
/// the lowest final loss is returned with its rotation.
pub fn search(t: &Trainer, amps: &[f32], opts: &RefineOptions) -> Result<(Vec<Matrix3<f64>>, Vec<f32>)> {
    let p = t.geometry.pixels();
    let n = amps.len() / p;
    let q = opts.search_rotations.max(1);
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(SEARCH_SEED);
    let set: Vec<Matrix3<f64>> = (0..q)
        .map(|_| *crate::rotation::to_matrix(&crate::rotation::random_rotation(&mut rng)).matrix())
        .collect();
    let set_t = matrices_tensor(&set, &t.device)?;
    let c = opts.candidates.max(1);
    let mut starts_all = Vec::with_capacity(n * c);
    for img in amps.chunks_exact(p) {
        let (target, _) = t.targets(img)?;
        let mut errs = Vec::with_capacity(q);
        for (k, chunk) in set.chunks(ROTATIONS_PER_CHUNK).enumerate() {
            let r = set_t.narrow(0, k * ROTATIONS_PER_CHUNK, chunk.len())?;
            errs.extend(
                t.slice_errors(&r, &target, chunk.len())?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            );
        }
        starts_all.extend(starts(&set, &errs, q, c));
    }
    // the set's spacing: q rotations cover SO(3)'s volume π² (angle metric), one ball each
    let spacing_deg = (3.0 * std::f64::consts::PI / (4.0 * q as f64)).cbrt().to_degrees() * 2.0;
    let schedule = Schedule {
        lr_start_deg: spacing_deg / 2.0,
        ..opts.schedule()
    };
    let (r, e) = refine_rotations(t, amps, &starts_all, c, opts.pose_steps, schedule)?;
    Ok(best_of(&r, &e, c))
}

/// Seed of the global search's rotation set (fixed: the set is part of the method).
const SEARCH_SEED: u64 = 0x05ee_d503;

/// A later pose pass: each image's current rotation, refined with steps a quarter of the first
/// pass's size (it starts close).
pub fn refine_again(
    t: &Trainer,
    amps: &[f32],
    rots: &[Matrix3<f64>],
    opts: &RefineOptions,
) -> Result<Vec<Matrix3<f64>>> {
    let schedule = Schedule {
        lr_start_deg: opts.lr_start_deg / 4.0,
        ..opts.schedule()
    };
    Ok(refine_rotations(t, amps, rots, 1, opts.pose_steps, schedule)?.0)
}

/// `epochs` passes of Adam on the decoder's parameters over images `amps` with their poses
/// fixed (shuffled batches of a fixed seed); returns the last epoch's mean data term. A frozen
/// volume is left as it is.
pub fn refine_volume(t: &Trainer, amps: &[f32], rots: &[Matrix3<f64>], opts: &RefineOptions, seed: u64) -> Result<f64> {
    let p = t.geometry.pixels();
    let n = amps.len() / p;
    ensure!(rots.len() == n, "{} rotations for {n} images", rots.len());
    let vars: Vec<Var> = {
        let data = t.varmap.data().lock().unwrap();
        let mut names: Vec<&String> = data.keys().filter(|k| k.starts_with("decoder.")).collect();
        names.sort();
        names.into_iter().map(|k| data[k].clone()).collect()
    };
    if vars.is_empty() || opts.volume_epochs == 0 || n == 0 {
        return Ok(f64::NAN);
    }
    let mut adam = Adam::new(
        vec![ParamGroup {
            name: "volume".into(),
            vars,
            lr: opts.lr_volume,
        }],
        None,
        false,
    )?;
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..n).collect();
    let mut last = f64::NAN;
    for _ in 0..opts.volume_epochs {
        rand::seq::SliceRandom::shuffle(&mut order[..], &mut rng);
        let (mut sum, mut count) = (0f64, 0usize);
        for batch in order.chunks(opts.volume_batch.max(1)) {
            let img = gather(amps, p, batch);
            let r: Vec<Matrix3<f64>> = batch.iter().map(|&i| rots[i]).collect();
            let (target, _) = t.targets(&img)?;
            let loss = t
                .slice_errors(&matrices_tensor(&r, &t.device)?, &target, 1)?
                .mean_all()?;
            let v = loss.to_scalar::<f32>()? as f64;
            ensure!(v.is_finite(), "the volume refinement's loss became {v}");
            adam.step(&loss.backward()?)?;
            sum += v * batch.len() as f64;
            count += batch.len();
        }
        last = sum / count.max(1) as f64;
    }
    Ok(last)
}
