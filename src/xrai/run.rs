//! X-RAI as a method of the benchmark: `xrai-bench xrai`, reconstruction from the simulator's
//! stream or an on-disk dataset (`--data`).
//!
//! Outputs in `--out` (staged, moved into place when complete), beside the contract's
//! `output.json`, `amplitude.mrc` (the learned |F| resampled onto the evaluation grid — the
//! simulator's and EMC's — −1 beyond the working detector's s_max) and `poses_{train,test}.csv`:
//! `amplitude_voxels.mrc` (the decoder's own grid), `poses_{train,test}_true.csv` (w,x,y,z),
//! `curve.csv` (loss and test pose error against steps and seconds; the refinement stage's
//! passes as the last rows, at the last step, with its fit's loss), `summary.json`, and
//! `checkpoint/`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use candle_core::Device;

use super::config::{DataLoss, DecoderKind, PatternScale};
use super::geometry::{amplitudes, WorkingGeometry};
use super::init::{radial_volume, true_amplitude_volume, InputStats};
use super::options::{config, DeviceArg, Options};
use super::plan::{self, RefineCost, REFINE_SHARE};
use super::refine::{self, RefineOptions};
use super::train::{train_loop, LoopOptions};
use super::trainer::{CheckpointState, Trainer, VolumeInit};
use super::XraiConfig;
use crate::comm::Comm;
use crate::data::dataset::write_atomically;
use crate::data::{ImageSimulator, Opened, Rescale, Source, Split};
use crate::method::output::{
    self, BudgetRecord, MethodOutput, Objective, PoseCounts, PoseErrors, ProgressPoint, Software, Timings, VolumeGrid,
};
use crate::method::{command_of, options_of, Budget, Job, Method};
use crate::rotation::write_poses_csv;
use crate::volume::Volume;

/// The registry's X-RAI.
pub struct XraiMethod;
pub static XRAI: XraiMethod = XraiMethod;

impl Method for XraiMethod {
    fn id(&self) -> &'static str {
        "xrai"
    }
    fn label(&self) -> &'static str {
        "X-RAI"
    }
    fn command(&self) -> clap::Command {
        command_of::<Options>("xrai", "Reconstruct with X-RAI (amortized pose inference autoencoder)")
    }
    fn run(&self, matches: &clap::ArgMatches) -> Result<()> {
        run(options_of(matches)?)
    }
    fn job_args(&self, job: &Job) -> Vec<String> {
        let mut argv: Vec<String> = vec!["xrai".into()];
        argv.extend_from_slice(job.data_args);
        for (k, v) in [
            ("--n", job.n_train.to_string()),
            ("--test-images", job.n_test.to_string()),
            ("--init-seed", job.repeat.to_string()),
        ] {
            argv.extend([k.to_string(), v]);
        }
        argv.extend(["--budget".into(), job.budget.to_string()]);
        argv.extend_from_slice(job.extra);
        // an interrupted attempt leaves checkpoints in its staging directory: continue from them
        if let Some(ckpt) = interrupted_checkpoint(job.out) {
            eprintln!("  continuing X-RAI from {}", ckpt.display());
            argv.extend(["--resume".into(), ckpt.display().to_string()]);
        }
        argv.extend(["--out".into(), job.out.display().to_string()]);
        argv
    }
}

/// The newest `checkpoint/` inside an interrupted run's staging directory (`.NAME.partial-PID`).
fn interrupted_checkpoint(dir: &Path) -> Option<PathBuf> {
    let name = dir.file_name()?.to_str()?;
    let parent = dir.parent()?;
    let prefix = format!(".{name}.partial-");
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(parent)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)))
        .map(|e| e.path().join("checkpoint"))
        .filter(|c| c.join("state.json").is_file())
        .filter_map(|c| Some((c.join("state.json").metadata().ok()?.modified().ok()?, c)))
        .collect();
    found.sort();
    found.pop().map(|(_, c)| c)
}

