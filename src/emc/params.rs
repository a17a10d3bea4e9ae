//! EMC's settings and what an iteration reports: the likelihood path, the merge rule, the
//! iteration parameters, the Dragonfly-style log line, a frame's assignment and a stopped
//! pass's progress.

/// How Σ_p K_ip ln W_rp is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LikelihoodPath {
    /// Sparse when the fraction of non-zero pixels is below `sparse_below`, else dense.
    Auto,
    /// Dense GEMM over all pixels.
    Dense,
    /// Sum over each frame's non-zero pixels.
    Sparse,
}

/// How compress turns merged slices into the new model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MergeRule {
    /// M'_x = M_x · Σ t K/S / Σ t φ c (S the old slice): the exact EM (Richardson–Lucy, Shepp &
    /// Vardi 1982) step for the trilinear forward model, so the likelihood cannot fall at β = 1;
    /// multiplicative, so a random start's texture fades slowly — use it to refine.
    Em,
    /// M'_x = Σ t K / Σ t φ c: the interpolation-weighted mean of the maximised slices, the
    /// classic compress (Loh & Elser 2009, eq. 9); exact only when each pixel falls in one
    /// voxel, so the likelihood can dip slightly. The default: it forgets a random start fast.
    Average,
}

/// Settings of the iterations.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EmcParams {
    /// Deterministic-annealing exponent β (1 = plain EM).
    pub beta: f64,
    /// Fit a scale factor per frame.
    pub scale: bool,
    pub merge: MergeRule,
    pub path: LikelihoodPath,
    /// `Auto` goes sparse below this fraction of non-zero pixels. Measured (benches/emc.rs):
    /// dense ≈ 27 G (rotation·frame·pixel)/s, sparse ≈ 2 G (rotation·photon-pixel)/s, so
    /// sparse wins below ~7 % non-zero pixels.
    pub sparse_below: f64,
    /// Memory for one chunk's whole working set, bytes: its frames, their candidate lists and
    /// posteriors, and the E-step's and merge's scratch ([`super::chunk::ChunkPlan`]).
    pub chunk_bytes: usize,
    /// Rotations expanded and multiplied at a time.
    pub rotation_block: usize,
    /// Posterior entries with β L + ln w below max − threshold are dropped (e^−14 ≈ 1e−6).
    pub threshold: f64,
    /// At most this many posterior entries per frame (the largest are kept).
    pub max_candidates: usize,
    /// Entries below this probability are not merged.
    pub min_probability: f64,
    /// Resolution cut-off: pixels with |s| above it (Å⁻¹) are left out of the likelihood.
    pub max_s: Option<f64>,
    /// Pixels merged into the model but left out of the likelihood (Dragonfly's mask 1).
    #[serde(skip)]
    pub merge_only: Vec<u32>,
    /// Expected background photons per pixel (empty: none); see the module docs.
    #[serde(skip)]
    pub background: Vec<f32>,
}

impl Default for EmcParams {
    fn default() -> Self {
        EmcParams {
            beta: 1.0,
            scale: false,
            merge: MergeRule::Average,
            path: LikelihoodPath::Auto,
            sparse_below: 0.07,
            chunk_bytes: 512 << 20,
            rotation_block: 256,
            threshold: 14.0,
            max_candidates: 4096,
            min_probability: 1e-6,
            max_s: None,
            merge_only: Vec::new(),
            background: Vec::new(),
        }
    }
}

/// One line of the Dragonfly-style log.
#[derive(Clone, Debug, serde::Serialize)]
pub struct IterationStats {
    pub iteration: usize,
    pub seconds: f64,
    /// Mean over frames of ln Σ_r w_r exp(L_ir) (β = 1 marginal, up to the data-only Σ ln K!).
    pub log_likelihood: f64,
    /// RMS change of the model voxels.
    pub rms_change: f64,
    /// Mean over frames of Σ_r P_ir ln(P_ir / w_r), nats (ln R when every frame is certain).
    pub mutual_information: f64,
    /// Mean over frames of max_r P_ir.
    pub mean_max_probability: f64,
    pub beta: f64,
    pub sparse: bool,
}

/// The most likely rotation of a frame and its probability.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Assignment {
    pub rotation: u32,
    pub probability: f32,
}

/// How far a pass stopped by its deadline got: the frames of its completed chunks (each
/// through the E-step and the merge) and the seconds from the pass's start to the end of the
/// last of them — the partial pass's measured cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct PartialPass {
    pub frames: usize,
    pub seconds: f64,
}
