//! `xrai-bench run` (also `xrai-bench --pdb ID --n N` with no subcommand): the whole benchmark
//! for one dataset: simulate the training stream and a held-out test set, reconstruct with each
//! method, evaluate both against the truth (pose error, phasing, FSC), and write Table 1 rows
//! (CSV + Parquet), plots and a `run.json`.
//!
//! Each method runs as a child process of this binary (`xrai-bench xrai …`, `xrai-bench emc
//! …`), so its wall time and peak memory are its own and a crash in one leaves the others'
//! results. The run directory is staged as `.NAME.partial` beside its final name and renamed
//! when complete; a killed run continues with `--resume` (finished stages are kept, an
//! interrupted X-RAI stage continues from its last checkpoint).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::data::{ImageSimulator, Split};
use crate::eval::align::{align, AlignParams};
use crate::eval::fsc::{fsc, THRESHOLD_HALF};
use crate::eval::phasing::{phase, PhasingParams};
use crate::eval::pose_error::pose_error;
use crate::mrc::{read_mrc, write_mrc};
use crate::report::plots;
use crate::report::table::{append_summary, hours_minutes, markdown, write_table, ResultRow};
use crate::rotation::read_poses;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Xrai,
    Emc,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Xrai => "xrai",
            Method::Emc => "emc",
        }
    }
}

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
    /// PDB ID (e.g. 2CEX_A) or path to a .pdb/.cif file (the bundled 2CEX chain A by default).
    #[arg(long, default_value = "2CEX_A")]
    pub pdb: String,
    /// Training images (a fixed set revisited by X-RAI's epochs; EMC reads them all). Several
    /// sizes, comma-separated (e.g. 5000,50000,500000), run a sweep: one run per size and the
    /// runtime- and accuracy-against-N plots.
    #[arg(long, short = 'n', value_delimiter = ',', default_values_t = [50_000u64])]
    pub n: Vec<u64>,
    /// Held-out test images.
    #[arg(long, default_value_t = 10_000)]
    pub n_test: u64,
    /// Methods to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Method::Xrai, Method::Emc])]
    pub methods: Vec<Method>,
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
    /// Reciprocal grid size M (odd) of the simulation and evaluation; default from the
    /// molecule's size (125 for 2CEX_A at the paper's geometry). Small values make quick runs.
    #[arg(long)]
    pub grid: Option<usize>,
    /// Phasing starts for each method's evaluation.
    #[arg(long, default_value_t = PhasingParams::default().starts)]
    pub phasing_starts: usize,
}

impl Default for RunArgs {
    fn default() -> Self {
        RunArgs {
            pdb: "2CEX_A".into(),
            n: vec![50_000],
            n_test: 10_000,
            methods: vec![Method::Xrai, Method::Emc],
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
            grid: None,
            phasing_starts: PhasingParams::default().starts,
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
}

/// The settings from `--config` with the options given explicitly on the command line on top.
pub fn merge_config(cli: RunArgs, matches: Option<&clap::ArgMatches>, config: Option<&Path>) -> Result<RunArgs> {
    let Some(path) = config else { return Ok(cli) };
    let text = std::fs::read_to_string(path).with_context(|| format!("--config: cannot read {}", path.display()))?;
    let mut file: toml::Table = toml::from_str(&text).with_context(|| format!("--config {}: not valid TOML", path.display()))?;
    let cli_table = toml::Table::try_from(&cli)?;
    if let Some(m) = matches {
        for (key, value) in cli_table {
            let id = key.as_str();
            if m.try_get_raw(id).ok().flatten().is_some() && m.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
                file.insert(key, value);
            }
        }
    }
    toml::Value::Table(file).try_into().with_context(|| format!("--config {}: not a run configuration (see a run's run.toml)", path.display()))
}

/// One method's reconstruction, evaluated.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MethodResult {
    pub method: Method,
    pub dir: PathBuf,
    pub wall_time_s: f64,
    pub peak_memory_mib: f64,
    pub out_of_budget: bool,
    pub images_per_s: f64,
    pub resolution_px: f64,
    pub resolution_angstrom: f64,
    pub train_median_deg: f64,
    pub train_rms_deg: f64,
    pub test_median_deg: f64,
    pub test_rms_deg: f64,
    pub params: serde_json::Value,
}

