//! The dataset `simulate` writes, in the format asked for: [`FrameWriter`] holds the writer of
//! one of the three formats (numpy `images.npy`, Dragonfly's `photons.emc` with `detector.dat`,
//! a CXI file with the `hdf5` feature) and says in `meta.json` how its frames are laid out, so
//! the command only picks the format.

use std::path::Path;

use anyhow::Result;
use nalgebra::UnitQuaternion;
use serde_json::json;

use super::{DatasetWriter, EmcDatasetWriter};
use crate::physics::beam::Beam;
use crate::physics::detector::Detector;

/// The formats `simulate --format` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Npy,
    Emc,
    Cxi,
}

/// The dataset being written.
pub enum FrameWriter {
    Npy(DatasetWriter),
    Emc(EmcDatasetWriter),
    #[cfg(feature = "hdf5")]
    Cxi(super::cxi::CxiDatasetWriter),
}

impl FrameWriter {
    /// Starts writing `n` frames of `detector` into `dir` (`dataset_path`: where a CXI file
    /// keeps them).
    #[cfg_attr(not(feature = "hdf5"), allow(unused_variables))]
    pub fn create(
        format: Format,
        dir: &Path,
        n: u64,
        detector: &Detector,
        beam: &Beam,
        dataset_path: Option<&str>,
    ) -> Result<FrameWriter> {
        Ok(match format {
            Format::Npy => FrameWriter::Npy(DatasetWriter::create(dir, n, detector.pixels)?),
            Format::Emc => FrameWriter::Emc(EmcDatasetWriter::create(dir, n, detector, beam)?),
            #[cfg(feature = "hdf5")]
            Format::Cxi => FrameWriter::Cxi(super::cxi::CxiDatasetWriter::create(
                dir,
                n,
                detector,
                beam,
                dataset_path,
            )?),
            #[cfg(not(feature = "hdf5"))]
            Format::Cxi => anyhow::bail!("--format cxi needs the `hdf5` feature"),
        })
    }

    /// Appends frames (row-major, one detector's pixels each) and their poses.
    pub fn append(&mut self, images: &[f32], poses: &[UnitQuaternion<f64>]) -> Result<()> {
        match self {
            FrameWriter::Npy(w) => w.append(images, poses),
            FrameWriter::Emc(w) => w.append(images, poses),
            #[cfg(feature = "hdf5")]
            FrameWriter::Cxi(w) => w.append(images, poses),
        }
    }

    /// Writes `meta.json` and closes the files.
    pub fn finish(self, meta: &serde_json::Value) -> Result<()> {
        match self {
            FrameWriter::Npy(w) => w.finish(meta)?,
            FrameWriter::Emc(w) => w.finish(meta)?,
            #[cfg(feature = "hdf5")]
            FrameWriter::Cxi(w) => w.finish(meta)?,
        };
        Ok(())
    }
}

impl Format {
    /// Its name in `meta.json`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Npy => "npy",
            Format::Emc => "emc",
            Format::Cxi => "cxi",
        }
    }

    /// `meta.json`'s description of `n` frames of `side` × `side` in this format.
    pub fn describe(self, n: u64, side: usize, counts: bool, dataset_path: Option<&str>) -> serde_json::Value {
        let unit = if counts { "photon counts" } else { "expected photons" };
        match self {
            Format::Npy => json!({"file": "images.npy", "dtype": "float32", "shape": [n, side, side],
                "layout": "[image][row = y][col = x]", "unit": unit}),
            Format::Emc => json!({"file": "photons.emc", "format": "Dragonfly sparse photons",
                "detector": "detector.dat", "frames": n, "pixels": side * side,
                "layout": "pixel t = row * N + col, row = y, col = x", "unit": "photon counts"}),
            Format::Cxi => json!({"file": "data.cxi", "format": "CXI 1.6 (HDF5)",
                "dataset": format!("/{}", dataset_path.unwrap_or("entry_1/data_1/data").trim_start_matches('/')),
                "dtype": "float32", "shape": [n, side, side], "layout": "[frame][row = y][col = x]", "unit": unit}),
        }
    }
}
