//! A sweep: one run per training-set size inside the sweep directory (each its own resumable
//! run; sizes already finished are kept), then the table over all sizes and the runtime-,
//! error- and resolution-against-N figures (runs the budget stopped appear in the runtime
//! figure at their projected full-run time, as hollow markers, where they projected one).

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
    validate(&args)?;
    crate::physics::molecule::load(&args.pdb, None, false, false)?;
    let root = control.out.clone().unwrap_or_else(|| {
        PathBuf::from("results").join(format!("sweep-{}", chrono::Utc::now().format("%Y%m%d-%H%M%S")))
    });
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let mut rows = Vec::new();
    for &n in &args.n {
        let dir = root.join(format!("n{n}"));
        let one = RunArgs {
            n: vec![n],
            ..args.clone()
        };
        if dir.join("table.parquet").exists() {
            eprintln!("sweep: N = {n} already done in {}", dir.display());
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
    if !control.no_plots {
        scaling_plots(&args, &root, &rows)?;
    }
    println!("{md}");
    eprintln!("sweep results in {}", root.display());
    Ok(())
}

fn scaling_plots(args: &RunArgs, root: &std::path::Path, rows: &[ResultRow]) -> Result<()> {
    let methods: Vec<&dyn crate::method::Method> = args
        .methods
        .iter()
        .filter_map(|id| crate::method::find(id))
        .filter(|m| rows.iter().any(|r| r.method == m.id()))
        .collect();
    let series = |key: fn(&ResultRow) -> f64, mark_budget: bool| -> Vec<(String, Vec<(f64, f64)>)> {
        methods
            .iter()
            .map(|m| {
                let pts = rows
                    .iter()
                    .filter(|r| r.method == m.id())
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
                (m.label().to_string(), pts)
            })
            .collect()
    };
    // The projected full-run times of the runs the budget stopped (hollow markers).
    let projected: Vec<Vec<(f64, f64)>> = methods
        .iter()
        .map(|m| {
            rows.iter()
                .filter(|r| r.method == m.id() && r.status != "ok" && r.projected_time_s.is_finite())
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