/// One run, or a sweep when several sizes are given (or `sweep` is set).
pub fn run(args: RunArgs, control: RunControl, matches: Option<&clap::ArgMatches>, sweep: bool) -> Result<()> {
    if control.resume.is_some() {
        return run_one(args, control, matches).map(|_| ());
    }
    let args = merge_config(args, matches, control.config.as_deref())?;
    ensure!(!args.n.is_empty(), "--n: give at least one training-set size");
    if args.n.len() == 1 && !sweep {
        return run_one(args, RunControl { config: None, ..control }, None).map(|_| ());
    }
    validate(&args)?;
    // a sweep: one run per size inside the sweep directory, then the scaling plots
    crate::physics::molecule::load(&args.pdb, None, false, false)?;
    let root = control.out.clone().unwrap_or_else(|| PathBuf::from("results").join(format!("sweep-{}", chrono::Utc::now().format("%Y%m%d-%H%M%S"))));
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let mut rows = Vec::new();
    for &n in &args.n {
        let dir = root.join(format!("n{n}"));
        let one = RunArgs { n: vec![n], ..args.clone() };
        if dir.join("table.parquet").exists() {
            eprintln!("sweep: N = {n} already done in {}", dir.display());
        } else {
            let resume = staging_dir(&dir)?.exists().then(|| dir.clone());
            let control = RunControl { config: None, out: Some(dir.clone()), resume, ..control.clone() };
            run_one(one, control, None)?;
        }
        rows.extend(crate::report::table::read_table(&dir.join("table.parquet"))?);
    }
    let md = markdown(&rows);
    std::fs::write(root.join("table.md"), &md)?;
    write_table(&root, &rows)?;
    if !control.no_plots {
        let budget = |m: &str| {
            let b = if m == "xrai" { args.xrai_budget.as_ref() } else { args.emc_budget.as_ref() };
            super::parse_budget(b.unwrap_or(&args.budget)).ok().map(|d| d.as_secs_f64())
        };
        let series = |key: fn(&ResultRow) -> f64, mark_budget: bool| -> Vec<(String, Vec<(f64, f64)>)> {
            ["xrai", "emc"]
                .iter()
                .filter(|m| rows.iter().any(|r| r.method == **m))
                .map(|m| {
                    let pts = rows
                        .iter()
                        .filter(|r| r.method == *m)
                        .map(|r| (r.n_train as f64, if mark_budget && r.status != "ok" { f64::INFINITY } else { key(r) }))
                        .collect();
                    (label(if *m == "xrai" { Method::Xrai } else { Method::Emc }), pts)
                })
                .collect()
        };
        let plots_dir = root.join("plots");
        std::fs::create_dir_all(&plots_dir)?;
        let budget_s = budget("emc").or(budget("xrai"));
        plots::scaling(&plots_dir.join("runtime_vs_n"), "Wall-clock time against dataset size", "wall-clock time (s)", &series(|r| r.wall_time_s, true), budget_s)?;
        plots::scaling(&plots_dir.join("test_error_vs_n"), "Test pose error against dataset size", "median test pose error (°)", &series(|r| r.test_median_deg, false), None)?;
        plots::scaling(&plots_dir.join("resolution_vs_n"), "Resolution against dataset size", "resolution, FSC = 0.5 (px)", &series(|r| r.resolution_px, false), None)?;
    }
    println!("{md}");
    eprintln!("sweep results in {}", root.display());
    Ok(())
}

