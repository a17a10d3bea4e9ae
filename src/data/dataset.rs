//! On-disk datasets, numpy-readable:
//!
//! ```text
//! DIR/images.npy   float32, shape (n, N, N), row-major: expected photons or counts
//! DIR/poses.csv    header w,x,y,z; one unit quaternion (scalar first, w ≥ 0) per image
//! DIR/meta.json    every parameter, the seed, the crate version, timings
//! ```
//!
//! or, with `simulate --format emc`, Dragonfly's files in place of `images.npy`:
//! `DIR/photons.emc` (sparse photon counts) and `DIR/detector.dat` ([`EmcDatasetWriter`]).
//!
//! Writing streams batch by batch into a sibling staging directory that is renamed into
//! place only when complete ([`super::output`]), so a killed run never leaves a half-written
//! dataset under the final name and an existing directory is never touched unless `--force`
//! replaces it.
//! Reading seeks to any image range, so datasets larger than memory are read in chunks.

use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context};
use nalgebra::UnitQuaternion;

use npyz::WriterBuilder;

use crate::rotation::{read_poses, to_wxyz};

// Output-directory handling lives in `super::output`; re-exported here for existing callers.
pub use super::output::{
    check_output_dir, commit_output_dir, ensure_space, free_bytes, prepare_output_dir, write_atomically,
};

/// Streams images and poses of a known count into `images.npy` and `poses.csv`.
pub struct DatasetWriter {
    dir: PathBuf,
    images: npyz::NpyWriter<f32, BufWriter<File>>,
    poses: BufWriter<File>,
    expected: u64,
    written: u64,
    pixels_per_image: usize,
}

impl DatasetWriter {
    /// Starts writing `n` images of `side × side` pixels into `dir` (normally a staging dir).
    pub fn create(dir: &Path, n: u64, side: usize) -> anyhow::Result<DatasetWriter> {
        let images_path = dir.join("images.npy");
        let file = File::create(&images_path).with_context(|| format!("cannot create {}", images_path.display()))?;
        let images = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[n, side as u64, side as u64])
            .writer(BufWriter::with_capacity(1 << 20, file))
            .begin_nd()?;
        let poses_path = dir.join("poses.csv");
        let mut poses = BufWriter::new(
            File::create(&poses_path).with_context(|| format!("cannot create {}", poses_path.display()))?,
        );
        writeln!(poses, "w,x,y,z")?;
        Ok(DatasetWriter {
            dir: dir.to_path_buf(),
            images,
            poses,
            expected: n,
            written: 0,
            pixels_per_image: side * side,
        })
    }

    /// Appends images (row-major, `pixels_per_image` values each) and their poses.
    pub fn append(&mut self, images: &[f32], poses: &[UnitQuaternion<f64>]) -> anyhow::Result<()> {
        ensure!(
            images.len() == poses.len() * self.pixels_per_image,
            "one pose per image is needed"
        );
        self.images.extend(images.iter().copied())?;
        write_pose_rows(&mut self.poses, poses)?;
        self.written += poses.len() as u64;
        Ok(())
    }

    /// Writes `meta.json` and closes the files; errors if fewer images came than announced.
    pub fn finish(mut self, meta: &serde_json::Value) -> anyhow::Result<PathBuf> {
        ensure!(
            self.written == self.expected,
            "dataset incomplete: {} of {} images written",
            self.written,
            self.expected
        );
        self.images.finish()?;
        self.poses.flush()?;
        let meta_path = self.dir.join("meta.json");
        std::fs::write(&meta_path, serde_json::to_string_pretty(meta)? + "\n")?;
        Ok(self.dir)
    }
}

/// Streams photon counts of a known number of frames into a Dragonfly dataset:
/// `photons.emc` (sparse photons), `detector.dat` (the detector, written first), `poses.csv`
/// and, on [`EmcDatasetWriter::finish`], `meta.json` — the files `emc --data DIR` and Dragonfly
/// read.
pub struct EmcDatasetWriter {
    dir: PathBuf,
    photons: crate::formats::dragonfly::EmcWriter,
    poses: BufWriter<File>,
    expected: u64,
    written: u64,
    pixels_per_image: usize,
}

