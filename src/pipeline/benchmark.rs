//! One benchmark run (one dataset, one training-set size): settings checked and the molecule
//! loaded before anything is written; the truth on the evaluation grid; each method as its own
//! process (repeats keep the best by median train pose error); evaluation; Table 1 rows, plots
//! and `run.json`; the staging directory renamed into place; the summary appended.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};

use super::child::child;
use super::evaluate::{evaluate, Evaluation};
use super::external;
use super::settings::{
    data_args, differences, ensure_same_settings, merge_config, method_settings, simulation_config, validate,
};
use super::staging::{resume_dirs, staging_dir};
use super::{figures, MethodRun, RunArgs, RunControl};
use crate::data::ImageSimulator;
use crate::eval::fsc::THRESHOLD_HALF;
use crate::method::{self, Job, Method, MethodOutput};
use crate::mrc::{read_mrc, write_mrc};
use crate::report::table::{append_summary, hours_minutes, markdown, time_to, write_table, ResultRow};

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
    let launcher = super::child::launcher(control.launcher.as_deref())?;
    ensure!(args.n.len() == 1, "one run takes one --n (several sizes make a sweep)");
    ensure!(
        args.mean_photons.len() <= 1,
        "one run takes one --mean-photons (several photon levels make a sweep)"
    );
    ensure!(
        !args.pdb().contains(','),
        "one run takes one --pdb (several proteins make a sweep: xrai-bench sweep --pdb {})",
        args.pdb()
    );
    let n = args.n[0];
    let methods: Vec<&'static dyn Method> = args
        .methods
        .iter()
        .map(|id| {
            method::find(id).with_context(|| format!("--methods: unknown method {id:?} (known: {})", method::ids()))
        })
        .collect::<Result<_>>()?;
    // The data first, simulated or read: a missing PDB entry or a bad file fails here, before
    // any work or any file.
    let external = args.data.as_ref().map(|_| external::check(&args, n)).transpose()?;
    let sim = match &external {
        None => {
            let molecule = crate::physics::molecule::load(args.pdb(), None, false, false)?;
            Some(ImageSimulator::new(molecule, simulation_config(&args))?)
        }
        Some(_) => {
            if let Some(pdb) = &args.pdb {
                crate::physics::molecule::load(pdb, None, false, false).with_context(|| format!("--pdb {pdb}"))?;
            }
            None
        }
    };
    announce(&args, n, &methods, &final_dir);
    let started = Instant::now();
    std::fs::create_dir_all(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    std::fs::write(staging.join("run.toml"), toml::to_string_pretty(&args)?)?;
    eprintln!(
        "run: {} → {} (staged in {})",
        dataset_name(&args),
        final_dir.display(),
        staging.display()
    );

    // Ground truth on the evaluation grid (the simulator's, shared by every method).
    let truth_dir = staging.join("truth");
    if let Some(sim) = sim.as_ref().filter(|_| !truth_dir.join("density.mrc").exists()) {
        std::fs::create_dir_all(&truth_dir)?;
        write_mrc(truth_dir.join("amplitude.mrc"), &sim.transform.amplitude(), true)?;
        write_mrc(
            truth_dir.join("density.mrc"),
            &crate::eval::density::density_from_transform(&sim.transform),
            true,
        )?;
    }
    let data = match &external {
        None => data_args(&args),
        Some(_) => external::method_flags(&args, 0..n, n),
    };
    let mut runs = Vec::new();
    for m in &methods {
        runs.push(run_method(*m, &args, &launcher, n, &staging, &data, "")?);
    }

    // Evaluation: phase each amplitude volume, align the density onto the truth, FSC.
    let mut evaluations = Vec::new();
    let mut fsc_curves = Vec::new();
    let (starts, seed) = (args.phasing_starts, args.seed);
    // the detector's corner: the finest period any method could resolve
    let s_max = sim.as_ref().map(|s| s.geometry.s_max());
    for (r, m) in runs.iter().zip(&methods) {
        let (e, curve) = match (&external, &args.pdb) {
            (None, _) => evaluate(
                r,
                &read_mrc(truth_dir.join("density.mrc"))?,
                &staging,
                starts,
                seed,
                THRESHOLD_HALF,
                s_max,
            )?,
            (Some(_), Some(pdb)) => {
                let truth = external::truth_on_grid(pdb, &r.dir.join(crate::method::output::AMPLITUDE_FILE))?;
                evaluate(r, &truth, &staging, starts, seed, THRESHOLD_HALF, s_max)?
            }
            (Some(_), None) => {
                // Half-set FSC: the two halves of the training frames, reconstructed apart.
                let [a, b] = external::halves(n).map(|h| {
                    let flags = external::method_flags(&args, h.clone(), n);
                    let tag = if h.start == 0 { "-half1" } else { "-half2" };
                    run_method(*m, &args, &launcher, h.end - h.start, &staging, &flags, tag)
                });
                let (a, b) = (a?, b?);
                let first = half_density(&a, starts, seed)?;
                let (e, curve) = evaluate(&b, &first, &staging, starts, seed, external::THRESHOLD_HALF_SET, s_max)?;
                eprintln!(
                    "  {}: half-set FSC 0.143 at {:.2} px ({:.2} Å)",
                    r.label, e.resolution_px, e.resolution_angstrom
                );
                (e, curve)
            }
        };
        fsc_curves.push((r.label.to_string(), curve));
        evaluations.push(e);
    }

    let rows: Vec<ResultRow> = runs
        .iter()
        .zip(&evaluations)
        .map(|(r, e)| row(&args, n, r, e, &final_dir, external.as_ref().map(|x| x.counts)))
        .collect();
    write_table(&staging, &rows)?;
    let md = markdown(&rows);
    std::fs::write(staging.join("table.md"), &md)?;
    if !control.no_plots {
        let drawn = match &sim {
            Some(sim) => figures::draw(sim, &staging, &runs, &fsc_curves),
            None => std::fs::create_dir_all(staging.join("plots"))
                .map_err(anyhow::Error::from)
                .and_then(|_| crate::report::plots::fsc_curves(&staging.join("plots").join("fsc"), &fsc_curves))
                .map(|_| ()),
        };
        if let Err(e) = drawn {
            eprintln!("warning: plots incomplete: {e:#}");
        }
    }
    let record = serde_json::json!({
        "software": crate::method::output::Software::this(),
        "command": std::env::args().collect::<Vec<_>>(),
        "settings": args,
        "simulation": sim.as_ref().map(|s| &s.config),
        "evaluation_grid": sim.as_ref().map(|s| serde_json::json!({"m": s.grid.m, "spacing_per_angstrom": s.grid.spacing})),
        "data": external.as_ref().map(|e| serde_json::json!({
            "path": e.path, "frames": e.frames, "true_poses": e.has_poses,
            "scored_against": args.pdb.clone().unwrap_or_else(|| "half-set FSC at 0.143".into()),
        })),
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
        "xrai-bench: the benchmark on {}: {n} training and {} test images; {} — each then phased ({} starts),          aligned and scored{}. It takes at most about {} (a method stops at its budget; the          README's default run took 76 min on 2 cores). Results go to {}; Ctrl-C stops it, --resume {} continues it.",
        dataset_name(args),
        args.n_test,
        parts.join(", "),
        args.phasing_starts,
        match (&args.data, &args.pdb) {
            (None, _) => " against the truth".to_string(),
            (Some(_), Some(p)) => format!(" against {p}"),
            (Some(_), None) => " by half-set FSC (each method also reconstructs both halves of the frames)".to_string(),
        },
        hours_minutes(upper_s),
        final_dir.display(),
        final_dir.display()
    );
}

/// Runs one method (each repeat in its own directory and process, unless a resumed run already
/// finished it) and keeps the best repeat by median train pose error.
fn run_method(
    m: &'static dyn Method,
    args: &RunArgs,
    launcher: &[String],
    n: u64,
    staging: &Path,
    data: &[String],
    tag: &str,
) -> Result<MethodRun> {
    let (budget, extra) = method_settings(args, m.id());
    let mut best: Option<(f64, MethodRun)> = None;
    for r in 1..=args.repeats {
        let dir = staging.join(if args.repeats == 1 {
            format!("{}{tag}", m.id())
        } else {
            format!("{}{tag}-r{r}", m.id())
        });
        let stage = dir.join("stage.txt");
        if !dir.join(crate::method::output::OUTPUT_FILE).exists() {
            let job = Job {
                data_args: data,
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
            let (wall, mem) = child(launcher, &argv, &staging.join(format!("{name}.log")))?;
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

/// What the run's rows name as the dataset: the molecule simulated, or the file read (with the
/// structure it is scored against).
fn dataset_name(args: &RunArgs) -> String {
    match (&args.data, &args.pdb) {
        (None, _) => args.pdb().to_string(),
        (Some(d), pdb) => {
            let file = d
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            match pdb {
                Some(p) => format!("{file} vs {p}"),
                None => file,
            }
        }
    }
}

/// The phased density of the first half-set map (the reference the second is aligned onto),
/// kept in `eval/<method>-half1/` for a resumed run.
fn half_density(r: &MethodRun, starts: usize, seed: u64) -> Result<crate::volume::DensityMap> {
    let path = r.dir.join("half_density.mrc");
    if !path.exists() {
        let amplitude = read_mrc(r.dir.join(crate::method::output::AMPLITUDE_FILE))?;
        let phased = crate::eval::phasing::phase(
            &amplitude,
            &crate::eval::phasing::PhasingParams {
                starts,
                seed,
                ..Default::default()
            },
        );
        write_mrc(&path, &phased.density, true)?;
    }
    Ok(read_mrc(&path)?)
}

/// The method process's wall time recorded by the benchmark (`stage.txt`).
fn stage_wall_time(stage: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(stage).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("wall_s").and_then(|v| v.trim().parse().ok()))
}

/// One method's table row; `file_counts`: with `--data`, whether the file's frames are photon
/// counts (the noise column says so).
fn row(
    args: &RunArgs,
    n: u64,
    r: &MethodRun,
    e: &Evaluation,
    final_dir: &Path,
    file_counts: Option<bool>,
) -> ResultRow {
    let o = &r.output;
    // the build that produced the method's output (a resumed run may reuse one from an earlier
    // build); the harness's own for an output of another program
    let this = crate::method::output::Software::this();
    let software = if o.software.name == this.name {
        &o.software
    } else {
        &this
    };
    let stat = |s: Option<crate::eval::pose_error::PoseErrorSummary>,
                f: fn(&crate::eval::pose_error::PoseErrorSummary) -> f64| s.as_ref().map_or(f64::NAN, f);
    // the test pose error against time, for the times to 3° and 2°
    let curve: Vec<(f64, f64)> = o
        .progress
        .iter()
        .filter_map(|p| p.test_median_deg.map(|v| (p.elapsed_s, v)))
        .collect();
    let test_median = stat(o.pose_error.test, |s| s.median_deg);
    let mut params = o.params.clone();
    if let Some(map) = params.as_object_mut() {
        map.insert("repeat".into(), r.repeat.into());
        map.insert("repeats".into(), args.repeats.into());
        let (_, extra) = method_settings(args, r.id);
        map.insert("extra".into(), extra.join(" ").into());
    }
    ResultRow {
        pdb_id: dataset_name(args),
        chain: chain_label(args.pdb()),
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
        resolution_limit_px: e.limit_px.unwrap_or(f64::NAN),
        resolution_limit_angstrom: e.limit_angstrom.unwrap_or(f64::NAN),
        resolution_at_limit: !e.crossed,
        time_to_3deg_s: time_to(&curve, test_median, r.wall_time_s, 3.0),
        time_to_2deg_s: time_to(&curve, test_median, r.wall_time_s, 2.0),
        train_median_deg: stat(o.pose_error.train, |s| s.median_deg),
        train_rms_deg: stat(o.pose_error.train, |s| s.rms_deg),
        test_median_deg: stat(o.pose_error.test, |s| s.median_deg),
        test_rms_deg: stat(o.pose_error.test, |s| s.rms_deg),
        images_per_s: o.images_per_s,
        peak_memory_mib: o.peak_memory_mib,
        ranks: o.world.ranks as u64,
        threads_per_rank: o.world.threads_per_rank as u64,
        seed: args.seed,
        noise: match file_counts {
            Some(true) => "poisson".into(),
            Some(false) => "none".into(),
            None if args.photons().is_some() => "poisson".into(),
            None => format!("{:?}", args.noise).to_lowercase(),
        },
        mean_photons: args.photons().unwrap_or(f64::NAN),
        realism: args.realism(),
        crate_version: software.version.clone(),
        git_commit: software.git_commit.clone(),
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
