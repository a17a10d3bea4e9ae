//! EMC as a method of the benchmark: `xrai-bench emc`, reconstruction from simulated frames or
//! an on-disk dataset, with a Dragonfly-style per-iteration log.
//!
//! Outputs in `--out` (staged, moved into place when complete), beside the contract's
//! `output.json`, `amplitude.mrc` (√intensity, −1 where no data fell) and `poses_{train,test}.csv`
//! (the most likely grid rotation of each frame): `model.mrc` (the intensity, voxel size Δs in
//! Å⁻¹, −1 where no data fell), `log.csv` (one row per iteration: seconds, log-likelihood, RMS
//! change, mutual information, mean most-likely probability, β — the columns Dragonfly prints)
//! and `meta.json` (settings, timings, pose errors when the truth is known).
//!
//! The budget ([`crate::method::budget`]) covers simulating or reading the frames, the
//! iterations and the test frames' assignment; iterations stop early enough to leave the
//! assignment its measured time, and a pass stops mid-way (between reads of frames and blocks
//! of rotations) when the budget ends inside it. A run the budget stopped reports its measured
//! seconds per frame and iteration (the completed iterations and the stopped pass's completed
//! chunks) and the projected wall time of the planned run: that × N × the iterations
//! requested, plus preparation and test assignment (`projected_wall_s`).
//!
//! Under an MPI launcher (`mpirun -np K xrai-bench emc …`, built with `--features mpi`) the K
//! ranks share the frames ([`Emc::with_comm`]); rank 0 alone prints, logs and writes the
//! outputs, which are those of a one-process run up to the order of floating-point sums.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use nalgebra::UnitQuaternion;
use serde_json::json;

use super::{Assignment, Emc, EmcParams, IterationStats, LikelihoodPath, MergeRule, OrientationGrid, PartialPass};
use crate::data::dataset::write_atomically;
use crate::data::options::{DataArgs, MoleculeArgs, PhysicsArgs};
use crate::data::{ImageSimulator, SimulationConfig, Source, Split};
use crate::eval::pose_error::{pose_error, PoseErrorSummary};
use crate::method::output::{
    self, BudgetRecord, MethodOutput, Objective, PoseCounts, PoseErrors, ProgressPoint, Software, Timings, VolumeGrid,
};
use crate::method::{command_of, options_of, Budget, Job, Method};
use crate::mrc::write_mrc;
use crate::physics::detector::PixelMask;
use crate::rotation::write_poses_csv;
use crate::volume::IntensityVolume;

/// The registry's EMC.
pub struct EmcMethod;
pub static EMC: EmcMethod = EmcMethod;

