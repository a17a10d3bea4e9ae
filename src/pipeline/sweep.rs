//! A sweep: one run per protein and training-set size inside the sweep directory (each its own
//! resumable run; runs already finished are kept), then the table over all of them and the
//! runtime-, error- and resolution-against-N figures, one series per method and protein (runs
//! the budget stopped appear in the runtime figure at their projected full-run time, as hollow
//! markers, where they projected one).
//!
//! Layout: `OUT/n{N}/` for one protein; `OUT/{PDB}/n{N}/` for each of several
//! (`--pdb 2CEX_A,2DHB`), proteins in the order given, sizes in the order given. Several photon
//! levels (`--mean-photons 20000,2000,500,100`) add a level, `p{photons}/` for each and
//! `noise-free/` for the reference run on the paper's rescaled data with the same detector and
//! shot-to-shot effects, and the figures of test pose error and resolution against photons per
//! pattern.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::benchmark::run_one;
use super::settings::{differences, ensure_same_settings, method_settings, validate};
use super::staging::staging_dir;
use super::{RunArgs, RunControl};
use crate::method::budget::parse_budget;
use crate::report::plots;
use crate::report::table::{markdown, read_table, write_table, ResultRow};

pub fn sweep(args: RunArgs, control: RunControl) -> Result<()> {
    // checked before any run starts
    super::child::launcher(control.launcher.as_deref())?;
    validate(&args)?;
    anyhow::ensure!(
        args.data.is_none(),
        "--data: a sweep simulates its datasets; run a file's frames with one --n (xrai-bench run --data …)"
    );
    let proteins = proteins(args.pdb())?;
    // Every structure is found before any run starts (a missing one fails here, not hours in).
    for p in &proteins {
        crate::physics::molecule::load(p, None, false, false).with_context(|| format!("--pdb {p}"))?;
    }
    let root = control.out.clone().unwrap_or_else(|| {
        PathBuf::from("results").join(format!("sweep-{}", chrono::Utc::now().format("%Y%m%d-%H%M%S")))
    });
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let mut rows = Vec::new();
    let several = proteins.len() > 1;
    // the photon levels, then the noise-free reference (one level: that level, or none)
    let levels: Vec<Option<f64>> = if args.mean_photons.len() > 1 {
        args.mean_photons.iter().map(|&p| Some(p)).chain([None]).collect()
    } else {
        vec![args.photons()]
    };
    let mut runs = Vec::new();
    for p in &proteins {
        for &l in &levels {
            for &n in &args.n {
                runs.push((p, l, n));
            }
        }
    }
    for (pdb, photons, n) in runs {
        let mut dir = root.clone();
        if several {
            dir.push(pdb.replace(['/', '\\'], "_"));
        }
        if levels.len() > 1 {
            dir.push(photons.map_or("noise-free".to_string(), |p| format!("p{p}")));
        }
        dir.push(format!("n{n}"));
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let one = RunArgs {
            n: vec![n],
            pdb: Some(pdb.clone()),
            mean_photons: photons.into_iter().collect(),
            ..args.clone()
        };
        // a size is done when its table is there: the run's Parquet, or the CSV alone (the
        // small outputs a results/example copy keeps, restored to continue a sweep elsewhere)
        let done = ["table.parquet", "table.csv"]
            .map(|f| dir.join(f))
            .into_iter()
            .find(|t| t.exists());
        if done.is_some() {
            eprintln!("sweep: {pdb}, N = {n} already done in {}", dir.display());
        } else {
            let staged = staging_dir(&dir)?;
            let resume = staged.exists().then(|| dir.clone());
            if resume.is_some() {
                // an interrupted size continues only with the settings it was started with
                let text = std::fs::read_to_string(staged.join("run.toml")).with_context(|| {
                    format!(
                        "{}: an interrupted run without its run.toml; remove it",
                        staged.display()
                    )
                })?;
                let saved: RunArgs = toml::from_str(&text)
                    .with_context(|| format!("{}: not a run configuration", staged.join("run.toml").display()))?;
                ensure_same_settings(&dir, &differences(&saved, &one, None)?)?;
            }
            let control = RunControl {
                config: None,
                out: Some(dir.clone()),
                resume,
                ..control.clone()
            };
            run_one(one, control, None)?;
        }
        rows.extend(read_table(&done.unwrap_or_else(|| dir.join("table.parquet")))?);
    }
    let md = markdown(&rows);
    std::fs::write(root.join("table.md"), &md)?;
    write_table(&root, &rows)?;
    // cost against N: for one photon level (a photon sweep's runs share their N)
    let scaling = if levels.len() == 1 {
        crate::report::scaling::scaling_summary(&rows)
    } else {
        String::new()
    };
    if levels.len() == 1 {
        std::fs::write(root.join("scaling.md"), &scaling)?;
    }
    if !control.no_plots {
        // against N for one photon level; against the photon level for several
        if levels.len() > 1 {
            photon_plots(&args, &root, &rows)?;
        } else {
            scaling_plots(&args, &root, &rows)?;
        }
    }
    println!("{md}\n{scaling}");
    eprintln!("sweep results in {}", root.display());
    Ok(())
}

/// The proteins of `--pdb`: one ID or path, or several separated by commas.
pub fn proteins(pdb: &str) -> Result<Vec<String>> {
    let list: Vec<String> = pdb.split(',').map(|p| p.trim().to_string()).collect();
    anyhow::ensure!(
        list.iter().all(|p| !p.is_empty()),
        "--pdb {pdb:?}: an empty entry in the list (give IDs or paths separated by commas, e.g. 2CEX_A,2DHB)"
    );
    let mut seen = std::collections::HashSet::new();
    for p in &list {
        anyhow::ensure!(seen.insert(p.to_uppercase()), "--pdb {pdb:?}: {p} is given twice");
    }
    Ok(list)
}

