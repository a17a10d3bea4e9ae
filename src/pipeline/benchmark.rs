//! One benchmark run (one dataset, one training-set size): settings checked and the molecule
//! loaded before anything is written; the truth on the evaluation grid; each method as its own
//! process (repeats keep the best by median train pose error); evaluation; Table 1 rows, plots
//! and `run.json`; the staging directory renamed into place; the summary appended.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};

use super::child::child;
use super::evaluate::{evaluate, Evaluation};
use super::settings::{
    data_args, differences, ensure_same_settings, merge_config, method_settings, simulation_config, validate,
};
use super::staging::{resume_dirs, staging_dir};
use super::{figures, MethodRun, RunArgs, RunControl};
use crate::data::ImageSimulator;
use crate::method::{self, Job, Method, MethodOutput};
use crate::mrc::{read_mrc, write_mrc};
use crate::report::table::{append_summary, hours_minutes, markdown, write_table, ResultRow};

/// One run (one training-set size); returns its rows.
pub fn run_one(args: RunArgs, control: RunControl, matches: Option<&clap::ArgMatches>) -> Result<Vec<ResultRow>> {
    // Settings: a resumed run's own, or the command line over --config.
    let (args, staging, final_dir) = match &control.resume {
        Some(dir) => {
            let (staging, final_dir) = resume_dirs(dir)?;
            let text = std::fs::read_to_string(staging.join("run.toml"))
                .with_context(|| format!("--resume: {} has no run.toml", staging.display()))?;
            let saved: RunArgs = toml::from_str(&text)
                .with_context(|| format!("{}: not a run configuration", staging.join("run.toml").display()))?;
            if matches.is_some() {
                ensure_same_settings(&final_dir, &differences(&saved, &args, matches)?)?;
            }
            (saved, staging, final_dir)
        }
        None => {
            let args = merge_config(args, matches, control.config.as_deref())?;
            let final_dir = control.out.clone().unwrap_or_else(|| {
                PathBuf::from("results").join(format!("run-{}", chrono::Utc::now().format("%Y%m%d-%H%M%S")))
            });
            if final_dir.exists() {
                bail!("{} already exists: choose another --out (nothing was changed), or continue a killed run with --resume", final_dir.display());
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
    ensure!(
        !args.pdb.contains(','),
        "one run takes one --pdb (several proteins make a sweep: xrai-bench sweep --pdb {})",
        args.pdb
    );
    let n = args.n[0];
    let methods: Vec<&'static dyn Method> = args
        .methods
        .iter()
        .map(|id| {
            method::find(id).with_context(|| format!("--methods: unknown method {id:?} (known: {})", method::ids()))
        })
        .collect::<Result<_>>()?;
    // The molecule first: a missing PDB entry fails here, before any work or any file.
    let molecule = crate::physics::molecule::load(&args.pdb, None, false, false)?;
    let sim = ImageSimulator::new(molecule, simulation_config(&args))?;
    announce(&args, n, &methods, &final_dir);
    let started = Instant::now();
    std::fs::create_dir_all(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    std::fs::write(staging.join("run.toml"), toml::to_string_pretty(&args)?)?;
    eprintln!(
        "run: {} → {} (staged in {})",
        args.pdb,
        final_dir.display(),
        staging.display()
    );

    // Ground truth on the evaluation grid (the simulator's, shared by every method).
    let truth_dir = staging.join("truth");
    if !truth_dir.join("density.mrc").exists() {
        std::fs::create_dir_all(&truth_dir)?;
        write_mrc(truth_dir.join("amplitude.mrc"), &sim.transform.amplitude(), true)?;
        write_mrc(
            truth_dir.join("density.mrc"),
            &crate::eval::density::density_from_transform(&sim.transform),
            true,
        )?;
    }
    let mut runs = Vec::new();
    for m in &methods {
        runs.push(run_method(*m, &args, n, &staging)?);
    }

    // Evaluation: phase each amplitude volume, align the density onto the truth, FSC.
    let truth_density = read_mrc(&truth_dir.join("density.mrc"))?;
    let mut evaluations = Vec::new();
    let mut fsc_curves = Vec::new();
    for r in &runs {
        let (e, curve) = evaluate(r, &truth_density, &staging, args.phasing_starts, args.seed)?;
        fsc_curves.push((r.label.to_string(), curve));
        evaluations.push(e);
    }

    let commit = crate::method::output::Software::this().git_commit;
    let rows: Vec<ResultRow> = runs
        .iter()
        .zip(&evaluations)
        .map(|(r, e)| row(&args, n, r, e, &commit, &final_dir))
        .collect();
    write_table(&staging, &rows)?;
    let md = markdown(&rows);
    std::fs::write(staging.join("table.md"), &md)?;
    if !control.no_plots {
        if let Err(e) = figures::draw(&sim, &staging, &runs, &fsc_curves) {
            eprintln!("warning: plots incomplete: {e:#}");
        }
    }
    let record = serde_json::json!({
        "software": crate::method::output::Software::this(),
        "command": std::env::args().collect::<Vec<_>>(),
        "settings": args,
        "simulation": sim.config,
        "evaluation_grid": {"m": sim.grid.m, "spacing_per_angstrom": sim.grid.spacing},
        "methods": runs.iter().zip(&evaluations).map(|(r, e)| serde_json::json!({
            "method": r.id, "dir": r.dir, "wall_time_s": r.wall_time_s, "repeat": r.repeat,
            "output": r.output, "evaluation": e,
        })).collect::<Vec<_>>(),
        "total_seconds": started.elapsed().as_secs_f64(),
        "finished": chrono::Utc::now().to_rfc3339(),
    });
    std::fs::write(staging.join("run.json"), serde_json::to_string_pretty(&record)? + "\n")?;
    std::fs::rename(&staging, &final_dir)
        .with_context(|| format!("moving {} to {}", staging.display(), final_dir.display()))?;
    append_summary(&control.summary_dir, &rows)?;
    println!("{md}");
    eprintln!(
        "results in {} (summary appended to {})",
        final_dir.display(),
        control.summary_dir.join("summary.parquet").display()
    );
    Ok(rows)
}

/// Says what the run is about to do and how long it can take, before any work (the plain
/// `xrai-bench` starts the whole benchmark, so a user sees the cost before paying it).
fn announce(args: &RunArgs, n: u64, methods: &[&'static dyn Method], final_dir: &Path) {
    let mut upper_s = 60.0; // simulator and truth
    let mut parts = Vec::new();
    for m in methods {
        let (budget, _) = method_settings(args, m.id());
        let b = crate::method::budget::parse_budget(&budget)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        // each repeat up to its budget, then phasing (~15 s a start on a 125³ grid), alignment, FSC
        upper_s += args.repeats as f64 * b + 15.0 * args.phasing_starts as f64 + 30.0;
        let repeats = if args.repeats > 1 {
            format!(" × {} repeats", args.repeats)
        } else {
            String::new()
        };
        parts.push(format!("{} (budget {budget}{repeats})", m.label()));
    }
    eprintln!(
        "xrai-bench: the benchmark on {}: {n} training and {} test images; {} — each then phased ({} starts),          aligned and scored against the truth. It takes at most about {} (a method stops at its budget; the          README's default run took 76 min on 2 cores). Results go to {}; Ctrl-C stops it, --resume {} continues it.",
        args.pdb,
        args.n_test,
        parts.join(", "),
        args.phasing_starts,
        hours_minutes(upper_s),
        final_dir.display(),
        final_dir.display()
    );
}

/// Runs one method (each repeat in its own directory and process, unless a resumed run already
/// finished it) and keeps the best repeat by median train pose error.
fn run_method(m: &'static dyn Method, args: &RunArgs, n: u64, staging: &Path) -> Result<MethodRun> {
    let (budget, extra) = method_settings(args, m.id());
    let data = data_args(args);
    let mut best: Option<(f64, MethodRun)> = None;
    for r in 1..=args.repeats {
        let dir = staging.join(if args.repeats == 1 {
            m.id().to_string()
        } else {
            format!("{}-r{r}", m.id())
        });
        let stage = dir.join("stage.txt");
        if !dir.join(crate::method::output::OUTPUT_FILE).exists() {
            let job = Job {
                data_args: &data,
                n_train: n,
                n_test: args.n_test,
                seed: args.seed,
                repeat: r - 1,
                budget: &budget,
                extra: &extra,
                out: &dir,
            };
            let argv = m.job_args(&job);
            let name = dir
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let (wall, mem) = child(&argv, &staging.join(format!("{name}.log")))?;
            std::fs::write(&stage, format!("wall_s {wall:.3}\npeak_rss_mib {mem:.1}\n"))?;
        }
        let output = MethodOutput::read(&dir)?;
        ensure!(
            output.method == m.id(),
            "{}: an output of {:?}, expected {:?}",
            dir.display(),
            output.method,
            m.id()
        );
        let wall_time_s = stage_wall_time(&stage).unwrap_or(output.timings.wall_s);
        let run = MethodRun {
            id: m.id(),
            label: m.label(),
            dir: dir.clone(),
            wall_time_s,
            repeat: r,
            output,
        };
        let key = run.output.pose_error.train.map_or(f64::INFINITY, |e| e.median_deg);
        if args.repeats > 1 {
            eprintln!("  {} repeat {r}: train median {key:.2}°", m.label());
        }
        if best.as_ref().is_none_or(|(k, _)| key < *k) {
            best = Some((key, run));
        }
    }
    Ok(best.context("at least one repeat")?.1)
}

/// The method process's wall time recorded by the benchmark (`stage.txt`).
fn stage_wall_time(stage: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(stage).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("wall_s").and_then(|v| v.trim().parse().ok()))
}

/// The table row of one method.
fn row(args: &RunArgs, n: u64, r: &MethodRun, e: &Evaluation, commit: &str, final_dir: &Path) -> ResultRow {
    let o = &r.output;
    let stat = |s: Option<crate::eval::pose_error::PoseErrorSummary>,
                f: fn(&crate::eval::pose_error::PoseErrorSummary) -> f64| s.as_ref().map_or(f64::NAN, f);
    let mut params = o.params.clone();
    if let Some(map) = params.as_object_mut() {
        map.insert("repeat".into(), r.repeat.into());
        map.insert("repeats".into(), args.repeats.into());
        let (_, extra) = method_settings(args, r.id);
        map.insert("extra".into(), extra.join(" ").into());
    }
    ResultRow {
        pdb_id: args.pdb.clone(),
        chain: chain_label(&args.pdb),
        n_train: n,
        n_test: args.n_test,
        method: r.id.into(),
        status: if o.budget.out_of_budget {
            "> budget".into()
        } else {
            "ok".into()
        },
        wall_time_s: r.wall_time_s,
        wall_time_hm: hours_minutes(r.wall_time_s),
        projected_time_s: o
            .projected_wall_s
            .filter(|p| o.budget.out_of_budget && p.is_finite())
            .unwrap_or(f64::NAN),
        resolution_px: e.resolution_px,
        resolution_angstrom: e.resolution_angstrom,
        train_median_deg: stat(o.pose_error.train, |s| s.median_deg),
        train_rms_deg: stat(o.pose_error.train, |s| s.rms_deg),
        test_median_deg: stat(o.pose_error.test, |s| s.median_deg),
        test_rms_deg: stat(o.pose_error.test, |s| s.rms_deg),
        images_per_s: o.images_per_s,
        peak_memory_mib: o.peak_memory_mib,
        seed: args.seed,
        noise: format!("{:?}", args.noise).to_lowercase(),
        crate_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: commit.into(),
        params: params.to_string(),
        run_dir: final_dir.display().to_string(),
        timestamp: chrono::Utc::now().to_rfc3339(),
    }
}

/// "A" for 2CEX_A, "all" for a bare ID or a file.
pub fn chain_label(pdb: &str) -> String {
    let stem = Path::new(pdb).file_stem().and_then(|s| s.to_str()).unwrap_or(pdb);
    match stem.split_once('_') {
        Some((id, chain)) if id.len() == 4 && !chain.is_empty() => chain.to_uppercase(),
        _ => "all".into(),
    }
}
