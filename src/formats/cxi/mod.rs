//! CXI files (Coherent X-ray Imaging; Maia 2012, Nature Methods 9, 854; the format of CXIDB and of
//! Condor's output): HDF5 files with a named layout. Only with the `hdf5` feature, which links the
//! system's HDF5 C library through the `hdf5-metno` crate.
//!
//! What is read and written, all lengths in metres (CXI uses SI units):
//!
//! | path | meaning |
//! |---|---|
//! | `/cxi_version` | format version × 100; written as 160 (CXI 1.6) |
//! | `/entry_1/data_1/data` | the frames, (N, rows, cols) or one frame (rows, cols); rows are y, columns x. Read also from `/entry_1/image_1/data` or any path given (CXIDB entry 58 keeps its pnCCD frames in `photonConverter/pnccdBack/photonCount`) |
//! | `/entry_1/instrument_1/detector_1/distance` | sample–detector distance |
//! | `/entry_1/instrument_1/detector_1/x_pixel_size`, `y_pixel_size` | the pixel pitch of the frames as stored: a detector binned b × b stores b × its physical pitch (CXIDB 58: 75 µm pnCCD pixels binned 4 × 4 are 300 µm pixels). Square pixels only |
//! | `/entry_1/instrument_1/source_1/energy` | photon energy, joules in CXI 1.6 (converted to eV here) |
//! | `/entry_1/instrument_1/detector_1/mask`, or `mask` beside the frames (`/entry_1/data_1/mask`, `/entry_1/image_1/mask`) | the pixel mask (below) |
//! | `/entry_1/sample_1/geometry_1/orientation` | per frame the true orientation as CXI's six direction cosines (below) |
//!
//! Geometry values may be scalars (what this writer writes) or one value per frame, which must then
//! all be equal. Energies are written in joules as the specification says; on reading, a value
//! below 10⁻⁹ is taken as joules and one above 1 as eV (the CXI repository's own example
//! `typical_raw_cxi.py` writes eV): an X-ray photon's energy is 10⁻¹⁷–10⁻¹³ J or 10–10⁶ eV, so the
//! magnitude decides unambiguously, and a value in neither range is refused.
//!
//! **Mask.** CXI masks are integer bit fields per pixel, zero for a good pixel. A pixel is bad here
//! when any bit in [`BAD_PIXEL_BITS`] is set: the bits of the CXI 1.6 table that say the value is
//! not a measurement of the signal — invalid 0x1, saturated 0x2, hot 0x4, dead 0x8, shadowed 0x10
//! (a beamstop), bad 0x80, missing 0x200 (a gap), noisy 0x400 — and Condor's "to be ignored"
//! 0x40. The other bits (peak-finding mask 0x20, out of resolution limits 0x100, has signal 0x1000,
//! user bits) describe a pixel without disqualifying it. A plain 0/1 mask with 1 = bad therefore
//! reads as meant. Condor writes one mask per frame, (N, rows, cols); such a mask is combined
//! into one by calling a pixel bad when it is bad in any frame. The writer marks bad pixels
//! 0x1 (invalid) in a 32-bit mask at `detector_1/mask`, linked (hard link) from `data_1/mask`
//! when the frames are at the default path, as Condor's files have it.
//!
//! **Poses.** A pose R (DESIGN.md: it maps detector-frame vectors into the molecule frame) is the
//! matrix CXI's geometry class calls the transformation from the global (laboratory) to the local
//! (sample) orientation; its `orientation` holds the first two rows of that matrix,
//! [x′·x, x′·y, x′·z, y′·x, y′·y, y′·z], one row of six per frame. The reader completes the
//! third row as the cross product of the first two and returns the quaternion (w, x, y, z),
//! w ≥ 0; a written pose reads back to within rounding (≈1e-16).
//!
//! Frames are read by hyperslab ([`CxiReader::read_frames`]), so a stack never has to fit in memory;
//! integer and floating-point datasets of any width read as f32 (HDF5 converts). The writer
//! appends frames to a chunked, resizable f32 dataset in a temporary file beside the target and
//! moves it into place in [`CxiWriter::finish`], so a crash never leaves a half-written file.

mod read;
mod write;

pub use read::CxiReader;
pub use write::CxiWriter;

use std::path::Path;

use super::FormatError;

/// Where the frames are unless a dataset path is given (Condor, CXIDB).
pub const DEFAULT_DATASET: &str = "entry_1/data_1/data";
/// Where the frames are looked for next (CXI image class; the `spi_processing` tools).
pub const IMAGE_DATASET: &str = "entry_1/image_1/data";
pub(crate) const DETECTOR: &str = "entry_1/instrument_1/detector_1";
pub(crate) const DISTANCE: &str = "entry_1/instrument_1/detector_1/distance";
pub(crate) const X_PIXEL_SIZE: &str = "entry_1/instrument_1/detector_1/x_pixel_size";
pub(crate) const Y_PIXEL_SIZE: &str = "entry_1/instrument_1/detector_1/y_pixel_size";
pub(crate) const DETECTOR_MASK: &str = "entry_1/instrument_1/detector_1/mask";
pub(crate) const ENERGY: &str = "entry_1/instrument_1/source_1/energy";
pub(crate) const SAMPLE_GEOMETRY: &str = "entry_1/sample_1/geometry_1";
pub(crate) const ORIENTATION: &str = "entry_1/sample_1/geometry_1/orientation";
pub(crate) const CXI_VERSION: &str = "cxi_version";

