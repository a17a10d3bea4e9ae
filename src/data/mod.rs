//! Data for the methods: the simulator's seeded stream (constant memory for any N), chunked
//! on-disk datasets (`images.npy`, `poses.csv`, `meta.json`), and [`Source`], the one source
//! every method reads its frames from.

pub mod dataset;
pub mod output;
pub mod pdb;
pub mod simulator;
pub mod source;
pub mod stream;

pub use dataset::{Dataset, DatasetWriter};
pub use simulator::{ImageSimulator, Mode, Rescale, SimulationConfig, Split};
pub use source::{bin_frames, bin_frames_into, binned_detector, Origin, Source};
pub use stream::{Batch, ImageStream};
