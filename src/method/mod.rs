//! The method contract: what the benchmark asks of a reconstruction method and what it gets
//! back, the same for every method.
//!
//! - [`Method`]: a method's id and label, its subcommand (`xrai-bench <id> …`, run as a child
//!   process by the benchmark so that its wall time and peak memory are its own), and how a
//!   benchmark [`Job`] becomes that subcommand's options.
//! - [`output::MethodOutput`]: the typed record every method writes (`output.json`) beside its
//!   amplitude volume and pose files, in one layout; the benchmark reads it with types.
//! - [`budget::Budget`]: one meaning of `--budget` for every method.
//! - [`REGISTRY`]: the methods the benchmark knows.
//!
//! **Adding a method** (say M-TIP, or a wrapper around Dragonfly): write a module that
//! implements [`Method`] — its `run` reads its data through [`crate::data::Source`], honours a
//! [`budget::Budget`] made from its `--budget`, and ends with [`output::MethodOutput::write`] —
//! and add one line to [`REGISTRY`]. The command line (`xrai-bench <id>`, `--methods <id>`,
//! `--args <id>=…`), the benchmark, the evaluation, the table and the plots then take it up
//! with no other change.

pub mod budget;
pub mod output;

use std::path::Path;

use anyhow::Result;

pub use budget::Budget;
pub use output::MethodOutput;

/// What the benchmark asks of one method run.
#[derive(Clone, Debug)]
pub struct Job<'a> {
    /// Data options every method gets, so that all see the same images (`--pdb`, `--seed`,
    /// noise, rescaling, grid).
    pub data_args: &'a [String],
    pub n_train: u64,
    pub n_test: u64,
    /// The run's seed (images, poses, noise); a method derives its own initialisation seed.
    pub seed: u64,
    /// 0-based repeat (different initialisations; the benchmark keeps the best).
    pub repeat: usize,
    /// `--budget` text.
    pub budget: &'a str,
    /// Further options for this method, from the user.
    pub extra: &'a [String],
    /// The method's output directory.
    pub out: &'a Path,
}

/// A reconstruction method.
pub trait Method: Sync {
    /// Registry id: the subcommand and the `--methods` value (`xrai`).
    fn id(&self) -> &'static str;
    /// Name in tables and plots (`X-RAI`).
    fn label(&self) -> &'static str;
    /// The subcommand with its options (`xrai-bench <id> --help`).
    fn command(&self) -> clap::Command;
    /// Runs in the method's own process: reconstruct, then write [`MethodOutput`].
    fn run(&self, matches: &clap::ArgMatches) -> Result<()>;
    /// The subcommand's arguments (without the program name) for one job.
    fn job_args(&self, job: &Job) -> Vec<String>;
}

/// Every method the benchmark knows, in the table's order.
pub static REGISTRY: &[&dyn Method] = &[&crate::xrai::run::XRAI, &crate::emc::run::EMC];

/// The method with this id.
pub fn find(id: &str) -> Option<&'static dyn Method> {
    REGISTRY.iter().copied().find(|m| m.id() == id)
}

/// Comma-separated ids of the registry, for messages.
pub fn ids() -> String {
    REGISTRY.iter().map(|m| m.id()).collect::<Vec<_>>().join(", ")
}

/// A subcommand named `id` whose options are `O`.
pub fn command_of<O: clap::Args>(id: &'static str, about: &'static str) -> clap::Command {
    O::augment_args(clap::Command::new(id).about(about))
}

/// Parses `O` back out of the subcommand's matches.
pub fn options_of<O: clap::FromArgMatches>(matches: &clap::ArgMatches) -> Result<O> {
    O::from_arg_matches(matches).map_err(|e| anyhow::anyhow!("{e}"))
}
