//! The `xrai` command's options, and the configuration they make ([`config`]): the defaults
//! (or `--paper`) with the options on top, and the defaults for photon counts (Poisson loss,
//! a fitted pattern scale, globally scaled input), or a checkpoint's own when resuming.

use std::path::PathBuf;

use anyhow::Result;

use super::config::{DataLoss, DecoderKind, PatternScale};
use super::refine::RefineOptions;
use super::trainer::read_config;
use super::{SymmetricBranch, XraiConfig};
use crate::data::options::{DataArgs, MoleculeArgs, PhysicsArgs};

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
    /// Also refine each image from the three near-2-fold mates of its best rotation (turned by
    /// π about the volume's principal axes, where the low-resolution intensity nearly repeats)
    /// in the first pose pass, keeping the lowest loss; adds three candidates' descent per image.
    /// The default for photon counts (measured at 1,000 photons on one trained encoder: 36.6° →
    /// 29.1° RMS test pose error, images more than 45° off 7.0 % → 3.9 %, for 350 s more).
    #[arg(long, conflicts_with = "no_refine_mates")]
    pub refine_mates: bool,
    /// No near-2-fold mates, also for photon counts (the default for expected photons: the
    /// README's 25- and 60-minute runs on 50,000 images had no image at a mate, but the photon
    /// sweep's 30-minute noise-free reference on 20,000 had 3.2 % of its test images there).
    #[arg(long)]
    pub no_refine_mates: bool,
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
/// options given on top. `counts`: the frames are photon counts (simulated with `--poisson` or
/// `--mean-photons`, or read from a file that holds them, [`crate::data::Source::holds_counts`]),
/// which sets the defaults of the data model: Poisson loss, each pattern's scale fitted, the
/// encoder's input scaled globally.
pub fn config(args: &Options, counts: bool) -> Result<XraiConfig> {
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
