//! Opening a method's data from files ([`DataArgs`]): a directory written by `simulate`
//! (`images.npy` or `photons.emc`), a Dragonfly photon file with its detector file, or (with the
//! `hdf5` build feature) a CXI/HDF5 file ([`super::cxi`]) — every path, range and detector checked
//! before any work, each error naming its argument.
//!
//! Files written by `simulate` carry their truth beside them (`meta.json`: beam, grid and the molecule's symmetry;
//! `poses.csv`: true poses), so pose errors are reported; any other file has no true poses
//! ([`Source::poses`] is None) and its grid comes from the detector
//! ([`PixelDetector::natural_grid`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde_json::json;

use super::options::{DataArgs, PhysicsArgs};
use super::{Dataset, SimulationConfig, Source};
use crate::formats::dragonfly::{read_detector, EmcReader};
use crate::physics::detector::PixelDetector;
use crate::physics::symmetry::PointGroup;
use crate::rotation::read_poses;

/// A method's data read from files.
pub struct Opened {
    pub train: Source<'static>,
    pub test: Option<Source<'static>>,
    /// The simulation settings when `simulate` wrote the training data (its meta.json).
    pub config: Option<SimulationConfig>,
    /// The reciprocal grid recorded by `simulate` (m, Δs in Å⁻¹), if any; see [`grid`].
    pub grid: Option<(usize, f64)>,
    /// Whether the training frames are photon counts ([`Source::holds_counts`]).
    pub counts: bool,
    /// What was read, for the method's meta.json.
    pub record: serde_json::Value,
}

/// The evaluation grid: the one `simulate` recorded, else sized from `detector` (the one the
/// method works on; `m` from --grid).
pub fn grid(recorded: Option<(usize, f64)>, detector: &PixelDetector, m: Option<usize>) -> Result<(usize, f64)> {
    match recorded {
        Some(g) => Ok(g),
        None => detector.natural_grid(m),
    }
}

/// One path's frames.
pub(super) struct Frames {
    pub(super) source: Source<'static>,
    pub(super) config: Option<SimulationConfig>,
    pub(super) grid: Option<(usize, f64)>,
}

/// Opens `--data` (None without it) and `--test-data` / `--test-frames`.
pub fn open(args: &DataArgs, physics: &PhysicsArgs) -> Result<Option<Opened>> {
    let Some(data) = &args.data else {
        for (given, name) in [
            (args.detector.is_some(), "--detector"),
            (args.dataset_path.is_some(), "--dataset-path"),
            (args.pixel_size.is_some(), "--pixel-size"),
            (args.beam_position.is_some(), "--beam-position"),
            (args.frames.is_some(), "--frames"),
            (args.test_data.is_some(), "--test-data"),
            (args.test_frames.is_some(), "--test-frames"),
        ] {
            ensure!(!given, "{name} needs --data PATH (the frames to read)");
        }
        return Ok(None);
    };
    let train = open_path(data, "--data", args, physics)?;
    let n = train.source.len().unwrap_or(0);
    let train_range = args.frames.clone().unwrap_or(0..n);
    let source = match &args.frames {
        Some(r) => train.source.frames(r.clone(), "--frames")?,
        None => train.source,
    };
    let test_path = args.test_data.as_ref().or(args.test_frames.as_ref().map(|_| data));
    let test = match test_path {
        None => None,
        Some(path) => {
            let t = open_path(path, "--test-data", args, physics)?;
            let m = t.source.len().unwrap_or(0);
            let range = args.test_frames.clone().unwrap_or(0..m);
            if same_file(path, data) {
                ensure!(
                    range.end <= train_range.start || train_range.end <= range.start,
                    "--test-frames {}..{} overlaps the training frames {}..{} of the same file (--frames): \
                     held-out frames must not be trained on",
                    range.start,
                    range.end,
                    train_range.start,
                    train_range.end
                );
            }
            ensure!(
                t.source.full_detector().len() == source.full_detector().len()
                    && t.source.full_detector().s == source.full_detector().s,
                "--test-data {}: its detector is not the one of --data {}",
                path.display(),
                data.display()
            );
            Some(match &args.test_frames {
                Some(r) => t.source.frames(r.clone(), "--test-frames")?,
                None => t.source,
            })
        }
    };
    let counts = source
        .holds_counts()
        .with_context(|| format!("--data {}", data.display()))?;
    let range_text = |r: &Option<std::ops::Range<u64>>| r.as_ref().map(|r| format!("{}..{}", r.start, r.end));
    let record = json!({
        "data": data,
        "detector": args.detector,
        "dataset_path": args.dataset_path,
        "pixel_size_m": args.pixel_size,
        "beam_position": args.beam_position.map(|(r, c)| [r, c]),
        "frames": range_text(&args.frames),
        "test_data": test_path,
        "test_frames": range_text(&args.test_frames),
        "frame_shape": [source.full_detector().rows, source.full_detector().cols],
        "masked_pixels": source.full_detector().len() - source.full_detector().measured(),
        "true_poses": source.poses(0, 1)?.is_some(),
        "pose_symmetry": source.pose_symmetry().name(),
        "photon_counts": counts,
    });
    Ok(Some(Opened {
        train: source,
        test,
        config: train.config,
        grid: train.grid,
        counts,
        record,
    }))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The frames at one path (`arg`: the option that named it, for errors), their true poses known
/// up to the molecule symmetry `simulate` recorded beside them (meta.json), if any.
fn open_path(path: &Path, arg: &str, args: &DataArgs, physics: &PhysicsArgs) -> Result<Frames> {
    let mut frames = open_frames(path, arg, args, physics)?;
    if let Some(group) = recorded_symmetry(path) {
        frames.source = frames.source.with_pose_symmetry(group);
    }
    Ok(frames)
}

/// The folder a data path's side files (meta.json, poses.csv, detector.dat) sit in: the path
/// itself for a directory, else its parent ("." for a bare file name).
pub(super) fn folder_of(path: &Path) -> &Path {
    if path.is_dir() {
        path
    } else {
        path.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    }
}

/// The molecule symmetry `simulate` recorded in the meta.json beside `path` (a data directory or
/// a file in one: frames, poses), where it recorded one.
pub fn recorded_symmetry(path: &Path) -> Option<PointGroup> {
    let text = std::fs::read_to_string(folder_of(path).join("meta.json")).ok()?;
    let meta: serde_json::Value = serde_json::from_str(&text).ok()?;
    PointGroup::from_json(&meta["molecule"]["symmetry"])
}

fn open_frames(path: &Path, arg: &str, args: &DataArgs, physics: &PhysicsArgs) -> Result<Frames> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let cxi = !path.is_dir() && matches!(ext.as_str(), "cxi" | "h5" | "hdf5" | "cxidb");
    if !cxi {
        for (given, name) in [
            (args.dataset_path.is_some(), "--dataset-path"),
            (args.pixel_size.is_some(), "--pixel-size"),
            (args.beam_position.is_some(), "--beam-position"),
        ] {
            ensure!(
                !given,
                "{name} is for CXI/HDF5 files (.cxi, .h5), but {arg} {} is not one",
                path.display()
            );
        }
    }
    if path.is_dir() {
        if path.join("images.npy").is_file() {
            let dataset = Dataset::open(path).with_context(|| format!("{arg} {}", path.display()))?;
            let (config, grid) = (dataset.config()?, dataset.grid()?);
            return Ok(Frames {
                source: Source::dataset(dataset)?,
                config: Some(config),
                grid: Some(grid),
            });
        }
        if path.join("photons.emc").is_file() {
            return open_emc(&path.join("photons.emc"), arg, args, physics);
        }
        bail!(
            "{arg} {}: neither images.npy nor photons.emc here (give a directory written by `xrai-bench \
             simulate`, a .emc file or a .cxi/.h5 file)",
            path.display()
        );
    }
    ensure!(path.exists(), "{arg} {}: no such file or directory", path.display());
    match ext.as_str() {
        "emc" => open_emc(path, arg, args, physics),
        #[cfg(feature = "hdf5")]
        "cxi" | "h5" | "hdf5" | "cxidb" => super::cxi::open_cxi(path, arg, args, physics),
        #[cfg(not(feature = "hdf5"))]
        "cxi" | "h5" | "hdf5" | "cxidb" => bail!(
            "{arg} {}: reading CXI/HDF5 files needs the `hdf5` feature, and this xrai-bench was built without \
             the hdf5 feature; rebuild with `cargo build --release --features hdf5`, or convert the frames to a \
             Dragonfly .emc file",
            path.display()
        ),
        _ => bail!(
            "{arg} {}: unknown format (expected a directory written by `xrai-bench simulate`, a Dragonfly .emc \
             file, or a .cxi/.h5 file)",
            path.display()
        ),
    }
}

