//! Files of the field's other tools, read and written so that the same data can run through this
//! program and through them side by side.
//!
//! - [`dragonfly`]: Dragonfly's sparse photon files (`.emc`) and ASCII detector files (`.dat`)
//!   (Ayyer et al. 2016, J. Appl. Cryst. 49, 1320; github.com/duaneloh/Dragonfly).
//! - `cxi` (only with the `hdf5` feature): CXI files (HDF5) as Condor writes and CXIDB serves them
//!   — frames, detector distance, pixel size, photon energy, mask, true orientations.
//! - MRC maps live in [`crate::mrc`].
//!
//! The Dragonfly formats are plain binary or ASCII and need nothing beyond the standard library;
//! CXI needs the HDF5 C library, which only the `hdf5` feature links. Every
//! reader validates sizes against the file with checked arithmetic and names the file and the
//! field that is wrong; every writer goes through a temporary file in the target folder and a
//! rename, so a crash never leaves a half-written file, and replaces an existing file only when
//! asked.

#[cfg(feature = "hdf5")]
pub mod cxi;
pub mod dragonfly;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// What can go wrong reading or writing a file of another tool.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    // The OS error is part of the message, not a `source`, so that an error chain prints it once.
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    /// The file (or the data handed to a writer) is inconsistent; `field` names where.
    #[error("{}: {field}: {reason}", path.display())]
    Invalid {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error("{}: already exists (pass overwrite to replace it)", path.display())]
    Exists { path: PathBuf },
}

impl FormatError {
    pub(crate) fn io(path: &Path, error: io::Error) -> Self {
        FormatError::Io {
            path: path.to_path_buf(),
            error,
        }
    }

    pub(crate) fn invalid(path: &Path, field: impl Into<String>, reason: impl Into<String>) -> Self {
        FormatError::Invalid {
            path: path.to_path_buf(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A temporary path next to `path` (same folder, so the final rename stays on one file system).
pub(crate) fn temporary_path(path: &Path, tag: &str) -> PathBuf {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(".{name}.{}.{tag}.tmp", std::process::id()))
}

/// Moves the finished temporary file `tmp` to `path`. Without `overwrite` an existing `path` is
/// never replaced, even if it appears while writing (a hard link fails on an existing target);
/// that case is reported as [`io::ErrorKind::AlreadyExists`]. `tmp` is gone afterwards.
pub(crate) fn place(tmp: &Path, path: &Path, overwrite: bool) -> io::Result<()> {
    let placed = if overwrite {
        fs::rename(tmp, path)
    } else {
        fs::hard_link(tmp, path).or_else(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => Err(e),
            // File systems without hard links.
            _ if !path.exists() => fs::rename(tmp, path),
            _ => Err(e),
        })
    };
    let _ = fs::remove_file(tmp);
    placed
}

/// [`place`] with the errors of this module.
pub(crate) fn place_file(tmp: &Path, path: &Path, overwrite: bool) -> Result<(), FormatError> {
    place(tmp, path, overwrite).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => FormatError::Exists {
            path: path.to_path_buf(),
        },
        _ => FormatError::io(path, e),
    })
}