impl EmcDatasetWriter {
    /// Starts writing `n` frames of `detector` into `dir` (normally a staging dir).
    pub fn create(
        dir: &Path,
        n: u64,
        detector: &crate::physics::detector::Detector,
        beam: &crate::physics::beam::Beam,
    ) -> anyhow::Result<EmcDatasetWriter> {
        use crate::formats::dragonfly::{write_detector, DragonflyDetector, EmcWriter};
        write_detector(
            dir.join("detector.dat"),
            &DragonflyDetector::from_detector(detector, beam),
            false,
        )?;
        let pixels_per_image = detector
            .pixels
            .checked_mul(detector.pixels)
            .context("--pixels: too many pixels")?;
        let photons = EmcWriter::create(dir.join("photons.emc"), pixels_per_image, false)?;
        let poses_path = dir.join("poses.csv");
        let mut poses = BufWriter::new(
            File::create(&poses_path).with_context(|| format!("cannot create {}", poses_path.display()))?,
        );
        writeln!(poses, "w,x,y,z")?;
        Ok(EmcDatasetWriter {
            dir: dir.to_path_buf(),
            photons,
            poses,
            expected: n,
            written: 0,
            pixels_per_image,
        })
    }

    /// Appends frames of photon counts (row-major, whole numbers) and their poses.
    pub fn append(&mut self, images: &[f32], poses: &[UnitQuaternion<f64>]) -> anyhow::Result<()> {
        ensure!(
            images.len() == poses.len() * self.pixels_per_image,
            "one pose per image is needed"
        );
        for frame in images.chunks_exact(self.pixels_per_image) {
            self.photons.write_dense(frame)?;
        }
        write_pose_rows(&mut self.poses, poses)?;
        self.written += poses.len() as u64;
        Ok(())
    }

    /// Joins the photon file, writes `meta.json`; errors if fewer frames came than announced.
    pub fn finish(mut self, meta: &serde_json::Value) -> anyhow::Result<PathBuf> {
        ensure!(
            self.written == self.expected,
            "dataset incomplete: {} of {} frames written",
            self.written,
            self.expected
        );
        self.photons.finish()?;
        self.poses.flush()?;
        std::fs::write(self.dir.join("meta.json"), serde_json::to_string_pretty(meta)? + "\n")?;
        Ok(self.dir)
    }
}

/// A dataset on disk, opened for chunked reading.
pub struct Dataset {
    pub dir: PathBuf,
    /// Number of images.
    pub len: u64,
    /// Pixels per side.
    pub side: usize,
    /// Byte offset of the first image in `images.npy`.
    data_offset: u64,
    file: File,
    pub poses: Vec<UnitQuaternion<f64>>,
    pub meta: serde_json::Value,
}

