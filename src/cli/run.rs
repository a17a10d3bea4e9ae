//! `xrai-bench run` (also `xrai-bench --pdb ID --n N` with no subcommand) and `xrai-bench
//! sweep`: the benchmark. The protocol lives in [`crate::pipeline`]; this file only hands the
//! parsed options over.

use anyhow::Result;

pub use crate::pipeline::{RunArgs, RunControl};

pub fn run(args: RunArgs, control: RunControl, matches: Option<&clap::ArgMatches>, sweep: bool) -> Result<()> {
    crate::pipeline::run(args, control, matches, sweep)
}
