//! PDB / mmCIF → the atoms that scatter: positions in Å and a scattering species per atom.
//!
//! Reading is lenient (real files strip trailing blanks, omit element columns, carry short
//! DBREF lines) and acceptance is strict (every atom has a known species and finite
//! coordinates). PDB text is read record by record in its fixed columns ([`records`], which
//! says why not through pdbtbx); each atom keeps its own line, so its element is the one on its
//! line whatever the serial numbers are (files over 99,999 atoms repeat or restart them, or use
//! hybrid-36 serials and residue numbers, all read correctly). mmCIF goes through pdbtbx.
//! Errors name the file, the line and what to do.
//!
//! Selection rules, in this order:
//! - **first model only** (an NMR ensemble or a multi-model file gives its first MODEL);
//! - chains: those asked for, else all;
//! - waters (HOH, WAT, DOD, H2O, TIP, TIP3, SOL) excluded unless asked for, and other HETATM
//!   records (ligands, ions) excluded unless asked for;
//! - **alternate locations**: in each residue (chain, number, insertion code) atoms with a
//!   blank altloc are always kept; of the altloc identifiers present, the one with the highest
//!   mean occupancy over its atoms is kept and the others dropped (ties: the first listed).
//!
//! Finding and fetching structure files (bundled copies, `$XRAI_PDB_DIR`, the download cache)
//! is `crate::data::pdb`'s job; this module only reads text.

mod records;

use std::collections::HashMap;
use std::path::Path;

pub use records::{element_from_atom_name, hy36_decode, hy36_encode, parse_charge, AtomRecord, Origin, MAX_COORDINATE};

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
        let centre = if tagged.is_empty() {
            [0.0; 3]
        } else {
            [0, 1, 2].map(|a| 0.5 * (lo[a] + hi[a]))
        };
        Molecule {
            source: source.into(),
            species,
            positions: tagged
                .iter()
                .map(|(_, p)| [0, 1, 2].map(|a| p[a] - centre[a]))
                .collect(),
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
        self.positions
            .iter()
            .map(|p| (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt())
            .fold(0.0, f64::max)
    }

    /// Range of atom indices belonging to species k.
    pub fn species_range(&self, k: usize) -> std::ops::Range<usize> {
        let start = self.species_index.partition_point(|&s| s < k);
        let end = self.species_index.partition_point(|&s| s <= k);
        start..end
    }

    /// Number of atoms per species label, for metadata and logs.
    pub fn composition(&self) -> Vec<(String, usize)> {
        (0..self.species.len())
            .map(|k| (self.species[k].label.to_string(), self.species_range(k).len()))
            .collect()
    }

    /// Total electrons seen in forward scattering, Σ f(0); |F(0)|² is its square.
    pub fn forward_scattering(&self) -> f64 {
        self.species_index.iter().map(|&k| self.species[k].at_s(0.0)).sum()
    }
}

/// Why a selection kept no atoms; typed so that commands can add the flag that helps.
#[derive(Debug, thiserror::Error)]
pub enum SelectionError {
    #[error("{file}: chain selection {asked:?} matches no atoms; chains in the file: {chains}")]
    NoSuchChain {
        file: String,
        asked: Vec<String>,
        chains: String,
    },
    #[error(
        "{file}: no atoms left after the selection rules (chains: {chains}): the records are {waters} water and \
         {hetero} other HETATM atoms, which are left out unless asked for"
    )]
    NothingLeft {
        file: String,
        chains: String,
        waters: usize,
        hetero: usize,
    },
}

/// Reads a PDB or mmCIF file and keeps the atoms `selection` asks for.
pub fn read_structure(path: &Path, selection: &Selection) -> anyhow::Result<Molecule> {
    let display = path.display().to_string();
    if path.is_dir() {
        anyhow::bail!("{display} is a directory, not a structure file. Give the .pdb or .cif file inside it");
    }
    let text = std::fs::read(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read structure file {display}: {e}. Check the path, or pass a PDB ID (e.g. --pdb 2CEX_A)"
        )
    })?;
    let text = String::from_utf8_lossy(&text);
    let is_cif = display.to_ascii_lowercase().ends_with(".cif") || text.trim_start().starts_with("data_");
    if is_cif {
        read_mmcif(&display, &text, selection)
    } else {
        read_pdb_text(&display, &text, selection)
    }
}

/// PDB text (`file` names it in messages) → the selected atoms.
pub fn read_pdb_text(file: &str, text: &str, selection: &Selection) -> anyhow::Result<Molecule> {
    let records = records::read_pdb_records(file, text)?;
    if records.is_empty() {
        anyhow::bail!(
            "{file}: no ATOM or HETATM records — the file is empty, truncated or not a PDB file. \
             Supply a PDB or mmCIF coordinate file"
        );
    }
    select(file, &records, selection)
}

