//! xrai-bench: simulate X-ray single-particle diffraction from a protein, reconstruct it with
//! X-RAI and EMC, and report how fast and how well each did.
//!
//! Data flows one way: [`physics`] (molecule → transform → detector slices) → [`data`] (seeded
//! image streams and on-disk datasets) → methods → [`eval`] (pose error, phasing, FSC) → report.
//! [`cli`] holds one file per command; `main.rs` only parses and dispatches.

pub mod cli;
pub mod data;
pub mod emc;
pub mod eval;
pub mod gemm;
pub mod mrc;
pub mod physics;
pub mod report;
pub mod rotation;
pub mod stats;
pub mod trilinear;
pub mod volume;
pub mod xrai;
