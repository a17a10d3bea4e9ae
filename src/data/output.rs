//! Output directories: every check before any work, results written into a staging directory
//! beside the target and renamed into place only when complete.
//!
//! - A non-empty target is refused unless `--force`, and `--force` replaces only a directory
//!   that this program wrote (its `meta.json` or `run.json` names xrai-bench); never `/`, the
//!   home directory, or the current directory or one above it.
//! - The staging directory `.NAME.partial-PID` is registered while it exists: on SIGINT or
//!   SIGTERM a handler thread removes it (or, for methods that keep partial results, says
//!   where they are) and exits with 128 + the signal number (130 for Ctrl-C).
//! - Staging directories left by a process that no longer runs (killed with SIGKILL, a power
//!   cut) are reported on the next start with their size; `--force` removes them.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

use anyhow::{bail, ensure, Context};

/// Marker of this program's outputs: `meta.json` / `run.json` with `"software": {"name": …}`.
pub const SOFTWARE_NAME: &str = "xrai-bench";

/// Bytes as a human-readable size ("4.0 KiB", "1.5 GiB").
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// What statvfs says about the filesystem holding `path`.
struct FsInfo {
    free: u64,
    total: u64,
    read_only: bool,
}

fn fs_info(path: &Path) -> Option<FsInfo> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a valid C string and a zeroed out-parameter of the right type.
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut stat) };
        (rc == 0).then(|| FsInfo {
            free: (stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64),
            total: (stat.f_blocks as u64).saturating_mul(stat.f_frsize as u64),
            read_only: stat.f_flag & libc::ST_RDONLY != 0,
        })
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Free bytes on the filesystem holding `path` (None where it cannot be asked).
pub fn free_bytes(path: &Path) -> Option<u64> {
    fs_info(path).map(|f| f.free)
}

/// The directory that will hold `dir`, and its nearest ancestor that exists.
fn existing_ancestor(dir: &Path) -> (PathBuf, PathBuf) {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let probe = parent
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    (parent, probe)
}

/// Errors before any work if `bytes` will not fit beside `dir`, or if nothing can be written
/// there at all; `what` says what needs the space, `advice` what to do instead.
pub fn ensure_space(dir: &Path, bytes: u64, what: &str, advice: &str) -> anyhow::Result<()> {
    let (_, probe) = existing_ancestor(dir);
    ensure!(
        probe.is_dir(),
        "--out {}: {} exists and is not a directory, so nothing can be created under it; choose another output path",
        dir.display(),
        probe.display()
    );
    let Some(fs) = fs_info(&probe) else { return Ok(()) };
    ensure!(
        fs.total > 0,
        "--out {}: {} is on a virtual filesystem with no storage (such as /proc or /sys); nothing was written. \
         Choose an output directory on a disk",
        dir.display(),
        probe.display()
    );
    ensure!(
        !fs.read_only,
        "--out {}: {} is on a read-only filesystem; nothing was written. Choose an output directory you can write to",
        dir.display(),
        probe.display()
    );
    ensure!(
        bytes < fs.free,
        "{what} needs {} but only {} are free on {}; nothing was written. {advice}",
        format_bytes(bytes),
        format_bytes(fs.free),
        probe.display()
    );
    Ok(())
}

/// True when `dir` holds a `meta.json` or `run.json` written by this program.
pub fn is_own_output(dir: &Path) -> bool {
    ["meta.json", "run.json"].iter().any(|name| {
        std::fs::read_to_string(dir.join(name))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .is_some_and(|v| v["software"]["name"] == SOFTWARE_NAME)
    })
}

/// `/`, the home directory, and the current directory and those above it: never an output.
fn protected(canonical: &Path) -> Option<&'static str> {
    if canonical.parent().is_none() {
        return Some("the root directory");
    }
    if let Ok(cwd) = std::env::current_dir().and_then(|c| c.canonicalize()) {
        if cwd == canonical {
            return Some("the current directory");
        }
        if cwd.starts_with(canonical) {
            return Some("a directory above the current one");
        }
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .and_then(|h| h.canonicalize().ok());
    if home.as_deref() == Some(canonical) {
        return Some("your home directory");
    }
    None
}

