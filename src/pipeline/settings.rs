//! The benchmark's settings: [`RunArgs`] (everything that decides a run, saved as `run.toml` and
//! read back with `--config`) and [`RunControl`] (where it goes and how it starts), their
//! validation, and what each method of a run is given.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::data::{Rescale, SimulationConfig};
use crate::eval::phasing::PhasingParams;
use crate::method::budget::parse_budget;
use crate::physics::acquisition::{Acquisition, BackgroundProfile, FocusProfile};
use crate::physics::detector::Detector;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Noise {
    /// Expected photon counts (the paper's noise-free data).
    None,
    /// Poisson photon counts.
    Poisson,
}

/// Everything that decides a run; saved as `run.toml` in the run directory, and read back
/// with `--config` to reproduce it.
#[derive(clap::Args, Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunArgs {
    /// PDB ID (e.g. 2CEX_A) or path to a .pdb/.cif file: the molecule simulated (default: the
    /// bundled 2CEX chain A). Several, separated by commas (2CEX_A,2DHB), make a sweep with one
    /// series per protein. With --data: the structure the maps are scored against (none: the
    /// maps are scored by half-set FSC).
    #[arg(long)]
    pub pdb: Option<String>,
    /// Training images (a fixed set revisited by X-RAI's epochs; EMC reads them all). Several
    /// sizes, comma-separated (e.g. 5000,50000,500000), run a sweep: one run per size and the
    /// runtime- and accuracy-against-N plots.
    #[arg(long, short = 'n', value_delimiter = ',', default_values_t = [50_000u64])]
    pub n: Vec<u64>,
    /// Held-out test images.
    #[arg(long, default_value_t = 10_000)]
    pub n_test: u64,
    /// Methods to run, comma-separated (the registry's ids: xrai, emc).
    #[arg(long, value_delimiter = ',', default_values_t = ["xrai".to_string(), "emc".to_string()], value_parser = method_id)]
    pub methods: Vec<String>,
    /// Image noise: none (expected photon counts, the paper's noise-free data) or poisson
    /// (photon counts drawn per image from the seeded stream).
    #[arg(long, value_enum, default_value_t = Noise::None)]
    pub noise: Noise,
    /// Seed of the images, poses and noise (and of the methods' initialisations).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Wall-clock budget of each method (e.g. 60m, 24h); a method still running then is
    /// stopped and reported as "> budget" (EMC) or trains for exactly this long (X-RAI).
    #[arg(long, default_value = "60m")]
    pub budget: String,
    /// X-RAI's budget, when it differs from --budget.
    #[arg(long)]
    pub xrai_budget: Option<String>,
    /// EMC's budget, when it differs from --budget.
    #[arg(long)]
    pub emc_budget: Option<String>,
    /// X-RAI gradient steps (the paper's protocol: the same for every N); default: budget-bound.
    #[arg(long)]
    pub xrai_steps: Option<usize>,
    /// X-RAI reconstructions with different initialisations; the best by median train pose
    /// error is reported (the paper ran 5).
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
    /// Images are rescaled to this mean total intensity (one global constant, the paper's 20,000).
    #[arg(long, default_value_t = 20_000.0)]
    pub rescale_total: f64,
    /// EMC orientation-grid level (10(5n³+n) rotations; 6: 10,860, 12.3° spacing).
    #[arg(long, default_value_t = 6)]
    pub emc_level: usize,
    /// EMC detector binning (2: 128² → 64²).
    #[arg(long, default_value_t = 2)]
    pub emc_bin: usize,
    /// EMC iterations (expand, maximize over every orientation, compress); the budget may
    /// stop it earlier.
    #[arg(long, default_value_t = 16)]
    pub emc_iters: usize,
    /// Further options for `xrai-bench xrai`, e.g. "--heads 1 --decoder fourier-net".
    #[arg(long, allow_hyphen_values = true)]
    pub xrai_args: Option<String>,
    /// Further options for `xrai-bench emc`, e.g. "--beta 0.01".
    #[arg(long, allow_hyphen_values = true)]
    pub emc_args: Option<String>,
    /// Further options for any method, as ID=OPTIONS (e.g. --args "emc=--beta 0.01"); repeatable.
    #[arg(long = "args", value_name = "ID=OPTIONS", allow_hyphen_values = true)]
    pub method_args: Vec<String>,
    /// Reciprocal grid size M (odd) of the simulation and evaluation; default from the
    /// molecule's size (125 for 2CEX_A at the paper's geometry). Small values make quick runs.
    #[arg(long)]
    pub grid: Option<usize>,
    /// Phasing starts for each method's evaluation.
    #[arg(long, default_value_t = PhasingParams::default().starts)]
    pub phasing_starts: usize,
    /// Reconstruct from a file's frames instead of simulating (README, "Your own data"): a
    /// `simulate` directory, a Dragonfly photon file (.emc, with --detector) or a CXI/HDF5 file
    /// (with the hdf5 build feature). The first --n frames train, the next --n-test are held out.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Detector file of --data (Dragonfly .dat; default: detector.dat beside a .emc file).
    #[arg(long)]
    pub detector: Option<PathBuf>,
    /// Path of the frames inside an HDF5 file given as --data.
    #[arg(long)]
    pub dataset_path: Option<String>,
    /// Photon energy in eV of --data when the file does not record it (Dragonfly files).
    #[arg(long)]
    pub energy: Option<f64>,
    /// Photon-limited data: mean photons per pattern over the unmasked pixels, counted (replaces
    /// --rescale-total and --noise; README, "Photon-limited data"). Several, separated by commas,
    /// make a sweep over the photon level with a noise-free reference run (sweep only).
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub mean_photons: Vec<f64>,
    /// Relative spread of the pulse fluence, gamma-distributed (0.2: 20 %).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub fluence_jitter: f64,
    /// flat, or gaussian: each particle anywhere within the focus radius of a Gaussian focus.
    #[arg(long, value_enum, default_value_t = FocusProfile::Flat)]
    pub focus_profile: FocusProfile,
    /// Background photons per pattern, added before counting.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub background: f64,
    /// How the background spreads: inverse-q2 or flat.
    #[arg(long, value_enum, default_value_t = BackgroundProfile::InverseQ2)]
    pub background_profile: BackgroundProfile,
    /// Beamstop radius in pixels (bad pixels around the beam).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub beamstop_radius: f64,
    /// Width in pixels of a horizontal and a vertical gap through the detector's centre.
    #[arg(long, default_value_t = 0)]
    pub gap: usize,
}

