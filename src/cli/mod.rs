//! One file per command (the cryoDRGN layout): each holds its clap `Args` and a `run`. The
//! methods' own subcommands (`xrai-bench xrai`, `xrai-bench emc`, …) come from the method
//! registry ([`crate::method::REGISTRY`]), whose entries carry their options.

pub mod fsc;
pub mod phase;
pub mod pose_error;
pub mod run;
pub mod simulate;
pub mod table;

pub use crate::method::budget::parse_budget;

use std::path::Path;

use anyhow::{ensure, Result};

use crate::mrc::{read_mrc, MrcError};
use crate::volume::Volume;

/// Reads a map; an I/O error is said once (the OS reason is part of the message already).
pub fn read_map(flag: &str, path: &Path) -> Result<crate::volume::DensityMap> {
    read_mrc(path).map_err(|e| match e {
        MrcError::Io { .. } if path.is_dir() => {
            anyhow::anyhow!("{flag} {}: is a directory, not an MRC file", path.display())
        }
        MrcError::Io { .. } => anyhow::anyhow!("{flag} {e}. Check the path"),
        other => anyhow::anyhow!("{flag} {other}"),
    })
}

/// Refuses a map whose voxels are not all finite, or that is zero everywhere.
pub fn check_finite_map<T>(label: &str, path: &Path, map: &Volume<T>) -> Result<()>
where
    T: Copy + Into<f64>,
{
    let bad = map.data.iter().position(|&v| !v.into().is_finite());
    if let Some(first) = bad {
        let count = map.data.iter().filter(|&&v| !v.into().is_finite()).count();
        let m = map.m;
        anyhow::bail!(
            "{label} {}: {count} of {} voxels are NaN or infinite (the first at x {}, y {}, z {}); the map is damaged \
             or came from a failed run. Nothing was computed",
            path.display(),
            map.data.len(),
            first % m,
            (first / m) % m,
            first / (m * m)
        );
    }
    ensure!(
        map.data.iter().any(|&v| v.into() != 0.0),
        "{label} {}: every voxel is zero; the map is empty. Nothing was computed",
        path.display()
    );
    Ok(())
}
