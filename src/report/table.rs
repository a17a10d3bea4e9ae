//! Table 1 of the paper as data: one row per (dataset, method), written with polars as CSV and
//! Parquet, appended to a cumulative summary, and printed as the paper's Markdown layout.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use polars::prelude::{
    Column, CsvReadOptions, CsvWriter, DataFrame, DataType, ParquetReader, ParquetWriter, SerReader, SerWriter,
};
use serde::{Deserialize, Serialize};

/// One (dataset, method) result. Plain fields: the column names of `table.csv`/`table.parquet`
/// are these names, in this order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    /// PDB ID as given (e.g. `2CEX_A`) or the file name of a user's PDB file.
    pub pdb_id: String,
    /// Chains kept, comma-separated ("all" when the whole entry).
    pub chain: String,
    pub n_train: u64,
    pub n_test: u64,
    /// `xrai` or `emc` (with the repeat chosen, e.g. `xrai` from 5 repeats).
    pub method: String,
    /// `ok`, or `> budget` when the method did not finish within its budget (the paper's "> 24 h").
    pub status: String,
    pub wall_time_s: f64,
    /// The same as h:mm, as in the paper's Table 1.
    pub wall_time_hm: String,
    /// For a run the budget stopped: the wall time the full planned run would take, projected
    /// from its measured cost (the method's `projected_wall_s`); NaN when not projected.
    pub projected_time_s: f64,
    /// FSC = 0.5 crossing against the truth, in pixels of the evaluation grid (NaN: none).
    pub resolution_px: f64,
    pub resolution_angstrom: f64,
    /// The finest resolution the detector records (the period at its corner's |s|), in the same
    /// px and in Å; NaN when unknown (frames read from files).
    pub resolution_limit_px: f64,
    pub resolution_limit_angstrom: f64,
    /// The FSC never fell below its threshold: the map is at least as good as the grid's last
    /// shell, and the resolution columns hold that shell's period, a bound; the Markdown says
    /// "≥ limit (L)" with L the detector's limit (or that shell, when coarser or unknown).
    pub resolution_at_limit: bool,
    /// Wall time at which the method's test median pose error first reached 3° and 2°: the
    /// first evaluation of its curve at or below (the final score when it has no curve); NaN
    /// when it never did.
    pub time_to_3deg_s: f64,
    pub time_to_2deg_s: f64,
    pub train_median_deg: f64,
    /// The paper's second statistic ("MSE"): the root-mean-square pose error, degrees.
    pub train_rms_deg: f64,
    pub test_median_deg: f64,
    pub test_rms_deg: f64,
    /// Training images processed per second of wall time (X-RAI: images seen; EMC: frames ×
    /// iterations).
    pub images_per_s: f64,
    /// Peak resident memory of the process while the method ran, MiB (rank 0's over MPI).
    pub peak_memory_mib: f64,
    /// Processes the method ran as (MPI ranks; 1 without MPI) and rayon threads in each.
    pub ranks: u64,
    pub threads_per_rank: u64,
    pub seed: u64,
    pub noise: String,
    /// Photon-limited data: the mean photons per pattern (`--mean-photons`); NaN for the
    /// paper's rescaled data.
    pub mean_photons: f64,
    /// The shot-to-shot effects and the detector's mask ("none", or e.g. "beamstop 4 px, gaps
    /// 2 px, fluence jitter 0.2").
    pub realism: String,
    pub crate_version: String,
    pub git_commit: String,
    /// Key parameters as compact JSON (budget, steps, grid level, heads, …).
    pub params: String,
    pub run_dir: String,
    /// UTC time the row was written, RFC 3339.
    pub timestamp: String,
}

/// Seconds until a test median pose error first reached `deg`: the time of the first point of
/// `curve` (seconds, degrees) at or below it (not interpolated: a stage such as X-RAI's
/// refinement changes the error in a step); `wall_s` when only the final score reaches it (a
/// method with no curve); NaN when it never did.
pub fn time_to(curve: &[(f64, f64)], final_deg: f64, wall_s: f64, deg: f64) -> f64 {
    match curve.iter().find(|(_, v)| *v <= deg) {
        Some(&(t, _)) => t,
        None if final_deg <= deg => wall_s,
        None => f64::NAN,
    }
}

