//! `xrai-bench xrai`: reconstruct with X-RAI (amortized pose inference autoencoder) from a
//! simulated stream of images.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{ensure, Context, Result};
use candle_core::Device;

use crate::cli::simulate::{MoleculeArgs, PhysicsArgs};
use crate::data::dataset::write_atomically;
use crate::data::{ImageSimulator, Rescale, Split};
use crate::rotation::write_poses_csv;
use crate::volume::Volume;
use crate::xrai::train::{
    load_amplitudes, radial_volume, read_config, test_error, train_loop, true_amplitude_volume, InputStats, LoopOptions,
    Trainer, VolumeInit, WorkingGeometry,
};
use crate::xrai::{SymmetricBranch, XraiConfig};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub molecule: MoleculeArgs,
    #[command(flatten)]
    pub physics: PhysicsArgs,
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
    /// Wall-clock budget: seconds, or with units (90s, 55m, 1.5h, 1h30m).
    #[arg(long)]
    pub budget: Option<String>,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace a non-empty output directory.
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
    #[arg(long, default_value_t = 32)]
    pub working_size: usize,
    #[arg(long, default_value_t = 41)]
    pub volume_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr_encoder: f64,
    #[arg(long, default_value_t = 1e-2)]
    pub lr_volume: f64,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Global gradient-norm clipping.
    #[arg(long)]
    pub clip: Option<f64>,
    #[arg(long)]
    pub amsgrad: bool,
    /// Feed raw amplitudes (scaled) instead of per-pixel standardised ones.
    #[arg(long)]
    pub no_standardize: bool,
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
    #[arg(long, default_value_t = 500)]
    pub eval_every: usize,
    #[arg(long, default_value_t = 1000)]
    pub checkpoint_every: usize,
    /// Training images whose predicted poses are written (the first ones of the set/stream).
    #[arg(long, default_value_t = 10_000)]
    pub train_pose_images: usize,
    /// Diagnostic: freeze the true amplitude volume in the decoder (trains the encoder only).
    #[arg(long)]
    pub frozen_true_volume: bool,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    Cpu,
    Cuda,
}

