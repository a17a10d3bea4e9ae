//! `xrai-bench emc`: EMC reconstruction (exhaustive orientation search) from simulated frames or
//! an on-disk dataset, with a Dragonfly-style per-iteration log.
//!
//! Outputs in `--out` (written to a staging directory, moved into place when complete):
//! `model.mrc` (intensity, voxel size Δs in Å⁻¹, −1 where no data fell), `model_amplitude.mrc`
//! (√intensity, for `xrai-bench phase`), `train_poses.csv` and `test_poses.csv` (w,x,y,z, most likely grid
//! rotation), `log.csv` (one row per iteration) and `meta.json` (settings, timings, pose errors
//! when the truth is known).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use nalgebra::UnitQuaternion;
use serde_json::json;

use super::simulate::{MoleculeArgs, PhysicsArgs};
use crate::data::dataset::write_atomically;
use crate::data::{Dataset, ImageSimulator, SimulationConfig, Split};
use crate::emc::{
    binned_detector, Assignment, DatasetFrames, Emc, EmcParams, FrameSource, IterationStats,
    LikelihoodPath, MergeRule, OrientationGrid, SimulatedFrames,
};
use crate::eval::pose_error::pose_error;
use crate::mrc::write_mrc;
use crate::rotation::write_poses_csv;
use crate::volume::IntensityVolume;

#[derive(clap::Args, Debug)]
#[command(after_help = "Example: EMC on 5000 simulated frames, binned to 64², with the true maps for `fsc`:\n  \
    xrai-bench emc --n 5000 --rescale-total 20000 --bin 2 --budget 60m --save-truth --out runs/emc5k")]
