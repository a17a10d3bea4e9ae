//! Image sources for the methods: an on-the-fly seeded stream (constant memory for any N) and
//! chunked on-disk datasets (`images.npy`, `poses.csv`, `meta.json`).

pub mod dataset;
pub mod output;
pub mod pdb;
pub mod simulator;
pub mod stream;

pub use dataset::{Dataset, DatasetWriter};
pub use simulator::{ImageSimulator, Mode, Rescale, SimulationConfig, Split};
pub use stream::{Batch, ImageStream};