/// One run (one training-set size); returns its rows.
fn run_one(args: RunArgs, control: RunControl, matches: Option<&clap::ArgMatches>) -> Result<Vec<ResultRow>> {
    // Settings: a resumed run's own, or the command line over --config.
    let (args, staging, final_dir) = match &control.resume {
        Some(dir) => {
            let (staging, final_dir) = resume_dirs(dir)?;
            let text = std::fs::read_to_string(staging.join("run.toml"))
                .with_context(|| format!("--resume: {} has no run.toml", staging.display()))?;
            let args: RunArgs = toml::from_str(&text).with_context(|| format!("{}: not a run configuration", staging.join("run.toml").display()))?;
            (args, staging, final_dir)
        }
        None => {
            let args = merge_config(args, matches, control.config.as_deref())?;
            let final_dir = control.out.clone().unwrap_or_else(|| {
                PathBuf::from("results").join(format!("run-{}", chrono::Utc::now().format("%Y%m%d-%H%M%S")))
            });
            if final_dir.exists() {
                bail!(
                    "{} already exists: choose another --out (nothing was changed), or continue a killed run with --resume",
                    final_dir.display()
                );
            }
            let staging = staging_dir(&final_dir)?;
            if staging.exists() {
                bail!(
                    "{} exists (an interrupted run of the same name): continue it with --resume {} or remove it",
                    staging.display(),
                    final_dir.display()
                );
            }
            (args, staging, final_dir)
        }
    };
    validate(&args)?;
    ensure!(args.n.len() == 1, "one run takes one --n (several sizes make a sweep)");
    let n = args.n[0];
    // The molecule first: a missing PDB entry fails here, before any work or any file.
    let molecule = crate::physics::molecule::load(&args.pdb, None, false, false)?;
    let started = Instant::now();
    std::fs::create_dir_all(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    std::fs::write(staging.join("run.toml"), toml::to_string_pretty(&args)?)?;
    eprintln!("run: {} → {} (staged in {})", args.pdb, final_dir.display(), staging.display());

    // Ground truth on the evaluation grid (the simulator's, shared by both methods).
    let sim = ImageSimulator::new(molecule, simulation_config(&args))?;
    let truth_dir = staging.join("truth");
    if !truth_dir.join("density.mrc").exists() {
        std::fs::create_dir_all(&truth_dir)?;
        write_mrc(truth_dir.join("amplitude.mrc"), &sim.transform.amplitude(), true)?;
        write_mrc(truth_dir.join("density.mrc"), &crate::eval::density::density_from_transform(&sim.transform), true)?;
    }

    let mut results = Vec::new();
    for &method in &args.methods {
        let result = match method {
            Method::Xrai => run_xrai(&args, n, &staging)?,
            Method::Emc => run_emc(&args, n, &staging)?,
        };
        results.push(result);
    }

    // Evaluation: phase each amplitude volume, align the density onto the truth, FSC.
    let truth_density = read_mrc(&truth_dir.join("density.mrc"))?;
    let mut fsc_curves = Vec::new();
    for r in results.iter_mut() {
        let (res, curve) = evaluate(r, &truth_density, &staging, args.phasing_starts, args.seed)?;
        r.resolution_px = res.0;
        r.resolution_angstrom = res.1;
        fsc_curves.push((label(r.method), curve));
    }

    // Tables
    let commit = git_commit();
    let rows: Vec<ResultRow> = results
        .iter()
        .map(|r| ResultRow {
            pdb_id: args.pdb.clone(),
            chain: chain_label(&args.pdb),
            n_train: n,
            n_test: args.n_test,
            method: r.method.name().into(),
            status: if r.out_of_budget { "> budget".into() } else { "ok".into() },
            wall_time_s: r.wall_time_s,
            wall_time_hm: hours_minutes(r.wall_time_s),
            resolution_px: r.resolution_px,
            resolution_angstrom: r.resolution_angstrom,
            train_median_deg: r.train_median_deg,
            train_rms_deg: r.train_rms_deg,
            test_median_deg: r.test_median_deg,
            test_rms_deg: r.test_rms_deg,
            images_per_s: r.images_per_s,
            peak_memory_mib: r.peak_memory_mib,
            seed: args.seed,
            noise: format!("{:?}", args.noise).to_lowercase(),
            crate_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: commit.clone(),
            params: r.params.to_string(),
            run_dir: final_dir.display().to_string(),
            timestamp: chrono::Utc::now().to_rfc3339(),
        })
        .collect();
    write_table(&staging, &rows)?;
    let md = markdown(&rows);
    std::fs::write(staging.join("table.md"), &md)?;

    if !control.no_plots {
        if let Err(e) = draw_plots(&sim, &staging, &results, &fsc_curves) {
            eprintln!("warning: plots incomplete: {e:#}");
        }
    }
    let record = serde_json::json!({
        "software": {"name": "xrai-bench", "version": env!("CARGO_PKG_VERSION"), "git_commit": commit},
        "command": std::env::args().collect::<Vec<_>>(),
        "settings": args,
        "simulation": sim.config,
        "evaluation_grid": {"m": sim.grid.m, "spacing_per_angstrom": sim.grid.spacing},
        "methods": results,
        "total_seconds": started.elapsed().as_secs_f64(),
        "finished": chrono::Utc::now().to_rfc3339(),
    });
    std::fs::write(staging.join("run.json"), serde_json::to_string_pretty(&record)? + "\n")?;
    std::fs::rename(&staging, &final_dir).with_context(|| format!("moving {} to {}", staging.display(), final_dir.display()))?;
    append_summary(&control.summary_dir, &rows)?;
    println!("{md}");
    eprintln!("results in {} (summary appended to {})", final_dir.display(), control.summary_dir.join("summary.parquet").display());
    Ok(rows)
}

fn validate(args: &RunArgs) -> Result<()> {
    ensure!(args.n.iter().all(|&n| n >= 2), "--n must be at least 2 (got {:?})", args.n);
    ensure!(args.n_test >= 1, "--n-test must be at least 1");
    ensure!(!args.methods.is_empty(), "--methods: give at least one of xrai, emc");
    ensure!(args.repeats >= 1, "--repeats must be at least 1");
    ensure!(args.rescale_total > 0.0, "--rescale-total must be positive");
    for b in [Some(&args.budget), args.xrai_budget.as_ref(), args.emc_budget.as_ref()].into_iter().flatten() {
        super::parse_budget(b)?;
    }
    Ok(())
}

/// `results/run-X` → (`results/.run-X.partial`, `results/run-X`); the staging path itself is
/// accepted too.
fn resume_dirs(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let name = dir.file_name().and_then(|n| n.to_str()).with_context(|| format!("--resume {}: not a run directory", dir.display()))?;
    let parent = dir.parent().unwrap_or(Path::new("."));
    let (staging, final_dir) = match name.strip_prefix('.').and_then(|n| n.strip_suffix(".partial")) {
        Some(base) => (dir.to_path_buf(), parent.join(base)),
        None => (parent.join(format!(".{name}.partial")), dir.to_path_buf()),
    };
    if !staging.is_dir() {
        if final_dir.join("run.json").exists() {
            bail!("--resume {}: that run already finished (nothing to do)", final_dir.display());
        }
        bail!("--resume {}: no interrupted run here ({} does not exist)", dir.display(), staging.display());
    }
    Ok((staging, final_dir))
}

fn staging_dir(final_dir: &Path) -> Result<PathBuf> {
    let name = final_dir.file_name().and_then(|n| n.to_str()).with_context(|| format!("--out {}: needs a directory name", final_dir.display()))?;
    let parent = final_dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    Ok(parent.join(format!(".{name}.partial")))
}

fn simulation_config(args: &RunArgs) -> crate::data::SimulationConfig {
    let mut physics: super::simulate::PhysicsArgs = parse_sub(&["x"]).expect("default physics arguments parse");
    physics.rescale_total = Some(args.rescale_total);
    physics.rescale = super::simulate::RescaleMode::Mean;
    physics.poisson = args.noise == Noise::Poisson;
    physics.seed = args.seed;
    physics.grid = args.grid;
    physics.config()
}

/// Parses a flattened clap `Args` struct from an argument list (the first item is the name).
fn parse_sub<T: clap::Args>(argv: &[&str]) -> Result<T> {
    #[derive(clap::Parser)]
    struct Wrap<A: clap::Args> {
        #[command(flatten)]
        inner: A,
    }
    let w = <Wrap<T> as clap::Parser>::try_parse_from(argv)?;
    Ok(w.inner)
}

/// The data options every method gets, so all see the same images.
fn data_args(args: &RunArgs) -> Vec<String> {
    let mut v: Vec<String> = ["--pdb", &args.pdb, "--rescale", "mean", "--rescale-total", &args.rescale_total.to_string(), "--seed", &args.seed.to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if args.noise == Noise::Poisson {
        v.push("--poisson".into());
    }
    if let Some(m) = args.grid {
        v.extend(["--grid".into(), m.to_string()]);
    }
    v
}

fn extra(s: &Option<String>) -> Vec<String> {
    s.as_deref().map(|s| s.split_whitespace().map(String::from).collect()).unwrap_or_default()
}

/// Runs `xrai-bench <argv>` as a child; returns (wall seconds, peak RSS MiB).
fn child(argv: &[String], log: &Path) -> Result<(f64, f64)> {
    let exe = std::env::current_exe().context("cannot find this program's executable")?;
    eprintln!("  $ xrai-bench {}", argv.join(" "));
    let t0 = Instant::now();
    let mut cmd = std::process::Command::new(exe);
    cmd.args(argv);
    let child = cmd.spawn().context("cannot start a method process")?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // Peak memory is the child's own VmHWM, sampled by a thread while it runs (a high-water
    // mark, so only the last 0.1 s can be missed): ru_maxrss would also count the parent's
    // RSS, which Linux carries into the child at exec. The main thread blocks until the child
    // exits (exact wall time), leaves it unreaped (WNOWAIT, so its pid cannot be reused while
    // the sampler may still read /proc), stops the sampler, then reaps it with wait4.
    let exited = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let exited = exited.clone();
        std::thread::spawn(move || {
            let mut hwm_kib = 0u64;
            while !exited.load(std::sync::atomic::Ordering::Relaxed) {
                hwm_kib = hwm_kib.max(vm_hwm_kib(pid).unwrap_or(0));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            hwm_kib
        })
    };
    // SAFETY: siginfo_t is plain data; waitid fills it for our own child.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let w = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
    let secs = t0.elapsed().as_secs_f64();
    exited.store(true, std::sync::atomic::Ordering::Relaxed);
    let hwm_kib = sampler.join().unwrap_or(0);
    ensure!(w == 0, "waiting for the method process failed: {}", std::io::Error::last_os_error());
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    ensure!(r == pid, "waiting for the method process failed: {}", std::io::Error::last_os_error());
    let peak_mib = if hwm_kib > 0 { hwm_kib as f64 / 1024.0 } else { usage.ru_maxrss as f64 / 1024.0 };
    std::fs::write(log, format!("{}\nwall_s {secs:.3}\npeak_rss_mib {peak_mib:.1}\nexit {status}\n", argv.join(" ")))?;
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "`xrai-bench {}` failed (see its messages above); finished stages are kept: continue with --resume",
        argv.first().map(String::as_str).unwrap_or("")
    );
    Ok((secs, peak_mib))
}

/// The peak resident set size (VmHWM, KiB) of a running process, from /proc (Linux only).
fn vm_hwm_kib(pid: libc::pid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))
}