/// h:mm of a duration in seconds (the paper's "8:16h").
pub fn hours_minutes(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "—".into();
    }
    let minutes = (seconds / 60.0).round() as u64;
    format!("{}:{:02}h", minutes / 60, minutes % 60)
}

/// Rows → a polars DataFrame with the columns of [`ResultRow`].
pub fn to_dataframe(rows: &[ResultRow]) -> Result<DataFrame> {
    macro_rules! col {
        ($name:literal, $f:expr) => {
            Column::new($name.into(), rows.iter().map($f).collect::<Vec<_>>())
        };
    }
    let columns = vec![
        col!("pdb_id", |r| r.pdb_id.clone()),
        col!("chain", |r| r.chain.clone()),
        col!("n_train", |r| r.n_train),
        col!("n_test", |r| r.n_test),
        col!("method", |r| r.method.clone()),
        col!("status", |r| r.status.clone()),
        col!("wall_time_s", |r| r.wall_time_s),
        col!("wall_time_hm", |r| r.wall_time_hm.clone()),
        col!("projected_time_s", |r| r.projected_time_s),
        col!("resolution_px", |r| r.resolution_px),
        col!("resolution_angstrom", |r| r.resolution_angstrom),
        col!("resolution_limit_px", |r| r.resolution_limit_px),
        col!("resolution_limit_angstrom", |r| r.resolution_limit_angstrom),
        col!("resolution_at_limit", |r| r.resolution_at_limit),
        col!("time_to_3deg_s", |r| r.time_to_3deg_s),
        col!("time_to_2deg_s", |r| r.time_to_2deg_s),
        col!("train_median_deg", |r| r.train_median_deg),
        col!("train_rms_deg", |r| r.train_rms_deg),
        col!("test_median_deg", |r| r.test_median_deg),
        col!("test_rms_deg", |r| r.test_rms_deg),
        col!("images_per_s", |r| r.images_per_s),
        col!("peak_memory_mib", |r| r.peak_memory_mib),
        col!("ranks", |r| r.ranks),
        col!("threads_per_rank", |r| r.threads_per_rank),
        col!("seed", |r| r.seed),
        col!("noise", |r| r.noise.clone()),
        col!("mean_photons", |r| r.mean_photons),
        col!("realism", |r| r.realism.clone()),
        col!("crate_version", |r| r.crate_version.clone()),
        col!("git_commit", |r| r.git_commit.clone()),
        col!("params", |r| r.params.clone()),
        col!("run_dir", |r| r.run_dir.clone()),
        col!("timestamp", |r| r.timestamp.clone()),
    ];
    Ok(DataFrame::new_infer_height(columns)?)
}

