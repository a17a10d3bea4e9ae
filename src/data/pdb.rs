//! Finding and fetching structure files for `--pdb`: a path as given; a PDB ID looked up in
//! the bundled `datasets/pdb/`, then `$XRAI_PDB_DIR`, then the download cache, then fetched
//! from the RCSB with curl (unless `XRAI_OFFLINE`). Reading the text is
//! [`crate::physics::molecule`]'s job; this module only decides which file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::physics::molecule::{read_structure, Molecule, Selection, SelectionError};

/// Where `--pdb` found its file, and which chain the ID asked for.
#[derive(Clone, Debug)]
pub struct ResolvedStructure {
    pub path: PathBuf,
    /// Chain implied by an ID such as `2CEX_A` (None for a plain ID or a path).
    pub chain: Option<String>,
    /// The canonical ID (upper case, e.g. `2CEX_A`) or the path as given.
    pub name: String,
}

/// The bundled structures: `datasets/pdb/` of this crate, or of the working directory.
pub fn bundled_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("datasets/pdb")];
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets/pdb");
    if !dirs.contains(&crate_dir) {
        dirs.push(crate_dir);
    }
    dirs
}

/// Default download cache: `$XRAI_CACHE_DIR/pdb`, else `~/.cache/xrai-bench/pdb`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XRAI_CACHE_DIR") {
        return PathBuf::from(dir).join("pdb");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache/xrai-bench/pdb")
}

/// True for strings shaped like a PDB ID with an optional chain: `2cex`, `2CEX_A`, `1O9K`.
pub fn looks_like_pdb_id(spec: &str) -> bool {
    let (id, chain) = match spec.split_once('_') {
        Some((id, chain)) => (id, Some(chain)),
        None => (spec, None),
    };
    id.len() == 4
        && id.as_bytes()[0].is_ascii_digit()
        && id.chars().all(|c| c.is_ascii_alphanumeric())
        && chain.is_none_or(|c| !c.is_empty() && c.len() <= 4 && c.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Resolves `--pdb`: an existing path is used as is; an ID is looked up in the bundled
/// `datasets/pdb/`, then `$XRAI_PDB_DIR`, then downloaded from the RCSB into [`cache_dir`]
/// (skipped when `XRAI_OFFLINE` is set). The error lists every place tried and how to supply
/// the file.
pub fn resolve(spec: &str) -> anyhow::Result<ResolvedStructure> {
    let as_path = Path::new(spec);
    if as_path.is_file() {
        return Ok(ResolvedStructure {
            path: as_path.to_path_buf(),
            chain: None,
            name: spec.to_string(),
        });
    }
    if as_path.is_dir() {
        let mut inside: Vec<String> = std::fs::read_dir(as_path)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .filter(|n| {
                        [".pdb", ".cif", ".ent"]
                            .iter()
                            .any(|x| n.to_ascii_lowercase().ends_with(x))
                    })
                    .collect()
            })
            .unwrap_or_default();
        inside.sort();
        let found = if inside.is_empty() {
            "it holds no .pdb/.cif/.ent files".to_string()
        } else {
            format!(
                "structure files in it: {}",
                inside.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            )
        };
        anyhow::bail!("--pdb {spec:?} is a directory, not a structure file ({found}). Give the path of one file, e.g. --pdb {spec}/NAME.pdb");
    }
    if !looks_like_pdb_id(spec) {
        anyhow::bail!(
            "--pdb {spec:?}: no such file, and it is not a PDB ID (4 characters starting with a digit, \
             optionally _CHAIN, e.g. 2CEX_A). Give a path to a .pdb/.cif file or an ID"
        );
    }
    let upper = spec.to_ascii_uppercase();
    let (id, chain) = match upper.split_once('_') {
        Some((id, chain)) => (id.to_string(), Some(chain.to_string())),
        None => (upper.clone(), None),
    };
    let mut tried: Vec<String> = Vec::new();
    // Most specific name first: 2cex_a.pdb holds chain A already; 2cex.pdb plus the chain filter serves too.
    let mut stems = vec![upper.to_ascii_lowercase()];
    if chain.is_some() {
        stems.push(id.to_ascii_lowercase());
    }
    let mut dirs: Vec<(String, Option<PathBuf>)> = bundled_dirs()
        .into_iter()
        .map(|d| ("bundled".to_string(), Some(d)))
        .collect();
    let env_dir = std::env::var_os("XRAI_PDB_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    dirs.push(("$XRAI_PDB_DIR".to_string(), env_dir));
    dirs.push(("download cache".to_string(), Some(cache_dir())));
    for (label, dir) in &dirs {
        let Some(dir) = dir else {
            tried.push(format!("{label} (not set)"));
            continue;
        };
        for stem in &stems {
            if let Some(path) = find_case_insensitive(dir, stem) {
                let file_chain = if *stem == stems[0] && stems.len() > 1 {
                    None
                } else {
                    chain.clone()
                };
                return Ok(ResolvedStructure {
                    path,
                    chain: file_chain,
                    name: upper,
                });
            }
            tried.push(format!("{label} {}/{stem}.{{pdb,cif,ent}}", dir.display()));
        }
    }
    match download_from_rcsb(&id, &cache_dir()) {
        Ok(path) => {
            return Ok(ResolvedStructure {
                path,
                chain,
                name: upper,
            })
        }
        Err(why) => tried.push(format!("download https://files.rcsb.org/download/{id}.pdb: {why}")),
    }
    let mut msg = format!("--pdb {spec}: no coordinates found for PDB entry {id}. Looked in:\n");
    for t in &tried {
        let _ = writeln!(msg, "  - {t}");
    }
    let _ = write!(
        msg,
        "To supply it: download {id}.pdb (or {id}.cif) from https://www.rcsb.org/structure/{id} on a machine with \
         network access, then either copy it to datasets/pdb/{lower}.pdb, or put it in a folder and set \
         XRAI_PDB_DIR=/that/folder, or pass the file itself with --pdb /path/to/{lower}.pdb",
        lower = id.to_ascii_lowercase()
    );
    Err(anyhow::anyhow!(msg))
}

fn find_case_insensitive(dir: &Path, stem: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_ascii_lowercase();
            ["pdb", "cif", "ent"].iter().any(|ext| name == format!("{stem}.{ext}")) && p.is_file()
        })
        .collect();
    found.sort(); // deterministic: .cif before .ent before .pdb
    found.pop()
}

