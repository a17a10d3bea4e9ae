//! The training loop: batches from a [`Source`], steps until the step count or the budget,
//! periodic test pose error (the learning curve) and checkpoints.
//!
//! Data-parallel over MPI: the global batch of step t is images t·B … t·B + B − 1 whatever
//! the rank count, rank r of K takes its r-th contiguous share of them, and the ranks' mean
//! gradient makes one update ([`Trainer::train_step_shared`]); every decision to stop is taken
//! by all ranks together, and rank 0 alone evaluates, checkpoints and prints.

use nalgebra::UnitQuaternion;
use serde::Serialize;

use super::geometry::amplitudes;
use super::trainer::{CheckpointState, StepStats, Trainer};
use crate::comm::{share, Comm};
use crate::data::{Rescale, Source};
use crate::method::Budget;

/// How long and how a run trains.
#[derive(Clone, Debug)]
pub struct LoopOptions {
    pub steps: Option<usize>,
    /// The method's budget (counted from its process start, [`crate::method::budget`]).
    pub budget: Budget,
    /// Images the closing work predicts after training (test set and training poses): their
    /// measured cost is kept from the budget, so the run ends inside it.
    pub closing_images: usize,
    /// Seconds of closing work beyond reading and predicting those images (the refinement
    /// stage's estimate), kept from the budget too.
    pub closing_extra_s: f64,
    /// Test pose error every this many steps (0: only at the end).
    pub eval_every: usize,
    pub checkpoint_every: usize,
    pub checkpoint_dir: Option<std::path::PathBuf>,
    pub progress: bool,
    /// The data's rescaling (recorded in checkpoints).
    pub rescale: Option<Rescale>,
}

/// One line of the learning curve.
#[derive(Clone, Debug, Serialize)]
pub struct CurveRow {
    pub step: usize,
    pub elapsed_s: f64,
    pub images: u64,
    pub loss: f64,
    pub data: f64,
    pub uniformity: f64,
    pub test_median_deg: f64,
    pub test_mean_deg: f64,
    pub test_rms_deg: f64,
}