/// Test pose error and resolution against photons per pattern, one series per method (and
/// protein), at the largest N, each with its noise-free run as a reference line.
fn photon_plots(args: &RunArgs, root: &std::path::Path, rows: &[ResultRow]) -> Result<()> {
    let n = args.n.iter().copied().max().unwrap_or(0);
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in rows.iter().filter(|r| r.n_train == n) {
        let key = (r.method.clone(), r.pdb_id.clone());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let several = keys.iter().any(|k| k.1 != keys[0].1);
    let label = |(m, p): &(String, String)| {
        let name = crate::method::find(m).map_or(m.clone(), |m| m.label().to_string());
        if several {
            format!("{name} ({p})")
        } else {
            name
        }
    };
    let plots_dir = root.join("plots");
    std::fs::create_dir_all(&plots_dir)?;
    let figures: [(&str, &str, &str, fn(&ResultRow) -> f64); 2] = [
        (
            "test_error_vs_photons",
            "Test pose error against photons per pattern",
            "median test pose error (°)",
            |r| r.test_median_deg,
        ),
        (
            "resolution_vs_photons",
            "Resolution against photons per pattern",
            "resolution, FSC = 0.5 (px)",
            |r| r.resolution_px,
        ),
    ];
    for (stem, title, y_label, value) in figures {
        let of = |k: &(String, String)| -> Vec<&ResultRow> {
            rows.iter()
                .filter(|r| r.n_train == n && r.method == k.0 && r.pdb_id == k.1)
                .collect()
        };
        let series: Vec<(String, Vec<(f64, f64)>)> = keys
            .iter()
            .map(|k| {
                let pts = of(k)
                    .into_iter()
                    .filter(|r| r.mean_photons.is_finite() && r.status == "ok")
                    .map(|r| (r.mean_photons, value(r)))
                    .collect();
                (label(k), pts)
            })
            .collect();
        let noise_free: Vec<f64> = keys
            .iter()
            .map(|k| {
                of(k)
                    .into_iter()
                    .find(|r| !r.mean_photons.is_finite())
                    .map_or(f64::NAN, value)
            })
            .collect();
        plots::photons(&plots_dir.join(stem), title, y_label, &series, &noise_free)?;
    }
    Ok(())
}

fn scaling_plots(args: &RunArgs, root: &std::path::Path, rows: &[ResultRow]) -> Result<()> {
    let methods: Vec<&dyn crate::method::Method> = args
        .methods
        .iter()
        .filter_map(|id| crate::method::find(id))
        .filter(|m| rows.iter().any(|r| r.method == m.id()))
        .collect();
    // One series per method and protein, named "method (protein)" when there are several.
    let mut proteins: Vec<&str> = Vec::new();
    for r in rows {
        if !proteins.contains(&r.pdb_id.as_str()) {
            proteins.push(&r.pdb_id);
        }
    }
    let keys: Vec<(&dyn crate::method::Method, &str)> = methods
        .iter()
        .flat_map(|m| proteins.iter().map(move |p| (*m, *p)))
        .collect();
    let name = |m: &dyn crate::method::Method, p: &str| {
        if proteins.len() > 1 {
            format!("{} ({p})", m.label())
        } else {
            m.label().to_string()
        }
    };
    let series = |key: fn(&ResultRow) -> f64, mark_budget: bool| -> Vec<(String, Vec<(f64, f64)>)> {
        keys.iter()
            .map(|&(m, p)| {
                let pts = rows
                    .iter()
                    .filter(|r| r.method == m.id() && r.pdb_id == p)
                    // a run the budget stopped: at the budget line, unless it was projected
                    .filter(|r| !(mark_budget && r.status != "ok" && r.projected_time_s.is_finite()))
                    .map(|r| {
                        (
                            r.n_train as f64,
                            if mark_budget && r.status != "ok" {
                                f64::INFINITY
                            } else {
                                key(r)
                            },
                        )
                    })
                    .collect();
                (name(m, p), pts)
            })
            .collect()
    };
    // The projected full-run times of the runs the budget stopped (hollow markers).
    let projected: Vec<Vec<(f64, f64)>> = keys
        .iter()
        .map(|&(m, p)| {
            rows.iter()
                .filter(|r| r.method == m.id() && r.pdb_id == p && r.status != "ok" && r.projected_time_s.is_finite())
                .map(|r| (r.n_train as f64, r.projected_time_s))
                .collect()
        })
        .collect();
    let plots_dir = root.join("plots");
    std::fs::create_dir_all(&plots_dir)?;
    // The budget line: the last method's budget (EMC's in the default order), as before.
    let budget_s = args
        .methods
        .iter()
        .rev()
        .find_map(|id| parse_budget(&method_settings(args, id).0).ok())
        .map(|d| d.as_secs_f64());
    plots::scaling_projected(
        &plots_dir.join("runtime_vs_n"),
        "Wall-clock time against dataset size",
        "wall-clock time (s)",
        &series(|r| r.wall_time_s, true),
        &projected,
        budget_s,
    )?;
    plots::scaling(
        &plots_dir.join("test_error_vs_n"),
        "Test pose error against dataset size",
        "median test pose error (°)",
        &series(|r| r.test_median_deg, false),
        None,
    )?;
    plots::scaling(
        &plots_dir.join("resolution_vs_n"),
        "Resolution against dataset size",
        "resolution, FSC = 0.5 (px)",
        &series(|r| r.resolution_px, false),
        None,
    )?;
    Ok(())
}
