//! Data for the methods: the simulator's seeded stream (constant memory for any N), chunked
//! on-disk datasets (`images.npy`, `poses.csv`, `meta.json`), and [`Source`], the one source
//! every method reads its frames from. Also where data comes from and goes to: [`pdb`] finds a
//! structure file (bundled, `XRAI_PDB_DIR`, cache, download), [`options`] holds the data options
//! every simulating command shares and the methods' file options, [`open`] opens those files
//! (simulate's directories, Dragonfly photon and detector files, CXI files with the `hdf5`
//! feature), [`writer`] the dataset `simulate` writes in any of those formats, and [`output`]
//! the staged, atomically renamed output directories every command writes.

#[cfg(feature = "hdf5")]
pub mod cxi;
pub mod dataset;
pub mod open;
pub mod options;
pub mod output;
pub mod pdb;
pub mod simulator;
pub mod source;
pub mod stream;
pub mod writer;

pub use dataset::{Dataset, DatasetWriter, EmcDatasetWriter};
pub use open::{open, Opened};
pub use simulator::{ImageSimulator, Mode, Rescale, SimulationConfig, Split};
pub use source::{bin_frames, bin_frames_into, bin_frames_shaped_into, Origin, Source};
pub use stream::{Batch, ImageStream};
pub use writer::{Format, FrameWriter};