/// Trains until `steps` or the budget (less the closing work's reserve); evaluates every
/// `eval_every` steps on `eval_images` test images (rows go to `curve`), checkpoints every
/// `checkpoint_every`. The batches are images step·B … of `source` (modulo its length for a
/// fixed training set, fresh images every step for an endless stream). A non-finite loss stops
/// the run with an error that names the last good checkpoint. `symmetry`: the rotations the
/// test poses are known up to (the molecule's, [`Source::pose_symmetry`]).
pub fn train_loop(
    t: &mut Trainer,
    comm: &dyn Comm,
    source: &Source,
    opts: &LoopOptions,
    test: (&[f32], &[UnitQuaternion<f64>]),
    symmetry: &[UnitQuaternion<f64>],
    eval_images: usize,
    curve: &mut dyn FnMut(&CurveRow) -> anyhow::Result<()>,
) -> anyhow::Result<CheckpointState> {
    let budget = opts.budget;
    // Seconds per image of reading + binning and of prediction, measured as the loop runs.
    let mut read_s_per_image = 0.0f64;
    let mut predict_s_per_image = 0.0f64;
    // Prediction and reading scale with the images; the two pose-error alignments and the
    // volume outputs are a few seconds whatever the count.
    let reserve =
        |read: f64, predict: f64| 1.2 * (opts.closing_images as f64 * (read + predict) + opts.closing_extra_s) + 4.0;
    // The closing work's prediction cost, measured before the first step (the periodic
    // evaluations refine it; a budget too short for the first one must not go unreserved).
    if opts.closing_images > 0 && !test.1.is_empty() && budget.limit_s().is_some() {
        let n = test.1.len().min(256);
        let t0 = std::time::Instant::now();
        t.predict(&test.0[..n * t.geometry.pixels()])?;
        predict_s_per_image = t0.elapsed().as_secs_f64() / n as f64;
    }
    let b = t.cfg.batch;
    let p = t.geometry.pixels();
    let bar = if opts.progress {
        let pb = match opts.steps {
            Some(n) => indicatif::ProgressBar::new(n as u64),
            None => indicatif::ProgressBar::new_spinner(),
        };
        pb.set_style(
            indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} steps {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb.set_position(t.step as u64);
        pb
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut ema: Option<f64> = None;
    let mut last: StepStats;
    let mut last_ckpt: Option<usize> = None;
    let mut rate_t = std::time::Instant::now();
    let mut rate_steps = 0usize;
    let state = |t: &Trainer, secs: f64| CheckpointState {
        step: t.step,
        elapsed_s: secs,
        images_seen: (t.step * b) as u64,
        rescale: opts.rescale,
        normalize_total: t.decoder.normalize_total,
    };
    let root = comm.is_root();
    // this rank's share of each global batch
    let mine = share(b, comm.rank(), comm.size());
    loop {
        let out_of_time = budget.exhausted(reserve(read_s_per_image, predict_s_per_image));
        if opts.steps.is_some_and(|n| t.step >= n) || comm.any(out_of_time) {
            break;
        }
        // the next batch: image indices step·B … (mod N for a fixed training set); this
        // rank's share of it
        let first = (t.step * b + mine.start) as u64;
        let from = source.len().map_or(first, |n| first % n);
        let read_start = std::time::Instant::now();
        let (amps, _) = amplitudes(source, &t.geometry, from, mine.len())?;
        let per_image = read_start.elapsed().as_secs_f64() / (amps.len() / p).max(1) as f64;
        read_s_per_image = if read_s_per_image == 0.0 {
            per_image
        } else {
            0.9 * read_s_per_image + 0.1 * per_image
        };
        if comm.any(amps.len() / p < 2) {
            t.step += 1; // a one-image tail of an epoch: batch norm needs two
            continue;
        }
        match t.train_step_shared(&amps, comm) {
            Ok(s) => last = s,
            Err(e) => {
                bar.abandon();
                let kept = match (&opts.checkpoint_dir, last_ckpt) {
                    (Some(d), Some(s)) => format!("the last good checkpoint (step {s}) is in {}", d.display()),
                    _ => "no checkpoint had been written yet".to_string(),
                };
                anyhow::bail!("{e:#}: training stopped; {kept}. Lower --lr-volume/--lr-encoder or pass --clip 1");
            }
        }
        rate_steps += 1;
        ema = Some(match ema {
            None => last.loss,
            Some(e) => 0.98 * e + 0.02 * last.loss,
        });
        if rate_steps >= 20 {
            let ips = (rate_steps * b) as f64 / rate_t.elapsed().as_secs_f64();
            bar.set_message(format!("loss {:.4}  {ips:.0} images/s", ema.unwrap()));
            rate_t = std::time::Instant::now();
            rate_steps = 0;
        }
        bar.set_position(t.step as u64);
        if root && opts.eval_every > 0 && t.step % opts.eval_every == 0 {
            let eval_start = std::time::Instant::now();
            let n_eval = eval_images.min(test.1.len());
            let est = t.predict(&test.0[..n_eval * p])?;
            predict_s_per_image = eval_start.elapsed().as_secs_f64() / n_eval.max(1) as f64;
            let e = crate::eval::pose_error::pose_error(&test.1[..n_eval], &est, symmetry)?.summary;
            let row = CurveRow {
                step: t.step,
                elapsed_s: budget.elapsed_s(),
                images: (t.step * b) as u64,
                loss: ema.unwrap_or(f64::NAN),
                data: last.data,
                uniformity: last.uniformity,
                test_median_deg: e.median_deg,
                test_mean_deg: e.mean_deg,
                test_rms_deg: e.rms_deg,
            };
            let line = format!(
                "step {:>6}  {:>7.0} s  loss {:.4}  test pose error median {:.2}°  rms {:.2}° ({} images)",
                row.step, row.elapsed_s, row.loss, row.test_median_deg, row.test_rms_deg, e.images
            );
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
            curve(&row)?;
        }
        if let Some(dir) = opts.checkpoint_dir.as_ref().filter(|_| root) {
            if opts.checkpoint_every > 0 && t.step % opts.checkpoint_every == 0 {
                t.save_checkpoint(dir, &state(t, budget.elapsed_s()))?;
                last_ckpt = Some(t.step);
            }
        }
    }
    bar.finish_and_clear();
    let st = state(t, budget.elapsed_s());
    if let Some(dir) = opts.checkpoint_dir.as_ref().filter(|_| root) {
        t.save_checkpoint(dir, &st)?;
    }
    Ok(st)
}
