//! `xrai-bench table [DIR…]`: the paper's Table 1 layout, as Markdown, from any set of runs.

use std::path::PathBuf;

use anyhow::Result;

use crate::report::table::{collect_tables, markdown};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example: one table of every run under results/ and one more run elsewhere:\n  \
    xrai-bench table results/ /scratch/run-big"
)]
pub struct Args {
    /// Run directories, their parent (e.g. results/), or table files (.parquet / .csv).
    #[arg(default_values_os_t = [PathBuf::from("results")])]
    pub paths: Vec<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let rows = collect_tables(&args.paths)?;
    print!("{}", markdown(&rows));
    Ok(())
}