impl Method for EmcMethod {
    fn id(&self) -> &'static str {
        "emc"
    }
    fn label(&self) -> &'static str {
        "EMC"
    }
    fn command(&self) -> clap::Command {
        command_of::<Options>(
            "emc",
            "Reconstruct with EMC (expand–maximize–compress, exhaustive orientation search)",
        )
    }
    fn run(&self, matches: &clap::ArgMatches) -> Result<()> {
        run(options_of(matches)?)
    }
    fn job_args(&self, job: &Job) -> Vec<String> {
        let mut argv: Vec<String> = vec!["emc".into()];
        argv.extend_from_slice(job.data_args);
        let model_seed = job.seed + 1 + job.repeat as u64;
        for (k, v) in [
            ("--n", job.n_train.to_string()),
            ("--n-test", job.n_test.to_string()),
            ("--model-seed", model_seed.to_string()),
        ] {
            argv.extend([k.to_string(), v]);
        }
        argv.extend(["--budget".into(), job.budget.to_string()]);
        argv.extend_from_slice(job.extra);
        argv.extend(["--out".into(), job.out.display().to_string()]);
        argv
    }
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example: EMC on 5000 simulated frames, binned to 64², with the true maps for `fsc`:\n  \
    xrai-bench emc --n 5000 --rescale-total 20000 --bin 2 --budget 60m --save-truth --out runs/emc5k"
)]
pub struct Options {
    #[command(flatten)]
    pub molecule: MoleculeArgs,
    #[command(flatten)]
    pub physics: PhysicsArgs,
    /// Training frames to simulate (ignored with --data).
    #[arg(long, short = 'n')]
    pub n: Option<u64>,
    /// Held-out test frames (simulated from the test stream; with --data see --test-data).
    #[arg(long, default_value_t = 1000)]
    pub n_test: u64,
    #[command(flatten)]
    pub files: DataArgs,
    /// Orientation grid: 600-cell refinement level n, 10(5n³+n) rotations.
    #[arg(long, default_value_t = 6)]
    pub level: usize,
    /// Sum b × b pixel blocks (e.g. 4: 128² → 32²).
    #[arg(long, default_value_t = 1)]
    pub bin: usize,
    /// Iterations.
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Wall-clock budget from this process's start (e.g. 90s, 60m, 24h, 1h30m): reading the
    /// frames, the iterations and the test assignment; the run stops cleanly when it is spent.
    #[arg(long)]
    pub budget: Option<String>,
    /// Deterministic-annealing β of the first iteration. From a random start β = 1 locks onto a
    /// wrong structure (measured: 53° test error on Poisson data, 80° on a small noise-free
    /// run started at 0.01); the default schedule, 0.001 doubling every iteration up to 1
    /// (reached at iteration 11), recovers 2CEX_A on noise-free and Poisson data.
    #[arg(long, default_value_t = 0.001)]
    pub beta: f64,
    /// Multiply β by this every --beta-period iterations (Dragonfly's beta_jump).
    #[arg(long, default_value_t = 2.0)]
    pub beta_jump: f64,
    /// Iterations between β increases (1: every iteration; Dragonfly's beta_period); each
    /// multiplies β by --beta-jump, up to --beta-max.
    #[arg(long, default_value_t = 1)]
    pub beta_period: usize,
    /// Largest β the schedule reaches.
    #[arg(long, default_value_t = 1.0)]
    pub beta_max: f64,
    /// Fit a scale factor φ_i per frame (Dragonfly's need_scaling): for frames whose pulse
    /// fluence or place in the focus varies, and per-image rescaled frames. The default for photon
    /// counts read from a file (`--data`) unless its simulation record (meta.json) says every
    /// pattern has the same scale, as X-RAI fits each pattern's scale on counts.
    #[arg(long, conflicts_with = "no_scale")]
    pub scale: bool,
    /// One scale for every frame, also for a file's photon counts.
    #[arg(long)]
    pub no_scale: bool,
    /// Compress rule: average (interpolation-weighted mean of the maximised slices, the classic
    /// compress) or em (exact EM step for the trilinear model: the likelihood never falls, but
    /// it is slow to leave a random start — use it to refine).
    #[arg(long, value_enum, default_value_t = MergeRule::Average)]
    pub merge: MergeRule,
    /// Resolution cut-off: leave pixels with |s| above this (Å⁻¹) out of the likelihood.
    #[arg(long)]
    pub max_s: Option<f64>,
    /// Likelihood path: dense GEMM, sparse photons, or picked by the data's density.
    #[arg(long, value_enum, default_value_t = LikelihoodPath::Auto)]
    pub path: LikelihoodPath,
    /// Seed of the random starting model.
    #[arg(long, default_value_t = 1)]
    pub model_seed: u64,
    /// Memory for one chunk's whole working set, MiB: its frames, their candidate lists and
    /// posteriors, and the E-step's and merge's scratch. Peak memory is about this plus the
    /// simulator, the model and a few bytes per frame, whatever N is.
    #[arg(long, default_value_t = 512)]
    pub chunk_mb: usize,
    /// Training frames whose most likely poses are written and scored (the first ones), as
    /// X-RAI's --train-pose-images.
    #[arg(long, default_value_t = 10_000)]
    pub train_pose_images: usize,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an output directory written earlier by xrai-bench (one holding its meta.json);
    /// any other non-empty directory is refused.
    #[arg(long)]
    pub force: bool,
    /// Also write the true intensity and density (truth_intensity.mrc, truth_density.mrc;
    /// simulated data only) for `xrai-bench fsc`.
    #[arg(long)]
    pub save_truth: bool,
}