/// A DataFrame with [`ResultRow`]'s columns → rows (for `xrai-bench table`).
pub fn from_dataframe(df: &DataFrame, source: &Path) -> Result<Vec<ResultRow>> {
    let s = |name: &str| -> Result<Vec<String>> {
        let c = df.column(name).with_context(|| {
            format!(
                "{}: no column {name:?} (not a table written by xrai-bench)",
                source.display()
            )
        })?;
        let c = c.cast(&DataType::String)?;
        Ok(c.str()?.iter().map(|v| v.unwrap_or("").to_string()).collect())
    };
    let f = |name: &str| -> Result<Vec<f64>> {
        let c = df.column(name).with_context(|| {
            format!(
                "{}: no column {name:?} (not a table written by xrai-bench)",
                source.display()
            )
        })?;
        let c = c.cast(&DataType::Float64)?;
        Ok(c.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    };
    // Tables written before the projection existed have no such column: NaN (not projected).
    let optional_f = |name: &str| -> Result<Vec<f64>> {
        if df.column(name).is_ok() {
            f(name)
        } else {
            Ok(vec![f64::NAN; df.height()])
        }
    };
    let u = |name: &str| -> Result<Vec<u64>> {
        Ok(f(name)?
            .into_iter()
            .map(|v| if v.is_finite() { v as u64 } else { 0 })
            .collect())
    };
    let (pdb, chain, method, status, hm, noise, version, commit, params, dir, ts) = (
        s("pdb_id")?,
        s("chain")?,
        s("method")?,
        s("status")?,
        s("wall_time_hm")?,
        s("noise")?,
        s("crate_version")?,
        s("git_commit")?,
        s("params")?,
        s("run_dir")?,
        s("timestamp")?,
    );
    let (n_train, n_test, seed) = (u("n_train")?, u("n_test")?, u("seed")?);
    let (wall, res_px, res_a, trm, trr, tem, ter, ips, mem) = (
        f("wall_time_s")?,
        f("resolution_px")?,
        f("resolution_angstrom")?,
        f("train_median_deg")?,
        f("train_rms_deg")?,
        f("test_median_deg")?,
        f("test_rms_deg")?,
        f("images_per_s")?,
        f("peak_memory_mib")?,
    );
    let projected = optional_f("projected_time_s")?;
    // Tables from before the detector limit and the times to 3° and 2°: unknown.
    let (limit_px, limit_a) = (
        optional_f("resolution_limit_px")?,
        optional_f("resolution_limit_angstrom")?,
    );
    let (to3, to2) = (optional_f("time_to_3deg_s")?, optional_f("time_to_2deg_s")?);
    let at_limit: Vec<bool> = if df.column("resolution_at_limit").is_ok() {
        s("resolution_at_limit")?.iter().map(|v| v == "true").collect()
    } else {
        vec![false; df.height()]
    };
    // Tables from before MPI: one process (threads unknown: 0).
    let optional_u = |name: &str, missing: u64| -> Result<Vec<u64>> {
        if df.column(name).is_ok() {
            u(name)
        } else {
            Ok(vec![missing; df.height()])
        }
    };
    let (ranks, threads) = (optional_u("ranks", 1)?, optional_u("threads_per_rank", 0)?);
    // Tables from before photon-limited data: rescaled, ideal.
    let photons = optional_f("mean_photons")?;
    let realism = if df.column("realism").is_ok() {
        s("realism")?
    } else {
        vec!["none".to_string(); df.height()]
    };
    Ok((0..df.height())
        .map(|i| ResultRow {
            pdb_id: pdb[i].clone(),
            chain: chain[i].clone(),
            n_train: n_train[i],
            n_test: n_test[i],
            method: method[i].clone(),
            status: status[i].clone(),
            wall_time_s: wall[i],
            wall_time_hm: hm[i].clone(),
            projected_time_s: projected[i],
            resolution_px: res_px[i],
            resolution_angstrom: res_a[i],
            resolution_limit_px: limit_px[i],
            resolution_limit_angstrom: limit_a[i],
            resolution_at_limit: at_limit[i],
            time_to_3deg_s: to3[i],
            time_to_2deg_s: to2[i],
            train_median_deg: trm[i],
            train_rms_deg: trr[i],
            test_median_deg: tem[i],
            test_rms_deg: ter[i],
            images_per_s: ips[i],
            peak_memory_mib: mem[i],
            ranks: ranks[i],
            threads_per_rank: threads[i],
            seed: seed[i],
            noise: noise[i].clone(),
            mean_photons: photons[i],
            realism: realism[i].clone(),
            crate_version: version[i].clone(),
            git_commit: commit[i].clone(),
            params: params[i].clone(),
            run_dir: dir[i].clone(),
            timestamp: ts[i].clone(),
        })
        .collect())
}

/// Writes `table.csv` and `table.parquet` into `dir`.
pub fn write_table(dir: &Path, rows: &[ResultRow]) -> Result<(PathBuf, PathBuf)> {
    let mut df = to_dataframe(rows)?;
    let csv = dir.join("table.csv");
    let parquet = dir.join("table.parquet");
    write_csv(&csv, &mut df)?;
    write_parquet(&parquet, &mut df)?;
    Ok((csv, parquet))
}

fn write_csv(path: &Path, df: &mut DataFrame) -> Result<()> {
    let tmp = path.with_extension("csv.tmp");
    let mut file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    CsvWriter::new(&mut file)
        .include_header(true)
        .finish(df)
        .with_context(|| format!("writing {}", path.display()))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn write_parquet(path: &Path, df: &mut DataFrame) -> Result<()> {
    let tmp = path.with_extension("parquet.tmp");
    let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    ParquetWriter::new(file)
        .finish(df)
        .with_context(|| format!("writing {}", path.display()))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Reads a table written by [`write_table`] (Parquet or CSV, by extension).
pub fn read_table(path: &Path) -> Result<Vec<ResultRow>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let df = match path.extension().and_then(|e| e.to_str()) {
        Some("parquet") => ParquetReader::new(file)
            .finish()
            .with_context(|| format!("{}: not a readable Parquet file", path.display()))?,
        Some("csv") => CsvReadOptions::default()
            .with_has_header(true)
            .into_reader_with_file_handle(file)
            .finish()
            .with_context(|| format!("{}: not a readable CSV table", path.display()))?,
        _ => bail!("{}: expected a .parquet or .csv table", path.display()),
    };
    from_dataframe(&df, path)
}

/// Appends rows to `summary.parquet` and `summary.csv` in `dir` (created when missing). The
/// new files are written beside the old and renamed over them, so a crash leaves the old
/// summary intact.
pub fn append_summary(dir: &Path, rows: &[ResultRow]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let parquet = dir.join("summary.parquet");
    let mut all = if parquet.exists() {
        read_table(&parquet).with_context(|| {
            format!(
                "{} exists but cannot be read; move it aside to start a new summary",
                parquet.display()
            )
        })?
    } else {
        Vec::new()
    };
    all.extend_from_slice(rows);
    let mut df = to_dataframe(&all)?;
    write_parquet(&parquet, &mut df)?;
    write_csv(&dir.join("summary.csv"), &mut df)?;
    Ok(())
}

/// Tables under `paths`: each path is a table file, or a directory holding `table.parquet` (a
/// run), or a directory whose sub-directories hold them (e.g. `results/`).
pub fn collect_tables(paths: &[PathBuf]) -> Result<Vec<ResultRow>> {
    let mut rows = Vec::new();
    for p in paths {
        if p.is_file() {
            rows.extend(read_table(p)?);
            continue;
        }
        if !p.is_dir() {
            bail!("{}: no such file or directory", p.display());
        }
        let own = p.join("table.parquet");
        if own.is_file() {
            rows.extend(read_table(&own)?);
            continue;
        }
        let mut subdirs: Vec<PathBuf> = std::fs::read_dir(p)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|d| d.join("table.parquet").is_file())
            .collect();
        subdirs.sort();
        if subdirs.is_empty() {
            bail!(
                "{}: no table.parquet here or in its sub-directories (run `xrai-bench run` first)",
                p.display()
            );
        }
        for d in subdirs {
            rows.extend(read_table(&d.join("table.parquet"))?);
        }
    }
    Ok(rows)
}

/// The time column of a row that did not finish: its status ("> budget"), or with a
/// projection "> {time} (proj. {projected time})".
pub fn time_cell(r: &ResultRow) -> String {
    if r.projected_time_s.is_finite() && r.wall_time_s.is_finite() {
        format!(
            "> {} (proj. {})",
            hours_minutes(r.wall_time_s),
            hours_minutes(r.projected_time_s)
        )
    } else {
        r.status.clone()
    }
}

/// "50K", "500K", "5M" (the paper's dataset labels).
pub fn size_label(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}K", n / 1000),
        n => n.to_string(),
    }
}