/// Every refusal `prepare_output_dir` can make, with no side effects, so commands call it
/// before any work.
pub fn check_output_dir(dir: &Path, force: bool) -> anyhow::Result<()> {
    if let Some(canonical) = dir.canonicalize().ok().or_else(|| {
        // Not there yet: judge its parent (`--out ./`, `--out ..` resolve through it).
        let (parent, _) = existing_ancestor(dir);
        dir.file_name().is_none().then(|| parent.canonicalize().ok()).flatten()
    }) {
        if let Some(what) = protected(&canonical) {
            bail!(
                "--out {}: that is {what} ({}); results go into a directory of their own, which --force would \
                 replace. Nothing was written. Give a new directory, e.g. --out results/run1",
                dir.display(),
                canonical.display()
            );
        }
    }
    if !dir.exists() {
        return Ok(());
    }
    ensure!(
        dir.is_dir(),
        "--out {}: exists and is not a directory; nothing was written. Choose another path",
        dir.display()
    );
    let entries: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("--out {}: cannot list the directory", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    if !force {
        bail!(
            "--out {}: the directory is not empty; nothing was written. Choose another directory or pass --force to replace it",
            dir.display()
        );
    }
    if !is_own_output(dir) {
        let mut shown: Vec<&str> = entries.iter().map(String::as_str).take(4).collect();
        shown.sort_unstable();
        let more = if entries.len() > shown.len() {
            format!(", … ({} entries)", entries.len())
        } else {
            String::new()
        };
        bail!(
            "--out {}: --force replaces only a directory written by xrai-bench (one holding its meta.json or run.json), \
             and this one holds other files ({}{more}); nothing was deleted. Choose another --out, or move or delete \
             that directory yourself if it is no longer needed",
            dir.display(),
            shown.join(", ")
        );
    }
    Ok(())
}

/// Staging directories of this process, removed by the signal handler: (path, keep partial).
static STAGING: Mutex<Vec<(PathBuf, bool)>> = Mutex::new(Vec::new());
static HANDLER: Once = Once::new();

fn staging_list() -> std::sync::MutexGuard<'static, Vec<(PathBuf, bool)>> {
    STAGING.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn has_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false)
}

/// On SIGINT/SIGTERM: remove the registered staging directories (or name the kept partial
/// ones) and exit with 128 + signal. Installed once, when the first staging directory exists.
fn install_signal_handler() {
    HANDLER.call_once(|| {
        let signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM]);
        match signals {
            Ok(mut signals) => {
                std::thread::spawn(move || {
                    if let Some(signal) = signals.forever().next() {
                        // The lock waits for a commit in progress; what is listed is not yet final.
                        let list = staging_list();
                        for (path, keep) in list.iter() {
                            if *keep && has_files(path) {
                                eprintln!("\ninterrupted: partial results kept in {}", path.display());
                            } else if std::fs::remove_dir_all(path).is_ok() {
                                eprintln!("\ninterrupted: removed the unfinished {}", path.display());
                            }
                        }
                        std::process::exit(128 + signal);
                    }
                });
            }
            Err(e) => {
                eprintln!("warning: cannot watch for Ctrl-C ({e}); an interrupted run leaves its staging directory")
            }
        }
    });
}

fn register(path: &Path, keep_partial: bool) {
    install_signal_handler();
    staging_list().push((path.to_path_buf(), keep_partial));
}

fn unregister(list: &mut Vec<(PathBuf, bool)>, path: &Path) {
    list.retain(|(p, _)| p != path);
}

/// Process `pid` no longer exists (signal 0 probes without sending anything).
fn process_is_gone(pid: i32) -> bool {
    #[cfg(unix)]
    {
        // SAFETY: kill with signal 0 only checks for existence and permission.
        let rc = unsafe { libc::kill(pid, 0) };
        rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        false
    }
}

/// Bytes under `path`, following no links.
pub fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| tree_size(&e.path()))
                .fold(0u64, u64::saturating_add)
        })
        .unwrap_or(0)
}

/// `.NAME.partial-PID` directories beside `dir` whose process is gone.
pub fn stale_staging_dirs(dir: &Path) -> Vec<PathBuf> {
    let (parent, _) = existing_ancestor(dir);
    let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    let prefix = format!(".{name}.partial-");
    let own = std::process::id() as i32;
    let mut found: Vec<PathBuf> = std::fs::read_dir(&parent)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    let file = e.file_name();
                    let Some(pid) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
                        return false;
                    };
                    pid.parse::<i32>()
                        .is_ok_and(|pid| pid > 0 && pid != own && process_is_gone(pid))
                        && e.file_type().is_ok_and(|t| t.is_dir())
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// Reports stale staging directories beside `dir`; removes them when `force`.
fn report_stale_staging(dir: &Path, force: bool) {
    for stale in stale_staging_dirs(dir) {
        let size = format_bytes(tree_size(&stale));
        if force {
            match std::fs::remove_dir_all(&stale) {
                Ok(()) => eprintln!(
                    "removed {} ({size}), left by an interrupted run (--force)",
                    stale.display()
                ),
                Err(e) => eprintln!("warning: cannot remove {} ({size}): {e}", stale.display()),
            }
        } else {
            eprintln!(
                "note: {} ({size}) was left by an interrupted run whose process is gone; it can be removed \
                 (rm -r '{}'), or pass --force to remove it",
                stale.display(),
                stale.display()
            );
        }
    }
}

