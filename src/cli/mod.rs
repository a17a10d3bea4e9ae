//! One file per command (the cryoDRGN layout): each holds its clap `Args` and a `run`. The
//! methods' own subcommands (`xrai-bench xrai`, `xrai-bench emc`, …) come from the method
//! registry ([`crate::method::REGISTRY`]), whose entries carry their options.

pub mod fsc;
pub mod phase;
pub mod pose_error;
pub mod run;
pub mod simulate;
pub mod table;

pub use crate::method::budget::parse_budget;