/// Mask bits that make a pixel bad (see the module docs).
pub const BAD_PIXEL_BITS: u64 = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x40 | 0x80 | 0x200 | 0x400;
/// What the writer stores for a bad pixel: CXI_PIXEL_IS_INVALID.
pub const PIXEL_IS_INVALID: u32 = 0x1;
/// Joules per electronvolt (exact since the 2019 SI).
pub const JOULES_PER_EV: f64 = 1.602_176_634e-19;

/// The detector and beam as a CXI file records them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CxiGeometry {
    /// Sample–detector distance, metres.
    pub distance_m: f64,
    /// Pitch of the pixels of the frames as stored, metres (after any binning: b × b binning of
    /// pixels of pitch p gives b·p).
    pub pixel_size_m: f64,
    /// Photon energy, eV.
    pub photon_energy_ev: f64,
}

/// Each geometry field the file has; [`CxiReader::geometry`] needs all three.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CxiPartialGeometry {
    pub distance_m: Option<f64>,
    pub pixel_size_m: Option<f64>,
    pub photon_energy_ev: Option<f64>,
}

impl CxiGeometry {
    /// Checks that every value is finite and positive; `field` names the CXI dataset of a bad one.
    pub(crate) fn validate(&self, path: &Path) -> Result<(), FormatError> {
        for (field, value, what) in [
            (DISTANCE, self.distance_m, "distance (m)"),
            (X_PIXEL_SIZE, self.pixel_size_m, "pixel size (m)"),
            (ENERGY, self.photon_energy_ev, "photon energy (eV)"),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(FormatError::invalid(
                    path,
                    format!("/{field}"),
                    format!("{what} must be a positive number, got {value}"),
                ));
            }
        }
        Ok(())
    }
}

/// An HDF5 error at `field` of `path`.
pub(crate) fn h5_error(path: &Path, field: &str, error: hdf5::Error) -> FormatError {
    FormatError::invalid(path, field, format!("HDF5: {error}"))
}

/// A dataset path as HDF5 takes it from the root group: without the leading `/`, components
/// non-empty and neither `.` nor `..`.
pub(crate) fn normalize_dataset_path(path: &Path, dataset: &str) -> Result<String, FormatError> {
    let trimmed = dataset.trim_start_matches('/');
    let bad = trimmed.is_empty() || trimmed.split('/').any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(FormatError::invalid(
            path,
            dataset,
            "not a dataset path: give group names separated by '/', e.g. entry_1/data_1/data",
        ));
    }
    Ok(trimmed.to_string())
}

/// Whether every link along `name` exists (HDF5 1.8 fails, rather than answer no, when an
/// intermediate group is missing).
pub(crate) fn link_exists(root: &hdf5::Group, name: &str) -> bool {
    let mut prefix = String::new();
    for component in name.split('/') {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(component);
        if !root.link_exists(&prefix) {
            return false;
        }
    }
    true
}

/// The quaternion (w, x, y, z), w ≥ 0, of the pose whose first two matrix rows are `cosines`.
pub(crate) fn quaternion_from_cosines(c: &[f64; 6]) -> Option<[f64; 4]> {
    use nalgebra::{Matrix3, Rotation3, UnitQuaternion, Vector3};
    let x = Vector3::new(c[0], c[1], c[2]);
    let y = Vector3::new(c[3], c[4], c[5]);
    // Orthonormal to within rounding, as a written rotation is; anything else is not a rotation.
    let tol = 1e-6;
    let orthonormal = (x.norm() - 1.0).abs() < tol && (y.norm() - 1.0).abs() < tol && x.dot(&y).abs() < tol;
    if !orthonormal || c.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let z = x.cross(&y);
    let m = Matrix3::from_rows(&[x.transpose(), y.transpose(), z.transpose()]);
    let q = UnitQuaternion::from_rotation_matrix(&Rotation3::from_matrix_unchecked(m));
    Some(crate::rotation::to_wxyz(&crate::rotation::canonical(q)))
}

/// The first two rows of the rotation matrix of the quaternion (w, x, y, z).
pub(crate) fn cosines_from_quaternion(q: [f64; 4]) -> Option<[f64; 6]> {
    let rotation = crate::rotation::from_wxyz(q).ok()?;
    let m = crate::rotation::to_matrix(&rotation);
    let m = m.matrix();
    Some([m[(0, 0)], m[(0, 1)], m[(0, 2)], m[(1, 0)], m[(1, 1)], m[(1, 2)]])
}