fn stats(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

/// A stage's timing: measured now, or read back from its `stage.txt` when it finished before
/// a `--resume`.
fn timing(dir: &Path) -> (f64, f64) {
    let text = std::fs::read_to_string(dir.join("stage.txt")).unwrap_or_default();
    let get = |key: &str| text.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok())).unwrap_or(f64::NAN);
    (get("wall_s"), get("peak_rss_mib"))
}

fn run_xrai(args: &RunArgs, n: u64, staging: &Path) -> Result<MethodResult> {
    let budget = args.xrai_budget.clone().unwrap_or_else(|| args.budget.clone());
    let mut best: Option<(f64, MethodResult)> = None;
    for r in 1..=args.repeats {
        let dir = staging.join(if args.repeats == 1 { "xrai".to_string() } else { format!("xrai-r{r}") });
        if !dir.join("summary.json").exists() {
            let mut argv: Vec<String> = vec!["xrai".into()];
            argv.extend(data_args(args));
            argv.extend(["--n", &n.to_string(), "--test-images", &args.n_test.to_string(), "--init-seed", &(r - 1).to_string()].map(String::from));
            argv.extend(["--budget".to_string(), budget.clone()]);
            if let Some(s) = args.xrai_steps {
                argv.extend(["--steps".into(), s.to_string()]);
            }
            argv.extend(extra(&args.xrai_args));
            // an interrupted attempt leaves checkpoints in its staging directory: continue from them
            if let Some(ckpt) = interrupted_checkpoint(&dir) {
                eprintln!("  continuing X-RAI from {}", ckpt.display());
                argv.extend(["--resume".into(), ckpt.display().to_string()]);
            }
            argv.extend(["--out".into(), dir.display().to_string()]);
            let (wall, mem) = child(&argv, &staging.join(format!("{}.log", dir.file_name().unwrap().to_string_lossy())))?;
            std::fs::write(dir.join("stage.txt"), format!("wall_s {wall:.3}\npeak_rss_mib {mem:.1}\n"))?;
        }
        let (wall, mem) = timing(&dir);
        let s = read_json(&dir.join("summary.json"))?;
        let result = MethodResult {
            method: Method::Xrai,
            dir: dir.clone(),
            wall_time_s: wall,
            peak_memory_mib: mem,
            out_of_budget: false,
            images_per_s: stats(&s, "images_seen") / stats(&s, "elapsed_s"),
            resolution_px: f64::NAN,
            resolution_angstrom: f64::NAN,
            train_median_deg: stats(&s["train_pose_error"], "median_deg"),
            train_rms_deg: stats(&s["train_pose_error"], "rms_deg"),
            test_median_deg: stats(&s["test_pose_error"], "median_deg"),
            test_rms_deg: stats(&s["test_pose_error"], "rms_deg"),
            params: serde_json::json!({
                "budget": budget, "steps": s["steps"], "repeat": r, "repeats": args.repeats,
                "heads": s["config"]["heads"], "decoder": s["config"]["decoder"], "working_size": s["config"]["working_size"],
                "extra": args.xrai_args,
            }),
        };
        eprintln!("  X-RAI repeat {r}: train median {:.2}°, test median {:.2}°", result.train_median_deg, result.test_median_deg);
        let key = result.train_median_deg;
        if best.as_ref().is_none_or(|(k, _)| key < *k) {
            best = Some((key, result));
        }
    }
    Ok(best.expect("at least one repeat").1)
}