fn method_label(m: &str) -> String {
    match m {
        "xrai" => "X-RAI".into(),
        "emc" => "EMC".into(),
        other => other.to_string(),
    }
}

/// The paper's Table 1 as Markdown: one group per (protein, training-set size), one row per
/// method; time as h:mm, resolution in pixels, train and test pose error as median / RMS in
/// degrees; the best resolution and pose errors of each protein in bold. A method that ran
/// out of budget shows no numbers and, in the time column, "> budget" (the paper's "> 24h"),
/// or with a projection its time and the projected time of the full run, labelled:
/// "> 1:00h (proj. 3:12h)".
pub fn markdown(rows: &[ResultRow]) -> String {
    let mut rows: Vec<&ResultRow> = rows.iter().collect();
    // by protein, size, photon level (most photons first, the rescaled data before them) and method
    let photons_key = |r: &ResultRow| {
        if r.mean_photons.is_finite() {
            -r.mean_photons
        } else {
            f64::NEG_INFINITY
        }
    };
    rows.sort_by(|a, b| {
        (&a.pdb_id, a.n_train)
            .cmp(&(&b.pdb_id, b.n_train))
            .then(photons_key(a).total_cmp(&photons_key(b)))
            .then(b.method.cmp(&a.method))
    });
    let best = |pdb: &str, key: fn(&ResultRow) -> f64| -> f64 {
        rows.iter()
            .filter(|r| r.pdb_id == pdb && r.status == "ok")
            .map(|r| key(r))
            .filter(|v| v.is_finite())
            .fold(f64::INFINITY, f64::min)
    };
    let bold = |v: f64, best: f64, text: String| {
        if v.is_finite() && v <= best {
            format!("**{text}**")
        } else {
            text
        }
    };
    let num = |v: f64, digits: usize| {
        if v.is_finite() {
            format!("{v:.digits$}")
        } else {
            "—".into()
        }
    };
    let mut out = String::new();
    out.push_str(
        "| Dataset | Method | Time | Time to 3° / 2° | Resolution (px) ↓ | Train error (med / RMS, °) ↓ | Test error (med / RMS, °) ↓ |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|\n");
    let mut last_group: Option<(String, u64, u64, String)> = None;
    for r in &rows {
        let group = (r.pdb_id.clone(), r.n_train, r.mean_photons.to_bits(), r.realism.clone());
        let label = if last_group.as_ref() == Some(&group) {
            String::new()
        } else {
            let photons = if r.mean_photons.is_finite() {
                format!(", {} photons", r.mean_photons)
            } else {
                String::new()
            };
            let realism = if r.realism != "none" && !r.realism.is_empty() {
                format!("; {}", r.realism)
            } else {
                String::new()
            };
            format!("{} (Train: {}{photons}{realism})", r.pdb_id, size_label(r.n_train))
        };
        last_group = Some(group);
        if r.status != "ok" {
            out.push_str(&format!(
                "| {label} | {} | {} | | | | |\n",
                method_label(&r.method),
                time_cell(r)
            ));
            continue;
        }
        let res = bold(
            r.resolution_px,
            best(&r.pdb_id, |r| r.resolution_px),
            if r.resolution_at_limit {
                // at least as good as the detector supports (the grid's last shell when the
                // detector is not known)
                let limit = if r.resolution_limit_px.is_finite() {
                    r.resolution_limit_px.max(r.resolution_px)
                } else {
                    r.resolution_px
                };
                format!("≥ limit ({})", num(limit, 2))
            } else {
                num(r.resolution_px, 2)
            },
        );
        let to = |s: f64| {
            if s.is_finite() {
                hours_minutes(s)
            } else {
                "not reached".into()
            }
        };
        let reach = format!("{} / {}", to(r.time_to_3deg_s), to(r.time_to_2deg_s));
        let tr = bold(
            r.train_median_deg,
            best(&r.pdb_id, |r| r.train_median_deg),
            format!("{} / {}", num(r.train_median_deg, 1), num(r.train_rms_deg, 1)),
        );
        let te = bold(
            r.test_median_deg,
            best(&r.pdb_id, |r| r.test_median_deg),
            format!("{} / {}", num(r.test_median_deg, 1), num(r.test_rms_deg, 1)),
        );
        out.push_str(&format!(
            "| {label} | {} | {} | {reach} | {res} | {tr} | {te} |\n",
            method_label(&r.method),
            r.wall_time_hm
        ));
    }
    out
}
