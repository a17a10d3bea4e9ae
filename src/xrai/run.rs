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
use super::init::{normalized_to_mean_total, radial_volume, true_amplitude_volume, InputStats};
use super::refine::{self, RefineCost, RefineOptions, REFINE_SHARE};
use super::train::{train_loop, LoopOptions};
use super::trainer::{read_config, CheckpointState, Trainer, VolumeInit};
use super::{SymmetricBranch, XraiConfig};
use crate::comm::Comm;
use crate::data::dataset::write_atomically;
use crate::data::options::{DataArgs, MoleculeArgs, PhysicsArgs};
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

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example: train X-RAI for 55 minutes on images simulated on the fly:\n  \
    xrai-bench xrai --budget 55m --out runs/xrai55m"
)]
pub struct Options {
    #[command(flatten)]
    pub molecule: MoleculeArgs,
    #[command(flatten)]
    pub physics: PhysicsArgs,
    /// Frames read from files instead of simulated (epochs run over them); see --data.
    #[command(flatten)]
    pub files: DataArgs,
    /// Training-set size: a fixed set of N images revisited by epochs. Without it every step
    /// takes fresh images from the stream.
    #[arg(long, short = 'n')]
    pub n: Option<u64>,
    /// Gradient steps.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Epochs over the --n images (steps = epochs × ⌈N / batch⌉).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Wall-clock budget from this process's start (90s, 55m, 1.5h, 1h30m): preparing the data,
    /// training, and the final test and training poses; training stops early enough to leave the
    /// closing predictions their measured time.
    #[arg(long)]
    pub budget: Option<String>,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an output directory written earlier by xrai-bench (one holding its meta.json);
    /// any other non-empty directory is refused.
    #[arg(long)]
    pub force: bool,
    /// Continue from a checkpoint directory (model.safetensors, config.json, state.json);
    /// the architecture options come from its config.json.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// The paper's design: one head, re-encoded π branch, no uniformity penalty.
    #[arg(long)]
    pub paper: bool,
    /// Pose hypotheses per image (winner-takes-all).
    #[arg(long)]
    pub heads: Option<usize>,
    /// π branch of the symmetric loss.
    #[arg(long, value_enum)]
    pub branch: Option<SymmetricBranch>,
    /// Side of the working images: the detector binned by summing blocks (default 32, the
    /// working size at which the CPU prototype reached 1.8°; 64² has 4× the pixels, so the
    /// decoder, the loss and the first convolutions cost ~4× per step).
    #[arg(long)]
    pub working_size: Option<usize>,
    /// Side of the voxel decoder's grid (odd; default 41).
    #[arg(long)]
    pub volume_size: Option<usize>,
    /// Adam learning rate of the encoder (default 1e-3; --paper: 1e-4).
    #[arg(long)]
    pub lr_encoder: Option<f64>,
    /// Adam learning rate of the decoder (default 1e-2 for voxels; --paper: 1e-4).
    #[arg(long)]
    pub lr_volume: Option<f64>,
    /// Images per gradient step (default 64): the global batch; over MPI ranks each takes an equal share.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Data term: squared amplitude error (the paper's; the default for expected photons) or
    /// Poisson NLL (the default for photon counts: --poisson, --mean-photons).
    #[arg(long, value_enum)]
    pub loss: Option<DataLoss>,
    /// Each pattern's scale: fit (unknown per pattern: profiled out of the loss, images
    /// normalised to the mean total at the encoder's input; the default for photon counts) or
    /// fixed (one shared scale; the default for rescaled images).
    #[arg(long, value_enum)]
    pub pattern_scale: Option<PatternScale>,
    /// Decoder: explicit voxel grid (CPU default) or FourierNet (the paper's, --paper).
    #[arg(long, value_enum)]
    pub decoder: Option<DecoderKind>,
    /// FourierNet: hidden width of each SIREN (default 64).
    #[arg(long)]
    pub siren_width: Option<usize>,
    /// FourierNet: sine layers of each SIREN (default 3).
    #[arg(long)]
    pub siren_layers: Option<usize>,
    /// Fixed Gaussian-pyramid input channels (cryoAI: 5; default 0).
    #[arg(long)]
    pub pyramid_levels: Option<usize>,
    /// Global gradient-norm clipping.
    #[arg(long)]
    pub clip: Option<f64>,
    /// Use AMSGrad (Adam with the running maximum of the second moment, Reddi et al. 2018)
    /// instead of plain Adam; --paper turns it on already.
    #[arg(long)]
    pub amsgrad: bool,
    /// Feed amplitudes scaled by one global factor instead of per-pixel standardised ones (the
    /// default for photon counts: their outer pixels hold mostly shot noise, which per-pixel
    /// standardising raises to the level of the signal; measured at 1,000 photons, 25° against
    /// 55° median test pose error after 3,800 steps).
    #[arg(long, conflicts_with = "standardize")]
    pub no_standardize: bool,
    /// Standardise each input pixel with the data's statistics (the default for expected
    /// photons) also for photon counts.
    #[arg(long)]
    pub standardize: bool,
    /// Weight of the pose-uniformity penalty.
    #[arg(long)]
    pub uniformity_weight: Option<f64>,
    /// Weight of the mean over heads beside the winner-takes-all minimum.
    #[arg(long)]
    pub mean_head_weight: Option<f64>,
    /// Seed of the network initialisation (--seed is the data's).
    #[arg(long, default_value_t = 0)]
    pub init_seed: u64,
    /// Held-out test images (the final pose error uses all of them).
    #[arg(long, default_value_t = 10_000)]
    pub test_images: usize,
    /// Test images used by the evaluations during training.
    #[arg(long, default_value_t = 1000)]
    pub eval_images: usize,
    /// Score the test poses every this many steps (a line on stderr and a row of the
    /// training curve); 0: never. Needs test images.
    #[arg(long, default_value_t = 500)]
    pub eval_every: usize,
    /// Save a checkpoint (parameters, Adam moments, step) in the output's checkpoint/ every
    /// this many steps; 0: none during training.
    #[arg(long, default_value_t = 1000)]
    pub checkpoint_every: usize,
    /// Training images whose predicted poses are written (the first ones of the set/stream).
    #[arg(long, default_value_t = 10_000)]
    pub train_pose_images: usize,
    /// Refinement after training: descent steps on each image's own rotation against the frozen
    /// decoder, per pose pass (0: the encoder's poses as they are, the paper's inference). The
    /// stage's measured cost is kept from the budget before training stops.
    #[arg(long, default_value_t = RefineOptions::default().pose_steps)]
    pub refine_steps: usize,
    /// Encoder hypotheses (heads and their π partners, best first) refined per image in the
    /// first pose pass; the lowest final loss wins.
    #[arg(long, default_value_t = RefineOptions::default().candidates)]
    pub refine_candidates: usize,
    /// Rounds of (volume with the poses fixed, then the poses again) after the first pose pass:
    /// the first is kept from the budget, the others run while it allows.
    #[arg(long, default_value_t = 3)]
    pub refine_rounds: usize,
    /// Training images whose poses are refined and which the volume rounds fit (the first of the
    /// set or stream; at least --train-pose-images).
    #[arg(long, default_value_t = 20_000)]
    pub refine_images: usize,
    /// Diagnostic: freeze the true amplitude volume in the decoder (trains the encoder only).
    #[arg(long)]
    pub frozen_true_volume: bool,
    /// Where to train: cpu, or cuda (GPU 0; needs a build with `--features cuda`).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    Cpu,
    Cuda,
}