/// The newest `checkpoint/` inside an interrupted `xrai` staging directory (`.NAME.partial-PID`).
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

fn run_emc(args: &RunArgs, n: u64, staging: &Path) -> Result<MethodResult> {
    let budget = args.emc_budget.clone().unwrap_or_else(|| args.budget.clone());
    let dir = staging.join("emc");
    if !dir.join("meta.json").exists() {
        let mut argv: Vec<String> = vec!["emc".into()];
        argv.extend(data_args(args));
        argv.extend(
            [
                "--n", &n.to_string(), "--n-test", &args.n_test.to_string(), "--level", &args.emc_level.to_string(),
                "--bin", &args.emc_bin.to_string(), "--iters", &args.emc_iters.to_string(), "--model-seed", &(args.seed + 1).to_string(),
            ]
            .map(String::from),
        );
        argv.extend(["--budget".to_string(), budget.clone()]);
        argv.extend(extra(&args.emc_args));
        argv.extend(["--out".into(), dir.display().to_string()]);
        let (wall, mem) = child(&argv, &staging.join("emc.log"))?;
        std::fs::write(dir.join("stage.txt"), format!("wall_s {wall:.3}\npeak_rss_mib {mem:.1}\n"))?;
    }
    let (wall, mem) = timing(&dir);
    let meta = read_json(&dir.join("meta.json"))?;
    let iterations = meta["iterations_completed"].as_f64().unwrap_or(0.0);
    let frames = meta["frames"].as_f64().unwrap_or(f64::NAN);
    Ok(MethodResult {
        method: Method::Emc,
        dir,
        wall_time_s: wall,
        peak_memory_mib: mem,
        out_of_budget: meta["out_of_budget"].as_bool().unwrap_or(false),
        images_per_s: frames * iterations / stats(&meta["timings_seconds"], "total"),
        resolution_px: f64::NAN,
        resolution_angstrom: f64::NAN,
        train_median_deg: stats(&meta["pose_error"]["train"], "median_deg"),
        train_rms_deg: stats(&meta["pose_error"]["train"], "rms_deg"),
        test_median_deg: stats(&meta["pose_error"]["test"], "median_deg"),
        test_rms_deg: stats(&meta["pose_error"]["test"], "rms_deg"),
        params: serde_json::json!({
            "budget": budget, "level": args.emc_level, "bin": args.emc_bin, "iterations": iterations,
            "iterations_requested": args.emc_iters, "extra": args.emc_args,
        }),
    })
}

