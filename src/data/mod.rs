//! Data for the methods: the simulator's seeded stream (constant memory for any N), chunked
//! on-disk datasets (`images.npy`, `poses.csv`, `meta.json`), and [`Source`], the one source
//! every method reads its frames from. Also where data comes from and goes to: [`pdb`] finds a
//! structure file (bundled, `XRAI_PDB_DIR`, cache, download), [`options`] holds the data options
//! every simulating command shares, and [`output`] the staged, atomically renamed output
//! directories every command writes.

pub mod dataset;
pub mod options;
pub mod output;
pub mod pdb;
pub mod simulator;
pub mod source;
pub mod stream;

pub use dataset::{Dataset, DatasetWriter};
pub use simulator::{ImageSimulator, Mode, Rescale, SimulationConfig, Split};
pub use source::{bin_frames, bin_frames_into, binned_detector, Origin, Source};
pub use stream::{Batch, ImageStream};
