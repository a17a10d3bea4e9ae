//! xrai-bench: simulate X-ray single-particle diffraction from a protein, reconstruct it with
//! X-RAI and EMC, and report how fast and how well each did.
//!
//! Data flows one way: physics → data → methods → eval → report, with the benchmark protocol
//! ([`pipeline`]) on top and the command line ([`cli`]) over it. The module map — what each owns
//! and what it may import:
//!
//! | module | owns | may import |
//! |---|---|---|
//! | [`rotation`], [`volume`], [`trilinear`], [`gemm`], [`stats`], [`mrc`], [`comm`] | quaternions, pose files and the in-plane π rotation; centred reciprocal grids; the one trilinear sampler family (boundary rule per use); the GEMM wrapper (f32/f64); median, percentile, RMS; MRC maps (modes 0/1/2/6, any cubic box); the processes of a run (MPI ranks with the `mpi` feature, or one) and the collectives the methods use | — (leaves) |
//! | [`formats`] | the field's other file formats (Dragonfly photon and detector files; CXI/HDF5 with the `hdf5` feature) | physics, leaves |
//! | [`physics`] | molecule parsing, the molecule's exact rotational symmetry (the rotations its poses are known up to), form factors, the molecular transform, the one detector model ([`physics::detector::PixelDetector`]: per-pixel s, correction, mask, frame shape; binning) and the simulator's square detector (beamstop, gaps, masks), beam, Ewald slices, the shot-to-shot effects (fluence jitter, focus, background), photon counting | leaves |
//! | [`data`] | the seeded image simulator and stream, on-disk datasets (npy, Dragonfly or CXI files), [`data::Source`] (the one frame source, with its detector, mask and binning), opening the methods' data files (`--data`), writing datasets in every format, PDB lookup, the shared data options, staged output directories | formats, physics, leaves |
//! | [`method`] | the method contract: [`method::Method`], the typed [`method::MethodOutput`], [`method::Budget`], the registry | data, eval (pose-error summary), leaves |
//! | [`xrai`], [`emc`] | the two methods (models and kernels, training or iterations, each's `run`) | method, data, physics, eval, leaves |
//! | [`eval`] | pose error (modulo a molecule's symmetry), phasing, alignment, FSC | leaves |
//! | [`report`] | Table 1 (CSV, Parquet, Markdown), cost against dataset size, and the plots, from plain data | leaves |
//! | [`pipeline`] | the benchmark protocol: settings, staging and resume, method processes, evaluation, table, figures, sweeps over sizes, proteins and photon levels, the benchmark on a file's frames (scored against a structure or by half-set FSC) | everything above |
//! | [`cli`] | one file per command: parse and dispatch | pipeline and the modules a command serves |
//!
//! `main.rs` only parses and dispatches; the methods' subcommands come from the registry.

pub mod cli;
pub mod comm;
pub mod data;
pub mod emc;
pub mod eval;
pub mod formats;
pub mod gemm;
pub mod method;
pub mod mrc;
pub mod physics;
pub mod pipeline;
pub mod report;
pub mod rotation;
pub mod stats;
pub mod trilinear;
pub mod volume;
pub mod xrai;