/// mmCIF through pdbtbx (first model), flattened into the same records as PDB text. pdbtbx
/// aborts on some malformed input; that is caught and reported as an error naming the file.
fn read_mmcif(file: &str, text: &str, selection: &Selection) -> anyhow::Result<Molecule> {
    let parsed = std::panic::catch_unwind(|| {
        let mut options = pdbtbx::ReadOptions::new();
        options
            .set_format(pdbtbx::Format::Mmcif)
            .set_level(pdbtbx::StrictnessLevel::Loose)
            .set_only_first_model(true);
        options.read_raw(std::io::BufReader::new(text.as_bytes()))
    })
    .map_err(|_| anyhow::anyhow!("{file}: the mmCIF reader failed on this file; it is damaged or not an mmCIF file"))?;
    let (pdb, _warnings) = parsed.map_err(|errors| pdbtbx_error(file, &errors))?;
    let mut records = Vec::new();
    for model in pdb.models().take(1) {
        for chain in model.chains() {
            for residue in chain.residues() {
                let (number, insertion) = residue.id();
                for conformer in residue.conformers() {
                    for atom in conformer.atoms() {
                        let (x, y, z) = atom.pos();
                        records.push(AtomRecord {
                            origin: Origin::Atom(atom.serial_number(), atom.name().to_string()),
                            hetero: atom.hetero(),
                            name: atom.name().to_string(),
                            altloc: conformer.alternative_location().map(str::to_string),
                            residue: conformer.name().to_string(),
                            chain: chain.id().to_string(),
                            residue_number: number as i64,
                            insertion: insertion.and_then(|s| s.chars().next()),
                            position: [x, y, z],
                            occupancy: atom.occupancy(),
                            element: atom.element().map(|e| e.symbol().to_string()).unwrap_or_default(),
                            charge: atom.charge() as i32,
                        });
                    }
                }
            }
        }
    }
    if records.is_empty() {
        anyhow::bail!("{file}: no atoms in the first model — the file is empty or not an mmCIF coordinate file");
    }
    select(file, &records, selection)
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

fn where_(file: &str, origin: &Origin) -> String {
    match origin {
        Origin::Line(l) => format!("{file}, line {l}"),
        Origin::Atom(serial, name) => format!("{file}, atom {serial} ({name})"),
    }
}

/// A residue: chain, number, insertion code.
type ResidueKey<'a> = (&'a str, i64, Option<char>);

/// The altloc kept in each residue: highest mean occupancy, ties to the first listed.
fn kept_altlocs<'a>(records: &[&'a AtomRecord]) -> HashMap<ResidueKey<'a>, String> {
    // residue → [(altloc, occupancy sum, atoms)] in order of first appearance
    let mut seen: HashMap<ResidueKey<'a>, Vec<(&'a str, f64, usize)>> = HashMap::new();
    for r in records {
        if let Some(alt) = &r.altloc {
            let list = seen
                .entry((r.chain.as_str(), r.residue_number, r.insertion))
                .or_default();
            match list.iter_mut().find(|(a, _, _)| a == alt) {
                Some(entry) => {
                    entry.1 += r.occupancy;
                    entry.2 += 1;
                }
                None => list.push((alt.as_str(), r.occupancy, 1)),
            }
        }
    }
    seen.into_iter()
        .map(|(key, list)| {
            let mut best = list[0];
            for &candidate in &list[1..] {
                if candidate.1 / candidate.2 as f64 > best.1 / best.2 as f64 {
                    best = candidate;
                }
            }
            (key, best.0.to_string())
        })
        .collect()
}

/// Applies the selection rules of the module docs to records of the first model.
fn select(file: &str, records: &[AtomRecord], selection: &Selection) -> anyhow::Result<Molecule> {
    let wanted = |chain: &str| selection.chains.is_empty() || selection.chains.iter().any(|c| c == chain);
    let mut chains_seen: Vec<&str> = Vec::new();
    for r in records {
        if !chains_seen.contains(&r.chain.as_str()) {
            chains_seen.push(&r.chain);
        }
    }
    let chains = chains_seen
        .iter()
        .map(|c| if c.is_empty() { "(blank)" } else { c })
        .collect::<Vec<_>>()
        .join(", ");
    let in_chains: Vec<&AtomRecord> = records.iter().filter(|r| wanted(&r.chain)).collect();
    if in_chains.is_empty() {
        return Err(SelectionError::NoSuchChain {
            file: file.to_string(),
            asked: selection.chains.clone(),
            chains,
        }
        .into());
    }
    let (mut waters, mut hetero) = (0, 0);
    let mut kept: Vec<&AtomRecord> = Vec::with_capacity(in_chains.len());
    for r in in_chains {
        if is_water(&r.residue) {
            if !selection.include_water {
                waters += 1;
                continue;
            }
        } else if r.hetero && !selection.include_hetatm {
            hetero += 1;
            continue;
        }
        kept.push(r);
    }
    let altlocs = kept_altlocs(&kept);
    let mut atoms = Vec::with_capacity(kept.len());
    for r in kept {
        if let Some(alt) = &r.altloc {
            if altlocs.get(&(r.chain.as_str(), r.residue_number, r.insertion)) != Some(alt) {
                continue;
            }
        }
        let ff = FormFactor::lookup(&r.element, r.charge)
            .or_else(|| FormFactor::lookup(&r.element, 0))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: unknown element {:?} (atom {} in residue {} of chain {}). The Waasmaier–Kirfel table covers \
                 H–Cf and common ions; fix the element column (77–78) or remove the atom",
                    where_(file, &r.origin),
                    r.element,
                    r.name,
                    r.residue,
                    r.chain
                )
            })?;
        let p = r.position;
        if !p.iter().all(|c| c.is_finite() && c.abs() < MAX_COORDINATE) {
            anyhow::bail!(
                "{}: coordinates {p:?} are not finite or beyond ±{MAX_COORDINATE:e} Å; the file is damaged",
                where_(file, &r.origin)
            );
        }
        atoms.push((p, ff));
    }
    if atoms.is_empty() {
        return Err(SelectionError::NothingLeft {
            file: file.to_string(),
            chains,
            waters,
            hetero,
        }
        .into());
    }
    let chain_note = if selection.chains.is_empty() {
        String::new()
    } else {
        format!(" chain {}", selection.chains.join(","))
    };
    Ok(Molecule::new(format!("{file}{chain_note}"), atoms))
}

/// Kept for callers written before structure files were looked up by `crate::data::pdb`.
pub use crate::data::pdb::load;