pub fn run(args: Options) -> Result<()> {
    let comm = crate::comm::init()?;
    crate::data::dataset::check_output_dir(&args.out, args.force)?;
    let budget = Budget::parse(args.budget.as_deref())?;
    ensure!(args.iters >= 1, "--iters must be at least 1");
    let opened = crate::data::open(&args.files, &args.physics)?;
    ensure!(
        opened.is_some() || args.n.is_some(),
        "give --n N (frames to simulate) or --data PATH"
    );
    ensure!(args.chunk_mb >= 1, "--chunk-mb must be at least 1");
    let chunk_bytes = args.chunk_mb.checked_mul(1 << 20).context("--chunk-mb is too large")?;
    let grid = OrientationGrid::new(args.level)?;
    // Everything is checked before the output directory is touched: the data, the binned
    // detector, the model grid and the chunk plan.
    let simulator = match &opened {
        Some(_) => None,
        None => Some(ImageSimulator::new(args.molecule.load()?, args.physics.config()?)?),
    };
    // a file's counts: each pulse its own unless the simulation record says otherwise
    let file_scale_varies = opened
        .as_ref()
        .is_some_and(|o| o.counts && o.config.as_ref().is_none_or(|c| c.acquisition.varies()));
    let scale = args.scale || (!args.no_scale && file_scale_varies);
    if scale && !args.scale && comm.is_root() {
        eprintln!(
            "EMC: the frames are photon counts with no record of a constant pulse fluence: fitting each frame's \
             scale (--no-scale: one scale for all)"
        );
    }
    let (train, test, config, record, recorded_grid) = match (&simulator, opened) {
        (Some(sim), _) => (
            Source::stream(sim, Split::Train, Some(args.n.unwrap_or(0))),
            (args.n_test > 0).then(|| Source::stream(sim, Split::Test, Some(args.n_test))),
            Some(sim.config.clone()),
            serde_json::Value::Null,
            Some((sim.grid.m, sim.grid.spacing)),
        ),
        (None, Some(o)) => (o.train, o.test, o.config, o.record, o.grid),
        (None, None) => unreachable!("data are simulated or read"),
    };
    let train = train.binned(args.bin).context("--bin")?;
    let test = test.map(|t| t.binned(args.bin)).transpose().context("--bin")?;
    ensure!(!train.is_empty(), "--n must be at least 1");
    let detector = train.detector().clone();
    let (m, spacing) = crate::data::open::grid(recorded_grid, &detector, args.physics.grid).context("--grid")?;
    let beam = train.beam().clone();
    let params = EmcParams {
        beta: args.beta,
        scale,
        merge: args.merge,
        path: args.path,
        chunk_bytes,
        max_s: args.max_s,
        merge_only: (0..detector.len())
            .filter(|&p| detector.mask[p] == PixelMask::MergeOnly)
            .map(|p| p as u32)
            .collect(),
        background: config
            .as_ref()
            .map(|c| train.expected_background(&c.acquisition))
            .unwrap_or_default(),
        ..EmcParams::default()
    };
    let emc = Emc::new(grid, detector.s.clone(), &detector.scale(&beam), m, spacing, params)?.with_comm(comm.clone());
    // The chunk budget must hold the fixed scratch and some frames: dense frames (the sparse
    // path, picked below 7 % non-zero pixels, holds less), or sparse ones at full density when
    // forced (the density is not known before the frames are read).
    emc.chunk_plan(args.path == LikelihoodPath::Sparse, super::engine::full_pixels(&train))?;
    let problem = Problem {
        config,
        record,
        simulator: simulator.as_ref(),
        train,
        test,
        m,
        spacing,
    };
    if !comm.is_root() {
        // The other ranks take part in every collective and write nothing.
        return reconstruct(&args, None, emc, problem, budget);
    }
    write_atomically(&args.out, args.force, false, |staging| {
        reconstruct(&args, Some(staging), emc, problem, budget)
    })?;
    eprintln!("results in {}", args.out.display());
    Ok(())
}