/// The data, opened before anything is written: the simulator's stream (the molecule is loaded
/// first, so a bad --pdb fails at once) or files ([`crate::data::options::DataArgs`]).
enum Data {
    Simulated(Box<ImageSimulator>),
    Files(Box<Opened>),
}

pub fn run(mut args: Options) -> Result<()> {
    crate::xrai::configure_cpu();
    let comm = crate::comm::init()?;
    // checks before any work
    crate::data::dataset::check_output_dir(&args.out, args.force)?;
    let budget = Budget::parse(args.budget.as_deref())?;
    if args.physics.rescale_total.is_none() {
        args.physics.rescale_total = Some(20_000.0);
    }
    let opened = crate::data::open(&args.files, &args.physics)?;
    // the data model follows the data: photon counts, simulated or read, are scored as counts
    let counts = opened.as_ref().map_or(args.physics.counts(), |o| o.counts);
    let cfg = config(&args, counts)?;
    // photon counts leave a share of images at a near-2-fold mate (xrai::mates)
    args.refine_mates |= counts && !args.no_refine_mates;
    cfg.validate()?;
    let ranks = comm.size();
    ensure!(
        cfg.batch % ranks == 0 && cfg.batch / ranks >= 2,
        "--batch {} is the global batch: over {ranks} MPI ranks it must be a multiple of {ranks} with at least 2 \
         images per rank (batch norm needs two)",
        cfg.batch
    );
    let steps = match (args.steps, args.epochs, args.n) {
        (Some(s), _, _) => Some(s),
        (None, Some(e), Some(n)) => Some(
            e.checked_mul((n as usize).div_ceil(cfg.batch))
                .context("--epochs × --n is too large")?,
        ),
        (None, Some(_), None) => anyhow::bail!("--epochs needs --n (the training-set size)"),
        (None, None, _) => None,
    };
    ensure!(
        steps.is_some() || budget.limit_s().is_some(),
        "give --steps, --epochs (with --n) or --budget"
    );
    ensure!(args.n.is_none_or(|n| n >= 2), "--n must be at least 2");
    let device = match args.device {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Cuda => {
            Device::new_cuda(0).context("--device cuda: build with --features cuda on a machine with a GPU")?
        }
    };
    let data = match opened {
        Some(opened) => {
            if comm.is_root() && args.resume.is_none() {
                eprintln!(
                    "{}: {}",
                    args.files.data.as_deref().unwrap_or(Path::new("--data")).display(),
                    if counts {
                        "photon counts: the count defaults apply (Poisson loss, each pattern's scale fitted, \
                         global input scaling, near-2-fold mates; --loss, --pattern-scale, --standardize and \
                         --no-refine-mates override them)"
                    } else {
                        "not photon counts (fractional values): the defaults for expected photons apply \
                         (squared error; --loss poisson overrides it)"
                    }
                );
            }
            // the working geometry and the evaluation grid the run will use
            let geo = WorkingGeometry::from_detector(opened.train.full_detector(), cfg.working_size)?;
            crate::data::open::grid(opened.grid, &geo.binned, args.physics.grid).context("--grid")?;
            Data::Files(Box::new(opened))
        }
        None => Data::Simulated(Box::new(ImageSimulator::new(
            args.molecule.load()?,
            args.physics.config()?,
        )?)),
    };
    if !comm.is_root() {
        // The other ranks train alongside rank 0 and write nothing.
        train(&args, &cfg, steps, data, device, budget, comm.as_ref(), None)?;
        return Ok(());
    }
    // A run that stops on NaN/Inf or an error keeps its checkpoints in the staging directory.
    let done = write_atomically(&args.out, args.force, true, |staging| {
        train(&args, &cfg, steps, data, device, budget, comm.as_ref(), Some(staging))?
            .context("rank 0 writes the outputs")
    })?;
    let test_line = match done.pose_error.test {
        Some(e) => format!(
            "test pose error median {:.2}° (rms {:.2}°) on {} images, ",
            e.median_deg, e.rms_deg, e.images
        ),
        None if done.poses.test > 0 => format!("{} test poses (no true poses to score them), ", done.poses.test),
        None => "no test set, ".into(),
    };
    let train_line = done
        .pose_error
        .train
        .map_or(String::new(), |e| format!("train median {:.2}°; ", e.median_deg));
    eprintln!(
        "done in {:.0} s; {test_line}{train_line}results in {}",
        done.timings.wall_s,
        args.out.display()
    );
    Ok(())
}

