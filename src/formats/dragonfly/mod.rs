//! Dragonfly's file formats (github.com/duaneloh/Dragonfly; Ayyer et al. 2016, J. Appl. Cryst. 49,
//! 1320), matched to the layout of Dragonfly's own reader (`src/emcfile.c`/`src/dataset.c`,
//! `src/detector.c`) and writer (`utils/py_src/writeemc.py`, `utils/py_src/detector.py`).
//!
//! - [`emc`]: the photon file `photons.emc` — one sparse list of photon-carrying pixels per frame,
//!   binary, little-endian 32-bit integers.
//! - [`detector`]: the ASCII detector file `detector.dat` — per pixel a scattering vector in
//!   voxel units, the polarisation × solid-angle correction and a mask — and its conversion to and
//!   from this program's detector model.
//!
//! A photon file's pixel numbers index the detector file's pixels, so the two go together; the
//! photon file's header repeats the number of pixels as a check.
//!
//! Dragonfly's HDF5 variants of both files are not implemented: they need the HDF5 C library,
//! which the default build does not link.

pub mod detector;
pub mod emc;

pub use detector::{read_detector, write_detector, DragonflyDetector};
pub use emc::{EmcKind, EmcReader, EmcSummary, EmcWriter, SparseFrame};
