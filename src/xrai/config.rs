//! Every choice that decides an X-RAI run, in one plain struct (saved as JSON beside each
//! checkpoint, so a run can be resumed or reproduced).

use serde::{Deserialize, Serialize};

/// How the π-rotated branch of the symmetric loss (equation 4) is formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SymmetricBranch {
    /// Compare the prediction with the target image rotated by π in-plane (both axes
    /// reversed): one encoder pass (the CPU default).
    Flip,
    /// The paper's form: the π-rotated image is also passed through the autoencoder (two
    /// encoder passes).
    ReEncode,
}

/// The data term of the loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DataLoss {
    /// Squared error of amplitudes (the paper's, equation 4).
    #[default]
    Mse,
    /// Poisson negative log-likelihood of the photon counts given the predicted intensity
    /// (amplitude²), as a deviance: for photon-count data (`--poisson`), beyond the paper.
    Poisson,
}

/// Whether each pattern's overall scale is known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PatternScale {
    /// Every pattern shares one scale (the paper's rescaled images; a learned global constant).
    #[default]
    Fixed,
    /// Each pattern's scale φ (its pulse's fluence, the particle's place in the focus) is
    /// unknown. The loss profiles it out per image and hypothesis at its maximum-likelihood
    /// value (Poisson: φ̂ = Σk / Σλ over the loss's pixels, as EMC's `--scale` does per frame;
    /// squared error: the least-squares amplitude factor), so gradients see the scale-free
    /// likelihood; and the encoder sees each image normalised to the data's mean total, so a
    /// bright pulse is not a different pose. The default for photon counts.
    Fit,
}

/// The decoder's representation of the Fourier amplitude volume.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DecoderKind {
    /// An explicit M³ voxel grid sampled trilinearly (custom op with its own backward): the
    /// CPU default, measured ~50 ms forward + backward per step.
    #[default]
    Voxel,
    /// cryoAI's FourierNet: exp(SIREN envelope) × SIREN modulant of the 3-D frequency,
    /// Friedel-symmetrised by averaging s and −s (the paper's decoder).
    FourierNet,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct XraiConfig {
    /// Pose hypotheses per image (K; 1 is the paper, 8 the measured CPU default).
    pub heads: usize,
    /// Output channels of the conv blocks (conv 3×3 + batch norm + ReLU + 2×2 max pool each).
    pub widths: Vec<usize>,
    /// Hidden width of the MLP between the conv features and the K × 6D output.
    pub mlp_hidden: usize,
    /// Side of the working images (the detector binned by summing blocks).
    pub working_size: usize,
    /// Side M of the learned amplitude voxel grid (odd; origin on the centre voxel).
    pub volume_size: usize,
    /// Adam learning rate of the encoder.
    pub lr_encoder: f64,
    /// Adam learning rate of the voxel grid.
    pub lr_volume: f64,
    pub batch: usize,
    /// Weight of the mean over heads beside the winner-takes-all minimum.
    pub mean_head_weight: f64,
    /// Weight of the pose-uniformity penalty relative to the data term.
    pub uniformity_weight: f64,
    pub branch: SymmetricBranch,
    /// Global gradient-norm clipping (None: off).
    pub grad_clip: Option<f64>,
    /// AMSGrad variant of Adam.
    pub amsgrad: bool,
    /// Standardise each input pixel with fixed dataset statistics.
    pub standardize: bool,
    /// Images of the training stream used for the input statistics and the volume start.
    pub stats_images: usize,
    /// Relative noise added to the radially averaged starting volume.
    pub init_noise: f64,
    /// Seed of the network initialisation.
    pub seed: u64,
    /// Data term of the loss.
    #[serde(default)]
    pub loss: DataLoss,
    /// Amplitude-volume representation.
    #[serde(default)]
    pub decoder: DecoderKind,
    /// FourierNet: hidden width and layers of each SIREN, and the first layer's ω₀.
    #[serde(default = "default_siren_width")]
    pub siren_width: usize,
    #[serde(default = "default_siren_layers")]
    pub siren_layers: usize,
    #[serde(default = "default_siren_omega")]
    pub siren_omega: f64,
    /// Extra input channels: the standardised image blurred by Gaussians of σ = 0.5·2^i pixels,
    /// i = 0 … levels − 1 (cryoAI's fixed "Gaussian pyramid"; 0: off, the measured default).
    #[serde(default)]
    pub pyramid_levels: usize,
    /// Whether each pattern's scale is fitted (photon counts) or shared (rescaled images).
    #[serde(default)]
    pub pattern_scale: PatternScale,
}

fn default_siren_width() -> usize {
    64
}
fn default_siren_layers() -> usize {
    3
}
fn default_siren_omega() -> f64 {
    30.0
}

impl Default for XraiConfig {
    fn default() -> Self {
        XraiConfig {
            heads: 8,
            widths: vec![16, 32, 64, 128],
            mlp_hidden: 256,
            working_size: 32,
            volume_size: 41,
            lr_encoder: 1e-3,
            lr_volume: 1e-2,
            batch: 64,
            mean_head_weight: 0.02,
            // 0.1 in the prototype was relative to a raw squared error; the data term here is
            // normalised by the mean squared amplitude (~20× smaller), and at 0.1 the penalty
            // matched the data term and held the encoder at random poses (measured: 85° after
            // 400 steps with the true volume frozen, against 39° at 0.005 and 25° at 0).
            uniformity_weight: 0.005,
            branch: SymmetricBranch::Flip,
            grad_clip: None,
            amsgrad: false,
            standardize: true,
            stats_images: 2048,
            init_noise: 0.01,
            seed: 0,
            loss: DataLoss::Mse,
            decoder: DecoderKind::Voxel,
            siren_width: default_siren_width(),
            siren_layers: default_siren_layers(),
            siren_omega: default_siren_omega(),
            pyramid_levels: 0,
            pattern_scale: PatternScale::Fixed,
        }
    }
}

impl XraiConfig {
    /// The paper's design: one head, the π branch re-encoded, no uniformity penalty,
    /// FourierNet decoder.
    pub fn paper() -> Self {
        XraiConfig {
            heads: 1,
            decoder: DecoderKind::FourierNet,
            // cryoAI's optimiser: Adam (AMSGrad) at 1e-4, gradients clipped to norm 1
            lr_encoder: 1e-4,
            lr_volume: 1e-4,
            amsgrad: true,
            grad_clip: Some(1.0),
            branch: SymmetricBranch::ReEncode,
            mean_head_weight: 0.0,
            uniformity_weight: 0.0,
            ..XraiConfig::default()
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.heads >= 1, "--heads must be at least 1");
        anyhow::ensure!(!self.widths.is_empty(), "the encoder needs at least one conv block");
        let down = 1usize << self.widths.len();
        anyhow::ensure!(
            self.working_size % down == 0 && self.working_size >= down,
            "--working-size {} must be a multiple of {down} ({} pooling steps)",
            self.working_size,
            self.widths.len()
        );
        anyhow::ensure!(
            self.volume_size % 2 == 1 && self.volume_size >= 5,
            "--volume-size must be odd and ≥ 5"
        );
        anyhow::ensure!(
            self.siren_layers >= 1 && self.siren_width >= 1,
            "--siren-layers and --siren-width must be at least 1"
        );
        anyhow::ensure!(self.pyramid_levels <= 8, "--pyramid-levels must be at most 8");
        anyhow::ensure!(self.batch >= 2, "--batch must be at least 2 (batch norm)");
        anyhow::ensure!(
            self.lr_encoder > 0.0 && self.lr_volume >= 0.0,
            "learning rates must be positive"
        );
        Ok(())
    }
}
