//! CXI (HDF5) files as the methods' data and as `simulate`'s output (cargo feature `hdf5`; the
//! file layout is [`crate::formats::cxi`]'s).
//!
//! **Reading** ([`open_cxi`]): the frames at `--dataset-path` (default `/entry_1/data_1/data`,
//! then `/entry_1/image_1/data`), read by frame range. The detector is flat and normal to the beam
//! ([`PixelDetector::flat`]), built from the file's distance, pixel size and photon energy; a value
//! the file lacks comes from the command line (`--det-dist`, `--pixel-size`, `--energy`), and one
//! given there replaces the file's (CXIDB files often record none, or a wrong one). Without any
//! of them the error names the options. The beam meets the frame at its centre unless
//! `--beam-position` says where. Mask bits that disqualify a pixel ([`BAD_PIXEL_BITS`]) make it
//! bad. True poses come from the file's orientations when it has them.
//!
//! **Writing** ([`CxiDatasetWriter`]): `simulate --format cxi` writes `data.cxi` in Condor's
//! layout (frames as f32, the geometry, an all-good mask and the true poses), with `poses.csv`
//! and `meta.json` beside it as for the other formats, so `--data DIR/data.cxi` has the
//! simulation's grid and settings.
//!
//! [`BAD_PIXEL_BITS`]: crate::formats::cxi::BAD_PIXEL_BITS

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use nalgebra::UnitQuaternion;

use super::open::{simulate_meta, Frames};
use super::options::{DataArgs, PhysicsArgs};
use super::Source;
use crate::formats::cxi::{CxiGeometry, CxiReader, CxiWriter};
use crate::physics::beam::Beam;
use crate::physics::detector::{Detector, PixelDetector, PixelMask};
use crate::rotation::{from_wxyz, to_wxyz};

/// The frames of the CXI file `path` (`arg`: the option that named it, for errors).
pub(super) fn open_cxi(path: &Path, arg: &str, args: &DataArgs, physics: &PhysicsArgs) -> Result<Frames> {
    ensure!(
        args.detector.is_none(),
        "--detector is for Dragonfly photon files; a CXI file ({arg} {}) carries its geometry (or give \
         --det-dist, --pixel-size and --energy)",
        path.display()
    );
    let reader = CxiReader::open(path, args.dataset_path.as_deref()).with_context(|| {
        format!(
            "{arg} {}{}",
            path.display(),
            match &args.dataset_path {
                Some(d) => format!(" --dataset-path {d}"),
                None => String::new(),
            }
        )
    })?;
    let geometry = geometry(&reader, arg, args, physics)?;
    let dir = super::open::folder_of(path);
    let (config, grid) = simulate_meta(dir);
    let mut beam = match &config {
        Some(c) => c.beam.clone(),
        None => physics.config()?.beam,
    };
    beam.energy_ev = geometry.photon_energy_ev;
    beam.validate()?;
    let (rows, cols) = reader.shape();
    let centre = ((rows as f64 - 1.0) / 2.0, (cols as f64 - 1.0) / 2.0);
    let at = args.beam_position.unwrap_or(centre);
    let mut detector = PixelDetector::flat(
        rows,
        cols,
        geometry.pixel_size_m,
        geometry.distance_m,
        at,
        beam.wavelength(),
    )
    .with_context(|| format!("{arg} {}", path.display()))?;
    if let Some(mask) = reader.mask() {
        for (m, bad) in detector.mask.iter_mut().zip(mask) {
            if bad {
                *m = PixelMask::Bad;
            }
        }
    }
    ensure!(
        detector.measured() > 0,
        "{arg} {}: every pixel is masked bad",
        path.display()
    );
    let poses = reader
        .poses()
        .map(|p| p.into_iter().map(from_wxyz).collect::<Result<Vec<_>>>())
        .transpose()
        .with_context(|| format!("{arg} {}: true poses", path.display()))?;
    eprintln!(
        "{arg} {}: {} frames of {rows} × {cols} at /{}; distance {} m, pixel {} m, {} eV; beam at row {:.2}, \
         column {:.2}; {} bad pixels; {}",
        path.display(),
        reader.num_frames(),
        reader.dataset_path(),
        geometry.distance_m,
        geometry.pixel_size_m,
        geometry.photon_energy_ev,
        at.0,
        at.1,
        detector.len() - detector.measured(),
        if poses.is_some() {
            "true poses in the file"
        } else {
            "no true poses"
        }
    );
    let source = Source::cxi(reader, detector, beam, poses).with_context(|| format!("{arg} {}", path.display()))?;
    Ok(Frames { source, config, grid })
}

