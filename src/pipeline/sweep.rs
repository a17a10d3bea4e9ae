//! A sweep: one run per protein and training-set size inside the sweep directory (each its own
//! resumable run; runs already finished are kept), then the table over all of them and the
//! runtime-, error- and resolution-against-N figures, one series per method and protein (runs
//! the budget stopped appear in the runtime figure at their projected full-run time, as hollow
//! markers, where they projected one).
//!
//! Layout: `OUT/n{N}/` for one protein; `OUT/{PDB}/n{N}/` for each of several
//! (`--pdb 2CEX_A,2DHB`), proteins in the order given, sizes in the order given.

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
    for (pdb, n) in proteins.iter().flat_map(|p| args.n.iter().map(move |&n| (p, n))) {
        let dir = if several {
            root.join(pdb.replace(['/', '\\'], "_")).join(format!("n{n}"))
        } else {
            root.join(format!("n{n}"))
        };
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let one = RunArgs {
            n: vec![n],
            pdb: Some(pdb.clone()),
            ..args.clone()
        };
        if dir.join("table.parquet").exists() {
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
        rows.extend(read_table(&dir.join("table.parquet"))?);
    }
    let md = markdown(&rows);
    std::fs::write(root.join("table.md"), &md)?;
    write_table(&root, &rows)?;
    let scaling = crate::report::scaling::scaling_summary(&rows);
    std::fs::write(root.join("scaling.md"), &scaling)?;
    if !control.no_plots {
        scaling_plots(&args, &root, &rows)?;
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