/// Fetches `ID.pdb` with curl into the cache (atomically: temporary name, then rename).
fn download_from_rcsb(id: &str, cache: &Path) -> Result<PathBuf, String> {
    if std::env::var_os("XRAI_OFFLINE").is_some_and(|v| !v.is_empty()) {
        return Err("skipped (XRAI_OFFLINE is set)".to_string());
    }
    std::fs::create_dir_all(cache).map_err(|e| format!("cannot create cache {}: {e}", cache.display()))?;
    let target = cache.join(format!("{}.pdb", id.to_ascii_lowercase()));
    let partial = cache.join(format!(".{}.pdb.part{}", id.to_ascii_lowercase(), std::process::id()));
    let url = format!("https://files.rcsb.org/download/{id}.pdb");
    let output = std::process::Command::new("curl")
        .args(["-fsSL", "--connect-timeout", "5", "--max-time", "60", "-o"])
        .arg(&partial)
        .arg(&url)
        .output()
        .map_err(|e| format!("curl could not be started ({e})"))?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&partial);
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("failed ({})", stderr.trim()));
    }
    std::fs::rename(&partial, &target).map_err(|e| format!("cannot move download into {}: {e}", target.display()))?;
    Ok(target)
}

/// `--pdb` + `--chain` + flags → a molecule, in one call for every command. Errors say what
/// is wrong in terms of the file; commands add their own flags' names (see
/// [`SelectionError`]). A chain missing from a bundled file gets a note on where to get the
/// full entry.
pub fn load(spec: &str, chain: Option<&str>, include_hetatm: bool, include_water: bool) -> anyhow::Result<Molecule> {
    let resolved = resolve(spec)?;
    let chains: Vec<String> = match (chain, &resolved.chain) {
        (Some(c), _) => c
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        (None, Some(c)) => vec![c.clone()],
        (None, None) => vec![],
    };
    read_structure(
        &resolved.path,
        &Selection {
            chains,
            include_hetatm,
            include_water,
        },
    )
    .map_err(|e| {
        let bundled = resolved
            .path
            .parent()
            .is_some_and(|dir| bundled_dirs().iter().any(|b| same_dir(b, dir)));
        let chains = match e.downcast_ref::<SelectionError>() {
            Some(SelectionError::NoSuchChain { chains, .. }) if bundled => chains.clone(),
            _ => return e,
        };
        let id = resolved.name.split('_').next().unwrap_or(&resolved.name).to_string();
        let lower = id.to_ascii_lowercase();
        anyhow::anyhow!(
            "{e:#}. {} is the bundled copy of {id} and holds chain {chains} only; for another chain, download the full \
             entry from https://www.rcsb.org/structure/{id} and pass the file itself: --pdb /path/to/{lower}.pdb",
            resolved.path.display()
        )
    })
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_recognised() {
        assert!(looks_like_pdb_id("2CEX_A"));
        assert!(looks_like_pdb_id("1o9k"));
        assert!(!looks_like_pdb_id("protein.pdb"));
        assert!(!looks_like_pdb_id("CEX2"));
    }
}