fn amplitude_path(r: &MethodResult) -> PathBuf {
    match r.method {
        Method::Xrai => r.dir.join("amplitude.mrc"),
        Method::Emc => r.dir.join("model_amplitude.mrc"),
    }
}

fn label(m: Method) -> String {
    match m {
        Method::Xrai => "X-RAI".into(),
        Method::Emc => "EMC".into(),
    }
}

/// Phase, align onto the truth, FSC; writes `eval/<method>/{density.mrc,fsc.csv}`. Returns
/// ((resolution px, Å), FSC curve as (1/Å, FSC)).
fn evaluate(r: &MethodResult, truth: &crate::volume::DensityMap, staging: &Path, starts: usize, seed: u64) -> Result<((f64, f64), Vec<(f64, f64)>)> {
    let out = staging.join("eval").join(r.method.name());
    std::fs::create_dir_all(&out)?;
    let fsc_csv = out.join("fsc.csv");
    let density_path = out.join("density.mrc");
    if !(fsc_csv.exists() && density_path.exists()) {
        let t0 = Instant::now();
        let amplitude = read_mrc(&amplitude_path(r))?;
        let phased = phase(&amplitude, &PhasingParams { starts, seed, ..PhasingParams::default() });
        let (aligned, alignment) = align(truth, &phased.density, &AlignParams::default())
            .with_context(|| format!("aligning the {} density onto the truth", label(r.method)))?;
        write_mrc(&density_path, &aligned, true)?;
        let curve = fsc(truth, &aligned)?;
        let mut text = String::from("shell,frequency_per_angstrom,fsc,count\n");
        for (k, f) in curve.fsc.iter().enumerate() {
            text.push_str(&format!("{k},{:.6},{f:.6},{}\n", curve.frequency(k as f64), curve.counts[k]));
        }
        let res = curve.resolution(THRESHOLD_HALF);
        std::fs::write(out.join("resolution.json"), serde_json::to_string_pretty(&serde_json::json!({
            "resolution_px": res.resolution_px, "resolution_angstrom": res.resolution_angstrom, "crossed": res.crossed,
            "fourier_error": phased.fourier_error(), "alignment_correlation": alignment.correlation,
            "seconds": t0.elapsed().as_secs_f64(),
        }))?)?;
        std::fs::write(&fsc_csv, text)?;
        eprintln!(
            "  {}: phased and aligned in {:.0} s, FSC 0.5 at {:.2} px ({:.2} Å)",
            label(r.method),
            t0.elapsed().as_secs_f64(),
            res.resolution_px,
            res.resolution_angstrom
        );
    }
    let res = read_json(&out.join("resolution.json"))?;
    let curve: Vec<(f64, f64)> = std::fs::read_to_string(&fsc_csv)?
        .lines()
        .skip(1)
        .filter_map(|l| {
            let v: Vec<f64> = l.split(',').filter_map(|x| x.parse().ok()).collect();
            (v.len() == 4).then(|| (v[1], v[2]))
        })
        .collect();
    Ok(((stats(&res, "resolution_px"), stats(&res, "resolution_angstrom")), curve))
}

