//! A run's directory is staged as `.NAME.partial` beside its final name and renamed when
//! complete; `--resume` finds the staging directory of a killed run.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// `results/run-X` → (`results/.run-X.partial`, `results/run-X`); the staging path itself is
/// accepted too.
pub fn resume_dirs(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("--resume {}: not a run directory", dir.display()))?;
    let parent = dir.parent().unwrap_or(Path::new("."));
    let (staging, final_dir) = match name.strip_prefix('.').and_then(|n| n.strip_suffix(".partial")) {
        Some(base) => (dir.to_path_buf(), parent.join(base)),
        None => (parent.join(format!(".{name}.partial")), dir.to_path_buf()),
    };
    if !staging.is_dir() {
        if final_dir.join("run.json").exists() {
            bail!(
                "--resume {}: that run already finished (nothing to do)",
                final_dir.display()
            );
        }
        bail!(
            "--resume {}: no interrupted run here ({} does not exist)",
            dir.display(),
            staging.display()
        );
    }
    Ok((staging, final_dir))
}

pub fn staging_dir(final_dir: &Path) -> Result<PathBuf> {
    let name = final_dir
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("--out {}: needs a directory name", final_dir.display()))?;
    let parent = final_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok(parent.join(format!(".{name}.partial")))
}