/// The configuration: a checkpoint's own (resume), else the defaults (or `--paper`) with the
/// options given on top.
fn config(args: &Options) -> Result<XraiConfig> {
    if let Some(dir) = &args.resume {
        return read_config(dir);
    }
    let mut c = if args.paper {
        XraiConfig::paper()
    } else {
        XraiConfig::default()
    };
    if let Some(h) = args.heads {
        c.heads = h;
    }
    if let Some(b) = args.branch {
        c.branch = b;
    }
    if let Some(w) = args.uniformity_weight {
        c.uniformity_weight = w;
    }
    if let Some(w) = args.mean_head_weight {
        c.mean_head_weight = w;
    }
    macro_rules! set {
        ($($field:ident = $arg:expr),*) => { $(if let Some(v) = $arg { c.$field = v; })* };
    }
    set!(
        working_size = args.working_size,
        volume_size = args.volume_size,
        lr_encoder = args.lr_encoder,
        lr_volume = args.lr_volume,
        batch = args.batch,
        loss = args.loss,
        decoder = args.decoder,
        siren_width = args.siren_width,
        siren_layers = args.siren_layers,
        pyramid_levels = args.pyramid_levels
    );
    // Photon counts are scored by their own likelihood unless --loss says otherwise.
    let counts = args.physics.poisson || args.physics.mean_photons.is_some();
    if args.loss.is_none() && counts {
        c.loss = DataLoss::Poisson;
    }
    // ... and their scale is each pulse's own unless --pattern-scale says otherwise.
    c.pattern_scale = match args.pattern_scale {
        Some(s) => s,
        None if counts => PatternScale::Fit,
        None => PatternScale::Fixed,
    };
    if args.clip.is_some() {
        c.grad_clip = args.clip;
    }
    c.amsgrad |= args.amsgrad;
    c.standardize = args.standardize || (!args.no_standardize && !counts);
    c.seed = args.init_seed;
    Ok(c)
}

