//! PDB / mmCIF → the atoms that scatter: positions in Å and a scattering species per atom.
//!
//! Reading is lenient (real files strip trailing blanks, omit element columns, carry short
//! DBREF lines) and acceptance is strict (every atom has a known species and finite
//! coordinates). PDB text is normalised line by line first — only coordinate records are kept,
//! each checked and padded to 80 columns, a missing element column is inferred from the atom
//! name as the PDB format defines it — and then handed to pdbtbx for the hierarchy (models,
//! chains, alternate locations). Errors name the file, the line and what to do.
//!
//! Selection rules: first model only; waters and HETATM records excluded unless asked for;
//! alternate locations: the first one listed for each residue (blank altloc atoms always kept).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::form_factor::FormFactor;

/// What to take from a structure file.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Chain identifiers to keep; empty keeps every chain.
    pub chains: Vec<String>,
    /// Keep HETATM records (ligands, ions) as well as ATOM records.
    pub include_hetatm: bool,
    /// Keep waters (HOH, WAT, DOD, H2O); only meaningful with `include_hetatm` or odd files
    /// that store waters as ATOM records.
    pub include_water: bool,
}

/// The scattering atoms of a molecule, centred on the centre of their bounding box.
///
/// Atoms are stored grouped by species (all atoms of `species[0]` first, …) so kernels can
/// evaluate one form factor per group.
#[derive(Clone, Debug)]
pub struct Molecule {
    /// Where the atoms came from (file path, chain selection), for metadata.
    pub source: String,
    pub species: Vec<FormFactor>,
    /// Atom positions in Å, relative to `centre`.
    pub positions: Vec<[f64; 3]>,
    /// `species_index[i]` indexes `species` for atom i; non-decreasing.
    pub species_index: Vec<usize>,
    /// Where the original coordinate frame's origin went: original = position + centre.
    pub centre: [f64; 3],
}

impl Molecule {
    /// Builds a molecule from atoms in any frame; centres them and groups them by species.
    pub fn new(source: impl Into<String>, atoms: Vec<([f64; 3], FormFactor)>) -> Molecule {
        let mut species: Vec<FormFactor> = Vec::new();
        let mut tagged: Vec<(usize, [f64; 3])> = atoms
            .into_iter()
            .map(|(p, ff)| {
                let k = species.iter().position(|s| s.label == ff.label).unwrap_or_else(|| {
                    species.push(ff);
                    species.len() - 1
                });
                (k, p)
            })
            .collect();
        tagged.sort_by_key(|&(k, _)| k); // stable: keeps file order within a species
        let mut lo = [f64::INFINITY; 3];
        let mut hi = [f64::NEG_INFINITY; 3];
        for (_, p) in &tagged {
            for a in 0..3 {
                lo[a] = lo[a].min(p[a]);
                hi[a] = hi[a].max(p[a]);
            }
        }
        let centre = if tagged.is_empty() { [0.0; 3] } else { [0, 1, 2].map(|a| 0.5 * (lo[a] + hi[a])) };
        Molecule {
            source: source.into(),
            species,
            positions: tagged.iter().map(|(_, p)| [0, 1, 2].map(|a| p[a] - centre[a])).collect(),
            species_index: tagged.iter().map(|&(k, _)| k).collect(),
            centre,
        }
    }