/// A Dragonfly photon file and its detector; `simulate`'s meta.json and poses.csv beside it
/// when it wrote them.
fn open_emc(path: &Path, arg: &str, args: &DataArgs, physics: &PhysicsArgs) -> Result<Frames> {
    let reader = EmcReader::open(path).with_context(|| format!("{arg} {}", path.display()))?;
    let dir = folder_of(path);
    let (config, grid) = simulate_meta(dir);
    let beam = match &config {
        Some(c) => c.beam.clone(),
        None => {
            let beam = physics.config()?.beam;
            beam.validate()?;
            beam
        }
    };
    let detector_path: PathBuf = match &args.detector {
        Some(p) => p.clone(),
        None if dir.join("detector.dat").is_file() => dir.join("detector.dat"),
        None => bail!(
            "{arg} {}: a Dragonfly photon file needs its detector: give --detector FILE (a Dragonfly detector.dat)",
            path.display()
        ),
    };
    let detector = read_detector(&detector_path)
        .with_context(|| format!("--detector {}", detector_path.display()))?
        .to_pixels(beam.wavelength())
        .with_context(|| format!("--detector {}", detector_path.display()))?;
    let poses = match &config {
        Some(_) if dir.join("poses.csv").is_file() => Some(read_poses(&dir.join("poses.csv"))?),
        _ => None,
    };
    let source = Source::emc(reader, detector, beam, poses).with_context(|| format!("{arg} {}", path.display()))?;
    Ok(Frames { source, config, grid })
}

/// The simulation settings and reciprocal grid of `simulate`'s meta.json in `dir`, where it wrote
/// one (the truth beside a file it wrote).
pub(super) fn simulate_meta(dir: &Path) -> (Option<SimulationConfig>, Option<(usize, f64)>) {
    let meta: Option<serde_json::Value> = std::fs::read_to_string(dir.join("meta.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let config: Option<SimulationConfig> = meta
        .as_ref()
        .and_then(|m| serde_json::from_value(m["config"].clone()).ok());
    let grid = meta.as_ref().and_then(|m| {
        let g = &m["grid"];
        Some((g["m"].as_u64()? as usize, g["spacing_per_angstrom"].as_f64()?))
    });
    (config, grid)
}
