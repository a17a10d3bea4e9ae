//! The benchmark on frames from a file (`--data`): a `simulate` directory, a Dragonfly photon
//! file with its detector (`--detector`), or a CXI/HDF5 file (`--dataset-path`, with the `hdf5`
//! build feature).
//!
//! The file's first `--n` frames train every method and the next `--n-test` are held out, so
//! every method sees the same frames. Pose errors are reported only where the file carries true
//! poses (a `simulate` directory). The maps are scored two ways:
//!
//! - **against a structure** (`--pdb ID` given): its molecular transform is computed on each
//!   method's own reciprocal grid (read from the method's `amplitude.mrc`: size and Δs), turned
//!   into the true density, and the method's phased density is aligned onto it and compared by
//!   FSC (threshold 0.5, as for simulated data);
//! - **without a structure**: each method also reconstructs the two halves of the training
//!   frames (`0..n/2` and `n/2..n`, each its own process with the method's budget, as Dragonfly's
//!   odd/even merges), both halves are phased, the second is aligned onto the first, and their
//!   FSC is read at 0.143 (the half-set threshold of Rosenthal & Henderson 2003, since each half
//!   carries half the data). The row's map is still the full-data reconstruction.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};

use super::settings::RunArgs;
use crate::data::options::{DataArgs, PhysicsArgs};
use crate::eval::density::density_from_transform;
use crate::mrc::read_mrc;
use crate::physics::transform::{grid_transform, GridSpec};
use crate::volume::DensityMap;

/// FSC threshold for two independent half-data maps.
pub const THRESHOLD_HALF_SET: f64 = 0.143;

/// A file's frames, checked, and how the methods are told to read them.
pub struct External {
    pub path: PathBuf,
    /// Frames in the file.
    pub frames: u64,
    /// Whether the file carries true poses (pose errors are reported).
    pub has_poses: bool,
    /// Whether its frames are photon counts ([`crate::data::Source::holds_counts`]).
    pub counts: bool,
}

/// The data options of `args` that locate the file (for the methods and for opening it here).
fn file_flags(args: &RunArgs) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(d) = &args.data {
        v.extend(["--data".to_string(), d.display().to_string()]);
    }
    if let Some(d) = &args.detector {
        v.extend(["--detector".to_string(), d.display().to_string()]);
    }
    if let Some(p) = &args.dataset_path {
        v.extend(["--dataset-path".to_string(), p.clone()]);
    }
    if let Some(e) = args.energy {
        v.extend(["--energy".to_string(), e.to_string()]);
    }
    if let Some(m) = args.grid {
        v.extend(["--grid".to_string(), m.to_string()]);
    }
    v
}

/// Opens `--data` once, before any work or file: the frame count covers `--n` + `--n-test`,
/// the detector matches, ranges are valid (each error names its argument).
pub fn check(args: &RunArgs, n: u64) -> Result<External> {
    let path = args.data.clone().context("--data is not set")?;
    for (given, name) in [
        (args.noise != super::settings::Noise::None, "--noise"),
        (
            args.rescale_total != RunArgs::default().rescale_total,
            "--rescale-total",
        ),
    ] {
        ensure!(
            !given,
            "{name} applies to simulated data: with --data the frames are the file's, as recorded"
        );
    }
    let end = n.checked_add(args.n_test).context("--n + --n-test overflows")?;
    // The physics options as the methods will parse them from the flags they are given.
    #[derive(clap::Parser)]
    struct Physics {
        #[command(flatten)]
        physics: PhysicsArgs,
    }
    let mut argv = vec!["physics".to_string()];
    if let Some(e) = args.energy {
        argv.extend(["--energy".to_string(), e.to_string()]);
    }
    if let Some(m) = args.grid {
        argv.extend(["--grid".to_string(), m.to_string()]);
    }
    let physics = <Physics as clap::Parser>::try_parse_from(argv)
        .map_err(|e| anyhow::anyhow!("--energy/--grid: {e}"))?
        .physics;
    let all = DataArgs {
        data: Some(path.clone()),
        detector: args.detector.clone(),
        dataset_path: args.dataset_path.clone(),
        ..DataArgs::default()
    };
    let opened = crate::data::open(&all, &physics)?.context("--data: nothing opened")?;
    let frames = opened.train.len().unwrap_or(0);
    ensure!(
        end <= frames,
        "--data {}: holds {frames} frames, but --n {n} and --n-test {} need {end} (lower --n or --n-test)",
        path.display(),
        args.n_test
    );
    let has_poses = opened.train.poses(0, 1)?.is_some();
    Ok(External {
        path,
        frames,
        has_poses,
        counts: opened.counts,
    })
}

/// What a method is given to read frames `train` (and the held-out frames after `n`).
pub fn method_flags(args: &RunArgs, train: std::ops::Range<u64>, n: u64) -> Vec<String> {
    let mut v = file_flags(args);
    v.extend(["--frames".to_string(), format!("{}..{}", train.start, train.end)]);
    if args.n_test > 0 {
        let data = args.data.as_ref().map(|d| d.display().to_string()).unwrap_or_default();
        v.extend([
            "--test-data".to_string(),
            data,
            "--test-frames".to_string(),
            format!("{n}..{}", n + args.n_test),
        ]);
    }
    v
}

/// The two halves of the training frames, for the half-set FSC.
pub fn halves(n: u64) -> [std::ops::Range<u64>; 2] {
    [0..n / 2, n / 2..n]
}

/// The true density of `pdb` on the reciprocal grid of a method's `amplitude.mrc` (its size and
/// Δs), so that the method's phased map and the truth share a grid.
pub fn truth_on_grid(pdb: &str, amplitude: &Path) -> Result<DensityMap> {
    let map = read_mrc(amplitude)?;
    let molecule = crate::physics::molecule::load(pdb, None, false, false)?;
    let spec = GridSpec {
        m: map.m,
        spacing: map.spacing,
    };
    ensure!(
        spec.m % 2 == 1,
        "{}: a {}³ grid; the truth needs the odd grids the methods write",
        amplitude.display(),
        spec.m
    );
    Ok(density_from_transform(&grid_transform(&molecule, &spec)))
}