/// The geometry: the command line's values where given, else the file's; every one needed.
fn geometry(reader: &CxiReader, arg: &str, args: &DataArgs, physics: &PhysicsArgs) -> Result<CxiGeometry> {
    let file = reader.partial_geometry();
    let fields = [
        ("--det-dist METRES", "distance", physics.det_dist, file.distance_m),
        ("--pixel-size METRES", "pixel size", args.pixel_size, file.pixel_size_m),
        ("--energy EV", "photon energy", physics.energy, file.photon_energy_ev),
    ];
    for (option, _, given, _) in &fields {
        if let Some(v) = given {
            let name = option.split(' ').next().unwrap_or(option);
            ensure!(v.is_finite() && *v > 0.0, "{name} {v}: must be a positive number");
        }
    }
    let missing: Vec<_> = fields
        .iter()
        .filter(|(_, _, given, file)| given.is_none() && file.is_none())
        .collect();
    if !missing.is_empty() {
        let what: Vec<&str> = missing.iter().map(|f| f.1).collect();
        let options: Vec<&str> = missing.iter().map(|f| f.0).collect();
        bail!(
            "{arg} {}: the file records no {} of its detector; give it on the command line: {}",
            reader.path().display(),
            what.join(", "),
            options.join(" ")
        );
    }
    let pick = |i: usize| fields[i].2.or(fields[i].3).expect("checked above");
    Ok(CxiGeometry {
        distance_m: pick(0),
        pixel_size_m: pick(1),
        photon_energy_ev: pick(2),
    })
}

/// Streams frames and their poses of a known count into `data.cxi` and `poses.csv`;
/// [`CxiDatasetWriter::finish`] adds `meta.json`.
pub struct CxiDatasetWriter {
    dir: PathBuf,
    frames: CxiWriter,
    poses: BufWriter<File>,
    expected: u64,
    written: u64,
    pixels_per_image: usize,
}

impl CxiDatasetWriter {
    /// Starts writing `n` frames of `detector` (beam `beam`) into `dir` (normally a staging dir),
    /// the frames at `dataset_path` of `data.cxi` (default `/entry_1/data_1/data`).
    pub fn create(
        dir: &Path,
        n: u64,
        detector: &Detector,
        beam: &Beam,
        dataset_path: Option<&str>,
    ) -> Result<CxiDatasetWriter> {
        let side = detector.pixels;
        let pixels_per_image = side.checked_mul(side).context("--pixels: too many pixels")?;
        let geometry = CxiGeometry {
            distance_m: detector.distance_m,
            pixel_size_m: detector.side_m / side as f64,
            photon_energy_ev: beam.energy_ev,
        };
        let mask = vec![false; pixels_per_image];
        let frames = CxiWriter::create(
            dir.join("data.cxi"),
            side,
            side,
            Some(&geometry),
            Some(&mask),
            dataset_path,
            false,
        )
        .context("--dataset-path")?;
        let poses_path = dir.join("poses.csv");
        let mut poses = BufWriter::new(
            File::create(&poses_path).with_context(|| format!("cannot create {}", poses_path.display()))?,
        );
        writeln!(poses, "w,x,y,z")?;
        Ok(CxiDatasetWriter {
            dir: dir.to_path_buf(),
            frames,
            poses,
            expected: n,
            written: 0,
            pixels_per_image,
        })
    }

    /// Appends frames (row-major) and their poses.
    pub fn append(&mut self, images: &[f32], poses: &[UnitQuaternion<f64>]) -> Result<()> {
        ensure!(
            images.len() == poses.len() * self.pixels_per_image,
            "one pose per image is needed"
        );
        let wxyz: Vec<[f64; 4]> = poses.iter().map(to_wxyz).collect();
        self.frames.write_posed_frames(images, &wxyz)?;
        for [w, x, y, z] in wxyz {
            writeln!(self.poses, "{w:.17e},{x:.17e},{y:.17e},{z:.17e}")?;
        }
        self.written += poses.len() as u64;
        Ok(())
    }

    /// Closes `data.cxi`, writes `meta.json`; errors if fewer frames came than announced.
    pub fn finish(mut self, meta: &serde_json::Value) -> Result<PathBuf> {
        ensure!(
            self.written == self.expected,
            "dataset incomplete: {} of {} frames written",
            self.written,
            self.expected
        );
        self.frames.finish()?;
        self.poses.flush()?;
        std::fs::write(self.dir.join("meta.json"), serde_json::to_string_pretty(meta)? + "\n")?;
        Ok(self.dir)
    }
}