pub struct Args {
    #[command(flatten)]
    pub molecule: MoleculeArgs,
    #[command(flatten)]
    pub physics: PhysicsArgs,
    /// Training frames to simulate (ignored with --data).
    #[arg(long, short = 'n')]
    pub n: Option<u64>,
    /// Held-out test frames (simulated from the test stream; ignored with --test-data).
    #[arg(long, default_value_t = 1000)]
    pub n_test: u64,
    /// Read training frames from a dataset written by `xrai-bench simulate` instead.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Held-out test dataset (with --data); none by default.
    #[arg(long)]
    pub test_data: Option<PathBuf>,
    /// Orientation grid: 600-cell refinement level n, 10(5n³+n) rotations.
    #[arg(long, default_value_t = 6)]
    pub level: usize,
    /// Sum b × b pixel blocks (e.g. 4: 128² → 32²).
    #[arg(long, default_value_t = 1)]
    pub bin: usize,
    /// Iterations.
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Wall-clock budget (e.g. 90s, 60m, 24h, 1h30m); the run stops cleanly when it is spent.
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
    /// Iterations between β increases (1: every iteration); each multiplies β by --beta-jump,
    /// up to --beta-max.
    #[arg(long, default_value_t = 1)]
    pub beta_period: usize,
    /// Largest β the schedule reaches.
    #[arg(long, default_value_t = 1.0)]
    pub beta_max: f64,
    /// Fit a scale factor per frame (useful for per-image rescaled frames).
    #[arg(long)]
    pub scale: bool,
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
    /// Memory for one chunk of frames, MiB.
    #[arg(long, default_value_t = 512)]
    pub chunk_mb: usize,
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

pub fn run(args: Args) -> Result<()> {
    crate::data::dataset::check_output_dir(&args.out, args.force)?;
    let budget = args.budget.as_deref().map(super::parse_budget).transpose()?;
    ensure!(args.iters >= 1, "--iters must be at least 1");
    ensure!(
        args.data.is_some() || args.n.is_some(),
        "give --n N (frames to simulate) or --data DIR"
    );
    ensure!(
        args.test_data.is_none() || args.data.is_some(),
        "--test-data needs --data"
    );
    let grid = OrientationGrid::new(args.level)?;
    // Everything is checked before the output directory is touched.
    let (config, molecule) = match &args.data {
        Some(dir) => {
            let dataset = Dataset::open(dir)?;
            let config: SimulationConfig = serde_json::from_value(dataset.meta["config"].clone())
                .with_context(|| {
                format!("{}: meta.json has no simulation config", dir.display())
            })?;
            (config, None)
        }
        None => (args.physics.config(), Some(args.molecule.load()?)),
    };
    write_atomically(&args.out, args.force, false, |staging| {
        reconstruct(&args, staging, grid, config, molecule, budget)
    })?;
    eprintln!("results in {}", args.out.display());
    Ok(())
}

fn reconstruct(
    args: &Args,
    out: &Path,
    grid: OrientationGrid,
    config: SimulationConfig,
    molecule: Option<crate::physics::molecule::Molecule>,
    budget: Option<Duration>,
) -> Result<()> {
    let started = Instant::now();
    let deadline = budget.map(|b| started + b);
    let detector = binned_detector(&config.detector, args.bin)?;
    let geometry = detector.geometry(&config.beam);
    // The model grid: the simulator's (from the molecule, or the dataset's meta.json).
    let simulator = match molecule {
        Some(m) => Some(ImageSimulator::new(m, config.clone())?),
        None => None,
    };
    let (m, spacing) = match (&simulator, &args.data) {
        (Some(sim), _) => (sim.grid.m, sim.grid.spacing),
        (None, Some(dir)) => {
            let meta = Dataset::open(dir)?.meta;
            let m = meta["grid"]["m"]
                .as_u64()
                .context("meta.json: grid.m missing")? as usize;
            let ds = meta["grid"]["spacing_per_angstrom"]
                .as_f64()
                .context("meta.json: grid.spacing missing")?;
            (m, ds)
        }
        _ => unreachable!(),
    };
    let params = EmcParams {
        beta: args.beta,
        scale: args.scale,
        merge: args.merge,
        path: args.path,
        chunk_bytes: args.chunk_mb.max(1) << 20,
        max_s: args.max_s,
        ..EmcParams::default()
    };
    let spacing_deg = grid.mean_spacing_deg();
    let n_rot = grid.len();
    let mut emc = Emc::new(
        grid,
        geometry.s.clone(),
        &geometry.scale,
        m,
        spacing,
        params,
    )?;
    emc.random_start(args.model_seed);

    let mut train: Box<dyn FrameSource + '_> = match (&simulator, &args.data) {
        (Some(sim), _) => Box::new(SimulatedFrames {
            simulator: sim,
            split: Split::Train,
            n: args.n.unwrap_or(0) as usize,
            bin: args.bin,
        }),
        (None, Some(dir)) => Box::new(DatasetFrames {
            dataset: Dataset::open(dir)?,
            bin: args.bin,
        }),
        _ => unreachable!(),
    };
    ensure!(!train.is_empty(), "--n must be at least 1");
    let n = train.len();
    eprintln!(
        "EMC: {n} frames of {side}×{side} pixels ({pl} in the likelihood), grid {m}³ (Δs = {spacing:.5} Å⁻¹), \
         level {level}: {n_rot} rotations, mean spacing {spacing_deg:.2}°",
        side = detector.pixels,
        pl = emc.likelihood_pixels(),
        level = args.level,
    );
    let prep = Instant::now();
    let reading = indicatif::ProgressBar::new(n as u64).with_style(
        indicatif::ProgressStyle::with_template("reading frames {bar:30} {pos}/{len}  {per_sec}  ETA {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let prepared = emc.prepare_until(train.as_mut(), deadline, &|done| reading.set_position(done as u64))?;
    reading.finish_and_clear();
    let density = emc.density().unwrap_or(1.0);
    if prepared {
        eprintln!(
            "data: {:.2} % non-zero pixels → {} likelihood ({:.1} s)",
            100.0 * density,
            if emc.sparse() {
                "sparse-photon"
            } else {
                "dense GEMM"
            },
            prep.elapsed().as_secs_f64()
        );
    } else {
        eprintln!("out of budget while reading the frames ({:.1} s)", prep.elapsed().as_secs_f64());
    }

    let bar = indicatif::ProgressBar::new((args.iters * n) as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "iter {msg} {bar:30} {pos}/{len} frames  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let header = format!(
        "{:>4} {:>9} {:>15} {:>11} {:>9} {:>9} {:>8}",
        "iter", "time(s)", "log-likelihood", "rms-change", "mutual-I", "mean-maxP", "beta"
    );
    say(&bar, header);
    let mut log_csv = std::io::BufWriter::new(std::fs::File::create(out.join("log.csv"))?);
    writeln!(log_csv, "iteration,seconds,log_likelihood,rms_change,mutual_information,mean_max_probability,beta,path")?;
    let mut history: Vec<IterationStats> = Vec::new();
    let mut out_of_budget = false;
    let mut beta = args.beta;
    if !prepared {
        out_of_budget = true;
    }
    for it in 0..if prepared { args.iters } else { 0 } {
        if it > 0 && it % args.beta_period.max(1) == 0 {
            beta = (beta * args.beta_jump).min(args.beta_max.max(args.beta));
        }
        bar.set_message(format!("{}/{}", it + 1, args.iters));
        let base = (it * n) as u64;
        let progress = |done: usize| bar.set_position(base + done as u64);
        match emc.iterate(train.as_mut(), beta, deadline, &progress)? {
            Some(s) => {
                say(
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
                history.push(s);
            }
            None => {
                out_of_budget = true;
                break;
            }
        }
    }
    bar.finish_and_clear();
    if out_of_budget {
        eprintln!(
            "out of budget: the --budget {} ran out after {} of {} iterations ({:.1} s elapsed), so the full run \
             takes longer than the budget; the partial iteration was discarded and the outputs are from iteration {}",
            args.budget.as_deref().unwrap_or("?"),
            history.len(),
            args.iters,
            started.elapsed().as_secs_f64(),
            history.len()
        );
    }
    let iter_seconds: Vec<f64> = history.iter().map(|s| s.seconds).collect();
    let mean_iter = iter_seconds.iter().sum::<f64>() / iter_seconds.len().max(1) as f64;

    // Outputs: model, poses, held-out assignment.
    // Voxels no slice reached (beyond the detector's |s|, or before any iteration) are written
    // as −1: negative means "not measured", which `phase` treats as a free amplitude.
    let mut model = emc.model.clone();
    for (v, &seen) in model.data.iter_mut().zip(emc.measured()) {
        if !seen {
            *v = -1.0;
        }
    }
    write_mrc(out.join("model.mrc"), &model, false)?;
    let amplitude: IntensityVolume = model.map(|&v| if v < 0.0 { -1.0 } else { v.sqrt() });
    write_mrc(out.join("model_amplitude.mrc"), &amplitude, false)?;
    let train_poses: Vec<UnitQuaternion<f64>> = emc
        .assignments
        .iter()
        .map(|a| emc.quaternion(a.rotation))
        .collect();
    if !train_poses.is_empty() {
        write_poses_csv(&out.join("train_poses.csv"), &train_poses)?;
    }
    let train_error = if train_poses.len() == n {
        let truth = train.poses(0, n)?;
        truth.map(|t| pose_error(&t, &train_poses)).transpose()?
    } else {
        None
    };
    let mut test: Option<Box<dyn FrameSource + '_>> = match (&simulator, &args.test_data) {
        (_, Some(dir)) => Some(Box::new(DatasetFrames {
            dataset: Dataset::open(dir)?,
            bin: args.bin,
        })),
        (Some(sim), None) if args.n_test > 0 => Some(Box::new(SimulatedFrames {
            simulator: sim,
            split: Split::Test,
            n: args.n_test as usize,
            bin: args.bin,
        })),
        _ => None,
    };
    let mut test_error = None;
    let mut test_seconds = 0.0;
    if let Some(test) = test.as_mut() {
        let t0 = Instant::now();
        let assigned: Vec<Assignment> = emc.assign(test.as_mut(), beta)?;
        test_seconds = t0.elapsed().as_secs_f64();
        let poses: Vec<UnitQuaternion<f64>> = assigned
            .iter()
            .map(|a| emc.quaternion(a.rotation))
            .collect();
        write_poses_csv(&out.join("test_poses.csv"), &poses)?;
        if let Some(truth) = test.poses(0, test.len())? {
            test_error = Some(pose_error(&truth, &poses)?);
        }
    }
    if args.save_truth {
        if let Some(sim) = &simulator {
            write_mrc(
                out.join("truth_intensity.mrc"),
                &sim.transform.intensity(),
                false,
            )?;
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
                e.summary.median_deg,
                e.summary.mean_deg,
                e.summary.rms_deg,
                e.summary.images,
                1.5 * spacing_deg
            );
        }
    }
    eprintln!(
        "{} iterations, {mean_iter:.2} s per iteration on average, total {:.1} s",
        history.len(),
        started.elapsed().as_secs_f64()
    );
    let meta = json!({
        "software": {"name": "xrai-bench", "version": env!("CARGO_PKG_VERSION")},
        "command": std::env::args().collect::<Vec<_>>(),
        "data": args.data,
        "test_data": args.test_data,
        "config": config,
        "frames": n,
        "bin": args.bin,
        "detector_pixels_per_side": detector.pixels,
        "likelihood_pixels": emc.likelihood_pixels(),
        "density": density,
        "path": if emc.sparse() { "sparse" } else { "dense" },
        "grid": {"m": m, "spacing_per_angstrom": spacing},
        "orientations": {"level": args.level, "rotations": n_rot, "mean_spacing_deg": spacing_deg},
        "params": emc.params,
        "model_seed": args.model_seed,
        "iterations_completed": history.len(),
        "iterations_requested": args.iters,
        "out_of_budget": out_of_budget,
        "budget": args.budget,
        "log": history,
        "timings_seconds": {
            "total": started.elapsed().as_secs_f64(),
            "mean_iteration": mean_iter,
            "test_assignment": test_seconds,
        },
        "pose_error": {
            "train": train_error.as_ref().map(|e| e.summary),
            "test": test_error.as_ref().map(|e| e.summary),
        },
        "conventions": {
            "poses": "most likely grid rotation; image i samples the model at R_i s_p; quaternions w,x,y,z, w >= 0",
            "model": "intensity on the centred m^3 reciprocal grid, voxel size = spacing in 1/Angstrom",
        },
    });
    std::fs::write(
        out.join("meta.json"),
        serde_json::to_string_pretty(&meta)? + "\n",
    )?;
    Ok(())
}

/// A log line above the progress bar (or plainly when the bar is hidden, e.g. not a terminal).
fn say(bar: &indicatif::ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}