/// The opened data and the model grid, ready to reconstruct.
struct Problem<'a> {
    /// The simulation settings (simulated data or a `simulate` directory).
    config: Option<SimulationConfig>,
    /// What was read, for meta.json (Null when simulated).
    record: serde_json::Value,
    simulator: Option<&'a ImageSimulator>,
    train: Source<'a>,
    test: Option<Source<'a>>,
    m: usize,
    spacing: f64,
}

/// The iterations and the test assignment on every rank; `out` (rank 0's staging directory)
/// receives the outputs, None on the other ranks.
fn reconstruct(args: &Options, out: Option<&Path>, mut emc: Emc, problem: Problem, budget: Budget) -> Result<()> {
    let root = out.is_some();
    let world = emc.comm.describe();
    let Problem {
        config,
        record,
        simulator,
        train,
        test,
        m,
        spacing,
    } = problem;
    let detector = train.detector().clone();
    let grid = &emc.grid;
    let spacing_deg = grid.mean_spacing_deg();
    let n_rot = grid.len();
    emc.random_start(args.model_seed);
    let n = train.count()?;
    let n_test = test.as_ref().map_or(Ok(0), |t| t.count())?;
    let note = |line: String| {
        if root {
            eprintln!("{line}")
        }
    };
    note(format!(
        "EMC: {n} frames of {rows}×{cols} pixels ({pl} in the likelihood), grid {m}³ (Δs = {spacing:.5} Å⁻¹), \
         level {level}: {n_rot} rotations, mean spacing {spacing_deg:.2}°",
        rows = detector.rows,
        cols = detector.cols,
        pl = emc.likelihood_pixels(),
        level = args.level,
    ));
    if emc.background_photons() > 0.0 {
        note(format!(
            "background: {:.1} expected photons per frame in the likelihood pixels, in the model as φ(W + b)",
            emc.background_photons()
        ));
    }
    if world.ranks > 1 {
        note(format!(
            "MPI: {} ranks × {} threads, about {} frames each ({})",
            world.ranks,
            world.threads_per_rank,
            n.div_ceil(world.ranks),
            world.library.as_deref().unwrap_or("")
        ));
    }
    let prep = Instant::now();
    let reading = bar_on(root, n as u64).with_style(
        indicatif::ProgressStyle::with_template("reading frames {bar:30} {pos}/{len}  {per_sec}  ETA {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let prepared = emc.prepare_until(&train, budget.deadline(0.0), &|done| reading.set_position(done as u64))?;
    reading.finish_and_clear();
    let preparation_s = budget.elapsed_s();
    let density = emc.density().unwrap_or(1.0);
    // The chunking of the likelihood path the data's density picked.
    let plan = emc.chunk_plan(prepared && emc.sparse(), super::engine::full_pixels(&train))?;
    note(format!(
        "memory: --chunk-mb {} holds {} frames per chunk ({:.1} KiB each with their candidate lists and merge share, \
         {:.0} MiB fixed scratch)",
        args.chunk_mb,
        plan.frames.min(n),
        plan.bytes_per_frame as f64 / 1024.0,
        plan.fixed_bytes as f64 / 1048576.0
    ));
    if prepared {
        note(format!(
            "data: {:.2} % non-zero pixels → {} likelihood ({:.1} s)",
            100.0 * density,
            if emc.sparse() { "sparse-photon" } else { "dense GEMM" },
            prep.elapsed().as_secs_f64()
        ));
    } else {
        note(format!(
            "out of budget while reading the frames ({:.1} s)",
            prep.elapsed().as_secs_f64()
        ));
    }

    let bar = bar_on(root, (args.iters * n) as u64).with_style(
        indicatif::ProgressStyle::with_template("iter {msg} {bar:30} {pos}/{len} frames  {per_sec}  ETA {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    say(
        root,
        &bar,
        format!(
            "{:>4} {:>9} {:>15} {:>11} {:>9} {:>9} {:>8}",
            "iter", "time(s)", "log-likelihood", "rms-change", "mutual-I", "mean-maxP", "beta"
        ),
    );
    let mut log_csv: Box<dyn Write> = match out {
        Some(dir) => Box::new(std::io::BufWriter::new(std::fs::File::create(dir.join("log.csv"))?)),
        None => Box::new(std::io::sink()),
    };
    writeln!(
        log_csv,
        "iteration,seconds,log_likelihood,rms_change,mutual_information,mean_max_probability,beta,path"
    )?;
    let mut history: Vec<IterationStats> = Vec::new();
    let mut progress_points = Vec::new();
    let mut out_of_budget = !prepared;
    let mut partial: Option<PartialPass> = None;
    let mut beta = args.beta;
    // Time kept for the test frames' assignment, which comes after the last iteration and
    // inside the budget: its cost measured on one chunk of test frames before the first
    // iteration, times the test chunks (so that a budget that allows a single iteration still
    // keeps it: at N = 50K, level 6, a 10-minute budget otherwise ran 54 s over; estimating it
    // from a whole iteration, E-step and merge, stopped the same run 64 s early, and from 256
    // test frames 42 s early).
    let reserve_s = match &test {
        Some(t) if prepared && n_test > 0 => {
            // One whole chunk: every chunk pays the model's expansion over all rotations
            // whatever its frame count, so a smaller probe overestimated the cost about 3×.
            let k = n_test.min(plan.frames.max(1));
            let t0 = Instant::now();
            emc.assign_frames(t, 0..k, args.beta)?;
            // (each rank assigns its share of the test frames)
            1.1 * t0.elapsed().as_secs_f64() * n_test.div_ceil(world.ranks).div_ceil(k) as f64 + 1.0
        }
        _ => 0.0,
    };
    for it in 0..if prepared { args.iters } else { 0 } {
        if it > 0 && it % args.beta_period.max(1) == 0 {
            beta = (beta * args.beta_jump).min(args.beta_max.max(args.beta));
        }
        bar.set_message(format!("{}/{}", it + 1, args.iters));
        let base = (it * n) as u64;
        // This rank's frames; the others advance alike.
        let progress = |done: usize| bar.set_position(base + (done * world.ranks).min(n) as u64);
        match emc.iterate(&train, beta, budget.deadline(reserve_s), &progress)? {
            Some(s) => {
                say(
                    root,
                    &bar,
                    format!(
                        "{:>4} {:>9.2} {:>15.6e} {:>11.4e} {:>9.4} {:>9.4} {:>8.4}",
                        s.iteration,
                        s.seconds,
                        s.log_likelihood,
                        s.rms_change,
                        s.mutual_information,
                        s.mean_max_probability,
                        s.beta
                    ),
                );
                writeln!(
                    log_csv,
                    "{},{:.4},{:.8e},{:.8e},{:.6},{:.6},{},{}",
                    s.iteration,
                    s.seconds,
                    s.log_likelihood,
                    s.rms_change,
                    s.mutual_information,
                    s.mean_max_probability,
                    s.beta,
                    if s.sparse { "sparse" } else { "dense" }
                )?;
                log_csv.flush()?;
                progress_points.push(ProgressPoint {
                    step: s.iteration as u64,
                    elapsed_s: budget.elapsed_s(),
                    objective: s.log_likelihood,
                    test_median_deg: None,
                    beta: Some(s.beta),
                });
                history.push(s);
            }
            None => {
                out_of_budget = true;
                partial = emc.stopped_pass();
                break;
            }
        }
    }
    bar.finish_and_clear();
    drop(log_csv);
    let reconstruction_s = budget.elapsed_s() - preparation_s;
    if out_of_budget && root {
        eprintln!(
            "out of budget: the --budget {} ran out after {} of {} iterations ({:.1} s elapsed), so the full run \
             takes longer than the budget; the partial iteration was discarded and the outputs are from iteration {}",
            args.budget.as_deref().unwrap_or("?"),
            history.len(),
            args.iters,
            budget.elapsed_s(),
            history.len()
        );
    }
    let total_iteration_s: f64 = history.iter().map(|s| s.seconds).fold(0.0, |a, b| a + b);
    let mean_iter = total_iteration_s / history.len().max(1) as f64;
    // Measured cost per frame and iteration: the completed iterations and the stopped pass's
    // completed chunks (NaN when not one chunk got through).
    let cost = IterationCost::measure(&history, partial, n);

    // The collective part of the closing work: every rank's training assignments and the test
    // frames' assignment, shared among the ranks.
    let train_poses: Vec<UnitQuaternion<f64>> = emc
        .train_assignments()
        .iter()
        .take(args.train_pose_images)
        .map(|&r| emc.quaternion(r))
        .collect();
    let t0 = Instant::now();
    let mut test_poses = Vec::new();
    if let Some(test) = &test {
        let assigned: Vec<Assignment> = emc.assign(test, beta)?;
        test_poses = assigned.iter().map(|a| emc.quaternion(a.rotation)).collect();
    }
    let test_s = t0.elapsed().as_secs_f64();
    let Some(out) = out else {
        return Ok(());
    };

    // Outputs: model, poses, held-out assignment. Voxels no slice reached (beyond the detector's
    // |s|, or before any iteration) are written as −1: negative means "not measured", which
    // `phase` treats as a free amplitude.
    let mut model = emc.model.clone();
    for (v, &seen) in model.data.iter_mut().zip(emc.measured()) {
        if !seen {
            *v = -1.0;
        }
    }
    write_mrc(out.join("model.mrc"), &model, false)?;
    let amplitude: IntensityVolume = model.map(|&v| if v < 0.0 { -1.0 } else { v.sqrt() });
    write_mrc(out.join(output::AMPLITUDE_FILE), &amplitude, false)?;
    write_poses_csv(&out.join(output::TRAIN_POSES_FILE), &train_poses)?;
    let train_error = known_error(&train, &train_poses)?;
    // What the planned run would take: preparation, the requested iterations at the measured
    // cost per frame, the test assignment (only when the budget stopped the run and the cost
    // was measured; the preparation must have finished to be known).
    let projected_wall_s = (out_of_budget && prepared)
        .then(|| cost.projected_wall_s(preparation_s, n, args.iters, test_s))
        .flatten();
    if let Some(p) = projected_wall_s {
        eprintln!(
            "projected: {:.1} s for the {} requested iterations ({:.3e} s per frame and iteration)",
            p, args.iters, cost.per_frame_iteration_s
        );
    }
    write_poses_csv(&out.join(output::TEST_POSES_FILE), &test_poses)?;
    let test_error = match &test {
        Some(t) => known_error(t, &test_poses)?,
        None => None,
    };
    if args.save_truth {
        if let Some(sim) = simulator {
            write_mrc(out.join("truth_intensity.mrc"), &sim.transform.intensity(), false)?;
            write_mrc(
                out.join("truth_density.mrc"),
                &crate::eval::density::density_from_transform(&sim.transform),
                false,
            )?;
        }
    }
    for (name, e) in [("train", &train_error), ("test", &test_error)] {
        if let Some(e) = e {
            eprintln!(
                "{name} pose error: median {:.2}°, mean {:.2}°, rms {:.2}° ({} frames; grid spacing {spacing_deg:.2}°, 1.5× = {:.2}°)",
                e.median_deg,
                e.mean_deg,
                e.rms_deg,
                e.images,
                1.5 * spacing_deg
            );
        }
    }
    eprintln!(
        "{} iterations, {mean_iter:.2} s per iteration on average, total {:.1} s",
        history.len(),
        budget.elapsed_s()
    );
    let meta = json!({
        "software": Software::this(),
        "command": std::env::args().collect::<Vec<_>>(),
        "data": record,
        "config": config,
        "frames": n,
        "bin": args.bin,
        "detector_frame": [detector.rows, detector.cols],
        "masked_pixels": detector.len() - detector.measured(),
        "likelihood_pixels": emc.likelihood_pixels(),
        "density": density,
        "path": if emc.sparse() { "sparse" } else { "dense" },
        "grid": {"m": m, "spacing_per_angstrom": spacing},
        "orientations": {"level": args.level, "rotations": n_rot, "mean_spacing_deg": spacing_deg},
        "params": emc.params,
        "world": world,
        "chunk_plan": plan,
        "partial_iteration": partial,
        "seconds_per_frame_iteration": cost.per_frame_iteration_s,
        "model_seed": args.model_seed,
        "iterations_completed": history.len(),
        "iterations_requested": args.iters,
        "out_of_budget": out_of_budget,
        "budget": args.budget,
        "log": history,
        "timings_seconds": {"total": budget.elapsed_s(), "mean_iteration": mean_iter, "test_assignment": test_s, "projected_total": projected_wall_s},
        "pose_error": {"train": train_error, "test": test_error},
        "conventions": {
            "poses": "most likely grid rotation; image i samples the model at R_i s_p; quaternions w,x,y,z, w >= 0",
            "model": "intensity on the centred m^3 reciprocal grid, voxel size = spacing in 1/Angstrom",
        },
    });
    std::fs::write(out.join("meta.json"), serde_json::to_string_pretty(&meta)? + "\n")?;
    MethodOutput {
        method: "emc".into(),
        software: Software::this(),
        amplitude: VolumeGrid {
            m,
            spacing_per_angstrom: spacing,
        },
        poses: PoseCounts {
            train: train_poses.len(),
            test: test_poses.len(),
        },
        pose_error: PoseErrors {
            train: train_error,
            test: test_error,
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
        images_per_s: cost.frames as f64 / budget.elapsed_s(),
        objective: Objective::LogLikelihood,
        progress: progress_points,
        params: json!({
            "budget": args.budget, "level": args.level, "bin": args.bin, "iterations": history.len(),
            "iterations_requested": args.iters, "seconds_per_iteration": mean_iter,
            "iteration_seconds_total": total_iteration_s,
            "iteration_seconds": history.iter().map(|s| s.seconds).collect::<Vec<f64>>(),
            "seconds_per_frame_iteration": cost.per_frame_iteration_s,
            "partial_iteration_frames": partial.map_or(0, |p| p.frames),
            "partial_iteration_s": partial.map_or(0.0, |p| p.seconds),
            "chunk_mb": args.chunk_mb, "chunk_frames": plan.frames.min(n),
            "train_pose_images": train_poses.len(),
            "pose_symmetry": train.pose_symmetry().name(),
        }),
        projected_wall_s,
        world,
    }
    .write(out)
}

/// A progress bar on rank 0, a hidden one elsewhere.
fn bar_on(root: bool, len: u64) -> indicatif::ProgressBar {
    if root {
        indicatif::ProgressBar::new(len)
    } else {
        indicatif::ProgressBar::hidden()
    }
}

/// Pose error against the source's true poses, where it has them.
fn known_error(source: &Source, estimated: &[UnitQuaternion<f64>]) -> Result<Option<PoseErrorSummary>> {
    match source.poses(0, estimated.len())? {
        Some(truth) if !estimated.is_empty() => Ok(Some(
            pose_error(&truth, estimated, source.pose_symmetry().ops())?.summary,
        )),
        _ => Ok(None),
    }
}

/// A log line above the progress bar (or plainly when the bar is hidden, e.g. not a terminal);
/// rank 0 alone speaks.
fn say(root: bool, bar: &indicatif::ProgressBar, line: String) {
    if !root {
        return;
    }
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// EMC's measured cost: frames processed (iterations × N, plus the frames of the stopped
/// pass's completed chunks) and the seconds they took.
struct IterationCost {
    frames: usize,
    seconds: f64,
    /// seconds / frames (NaN when nothing was measured).
    per_frame_iteration_s: f64,
}

impl IterationCost {
    fn measure(history: &[IterationStats], partial: Option<PartialPass>, n: usize) -> IterationCost {
        let partial = partial.unwrap_or_default();
        let frames = history.len() * n + partial.frames;
        let seconds = history.iter().map(|s| s.seconds).fold(partial.seconds, |a, b| a + b);
        let per_frame_iteration_s = if frames > 0 { seconds / frames as f64 } else { f64::NAN };
        IterationCost {
            frames,
            seconds,
            per_frame_iteration_s,
        }
    }

    /// Preparation + cost per frame × N × iterations + test assignment (None when unmeasured).
    fn projected_wall_s(&self, preparation_s: f64, n: usize, iterations: usize, test_s: f64) -> Option<f64> {
        let p = preparation_s + self.per_frame_iteration_s * n as f64 * iterations as f64 + test_s;
        (p.is_finite() && self.seconds > 0.0).then_some(p)
    }
}
