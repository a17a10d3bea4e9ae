//! The benchmark protocol, in one place: for one dataset, simulate the splits (the truth on
//! the evaluation grid), run every method of the registry that was asked for as its own process,
//! read each one's typed output, evaluate it (phase, align, FSC), and write Table 1 (CSV,
//! Parquet, Markdown), the plots and `run.json`; over several sizes, a sweep with the
//! runtime- and accuracy-against-N figures. Runs are staged and resumable.
//!
//! - [`settings`]: what decides a run (`run.toml`), validation, what each method is given;
//! - [`staging`]: `.NAME.partial` directories and `--resume`;
//! - [`child`]: a method's process (wall time, peak memory), under an MPI launcher when asked;
//! - [`benchmark`]: one run (one dataset size);
//! - [`evaluate`]: phasing, alignment and FSC of one method's map;
//! - [`external`]: the benchmark on a file's frames (`--data`), scored against a structure or by
//!   half-set FSC;
//! - [`figures`]: the run's plots;
//! - [`sweep`]: several sizes, proteins or photon levels, and the plots against N or photons.

pub mod benchmark;
pub mod child;
pub mod evaluate;
pub mod external;
pub mod figures;
pub mod settings;
pub mod staging;
pub mod sweep;

use std::path::PathBuf;

use anyhow::Result;

pub use settings::{RunArgs, RunControl};

use crate::method::MethodOutput;

/// One method's finished run in a benchmark: its output record and the wall time of its process.
#[derive(Clone, Debug)]
pub struct MethodRun {
    pub id: &'static str,
    pub label: &'static str,
    pub dir: PathBuf,
    /// Wall time of the method's process, measured by the benchmark (the table's time).
    pub wall_time_s: f64,
    /// 1-based repeat this result came from, of `repeats`.
    pub repeat: usize,
    pub output: MethodOutput,
}

/// One run, or a sweep when several sizes or proteins are given (or `sweep` is set).
pub fn run(args: RunArgs, control: RunControl, matches: Option<&clap::ArgMatches>, sweep: bool) -> Result<()> {
    if control.resume.is_some() {
        return benchmark::run_one(args, control, matches).map(|_| ());
    }
    let args = settings::merge_config(args, matches, control.config.as_deref())?;
    anyhow::ensure!(!args.n.is_empty(), "--n: give at least one training-set size");
    if args.n.len() == 1 && !sweep && !args.pdb().contains(',') {
        return benchmark::run_one(
            args,
            RunControl {
                config: None,
                ..control
            },
            None,
        )
        .map(|_| ());
    }
    sweep::sweep(args, control)
}