/// A method's estimated poses of the test images.
fn test_poses(r: &MethodResult) -> Result<Vec<nalgebra::UnitQuaternion<f64>>> {
    read_poses(&r.dir.join(match r.method {
        Method::Xrai => "poses_test.csv",
        Method::Emc => "test_poses.csv",
    }))
}

/// Per-image test pose errors of a method (degrees).
fn test_errors(r: &MethodResult, sim: &ImageSimulator) -> Result<Vec<f64>> {
    let est = test_poses(r)?;
    let truth: Vec<_> = (0..est.len() as u64).map(|i| sim.pose(Split::Test, i)).collect();
    Ok(pose_error(&truth, &est)?.angles_deg)
}

fn draw_plots(sim: &ImageSimulator, dir: &Path, results: &[MethodResult], fsc_curves: &[(String, Vec<(f64, f64)>)]) -> Result<()> {
    let plots_dir = dir.join("plots");
    std::fs::create_dir_all(&plots_dir)?;
    plots::fsc_curves(&plots_dir.join("fsc"), fsc_curves)?;
    let mut errs = Vec::new();
    for r in results {
        errs.push((label(r.method), test_errors(r, sim)?));
    }
    plots::pose_error_distribution(&plots_dir.join("pose_error"), &errs)?;
    for r in results {
        match r.method {
            Method::Xrai => {
                let points = read_curve(&r.dir.join("curve.csv"))?;
                if !points.is_empty() {
                    plots::training_curves(&plots_dir.join("xrai_training"), &points)?;
                }
            }
            Method::Emc => {
                let iters = read_emc_log(&r.dir.join("log.csv"))?;
                if !iters.is_empty() {
                    plots::emc_log_likelihood(&plots_dir.join("emc_log_likelihood"), &iters)?;
                }
            }
        }
    }
    // Gallery: test images against each method's slice at its estimated pose.
    let side = sim.config.detector.pixels;
    let mut rows = Vec::new();
    for r in results {
        let mut model = read_mrc(&amplitude_path(r))?.map(|&a| if a > 0.0 { a * a } else { 0.0 });
        // the simulator's grid by construction; the MRC header stores Δs only to f32 precision
        ensure!(model.m == sim.grid.m, "{}: {}³, but the evaluation grid is {}³", amplitude_path(r).display(), model.m, sim.grid.m);
        model.spacing = sim.grid.spacing;
        let slicer = crate::physics::slice::Slicer::new(&model, &sim.geometry)?;
        let poses = test_poses(r)?;
        for (i, pose) in poses.iter().take(3).enumerate() {
            let mut input = vec![0f32; side * side];
            sim.image(Split::Test, i as u64, &mut input);
            let recon = slicer.slice(&crate::rotation::to_matrix(pose));
            rows.push((format!("{} · test {}", label(r.method), i + 1), input, recon));
        }
    }
    plots::image_gallery(&plots_dir.join("gallery"), side, &rows)?;
    // Central slices: amplitudes (log) and aligned densities (linear), truth vs each method.
    let truth_amp = read_mrc(&dir.join("truth/amplitude.mrc"))?;
    let truth_den = read_mrc(&dir.join("truth/density.mrc"))?;
    let mut columns = vec!["truth".to_string()];
    let mut amp_slices = vec![central_slice(&truth_amp)];
    let mut den_slices = vec![central_slice(&truth_den)];
    for r in results {
        columns.push(label(r.method));
        amp_slices.push(central_slice(&read_mrc(&amplitude_path(r))?));
        den_slices.push(central_slice(&read_mrc(&dir.join("eval").join(r.method.name()).join("density.mrc"))?));
    }
    // The density box is 1/Δs = 4kR wide (k = 3): the molecule fills its central sixth, so
    // show the central third (twice the molecule's diameter) rather than a speck.
    let crop = (truth_den.m / 3) | 1;
    let den_slices: Vec<Vec<f32>> = den_slices.iter().map(|s| central_crop(s, truth_den.m, crop)).collect();
    plots::volume_slices(
        &plots_dir.join("slices"),
        &columns,
        &[("|F| (own frame)".into(), truth_amp.m, amp_slices), ("density (aligned)".into(), crop, den_slices)],
        &[true, false],
    )?;
    Ok(())
}