/// Trains on every rank; rank 0 (`staging` given) evaluates and writes the outputs and returns
/// them, the other ranks return None after the last step.
#[allow(clippy::too_many_arguments)]
fn train(
    args: &Options,
    cfg: &XraiConfig,
    steps: Option<usize>,
    data: Data,
    device: Device,
    budget: Budget,
    comm: &dyn Comm,
    staging: Option<&Path>,
) -> Result<Option<MethodOutput>> {
    let root = staging.is_some();
    let (sim, opened) = match data {
        Data::Simulated(sim) => (Some(sim), None),
        Data::Files(opened) => (None, Some(*opened)),
    };
    let (train_source, test_source, sim_config, recorded_grid, record) = match (&sim, opened) {
        (Some(sim), _) => (
            Source::stream(sim, Split::Train, args.n),
            Some(Source::stream(sim, Split::Test, None)),
            Some(sim.config.clone()),
            Some((sim.grid.m, sim.grid.spacing)),
            serde_json::Value::Null,
        ),
        (None, Some(o)) => {
            let source = match args.n {
                Some(n) => o.train.take(n),
                None => o.train,
            };
            (source, o.test, o.config, o.grid, o.record)
        }
        (None, None) => unreachable!("data are simulated or read"),
    };
    let train_n = train_source.len();
    let geo = WorkingGeometry::from_detector(train_source.full_detector(), cfg.working_size)?;
    let (eval_m, eval_spacing) = crate::data::open::grid(recorded_grid, &geo.binned, args.physics.grid)?;
    if !record.is_null() && root {
        let used = geo
            .loss_mask
            .as_ref()
            .map_or(geo.pixels(), |m| m.iter().filter(|&&v| v > 0.0).count());
        eprintln!(
            "frames {}×{} binned {f}×{f} → {}×{}, placed with the beam at the centre of the {s}×{s} working image; \
             {used} of its {} pixels in the loss",
            geo.full_rows,
            geo.full_cols,
            geo.binned.rows,
            geo.binned.cols,
            geo.pixels(),
            f = geo.factor,
            s = geo.side,
        );
    }
    let rescale = sim_config.as_ref().map_or(Rescale::None, |c| c.rescale);
    let normalize_total = match rescale {
        Rescale::PerImage(t) => Some(t),
        _ => None,
    };
    let m = cfg.volume_size;
    let spacing = geo.volume_spacing(m);
    let stats_n = train_n.map_or(cfg.stats_images, |n| (n as usize).min(cfg.stats_images));
    let (stat_amps, stat_poses) = amplitudes(&train_source, &geo, 0, stats_n)?;
    let stats = match cfg.pattern_scale {
        PatternScale::Fixed => InputStats::from_amplitudes(&stat_amps, geo.pixels()),
        PatternScale::Fit => InputStats::from_normalized_amplitudes(&stat_amps, geo.pixels())?,
    };
    let trainer = if args.frozen_true_volume {
        let sim = sim
            .as_ref()
            .context("--frozen-true-volume needs simulated data (not --data)")?;
        let truth = true_amplitude_volume(sim, m, spacing);
        let t = Trainer::new(
            cfg.clone(),
            geo.clone(),
            Some(&stats),
            VolumeInit::Frozen(truth.clone()),
            normalize_total,
            device.clone(),
        )?;
        let k = t.fit_volume_scale(&stat_amps, &stat_poses)? as f32;
        Trainer::new(
            cfg.clone(),
            geo.clone(),
            Some(&stats),
            VolumeInit::Frozen(truth.iter().map(|v| v * k).collect()),
            normalize_total,
            device,
        )?
    } else if let Some(dir) = &args.resume {
        let mut t = Trainer::new(
            cfg.clone(),
            geo.clone(),
            None,
            VolumeInit::FromCheckpoint,
            normalize_total,
            device,
        )?;
        t.load_checkpoint(dir)?;
        t
    } else {
        let v0 = radial_volume(&geo, &stat_amps, m, spacing, cfg.init_noise, cfg.seed);
        Trainer::new(
            cfg.clone(),
            geo.clone(),
            Some(&stats),
            VolumeInit::Learned(v0),
            normalize_total,
            device,
        )?
    };
    // The data's known background enters the forward model (λ = φ·slice + b).
    let background = sim_config
        .as_ref()
        .map(|c| train_source.expected_background(&c.acquisition))
        .unwrap_or_default();
    let background_photons: f64 = background.iter().map(|&b| b as f64).sum();
    let mut trainer = if background.is_empty() {
        trainer
    } else {
        let mut placed = Vec::new();
        geo.intensities(&background, &mut placed);
        trainer.with_background(&placed)?
    };
    // A resumed run's earlier process counts against the budget too.
    let budget = match &args.resume {
        Some(dir) => budget.resumed(read_state(dir)?.elapsed_s),
        None => budget,
    };
    let world = comm.describe();
    if root {
        eprintln!(
        "X-RAI: {} heads, {}² working images, {} decoder (Δs {spacing:.5} Å⁻¹), {} loss, batch {}, {}; checkpoints in {}",
        cfg.heads,
        cfg.working_size,
        match cfg.decoder {
            DecoderKind::Voxel => format!("{m}³ voxel"),
            DecoderKind::FourierNet => format!("FourierNet ({}×{})", cfg.siren_layers, cfg.siren_width),
        },
        match (cfg.loss, cfg.pattern_scale) {
            (DataLoss::Mse, PatternScale::Fixed) => "squared-error",
            (DataLoss::Mse, PatternScale::Fit) => "squared-error (each pattern's scale fitted)",
            (DataLoss::Poisson, PatternScale::Fixed) => "Poisson",
            (DataLoss::Poisson, PatternScale::Fit) => "Poisson (each pattern's scale fitted)",
        },
        cfg.batch,
        match (train_n, &args.files.data) {
            (Some(n), Some(d)) => format!("{n} training images from {}", d.display()),
            (Some(n), None) => format!("{n} training images"),
            (None, _) => "fresh images every step".into(),
        },
        staging.map_or(PathBuf::new(), |s| s.join("checkpoint")).display()
    );
        if background_photons > 0.0 {
            eprintln!("background: {background_photons:.1} expected photons per image, in the forward model (λ = φ·slice² + b)");
        }
        if world.ranks > 1 {
            eprintln!(
                "MPI: {} ranks × {} threads, {} images per rank and step ({})",
                world.ranks,
                world.threads_per_rank,
                cfg.batch / world.ranks,
                world.library.as_deref().unwrap_or("")
            );
        }
    }
    // the rotations the true poses are known up to (the molecule's symmetry)
    let test_symmetry = test_source
        .as_ref()
        .map(|s| s.pose_symmetry().clone())
        .unwrap_or_default();
    let train_symmetry = train_source.pose_symmetry().clone();
    if root && train_symmetry.order() > 1 {
        eprintln!(
            "the molecule is {}-symmetric: its images fix a pose only up to its {} rotations, and pose errors are \
             taken modulo them",
            train_symmetry.name(),
            train_symmetry.order()
        );
    }
    let (test_amps, test_poses) = match &test_source {
        Some(src) => amplitudes(src, &geo, 0, args.test_images)?,
        None => (Vec::new(), Vec::new()),
    };
    let n_test = test_amps.len() / geo.pixels();
    let n_train_poses = train_n.map_or(args.train_pose_images, |n| (n as usize).min(args.train_pose_images));
    let asked = RefineOptions {
        pose_steps: args.refine_steps,
        candidates: args.refine_candidates,
        mates: args.refine_mates,
        ..RefineOptions::default()
    };
    // The refinement stage's plan: its first pass and one round are kept from the budget (at
    // most REFINE_SHARE of it; see `plan`), and the rounds, up to --refine-rounds, run while the
    // budget allows.
    let wanted = train_n.map_or(args.refine_images, |n| (n as usize).min(args.refine_images));
    let mut refine_plan = plan::RefinePlan::unplanned(asked, n_train_poses);
    if refine_plan.refining() && root {
        let cost = RefineCost::measure(&trainer, &test_amps, refine_plan.opts())?;
        let share = budget
            .limit_s()
            .map(|limit| REFINE_SHARE * (limit - budget.elapsed_s()).max(0.0));
        refine_plan = plan::plan(cost, wanted, n_train_poses, n_test, args.refine_rounds, share);
        let p = &refine_plan;
        if let Some(needed) = p.skipped_s {
            eprintln!(
                "refinement skipped: it would take about {needed:.0} s, more than {:.0} % of the budget; \
                 the encoder's poses are the result",
                REFINE_SHARE * 100.0
            );
        } else {
            if p.dropped_mates {
                eprintln!(
                    "refinement without the near-2-fold mates: with them even {n_train_poses} training images would \
                     take more than {:.0} % of the budget",
                    REFINE_SHARE * 100.0
                );
            }
            eprintln!(
                "refinement after training: {} training and {n_test} test images, about {:.0} s kept from \
                 the budget ({:.0} µs per rotation and descent step)",
                p.train_images,
                p.cost.reserve_s(p.train_images, n_test, args.refine_rounds),
                p.cost.step_s * 1e6
            );
        }
    }
    let refining = refine_plan.refining();
    let refine_opts = refine_plan.opts().clone();
    let plan::RefinePlan {
        train_images: n_closing_train,
        cost: refine_cost,
        ..
    } = refine_plan;
    let refine_s = refine_cost.reserve_s(n_closing_train, n_test, args.refine_rounds);
    let preparation_s = budget.elapsed_s();
    let mut curve_file: Box<dyn Write> = match staging {
        Some(dir) => Box::new(std::io::BufWriter::new(std::fs::File::create(dir.join("curve.csv"))?)),
        None => Box::new(std::io::sink()),
    };
    writeln!(
        curve_file,
        "step,elapsed_s,images,loss,data,uniformity,test_median_deg,test_mean_deg,test_rms_deg"
    )?;
    let opts = LoopOptions {
        steps,
        budget,
        closing_images: n_test + n_closing_train,
        closing_extra_s: refine_s,
        eval_every: if test_poses.is_empty() { 0 } else { args.eval_every },
        checkpoint_every: args.checkpoint_every,
        checkpoint_dir: staging.map(|s| s.join("checkpoint")),
        progress: root,
        rescale: Some(rescale),
    };
    let mut progress = Vec::new();
    let state = train_loop(
        &mut trainer,
        comm,
        &train_source,
        &opts,
        (&test_amps, &test_poses),
        test_symmetry.ops(),
        args.eval_images,
        &mut |r| {
            writeln!(
                curve_file,
                "{},{:.2},{},{:.6},{:.6},{:.6},{:.4},{:.4},{:.4}",
                r.step,
                r.elapsed_s,
                r.images,
                r.loss,
                r.data,
                r.uniformity,
                r.test_median_deg,
                r.test_mean_deg,
                r.test_rms_deg
            )?;
            curve_file.flush()?;
            progress.push(ProgressPoint {
                step: r.step as u64,
                elapsed_s: r.elapsed_s,
                objective: r.loss,
                test_median_deg: Some(r.test_median_deg),
                beta: None,
            });
            Ok(())
        },
    )?;
    drop(curve_file);
    let Some(staging) = staging else {
        return Ok(None);
    };
    let reconstruction_s = budget.elapsed_s() - preparation_s;
    let out_of_budget = steps.is_some_and(|s| state.step < s);
    // Closing work: the test set's poses (inferred, not trained) and the training poses, from
    // the encoder, then refined (poses, then volume and poses again, rounds as set).
    let t0 = std::time::Instant::now();
    let (train_amps, train_poses) = amplitudes(&train_source, &geo, 0, n_closing_train)?;
    let mut refine_record = Vec::new();
    let mut first_pass = serde_json::Value::Null;
    let (test_est, train_est) = if refining {
        let mut stage =
            |name: String, objective: f64, test_rots: &[nalgebra::Matrix3<f64>], progress: &mut Vec<ProgressPoint>| {
                let err = (!test_poses.is_empty())
                    .then(|| {
                        crate::eval::pose_error::pose_error(
                            &test_poses,
                            &crate::rotation::from_matrices(test_rots),
                            test_symmetry.ops(),
                        )
                    })
                    .transpose()?
                    .map(|e| e.summary);
                let elapsed = budget.elapsed_s();
                if let Some(e) = &err {
                    eprintln!(
                        "{name}: {:.0} s, test pose error median {:.2}°  rms {:.2}° ({} images)",
                        elapsed, e.median_deg, e.rms_deg, e.images
                    );
                    progress.push(ProgressPoint {
                        step: state.step as u64,
                        elapsed_s: elapsed,
                        objective,
                        test_median_deg: Some(e.median_deg),
                        beta: None,
                    });
                    // the learning curve goes on with the stage (the loss column: the stage's fit)
                    let mut curve = std::fs::OpenOptions::new()
                        .append(true)
                        .open(staging.join("curve.csv"))?;
                    writeln!(
                        curve,
                        "{},{elapsed:.2},{},{objective:.6},,,{:.4},{:.4},{:.4}",
                        state.step, state.images_seen, e.median_deg, e.mean_deg, e.rms_deg
                    )?;
                }
                refine_record.push(serde_json::json!({ "stage": name, "elapsed_s": elapsed, "test_pose_error": err }));
                anyhow::Ok(())
            };
        let (mut test_r, test_report) = refine::refine_from_encoder(&trainer, &test_amps, &refine_opts)?;
        let (mut train_r, train_report) = refine::refine_from_encoder(&trainer, &train_amps, &refine_opts)?;
        for (set, r) in [("test", &test_report), ("training", &train_report)] {
            eprintln!(
                "{set} poses: {} images retried from every hypothesis ({} moved); {} tried at their near-2-fold \
                 mates ({} moved); {} searched over SO(3) ({} improved)",
                r.retried, r.retry_moved, r.mates_tried, r.mates_moved, r.searched, r.search_improved
            );
        }
        first_pass = serde_json::json!({ "test": test_report, "training": train_report });
        let last_loss = progress.last().map_or(0.0, |p| p.objective);
        stage("poses refined".into(), last_loss, &test_r, &mut progress)?;
        for round in 1..=args.refine_rounds {
            let round_s = refine_cost.round_s(n_closing_train, n_test);
            if budget.remaining_s() < 1.2 * round_s + 4.0 {
                eprintln!(
                    "round {round} of {} skipped: {:.0} s left, a round takes about {round_s:.0} s",
                    args.refine_rounds,
                    budget.remaining_s()
                );
                break;
            }
            let fit = refine::refine_volume(&trainer, &train_amps, &train_r, &refine_opts, cfg.seed + round as u64)?;
            train_r = refine::refine_again(&trainer, &train_amps, &train_r, &refine_opts)?;
            test_r = refine::refine_again(&trainer, &test_amps, &test_r, &refine_opts)?;
            // a frozen volume is not fitted: the curve keeps the last loss (JSON has no NaN)
            let objective = if fit.is_finite() { fit } else { last_loss };
            stage(
                format!("round {round} (volume loss {fit:.5})"),
                objective,
                &test_r,
                &mut progress,
            )?;
        }
        train_r.truncate(n_train_poses);
        (
            crate::rotation::from_matrices(&test_r),
            crate::rotation::from_matrices(&train_r),
        )
    } else {
        let test = if n_test > 0 {
            trainer.predict(&test_amps)?
        } else {
            Vec::new()
        };
        // without refinement the training images read are exactly those whose poses are written
        (test, trainer.predict(&train_amps)?)
    };
    let test_s = t0.elapsed().as_secs_f64();
    write_poses_csv(&staging.join(output::TEST_POSES_FILE), &test_est)?;
    let test_err = if test_poses.is_empty() {
        None
    } else {
        write_poses_csv(&staging.join("poses_test_true.csv"), &test_poses)?;
        Some(crate::eval::pose_error::pose_error(&test_poses, &test_est, test_symmetry.ops())?.summary)
    };
    write_poses_csv(&staging.join(output::TRAIN_POSES_FILE), &train_est)?;
    let train_poses = &train_poses[..train_poses.len().min(n_train_poses)];
    let train_err = if train_poses.is_empty() {
        None
    } else {
        write_poses_csv(&staging.join("poses_train_true.csv"), train_poses)?;
        Some(crate::eval::pose_error::pose_error(train_poses, &train_est, train_symmetry.ops())?.summary)
    };
    // The learned grid as it is, and resampled onto the evaluation grid (the simulator's, the
    // one EMC uses) for `phase` and `fsc`; beyond the working detector's s_max: −1.
    let vol = Volume {
        m,
        spacing,
        data: trainer.decoder.symmetrized_volume()?,
    };
    crate::mrc::write_mrc(staging.join("amplitude_voxels.mrc"), &vol, true)?;
    let on_eval_grid = vol.resampled(eval_m, eval_spacing, geo.s_max, -1.0);
    crate::mrc::write_mrc(staging.join(output::AMPLITUDE_FILE), &on_eval_grid, true)?;
    let training_s = state.elapsed_s - preparation_s;
    let summary = serde_json::json!({
        "software": Software::this(),
        "command": std::env::args().collect::<Vec<_>>(),
        "data": record,
        "steps": state.step,
        "elapsed_s": state.elapsed_s,
        "images_seen": state.images_seen,
        "train_images": train_n,
        "seconds_per_step": training_s / state.step.max(1) as f64,
        "config": cfg,
        "simulation": sim_config,
        "test_pose_error": test_err,
        "train_pose_error": train_err,
        "refinement": { "options": refine_opts, "rounds": args.refine_rounds, "images": n_closing_train, "first_pass": first_pass, "stages": refine_record },
        "volume": { "m": m, "spacing_inv_angstrom": spacing },
        "evaluation_grid": { "m": eval_m, "spacing_inv_angstrom": eval_spacing },
    });
    std::fs::write(staging.join("summary.json"), serde_json::to_string_pretty(&summary)?)?;
    let out = MethodOutput {
        method: "xrai".into(),
        software: Software::this(),
        amplitude: VolumeGrid {
            m: eval_m,
            spacing_per_angstrom: eval_spacing,
        },
        poses: PoseCounts {
            train: train_est.len(),
            test: test_est.len(),
        },
        pose_error: PoseErrors {
            train: train_err,
            test: test_err,
        },
        timings: Timings {
            wall_s: budget.elapsed_s(),
            preparation_s,
            reconstruction_s,
            test_s,
        },
        budget: BudgetRecord {
            budget_s: budget.limit_s(),
            out_of_budget,
        },
        peak_memory_mib: output::own_peak_memory_mib(),
        images_per_s: state.images_seen as f64 / training_s.max(1e-9),
        objective: Objective::Loss,
        progress,
        params: serde_json::json!({
            "budget": args.budget, "steps": state.step, "heads": cfg.heads, "decoder": cfg.decoder,
            "working_size": cfg.working_size, "batch": cfg.batch,
            "ranks": world.ranks, "threads_per_rank": world.threads_per_rank,
            "pose_symmetry": train_symmetry.name(),
        }),
        projected_wall_s: None,
        world,
    };
    out.write(staging)?;
    Ok(Some(out))
}

fn read_state(dir: &Path) -> Result<CheckpointState> {
    let path = dir.join("state.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("--resume: cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("--resume: {} is not a checkpoint state", path.display()))
}