/// The molecule simulated when `--pdb` is not given.
pub const DEFAULT_PDB: &str = "2CEX_A";

impl RunArgs {
    /// The molecule to simulate: `--pdb`, or the bundled default.
    pub fn pdb(&self) -> &str {
        self.pdb.as_deref().unwrap_or(DEFAULT_PDB)
    }
}

impl Default for RunArgs {
    fn default() -> Self {
        RunArgs {
            pdb: None,
            n: vec![50_000],
            n_test: 10_000,
            methods: vec!["xrai".into(), "emc".into()],
            noise: Noise::None,
            seed: 0,
            budget: "60m".into(),
            xrai_budget: None,
            emc_budget: None,
            xrai_steps: None,
            repeats: 1,
            rescale_total: 20_000.0,
            emc_level: 6,
            emc_bin: 2,
            emc_iters: 16,
            xrai_args: None,
            emc_args: None,
            method_args: Vec::new(),
            grid: None,
            phasing_starts: PhasingParams::default().starts,
            data: None,
            detector: None,
            dataset_path: None,
            energy: None,
            mean_photons: Vec::new(),
            fluence_jitter: 0.0,
            focus_profile: FocusProfile::Flat,
            background: 0.0,
            background_profile: BackgroundProfile::InverseQ2,
            beamstop_radius: 0.0,
            gap: 0,
        }
    }
}