/// The data, opened before anything is written: the simulator's stream (the molecule is loaded
/// first, so a bad --pdb fails at once) or files ([`DataArgs`]).
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
    let cfg = config(&args)?;
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
    let data = match crate::data::open(&args.files, &args.physics)? {
        Some(opened) => {
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
        PatternScale::Fit => {
            InputStats::from_amplitudes(&normalized_to_mean_total(&stat_amps, geo.pixels()), geo.pixels())
        }
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
        geo.amplitudes(&background, &mut placed);
        trainer.with_background(&placed.iter().map(|a| a * a).collect::<Vec<f32>>())?
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
    let (test_amps, test_poses) = match &test_source {
        Some(src) => amplitudes(src, &geo, 0, args.test_images)?,
        None => (Vec::new(), Vec::new()),
    };
    let n_test = test_amps.len() / geo.pixels();
    let n_train_poses = train_n.map_or(args.train_pose_images, |n| (n as usize).min(args.train_pose_images));
    let refine_opts = RefineOptions {
        pose_steps: args.refine_steps,
        candidates: args.refine_candidates,
        ..RefineOptions::default()
    };
    let mut refining = args.refine_steps > 0;
    // The refinement stage's plan: its first pass and one round are kept from the budget (at
    // most REFINE_SHARE of it: fewer training images are refined when they would not fit, and a
    // budget too short even for --train-pose-images of them keeps the encoder's poses), and the
    // rounds, up to --refine-rounds, run while the budget allows.
    let mut n_closing_train = n_train_poses;
    let mut refine_cost = RefineCost::default();
    if refining {
        let wanted = args.refine_images.max(n_train_poses);
        n_closing_train = train_n.map_or(wanted, |n| (n as usize).min(wanted));
        if root {
            refine_cost = RefineCost::measure(&trainer, &test_amps, &refine_opts)?;
            if let Some(limit) = budget.limit_s() {
                let share = REFINE_SHARE * (limit - budget.elapsed_s()).max(0.0);
                while n_closing_train > n_train_poses && refine_cost.reserve_s(n_closing_train, n_test, args.refine_rounds) > share {
                    n_closing_train = (n_closing_train * 3 / 4).max(n_train_poses);
                }
                let needed = refine_cost.reserve_s(n_closing_train, n_test, args.refine_rounds);
                if needed > share {
                    eprintln!(
                        "refinement skipped: it would take about {needed:.0} s, more than {:.0} % of the budget; \
                         the encoder's poses are the result",
                        REFINE_SHARE * 100.0
                    );
                    refining = false;
                    n_closing_train = n_train_poses;
                    refine_cost = RefineCost::default();
                }
            }
        }
        if refining && root {
            eprintln!(
                "refinement after training: {n_closing_train} training and {n_test} test images, about {:.0} s kept from \
                 the budget ({:.0} µs per rotation and descent step)",
                refine_cost.reserve_s(n_closing_train, n_test, args.refine_rounds),
                refine_cost.step_s * 1e6
            );
        }
    }
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
        let mut stage = |name: String, objective: f64, test_rots: &[nalgebra::Matrix3<f64>], progress: &mut Vec<ProgressPoint>| {
            let err = (!test_poses.is_empty())
                .then(|| crate::eval::pose_error::pose_error(&test_poses, &crate::rotation::from_matrices(test_rots)))
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
                let mut curve = std::fs::OpenOptions::new().append(true).open(staging.join("curve.csv"))?;
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
                "{set} poses: {} images retried from every hypothesis ({} moved); {} searched over SO(3) ({} improved)",
                r.retried, r.retry_moved, r.searched, r.search_improved
            );
        }
        first_pass = serde_json::json!({ "test": test_report, "training": train_report });
        let last_loss = progress.last().map_or(0.0, |p| p.objective);
        stage("poses refined".into(), last_loss, &test_r, &mut progress)?;
        for round in 1..=args.refine_rounds {
            let round_s = refine_cost.round_s(n_closing_train, n_test);
            if budget.remaining_s() < 1.2 * round_s + 4.0 {
                eprintln!("round {round} of {} skipped: {:.0} s left, a round takes about {round_s:.0} s", args.refine_rounds, budget.remaining_s());
                break;
            }
            let fit = refine::refine_volume(&trainer, &train_amps, &train_r, &refine_opts, cfg.seed + round as u64)?;
            train_r = refine::refine_again(&trainer, &train_amps, &train_r, &refine_opts)?;
            test_r = refine::refine_again(&trainer, &test_amps, &test_r, &refine_opts)?;
            // a frozen volume is not fitted: the curve keeps the last loss (JSON has no NaN)
            let objective = if fit.is_finite() { fit } else { last_loss };
            stage(format!("round {round} (volume loss {fit:.5})"), objective, &test_r, &mut progress)?;
        }
        train_r.truncate(n_train_poses);
        (crate::rotation::from_matrices(&test_r), crate::rotation::from_matrices(&train_r))
    } else {
        let test = if n_test > 0 { trainer.predict(&test_amps)? } else { Vec::new() };
        // without refinement the training images read are exactly those whose poses are written
        (test, trainer.predict(&train_amps)?)
    };
    let test_s = t0.elapsed().as_secs_f64();
    write_poses_csv(&staging.join(output::TEST_POSES_FILE), &test_est)?;
    let test_err = if test_poses.is_empty() {
        None
    } else {
        write_poses_csv(&staging.join("poses_test_true.csv"), &test_poses)?;
        Some(crate::eval::pose_error::pose_error(&test_poses, &test_est)?.summary)
    };
    write_poses_csv(&staging.join(output::TRAIN_POSES_FILE), &train_est)?;
    let train_poses = &train_poses[..train_poses.len().min(n_train_poses)];
    let train_err = if train_poses.is_empty() {
        None
    } else {
        write_poses_csv(&staging.join("poses_train_true.csv"), train_poses)?;
        Some(crate::eval::pose_error::pose_error(train_poses, &train_est)?.summary)
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