impl Dataset {
    pub fn open(dir: &Path) -> anyhow::Result<Dataset> {
        let images_path = dir.join("images.npy");
        let mut file = File::open(&images_path).with_context(|| {
            format!(
                "{}: no images.npy here (is it a dataset written by `xrai-bench simulate`?)",
                dir.display()
            )
        })?;
        let header = npyz::NpyHeader::from_reader(&mut file)
            .with_context(|| format!("{}: not a valid .npy file", images_path.display()))?;
        let data_offset = file.stream_position()?;
        let shape = header.shape().to_vec();
        ensure!(
            shape.len() == 3 && shape[1] == shape[2],
            "{}: expected shape (n, N, N), found {shape:?}",
            images_path.display()
        );
        match header.dtype() {
            npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 4 => {}
            other => bail!(
                "{}: expected little-endian float32 images, found {}",
                images_path.display(),
                other.descr()
            ),
        }
        ensure!(
            header.order() == npyz::Order::C,
            "{}: expected C (row-major) order",
            images_path.display()
        );
        let (len, side) = (shape[0], shape[1] as usize);
        let expected_bytes = shape[1]
            .checked_mul(shape[2])
            .and_then(|pixels| pixels.checked_mul(4))
            .and_then(|per_image| per_image.checked_mul(len))
            .and_then(|data| data.checked_add(data_offset))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: header shape {shape:?} is impossibly large; the file is damaged",
                    images_path.display()
                )
            })?;
        let actual = file.metadata()?.len();
        ensure!(
            actual >= expected_bytes,
            "{}: truncated ({actual} bytes, {expected_bytes} expected for {len} images of {side}×{side}); \
             the run that wrote it was probably killed — simulate it again",
            images_path.display()
        );
        let poses = read_poses(&dir.join("poses.csv"))?;
        ensure!(
            poses.len() as u64 == len,
            "{}: {} poses for {len} images",
            dir.join("poses.csv").display(),
            poses.len()
        );
        let meta_path = dir.join("meta.json");
        let meta = match std::fs::read_to_string(&meta_path) {
            Ok(text) => {
                serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", meta_path.display()))?
            }
            Err(_) => serde_json::Value::Null,
        };
        Ok(Dataset {
            dir: dir.to_path_buf(),
            len,
            side,
            data_offset,
            file,
            poses,
            meta,
        })
    }

    /// Images `start .. start + count` (clamped to the end), row-major. Positioned reads, so
    /// a shared dataset needs no lock.
    pub fn read_images(&self, start: u64, count: usize) -> anyhow::Result<Vec<f32>> {
        use std::os::unix::fs::FileExt;
        ensure!(
            start <= self.len,
            "image {start} is past the end of the dataset ({} images)",
            self.len
        );
        let count = count.min((self.len - start) as usize);
        let per_image = (self.side * self.side * 4) as u64;
        let mut bytes = vec![0u8; count * per_image as usize];
        self.file
            .read_exact_at(&mut bytes, self.data_offset + start * per_image)
            .with_context(|| {
                format!(
                    "{}: cannot read images {start}..{}",
                    self.dir.join("images.npy").display(),
                    start + count as u64
                )
            })?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// The simulation settings recorded in meta.json (detector, beam, rescaling, seed).
    pub fn config(&self) -> anyhow::Result<crate::data::SimulationConfig> {
        serde_json::from_value(self.meta["config"].clone()).with_context(|| {
            format!(
                "{}: meta.json has no simulation config (write datasets with `xrai-bench simulate`)",
                self.dir.display()
            )
        })
    }

    /// The evaluation grid recorded in meta.json: (m, Δs in Å⁻¹).
    pub fn grid(&self) -> anyhow::Result<(usize, f64)> {
        let m = self.meta["grid"]["m"]
            .as_u64()
            .with_context(|| format!("{}: meta.json has no grid.m", self.dir.display()))?;
        let ds = self.meta["grid"]["spacing_per_angstrom"]
            .as_f64()
            .with_context(|| format!("{}: meta.json has no grid.spacing_per_angstrom", self.dir.display()))?;
        Ok((usize::try_from(m)?, ds))
    }
}

/// Appends `poses` to a `poses.csv` being written (`w,x,y,z`, 17 significant digits: exact).
fn write_pose_rows(out: &mut impl Write, poses: &[UnitQuaternion<f64>]) -> std::io::Result<()> {
    for q in poses {
        let [w, x, y, z] = to_wxyz(q);
        writeln!(out, "{w:.17e},{x:.17e},{y:.17e},{z:.17e}")?;
    }
    Ok(())
}

/// Writes `mask.npy` (booleans, N × N, true = bad pixel: numpy's `np.load` gives the mask
/// `--mask` reads) into `dir` when the detector has bad pixels; returns whether it did.
pub fn write_mask(dir: &Path, detector: &crate::physics::detector::Detector) -> anyhow::Result<bool> {
    let mask = detector.mask();
    if !mask.iter().any(|&bad| bad) {
        return Ok(false);
    }
    let path = dir.join("mask.npy");
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let n = detector.pixels as u64;
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[n, n])
        .writer(BufWriter::new(file))
        .begin_nd()?;
    w.extend(mask.iter().copied())?;
    w.finish()?;
    Ok(true)
}