impl RunArgs {
    /// The photon level of a run (one `--mean-photons`), None for the paper's rescaled data.
    pub fn photons(&self) -> Option<f64> {
        self.mean_photons.first().copied()
    }

    /// The shot-to-shot effects every method's data have.
    pub fn acquisition(&self) -> Acquisition {
        Acquisition {
            fluence_jitter: self.fluence_jitter,
            focus: self.focus_profile,
            background: self.background,
            background_profile: self.background_profile,
        }
    }

    /// The detector: the paper's, with the beamstop and gaps asked for.
    pub fn detector(&self) -> Detector {
        Detector {
            beamstop_radius_px: self.beamstop_radius,
            gap_px: self.gap,
            ..Detector::default()
        }
    }

    /// The realism settings for the table, e.g. "beamstop 4 px, gaps 2 px, fluence jitter 0.2"
    /// ("none" for the paper's ideal data).
    pub fn realism(&self) -> String {
        let mut parts = Vec::new();
        if self.beamstop_radius > 0.0 {
            parts.push(format!("beamstop {} px", self.beamstop_radius));
        }
        if self.gap > 0 {
            parts.push(format!("gaps {} px", self.gap));
        }
        if self.fluence_jitter > 0.0 {
            parts.push(format!("fluence jitter {}", self.fluence_jitter));
        }
        if self.focus_profile == FocusProfile::Gaussian {
            parts.push("gaussian focus".into());
        }
        if self.background > 0.0 {
            let profile = match self.background_profile {
                BackgroundProfile::Flat => "flat",
                BackgroundProfile::InverseQ2 => "1/q²",
            };
            parts.push(format!("background {} photons ({profile})", self.background));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Where the run goes and how it starts (not part of the reproducible config).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct RunControl {
    /// Read the run's settings from this file (a `run.toml` of an earlier run); options given
    /// on the command line as well override the file's.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run directory (default: a new timestamped directory under results/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue a killed run: its directory (or the `.NAME.partial` staging directory).
    #[arg(long, conflicts_with = "config")]
    pub resume: Option<PathBuf>,
    /// Where the cumulative summary.parquet / summary.csv are appended.
    #[arg(long, default_value = "results")]
    pub summary_dir: PathBuf,
    /// Skip the plots (tables only).
    #[arg(long)]
    pub no_plots: bool,
    /// Start each method under this MPI launcher, e.g. "mpirun -np 4" or "srun" (needs a build
    /// with --features mpi); words are split at spaces. The table records ranks and threads.
    #[arg(long, allow_hyphen_values = true)]
    pub launcher: Option<String>,
}

/// `--methods` values: ids of the registry.
fn method_id(text: &str) -> Result<String, String> {
    match crate::method::find(text) {
        Some(m) => Ok(m.id().to_string()),
        None => Err(format!("unknown method {text:?} (known: {})", crate::method::ids())),
    }
}

/// The settings from `--config` with the options given explicitly on the command line on top.
pub fn merge_config(cli: RunArgs, matches: Option<&clap::ArgMatches>, config: Option<&Path>) -> Result<RunArgs> {
    let Some(path) = config else { return Ok(cli) };
    let text = std::fs::read_to_string(path).with_context(|| format!("--config: cannot read {}", path.display()))?;
    let mut file: toml::Table =
        toml::from_str(&text).with_context(|| format!("--config {}: not valid TOML", path.display()))?;
    let cli_table = toml::Table::try_from(&cli)?;
    if let Some(m) = matches {
        for (key, value) in cli_table {
            let id = key.as_str();
            if m.try_get_raw(id).ok().flatten().is_some()
                && m.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
            {
                file.insert(key, value);
            }
        }
    }
    let args: RunArgs = toml::Value::Table(file).try_into().with_context(|| {
        format!(
            "--config {}: not a run configuration (see a run's run.toml)",
            path.display()
        )
    })?;
    for id in &args.methods {
        method_id(id)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("--config {}", path.display()))?;
    }
    Ok(args)
}

/// Checks every setting that needs no file or molecule.
pub fn validate(args: &RunArgs) -> Result<()> {
    ensure!(
        args.n.iter().all(|&n| n >= 2),
        "--n must be at least 2 (got {:?})",
        args.n
    );
    ensure!(args.n_test >= 1, "--n-test must be at least 1");
    ensure!(
        !args.methods.is_empty(),
        "--methods: give at least one of {}",
        crate::method::ids()
    );
    ensure!(args.repeats >= 1, "--repeats must be at least 1");
    if args.data.is_none() {
        for (given, name) in [
            (args.detector.is_some(), "--detector"),
            (args.dataset_path.is_some(), "--dataset-path"),
            (args.energy.is_some(), "--energy"),
        ] {
            ensure!(
                !given,
                "{name} describes a file given with --data PATH (none was given)"
            );
        }
    }
    if let Some(e) = args.energy {
        ensure!(
            e.is_finite() && e > 0.0,
            "--energy must be a positive photon energy in eV, got {e}"
        );
    }
    ensure!(
        args.rescale_total.is_finite() && args.rescale_total > 0.0,
        "--rescale-total must be a positive number of photons, got {}",
        args.rescale_total
    );
    for &p in &args.mean_photons {
        ensure!(
            p.is_finite() && p > 0.0,
            "--mean-photons must be positive numbers of photons per pattern (e.g. 1000 or 20000,2000,500,100), got {p}"
        );
    }
    ensure!(
        args.mean_photons.is_empty() || args.noise == Noise::None,
        "--mean-photons counts the photons already (Poisson): leave out --noise"
    );
    ensure!(
        args.data.is_none() || args.mean_photons.is_empty() && args.realism() == "none",
        "--mean-photons and the realism options (--fluence-jitter, --focus-profile, --background, \
         --beamstop-radius, --gap) describe simulated data: a --data file has its own"
    );
    args.acquisition().validate()?;
    args.detector().validate()?;
    for b in [Some(&args.budget), args.xrai_budget.as_ref(), args.emc_budget.as_ref()]
        .into_iter()
        .flatten()
    {
        parse_budget(b)?;
    }
    for a in &args.method_args {
        let Some((id, _)) = a.split_once('=') else {
            bail!("--args {a:?}: expected ID=OPTIONS, e.g. \"emc=--beta 0.01\"")
        };
        method_id(id).map_err(|e| anyhow::anyhow!("--args {a:?}: {e}"))?;
    }
    Ok(())
}

/// The simulation every method of a run sees (and the evaluation's truth): the paper's beam and
/// detector, images rescaled to a mean total of `--rescale-total`.
pub fn simulation_config(args: &RunArgs) -> SimulationConfig {
    SimulationConfig {
        detector: args.detector(),
        grid: args.grid,
        rescale: Rescale::MeanTotal(args.photons().unwrap_or(args.rescale_total)),
        poisson: args.noise == Noise::Poisson || args.photons().is_some(),
        seed: args.seed,
        acquisition: args.acquisition(),
        ..SimulationConfig::default()
    }
}

/// The data options every method gets, so all see the same images.
pub fn data_args(args: &RunArgs) -> Vec<String> {
    let mut v: Vec<String> = ["--pdb", args.pdb(), "--seed", &args.seed.to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    match args.photons() {
        Some(p) => v.extend(["--mean-photons".into(), p.to_string()]),
        None => v.extend([
            "--rescale".into(),
            "mean".into(),
            "--rescale-total".into(),
            args.rescale_total.to_string(),
        ]),
    }
    if args.noise == Noise::Poisson {
        v.push("--poisson".into());
    }
    let d = RunArgs::default();
    for (on, flag, value) in [
        (
            args.fluence_jitter != d.fluence_jitter,
            "--fluence-jitter",
            args.fluence_jitter.to_string(),
        ),
        (
            args.focus_profile != d.focus_profile,
            "--focus-profile",
            "gaussian".to_string(),
        ),
        (
            args.background != d.background,
            "--background",
            args.background.to_string(),
        ),
        (
            args.background_profile != d.background_profile,
            "--background-profile",
            "flat".to_string(),
        ),
        (
            args.beamstop_radius != d.beamstop_radius,
            "--beamstop-radius",
            args.beamstop_radius.to_string(),
        ),
        (args.gap != d.gap, "--gap", args.gap.to_string()),
    ] {
        if on {
            v.extend([flag.to_string(), value]);
        }
    }
    if let Some(m) = args.grid {
        v.extend(["--grid".into(), m.to_string()]);
    }
    v
}

/// A method's budget text and further options in a run: its own `--<id>-budget` or `--budget`;
/// the run's method-specific settings (X-RAI's steps; EMC's level, binning and iterations, and
/// its per-frame scale when the patterns' scale varies),
/// then `--<id>-args` and `--args <id>=…`.
pub fn method_settings(args: &RunArgs, id: &str) -> (String, Vec<String>) {
    let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    let (budget, mut extra) = match id {
        "xrai" => {
            let mut extra = Vec::new();
            if let Some(s) = args.xrai_steps {
                extra.extend(["--steps".to_string(), s.to_string()]);
            }
            extra.extend(args.xrai_args.as_deref().map(words).unwrap_or_default());
            (args.xrai_budget.clone(), extra)
        }
        "emc" => {
            let mut extra: Vec<String> = [
                "--level",
                &args.emc_level.to_string(),
                "--bin",
                &args.emc_bin.to_string(),
                "--iters",
                &args.emc_iters.to_string(),
            ]
            .map(String::from)
            .to_vec();
            extra.extend(args.emc_args.as_deref().map(words).unwrap_or_default());
            (args.emc_budget.clone(), extra)
        }
        _ => (None, Vec::new()),
    };
    for a in &args.method_args {
        if let Some(options) = a.strip_prefix(id).and_then(|r| r.strip_prefix('=')) {
            extra.extend(words(options));
        }
    }
    // Patterns whose scale varies (fluence jitter, the focus) get EMC's per-frame scale, as
    // X-RAI fits each pattern's scale on counts.
    if id == "emc" && args.acquisition().varies() && !extra.iter().any(|w| w == "--scale") {
        extra.push("--scale".into());
    }
    (budget.unwrap_or_else(|| args.budget.clone()), extra)
}

/// Settings where `given` differs from a run's `saved` ones: every key, or with `matches` only
/// those given on the command line. Each as (key, saved value, given value).
pub fn differences(
    saved: &RunArgs,
    given: &RunArgs,
    matches: Option<&clap::ArgMatches>,
) -> Result<Vec<(String, String, String)>> {
    let saved = toml::Table::try_from(saved)?;
    let given = toml::Table::try_from(given)?;
    let mut out = Vec::new();
    for (key, value) in &given {
        if let Some(m) = matches {
            let on_command_line = m.try_get_raw(key).ok().flatten().is_some()
                && m.value_source(key) == Some(clap::parser::ValueSource::CommandLine);
            if !on_command_line {
                continue;
            }
        }
        let old = saved.get(key);
        if old != Some(value) {
            out.push((
                key.clone(),
                old.map_or("(unset)".into(), |v| v.to_string()),
                value.to_string(),
            ));
        }
    }
    Ok(out)
}

/// Refuses to continue a run with settings other than its own, naming each one.
pub fn ensure_same_settings(dir: &Path, differing: &[(String, String, String)]) -> Result<()> {
    if differing.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = differing
        .iter()
        .map(|(k, old, new)| format!("--{} {new} (the run has {k} = {old})", k.replace('_', "-")))
        .collect();
    bail!(
        "{}: a resumed run keeps the settings it was started with (its run.toml), but {} given; nothing was changed. \
         Drop the option to continue this run, or start a new run with another --out",
        dir.display(),
        list.join(", ") + if differing.len() == 1 { " was" } else { " were" }
    )
}
