//! EMC: expand–maximize–compress with exhaustive orientation search (Loh & Elser 2009; Ayyer et al. 2016).
//!
//! [`grid`] samples SO(3) (Dragonfly's 600-cell refinement), [`engine`] runs the iterations over a
//! [`source::FrameSource`] in chunks, [`compress`] is the adjoint of the simulator's slicer and
//! [`kernels`] holds the GEMM wrapper, the sparse-photon product and a vectorised logarithm.

pub mod compress;
pub mod engine;
pub mod grid;
pub mod kernels;
pub mod source;

pub use engine::{Assignment, Emc, EmcParams, IterationStats, LikelihoodPath, MergeRule};
pub use grid::OrientationGrid;
pub use source::{
    bin_frames, binned_detector, DatasetFrames, FrameSource, MemoryFrames, SimulatedFrames,
};
