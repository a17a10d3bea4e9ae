//! EMC: expand–maximize–compress with exhaustive orientation search (Loh & Elser 2009; Ayyer et al. 2016).
//!
//! [`grid`] samples SO(3) (Dragonfly's 600-cell refinement), [`params`] holds the iterations'
//! settings, [`prepare`] is the first pass over the data (means, the model's level, the frames'
//! scales), [`engine`] runs the iterations over a [`crate::data::Source`] in chunks sized by
//! [`chunk::ChunkPlan`] to a memory budget, [`estep`]
//! is one chunk's E-step and merge, [`compress`] is the adjoint of the simulator's slicer,
//! [`kernels`] holds the sparse-photon product and a vectorised logarithm, and [`run`] is the
//! method as the benchmark runs it (options, budget, outputs).

pub mod chunk;
pub mod compress;
pub mod engine;
pub mod estep;
pub mod grid;
pub mod kernels;
pub mod params;
pub mod prepare;
pub mod run;

pub use chunk::ChunkPlan;
pub use engine::Emc;
pub use grid::OrientationGrid;
pub use params::{Assignment, EmcParams, IterationStats, LikelihoodPath, MergeRule, PartialPass};
