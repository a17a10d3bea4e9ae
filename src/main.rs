//! The `xrai-bench` command line: parse, dispatch, nothing else.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use xrai_bench::{cli, method};

/// With no subcommand, `xrai-bench [--pdb ID] [--n N] …` runs the whole benchmark (`run`).
#[derive(Parser)]
#[command(
    name = "xrai-bench",
    version,
    about = "X-ray single-particle imaging benchmark: simulate, reconstruct (X-RAI, EMC), evaluate, report",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: cli::run::RunArgs,
    #[command(flatten)]
    control: cli::run::RunControl,
}

#[derive(clap::Args)]
#[command(
    after_help = "Example: the paper's Table 1 row for 2CEX_A at 50,000 training images, 60 minutes per method:\n  \
    xrai-bench run --pdb 2CEX_A --n 50000 --budget 60m --out results/main\n\
    A sweep over training-set sizes (one resumable run per size, then runtime and accuracy against N):\n  \
    xrai-bench sweep --n 50000,500000,5000000 --xrai-steps 20000 --budget 60m --out results/table1"
)]
struct RunCommand {
    #[command(flatten)]
    run: cli::run::RunArgs,
    #[command(flatten)]
    control: cli::run::RunControl,
}

#[derive(Subcommand)]
enum Command {
    /// The whole benchmark: simulate, run X-RAI and EMC, evaluate, write Table 1 and plots
    Run(RunCommand),
    /// Runs for several training-set sizes (--n 5000,50000,500000) and the scaling plots
    Sweep(RunCommand),
    /// Print the paper's Table 1 layout (Markdown) from run directories
    Table(cli::table::Args),
    /// Simulate diffraction images of a molecule (PDB → transform → Ewald slices)
    Simulate(cli::simulate::Args),
    /// Pose error between true and estimated rotations (global alignment, in-plane π ambiguity)
    PoseError(cli::pose_error::Args),
    /// Phase an amplitude volume (ER + HIO + shrink-wrap) into an electron density
    Phase(cli::phase::Args),
    /// Fourier shell correlation between two maps, with the 0.5 and 0.143 crossings
    Fsc(cli::fsc::Args),
}

fn main() {
    // The methods' budgets count from here (xrai_bench::method::budget).
    method::budget::mark_process_start();
    // The methods' subcommands come from the registry.
    let command = method::REGISTRY
        .iter()
        .fold(Cli::command(), |c, m| c.subcommand(m.command()));
    let matches = command.get_matches();
    if let Some((name, sub)) = matches.subcommand() {
        if let Some(m) = method::find(name) {
            exit_on_error(m.run(sub));
        }
    }
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        None => cli::run::run(cli.run, cli.control, Some(&matches), false),
        Some(Command::Run(c)) => cli::run::run(c.run, c.control, matches.subcommand_matches("run"), false),
        Some(Command::Sweep(c)) => cli::run::run(c.run, c.control, matches.subcommand_matches("sweep"), true),
        Some(Command::Table(args)) => cli::table::run(args),
        Some(Command::Simulate(args)) => cli::simulate::run(args),
        Some(Command::PoseError(args)) => cli::pose_error::run(args),
        Some(Command::Phase(args)) => cli::phase::run(args),
        Some(Command::Fsc(args)) => cli::fsc::run(args),
    };
    exit_on_error(result);
}

fn exit_on_error(result: anyhow::Result<()>) {
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
    std::process::exit(0);
}