pub fn run(mut args: Args) -> Result<()> {
    crate::xrai::default_cpu_threads();
    // checks before any work
    let budget_s = args.budget.as_deref().map(super::parse_budget).transpose()?.map(|d| d.as_secs_f64());
    if args.physics.rescale_total.is_none() {
        args.physics.rescale_total = Some(20_000.0);
    }
    let cfg = match &args.resume {
        Some(dir) => read_config(dir)?,
        None => {
            let mut c = if args.paper { XraiConfig::paper() } else { XraiConfig::default() };
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
            c.working_size = args.working_size;
            c.volume_size = args.volume_size;
            c.lr_encoder = args.lr_encoder;
            c.lr_volume = args.lr_volume;
            c.batch = args.batch;
            c.grad_clip = args.clip;
            c.amsgrad = args.amsgrad;
            c.standardize = !args.no_standardize;
            c.seed = args.init_seed;
            c
        }
    };
    cfg.validate()?;
    let steps = match (args.steps, args.epochs, args.n) {
        (Some(s), _, _) => Some(s),
        (None, Some(e), Some(n)) => Some(e * (n as usize).div_ceil(cfg.batch)),
        (None, Some(_), None) => anyhow::bail!("--epochs needs --n (the training-set size)"),
        (None, None, _) => None,
    };
    ensure!(steps.is_some() || budget_s.is_some(), "give --steps, --epochs (with --n) or --budget");
    ensure!(args.n.is_none_or(|n| n >= 2), "--n must be at least 2");
    let device = match args.device {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Cuda => Device::new_cuda(0).context("--device cuda: build with --features cuda on a machine with a GPU")?,
    };
    // A run that stops on NaN/Inf or an error keeps its checkpoints in the staging directory.
    let (state, test_err, train_err) = write_atomically(&args.out, args.force, true, |staging| {
        let sim_config = args.physics.config();
        let molecule = args.molecule.load()?;
        let sim = ImageSimulator::new(molecule, sim_config.clone())?;
        let geo = WorkingGeometry::new(&sim, cfg.working_size)?;
        let normalize_total = match sim_config.rescale {
            Rescale::PerImage(t) => Some(t),
            _ => None,
        };
        let m = cfg.volume_size;
        let spacing = geo.volume_spacing(m);
        let stats_n = args.n.map_or(cfg.stats_images, |n| (n as usize).min(cfg.stats_images));
        let (stat_amps, stat_poses) = load_amplitudes(&sim, &geo, Split::Train, 0, stats_n);
        let stats = InputStats::from_amplitudes(&stat_amps, geo.pixels());
        let mut trainer = if args.frozen_true_volume {
            let truth = true_amplitude_volume(&sim, m, spacing);
            let t = Trainer::new(cfg.clone(), geo.clone(), Some(&stats), VolumeInit::Frozen(truth.clone()), normalize_total, device.clone())?;
            let k = t.fit_volume_scale(&stat_amps, &stat_poses)? as f32;
            Trainer::new(cfg.clone(), geo.clone(), Some(&stats), VolumeInit::Frozen(truth.iter().map(|v| v * k).collect()), normalize_total, device)?
        } else if let Some(dir) = &args.resume {
            let mut t = Trainer::new(cfg.clone(), geo.clone(), None, VolumeInit::FromCheckpoint, normalize_total, device)?;
            t.load_checkpoint(dir)?;
            t
        } else {
            let v0 = radial_volume(&geo, &stat_amps, m, spacing, cfg.init_noise, cfg.seed);
            Trainer::new(cfg.clone(), geo.clone(), Some(&stats), VolumeInit::Learned(v0), normalize_total, device)?
        };
        let elapsed0 = match &args.resume {
            Some(dir) => crate::xrai::train::CheckpointState::default().elapsed_s.max(
                serde_json::from_str::<crate::xrai::train::CheckpointState>(&std::fs::read_to_string(dir.join("state.json"))?)?.elapsed_s,
            ),
            None => 0.0,
        };
        eprintln!(
            "X-RAI: {} heads, {}² working images, {}³ voxels (Δs {:.5} Å⁻¹), batch {}, {}; checkpoints in {}",
            cfg.heads,
            cfg.working_size,
            m,
            spacing,
            cfg.batch,
            match args.n {
                Some(n) => format!("{n} training images"),
                None => "fresh images every step".into(),
            },
            staging.join("checkpoint").display()
        );
        let (test_amps, test_poses) = load_amplitudes(&sim, &geo, Split::Test, 0, args.test_images);
        let mut curve_file = std::io::BufWriter::new(std::fs::File::create(staging.join("curve.csv"))?);
        writeln!(curve_file, "step,elapsed_s,images,loss,data,uniformity,test_median_deg,test_mean_deg,test_rms_deg")?;
        let opts = LoopOptions {
            steps,
            budget_s,
            train_n: args.n,
            eval_every: args.eval_every,
            checkpoint_every: args.checkpoint_every,
            checkpoint_dir: Some(staging.join("checkpoint")),
            progress: true,
            elapsed0,
        };
        let state = train_loop(&mut trainer, &sim, &opts, (&test_amps, &test_poses), args.eval_images, &mut |r| {
            writeln!(
                curve_file,
                "{},{:.2},{},{:.6},{:.6},{:.6},{:.4},{:.4},{:.4}",
                r.step, r.elapsed_s, r.images, r.loss, r.data, r.uniformity, r.test_median_deg, r.test_mean_deg, r.test_rms_deg
            )?;
            curve_file.flush()?;
            Ok(())
        })?;
        drop(curve_file);
        // final evaluation and outputs
        let test_est = trainer.predict(&test_amps)?;
        let test_err = crate::eval::pose_error::pose_error(&test_poses, &test_est)?.summary;
        write_poses_csv(&staging.join("poses_test.csv"), &test_est)?;
        write_poses_csv(&staging.join("poses_test_true.csv"), &test_poses)?;
        let n_train = args.n.map_or(args.train_pose_images, |n| (n as usize).min(args.train_pose_images));
        let (train_amps, train_poses) = load_amplitudes(&sim, &geo, Split::Train, 0, n_train);
        let train_est = trainer.predict(&train_amps)?;
        let train_err = crate::eval::pose_error::pose_error(&train_poses, &train_est)?.summary;
        write_poses_csv(&staging.join("poses_train.csv"), &train_est)?;
        write_poses_csv(&staging.join("poses_train_true.csv"), &train_poses)?;
        let vol = Volume { m, spacing, data: trainer.decoder.symmetrized_volume()? };
        crate::mrc::write_mrc(staging.join("amplitude.mrc"), &vol, true)?;
        let summary = serde_json::json!({
            "steps": state.step,
            "elapsed_s": state.elapsed_s,
            "images_seen": state.images_seen,
            "config": cfg,
            "simulation": sim_config,
            "test_pose_error": test_err,
            "train_pose_error": train_err,
            "volume": { "m": m, "spacing_inv_angstrom": spacing },
        });
        std::fs::write(staging.join("summary.json"), serde_json::to_string_pretty(&summary)?)?;
        Ok((state, test_err, train_err))
    })?;
    eprintln!(
        "done: {} steps in {:.0} s; test pose error median {:.2}° (rms {:.2}°) on {} images, train median {:.2}°; results in {}",
        state.step,
        state.elapsed_s,
        test_err.median_deg,
        test_err.rms_deg,
        test_err.images,
        train_err.median_deg,
        args.out.display()
    );
    let _ = test_error; // (periodic evaluations use it)
    Ok(())
}