    pub fn len(&self) -> usize {
        self.positions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Largest distance of any atom from the centre, Å. Sets the reciprocal grid's spacing.
    pub fn radius(&self) -> f64 {
        self.positions.iter().map(|p| (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt()).fold(0.0, f64::max)
    }

    /// Range of atom indices belonging to species k.
    pub fn species_range(&self, k: usize) -> std::ops::Range<usize> {
        let start = self.species_index.partition_point(|&s| s < k);
        let end = self.species_index.partition_point(|&s| s <= k);
        start..end
    }

    /// Number of atoms per species label, for metadata and logs.
    pub fn composition(&self) -> Vec<(String, usize)> {
        (0..self.species.len()).map(|k| (self.species[k].label.to_string(), self.species_range(k).len())).collect()
    }

    /// Total electrons seen in forward scattering, Σ f(0); |F(0)|² is its square.
    pub fn forward_scattering(&self) -> f64 {
        self.species_index.iter().map(|&k| self.species[k].at_s(0.0)).sum()
    }
}

/// Reads a PDB or mmCIF file and keeps the atoms `selection` asks for.
pub fn read_structure(path: &Path, selection: &Selection) -> anyhow::Result<Molecule> {
    let display = path.display().to_string();
    let text = std::fs::read(path).map_err(|e| {
        anyhow::anyhow!("cannot read structure file {display}: {e}. Check the path, or pass a PDB ID (e.g. --pdb 2CEX_A)")
    })?;
    let text = String::from_utf8_lossy(&text);
    let is_cif = display.to_ascii_lowercase().ends_with(".cif") || text.trim_start().starts_with("data_");
    if is_cif {
        read_mmcif(&display, &text, selection)
    } else {
        read_pdb_text(&display, &text, selection)
    }
}

/// One coordinate record after normalisation.
struct AtomLine {
    line_number: usize,
    element: String,
}

/// PDB text: normalise, validate each coordinate line, then build the hierarchy with pdbtbx.
fn read_pdb_text(file: &str, text: &str, selection: &Selection) -> anyhow::Result<Molecule> {
    let mut normalised = String::with_capacity(text.len());
    let mut by_serial: HashMap<String, AtomLine> = HashMap::new();
    let mut n_coord = 0usize;
    for (i, raw) in text.lines().enumerate() {
        let line_number = i + 1;
        let line = raw.trim_end_matches(['\r', '\n']);
        let record = line.get(..6).unwrap_or(line).trim_end();
        match record {
            "ATOM" | "HETATM" => {
                let parsed = normalise_atom_line(file, line_number, line)?;
                by_serial.insert(parsed.0[6..11].to_string(), AtomLine { line_number, element: parsed.1 });
                normalised.push_str(&parsed.0);
                n_coord += 1;
            }
            "MODEL" | "ENDMDL" | "TER" => {
                let _ = write!(normalised, "{line:<80}");
            }
            "END" => break,
            _ => {}
        }
        normalised.push('\n'); // one output line per input line keeps line numbers aligned
    }
    if n_coord == 0 {
        anyhow::bail!(
            "{file}: no ATOM or HETATM records — the file is empty, truncated or not a PDB file. \
             Supply a PDB or mmCIF coordinate file"
        );
    }
    let mut options = pdbtbx::ReadOptions::new();
    options.set_format(pdbtbx::Format::Pdb).set_level(pdbtbx::StrictnessLevel::Loose).set_only_first_model(true);
    let reader = std::io::BufReader::new(normalised.as_bytes());
    let (pdb, _warnings) = options.read_raw(reader).map_err(|errors| pdbtbx_error(file, &errors))?;
    let lookup = |serial: usize| by_serial.get(&format!("{serial:>5}"));
    collect_atoms(file, &pdb, selection, |atom| {
        let serial = atom.serial_number();
        let (line_number, element) =
            lookup(serial).map(|a| (Some(a.line_number), a.element.clone())).unwrap_or((None, String::new()));
        (line_number, element)
    })
}

/// Checks one ATOM/HETATM line and returns it padded to 80 columns with an element column,
/// plus the element symbol.
fn normalise_atom_line(file: &str, line_number: usize, line: &str) -> anyhow::Result<(String, String)> {
    if !line.is_ascii() {
        anyhow::bail!("{file}, line {line_number}: non-ASCII characters in a coordinate record: {line:?}");
    }
    if line.len() < 54 {
        anyhow::bail!(
            "{file}, line {line_number}: coordinate record is truncated ({} columns; x, y, z need columns 31–54). \
             The file is damaged — download it again",
            line.len()
        );
    }
    for (axis, cols) in [("x", 30..38), ("y", 38..46), ("z", 46..54)] {
        let field = line[cols.clone()].trim();
        match field.parse::<f64>() {
            Ok(v) if v.is_finite() => {}
            _ => anyhow::bail!(
                "{file}, line {line_number}: {axis} coordinate in columns {}–{} is {field:?}, not a number",
                cols.start + 1,
                cols.end
            ),
        }
    }
    let mut padded = format!("{line:<80}");
    padded.truncate(80);
    let mut element = padded[76..78].trim().to_string();
    if element.is_empty() || element.chars().any(|c| c.is_ascii_digit()) {
        element = element_from_atom_name(&padded[12..16]);
        if element.is_empty() {
            anyhow::bail!(
                "{file}, line {line_number}: no element in columns 77–78 and none can be read from the atom name {:?}. \
                 Add the element symbol in columns 77–78",
                padded[12..16].trim()
            );
        }
        padded.replace_range(76..78, &format!("{element:>2}"));
    }
    // pdbtbx rejects charges it cannot read; a malformed charge field is an error here too.
    let charge = padded[78..80].trim();
    if !charge.is_empty() && parse_charge(charge).is_none() {
        anyhow::bail!("{file}, line {line_number}: charge field (columns 79–80) is {charge:?}; expected e.g. \"2+\" or \"1-\"");
    }
    padded.push('\n');
    padded.pop();
    Ok((padded, element))
}

/// The PDB rule: the element is right-justified in columns 13–14 of the atom name, so a name
/// starting with a letter in column 13 (e.g. "FE  ", "CL  ") is a two-letter element, one
/// starting with a blank or a digit is one letter (" CA " is carbon alpha, "1HB " hydrogen).
fn element_from_atom_name(name: &str) -> String {
    let b = name.as_bytes();
    if b.len() < 2 {
        return String::new();
    }
    if b[0].is_ascii_alphabetic() && b[1].is_ascii_alphabetic() {
        // Four-character hydrogen names ("HG12", "HD21") start in column 13 too; read them as H.
        let hydrogen_name = b[0] == b'H' && name.trim().len() >= 3;
        let two = name[..2].to_string();
        if !hydrogen_name && FormFactor::lookup(&two, 0).is_some() {
            return FormFactor::lookup(&two, 0).map(|f| f.label.to_string()).unwrap_or(two);
        }
        return name[..1].to_string();
    }
    if b[1].is_ascii_alphabetic() {
        return name[1..2].to_string();
    }
    String::new()
}

fn parse_charge(field: &str) -> Option<i32> {
    let f = field.trim();
    if f.is_empty() {
        return Some(0);
    }
    let (digits, sign) = if f.ends_with(['+', '-']) { (&f[..f.len() - 1], &f[f.len() - 1..]) } else { (&f[1..], &f[..1]) };
    let magnitude: i32 = if digits.is_empty() { 1 } else { digits.parse().ok()? };
    match sign {
        "+" => Some(magnitude),
        "-" => Some(-magnitude),
        _ => None,
    }
}

fn read_mmcif(file: &str, text: &str, selection: &Selection) -> anyhow::Result<Molecule> {
    let mut options = pdbtbx::ReadOptions::new();
    options.set_format(pdbtbx::Format::Mmcif).set_level(pdbtbx::StrictnessLevel::Loose).set_only_first_model(true);
    let (pdb, _warnings) =
        options.read_raw(std::io::BufReader::new(text.as_bytes())).map_err(|errors| pdbtbx_error(file, &errors))?;
    collect_atoms(file, &pdb, selection, |atom| (None, atom.element().map(|e| e.symbol().to_string()).unwrap_or_default()))
}

/// Only the errors that stop parsing, each with pdbtbx's own context (it shows the line).
fn pdbtbx_error(file: &str, errors: &[pdbtbx::PDBError]) -> anyhow::Error {
    let breaking: Vec<String> = errors
        .iter()
        .filter(|e| e.fails(pdbtbx::StrictnessLevel::Loose))
        .take(3)
        .map(|e| e.to_string())
        .collect();
    anyhow::anyhow!("{file}: the structure could not be parsed:\n{}", breaking.join("\n"))
}

fn is_water(residue: &str) -> bool {
    matches!(residue.trim(), "HOH" | "WAT" | "DOD" | "H2O" | "TIP" | "TIP3" | "SOL")
}

/// Walks pdbtbx's hierarchy applying the selection rules; `origin` gives an atom's line
/// number (if known) and element symbol for error messages and species lookup.
fn collect_atoms(
    file: &str,
    pdb: &pdbtbx::PDB,
    selection: &Selection,
    origin: impl Fn(&pdbtbx::Atom) -> (Option<usize>, String),
) -> anyhow::Result<Molecule> {
    let wanted = |chain: &str| selection.chains.is_empty() || selection.chains.iter().any(|c| c == chain);
    let mut atoms = Vec::new();
    let mut chains_seen: Vec<String> = Vec::new();
    for model in pdb.models().take(1) {
        for chain in model.chains() {
            if !chains_seen.iter().any(|c| c == chain.id()) {
                chains_seen.push(chain.id().to_string());
            }
            if !wanted(chain.id()) {
                continue;
            }
            for residue in chain.residues() {
                let mut first_altloc: Option<String> = None;
                for conformer in residue.conformers() {
                    if is_water(conformer.name()) && !selection.include_water {
                        continue;
                    }
                    if let Some(alt) = conformer.alternative_location() {
                        match &first_altloc {
                            None => first_altloc = Some(alt.to_string()),
                            Some(first) if first != alt => continue,
                            _ => {}
                        }
                    }
                    for atom in conformer.atoms() {
                        if atom.hetero() && !selection.include_hetatm && !is_water(conformer.name()) {
                            continue;
                        }
                        let (line, element) = origin(atom);
                        let where_ = match line {
                            Some(l) => format!("{file}, line {l}"),
                            None => format!("{file}, atom {} ({})", atom.serial_number(), atom.name()),
                        };
                        let charge = atom.charge() as i32;
                        let ff = FormFactor::lookup(&element, charge)
                            .or_else(|| FormFactor::lookup(&element, 0))
                            .ok_or_else(|| {
                                anyhow::anyhow!(
                                    "{where_}: unknown element {element:?} (atom {} in residue {} of chain {}). \
                                     The Waasmaier–Kirfel table covers H–Cf and common ions; fix the element \
                                     column (77–78) or remove the atom",
                                    atom.name(),
                                    conformer.name(),
                                    chain.id()
                                )
                            })?;
                        let (x, y, z) = atom.pos();
                        if !(x.is_finite() && y.is_finite() && z.is_finite()) {
                            anyhow::bail!("{where_}: coordinates are not finite");
                        }
                        atoms.push(([x, y, z], ff));
                    }
                }
            }
        }
    }
    if atoms.is_empty() {
        let chains = if chains_seen.is_empty() { "none".to_string() } else { chains_seen.join(", ") };
        if !selection.chains.is_empty() {
            anyhow::bail!(
                "{file}: chain selection {:?} matches no atoms; chains in the file: {chains}. Pick one of those with --chain",
                selection.chains
            );
        }
        anyhow::bail!(
            "{file}: no atoms left after excluding waters and HETATM records (chains: {chains}). \
             Use --include-hetatm if the molecule is stored as HETATM records"
        );
    }
    let chain_note = if selection.chains.is_empty() { String::new() } else { format!(" chain {}", selection.chains.join(",")) };
    Ok(Molecule::new(format!("{file}{chain_note}"), atoms))
}

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
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
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
        return Ok(ResolvedStructure { path: as_path.to_path_buf(), chain: None, name: spec.to_string() });
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
    let mut dirs: Vec<(String, Option<PathBuf>)> =
        bundled_dirs().into_iter().map(|d| ("bundled".to_string(), Some(d))).collect();
    let env_dir = std::env::var_os("XRAI_PDB_DIR").filter(|d| !d.is_empty()).map(PathBuf::from);
    dirs.push(("$XRAI_PDB_DIR".to_string(), env_dir));
    dirs.push(("download cache".to_string(), Some(cache_dir())));
    for (label, dir) in &dirs {
        let Some(dir) = dir else {
            tried.push(format!("{label} (not set)"));
            continue;
        };
        for stem in &stems {
            if let Some(path) = find_case_insensitive(dir, stem) {
                let file_chain = if *stem == stems[0] && stems.len() > 1 { None } else { chain.clone() };
                return Ok(ResolvedStructure { path, chain: file_chain, name: upper });
            }
            tried.push(format!("{label} {}/{stem}.{{pdb,cif,ent}}", dir.display()));
        }
    }
    match download_from_rcsb(&id, &cache_dir()) {
        Ok(path) => return Ok(ResolvedStructure { path, chain, name: upper }),
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
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("").to_ascii_lowercase();
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

/// `--pdb` + `--chain` + flags → a molecule, in one call for every command.
pub fn load(spec: &str, chain: Option<&str>, include_hetatm: bool, include_water: bool) -> anyhow::Result<Molecule> {
    let resolved = resolve(spec)?;
    let chains: Vec<String> = match (chain, &resolved.chain) {
        (Some(c), _) => c.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        (None, Some(c)) => vec![c.clone()],
        (None, None) => vec![],
    };
    read_structure(&resolved.path, &Selection { chains, include_hetatm, include_water })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_from_name_follows_the_pdb_rule() {
        assert_eq!(element_from_atom_name(" CA "), "C");
        assert_eq!(element_from_atom_name("CA  "), "Ca");
        assert_eq!(element_from_atom_name("FE  "), "Fe");
        assert_eq!(element_from_atom_name(" N  "), "N");
        assert_eq!(element_from_atom_name("1HB "), "H");
        assert_eq!(element_from_atom_name("HG12"), "H");
        assert_eq!(element_from_atom_name(" OG1"), "O");
    }

    #[test]
    fn charges_parse_both_ways() {
        assert_eq!(parse_charge("2+"), Some(2));
        assert_eq!(parse_charge("1-"), Some(-1));
        assert_eq!(parse_charge("+2"), Some(2));
        assert_eq!(parse_charge("x"), None);
    }

    #[test]
    fn ids_are_recognised() {
        assert!(looks_like_pdb_id("2CEX_A"));
        assert!(looks_like_pdb_id("1o9k"));
        assert!(!looks_like_pdb_id("protein.pdb"));
        assert!(!looks_like_pdb_id("CEX2"));
    }
}