/// The central `side × side` window of an `m × m` slice.
fn central_crop(slice: &[f32], m: usize, side: usize) -> Vec<f32> {
    let side = side.min(m);
    let start = (m - side) / 2;
    (start..start + side).flat_map(|row| slice[row * m + start..][..side].iter().copied()).collect()
}

fn central_slice(v: &crate::volume::Volume<f32>) -> Vec<f32> {
    let m = v.m;
    let c = v.centre();
    v.data[c * m * m..(c + 1) * m * m].to_vec()
}

fn read_curve(path: &Path) -> Result<Vec<plots::TrainingPoint>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let v: Vec<f64> = l.split(',').map(|x| x.parse().unwrap_or(f64::NAN)).collect();
            (v.len() >= 7).then(|| plots::TrainingPoint { step: v[0] as usize, elapsed_s: v[1], loss: v[3], test_median_deg: v[6] })
        })
        .collect())
}

fn read_emc_log(path: &Path) -> Result<Vec<plots::EmcIteration>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let v: Vec<&str> = l.split(',').collect();
            (v.len() >= 7).then(|| plots::EmcIteration {
                iteration: v[0].parse().unwrap_or(0),
                log_likelihood: v[2].parse().unwrap_or(f64::NAN),
                beta: v[6].parse().unwrap_or(f64::NAN),
            })
        })
        .collect())
}

/// "A" for 2CEX_A, "all" for a bare ID or a file.
fn chain_label(pdb: &str) -> String {
    let stem = Path::new(pdb).file_stem().and_then(|s| s.to_str()).unwrap_or(pdb);
    match stem.split_once('_') {
        Some((id, chain)) if id.len() == 4 && !chain.is_empty() => chain.to_uppercase(),
        _ => "all".into(),
    }
}

/// The commit this binary was built from (`git describe --always --dirty`, recorded by
/// build.rs), or "unknown".
pub fn git_commit() -> String {
    env!("XRAI_BENCH_GIT_COMMIT").to_string()
}
