//! The `xrai-bench` command line: parse, dispatch, nothing else.

use clap::{Parser, Subcommand};
use xrai_bench::cli;

#[derive(Parser)]
#[command(name = "xrai-bench", version, about = "X-ray single-particle imaging benchmark: simulate, reconstruct (X-RAI, EMC), evaluate")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate diffraction images of a molecule (PDB → transform → Ewald slices)
    Simulate(cli::simulate::Args),
    /// Reconstruct with EMC (expand–maximize–compress, exhaustive orientation search)
    Emc(cli::emc::Args),
    /// Pose error between true and estimated rotations (global alignment, in-plane π ambiguity)
    PoseError(cli::pose_error::Args),
    /// Phase an amplitude volume (ER + HIO + shrink-wrap) into an electron density
    Phase(cli::phase::Args),
    /// Fourier shell correlation between two maps, with the 0.5 and 0.143 crossings
    Fsc(cli::fsc::Args),
    /// Reconstruct with X-RAI (amortized pose inference autoencoder)
    Xrai(cli::xrai::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => cli::simulate::run(args),
        Command::Emc(args) => cli::emc::run(args),
        Command::PoseError(args) => cli::pose_error::run(args),
        Command::Phase(args) => cli::phase::run(args),
        Command::Fsc(args) => cli::fsc::run(args),
        Command::Xrai(args) => cli::xrai::run(args),
    };
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
