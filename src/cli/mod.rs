//! One file per command (the cryoDRGN layout): each holds its clap `Args` and a `run`.

pub mod emc;
pub mod fsc;
pub mod phase;
pub mod pose_error;
pub mod simulate;
pub mod xrai;