/// Refuses what [`check_output_dir`] refuses; returns a fresh staging directory beside `dir`,
/// registered for removal on Ctrl-C.
pub fn prepare_output_dir(dir: &Path, force: bool) -> anyhow::Result<PathBuf> {
    prepare_staging(dir, force, false)
}

fn prepare_staging(dir: &Path, force: bool, keep_partial: bool) -> anyhow::Result<PathBuf> {
    check_output_dir(dir, force)?;
    report_stale_staging(dir, force);
    let (parent, _) = existing_ancestor(dir);
    std::fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    register(&staging, keep_partial);
    Ok(staging)
}

/// Runs `write` into a fresh staging directory beside `dir` and moves it to `dir` only when
/// `write` succeeds, so `dir` never holds a half-written result. On failure (or Ctrl-C) the
/// staging directory is removed, unless `keep_partial` and it holds something (a checkpoint,
/// a log): then it stays and the error says where.
pub fn write_atomically<T>(
    dir: &Path,
    force: bool,
    keep_partial: bool,
    write: impl FnOnce(&Path) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let staging = prepare_staging(dir, force, keep_partial)?;
    match write(&staging) {
        Ok(value) => {
            commit_output_dir(&staging, dir)?;
            Ok(value)
        }
        Err(e) => {
            let mut list = staging_list();
            unregister(&mut list, &staging);
            if keep_partial && has_files(&staging) {
                Err(e.context(format!("partial results kept in {}", staging.display())))
            } else {
                std::fs::remove_dir_all(&staging).ok();
                Err(e)
            }
        }
    }
}

/// Moves a completed staging directory to its final name (replacing an old one only if
/// [`check_output_dir`] allowed it). Holds the staging list's lock throughout, so a Ctrl-C
/// arriving now waits until the result is in place.
pub fn commit_output_dir(staging: &Path, dir: &Path) -> anyhow::Result<()> {
    let mut list = staging_list();
    let result = (|| {
        if dir.exists() {
            let old = staging.with_extension("old");
            std::fs::rename(dir, &old).with_context(|| format!("cannot move the old {} aside", dir.display()))?;
            std::fs::rename(staging, dir).with_context(|| format!("cannot move results into {}", dir.display()))?;
            std::fs::remove_dir_all(&old).ok();
        } else {
            std::fs::rename(staging, dir).with_context(|| format!("cannot move results into {}", dir.display()))?;
        }
        Ok(())
    })();
    unregister(&mut list, staging);
    result
}

/// Refuses an output file before any work: an input, an existing file without `force`, a
/// directory, or a path whose folder does not exist.
pub fn check_output_file(flag: &str, path: &Path, inputs: &[(&str, &Path)], force: bool) -> anyhow::Result<()> {
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    for (input_flag, input) in inputs {
        anyhow::ensure!(
            !same(path, input),
            "{flag} {}: that is the {input_flag} input; writing it would destroy the input. Give another file name",
            path.display()
        );
    }
    anyhow::ensure!(
        !path.is_dir(),
        "{flag} {}: is a directory; give a file name",
        path.display()
    );
    anyhow::ensure!(
        force || !path.exists(),
        "{flag} {}: already exists; nothing was written. Choose another file name or pass --force to replace it",
        path.display()
    );
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    anyhow::ensure!(
        folder.is_dir(),
        "{flag} {}: the folder {} does not exist; nothing was written. Create it first or choose another path",
        path.display(),
        folder.display()
    );
    Ok(())
}

/// Writes `text` to a temporary sibling and renames it over `path`, so a failure never leaves
/// a half-written file.
pub fn write_file_atomically(path: &Path, text: &[u8]) -> anyhow::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = path.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            std::fs::remove_file(&tmp).ok();
            anyhow::anyhow!("cannot write {}: {e}", path.display())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(4096), "4.0 KiB");
        assert_eq!(format_bytes(3 << 30), "3.0 GiB");
        assert_eq!(format_bytes(u64::MAX), "16.0 EiB");
    }
}
