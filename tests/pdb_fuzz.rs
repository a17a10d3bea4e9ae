//! Fuzz-style test of the PDB reader: a few hundred mutated copies of the bundled structures
//! (deleted columns, swapped fields, random bytes, truncated, deleted and duplicated lines,
//! duplicated and hybrid-36 serials), drawn from a fixed-seed generator. Each must give either
//! a parse or an error naming the mutated line, never a panic; mutations that keep the meaning
//! (serial numbers) must give exactly the original atoms.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::repo;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use xrai_bench::physics::molecule::{hy36_encode, read_structure, Molecule, Selection};

/// Fixed-column fields of a coordinate record (0-based, end exclusive).
const FIELDS: [(usize, usize); 10] = [
    (6, 11),
    (12, 16),
    (17, 20),
    (22, 26),
    (30, 38),
    (38, 46),
    (46, 54),
    (54, 60),
    (60, 66),
    (76, 78),
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    DeleteColumn,
    SwapFields,
    RandomBytes,
    Truncate,
    DeleteLine,
    DuplicateLine,
    DuplicateSerials,
    Hybrid36Serials,
}

const KINDS: [Kind; 8] = [
    Kind::DeleteColumn,
    Kind::SwapFields,
    Kind::RandomBytes,
    Kind::Truncate,
    Kind::DeleteLine,
    Kind::DuplicateLine,
    Kind::DuplicateSerials,
    Kind::Hybrid36Serials,
];

fn is_coordinate(line: &[u8]) -> bool {
    line.starts_with(b"ATOM  ") || line.starts_with(b"HETATM")
}

/// Applies one mutation; returns the mutated text and the 1-based line an error may name
/// (None for mutations that keep the meaning).
fn mutate(lines: &[Vec<u8>], kind: Kind, rng: &mut ChaCha8Rng) -> (Vec<u8>, Option<usize>) {
    let mut lines = lines.to_vec();
    let coordinate: Vec<usize> = (0..lines.len()).filter(|&i| is_coordinate(&lines[i])).collect();
    // Mostly coordinate records; one time in eight any line (headers, TER, END …).
    let k = if rng.random_range(0..8) == 0 {
        rng.random_range(0..lines.len())
    } else {
        coordinate[rng.random_range(0..coordinate.len())]
    };
    let mut named = Some(k + 1);
    match kind {
        Kind::DeleteColumn => {
            if !lines[k].is_empty() {
                let c = rng.random_range(0..lines[k].len());
                lines[k].remove(c);
            }
        }
        Kind::SwapFields => {
            let a = FIELDS[rng.random_range(0..FIELDS.len())];
            let b = FIELDS[rng.random_range(0..FIELDS.len())];
            let (a, b) = if a.0 <= b.0 { (a, b) } else { (b, a) };
            let mut l = lines[k].clone();
            l.resize(l.len().max(80), b' ');
            if a != b && a.1 <= b.0 {
                let swapped = [&l[..a.0], &l[b.0..b.1], &l[a.1..b.0], &l[a.0..a.1], &l[b.1..]].concat();
                lines[k] = swapped;
            }
        }
        Kind::RandomBytes => {
            for _ in 0..rng.random_range(1..=5) {
                let len = lines[k].len().max(1);
                let c = rng.random_range(0..len);
                let byte = loop {
                    let b: u8 = rng.random();
                    if b != b'\n' {
                        break b;
                    }
                };
                if c < lines[k].len() {
                    lines[k][c] = byte;
                } else {
                    lines[k].push(byte);
                }
            }
        }
        Kind::Truncate => {
            let cut = rng.random_range(0..=lines[k].len());
            lines[k].truncate(cut);
        }
        Kind::DeleteLine => {
            lines.remove(k);
            named = None;
        }
        Kind::DuplicateLine => {
            let copy = lines[k].clone();
            lines.insert(k, copy);
            named = None;
        }
        Kind::DuplicateSerials => {
            // A run of records sharing one serial, as in files over 99,999 atoms.
            let start = rng.random_range(0..coordinate.len());
            let serial = format!("{:>5}", rng.random_range(0..100_000));
            for &i in &coordinate[start..(start + 50).min(coordinate.len())] {
                lines[i].splice(6..11, serial.bytes());
            }
            named = None;
        }
        Kind::Hybrid36Serials => {
            let offset = rng.random_range(90_000..99_999i64);
            for (n, &i) in coordinate.iter().enumerate() {
                let serial = hy36_encode(5, offset + n as i64).unwrap();
                lines[i].splice(6..11, serial.bytes());
            }
            named = None;
        }
    }
    let mut text = lines.join(&b'\n');
    text.push(b'\n');
    (text, named)
}

/// Atoms of `a` (position in the file's frame, in mÅ, and species) not found in `b`.
fn missing_atoms(a: &Molecule, b: &Molecule) -> usize {
    let key = |m: &Molecule| {
        let mut keys: Vec<([i64; 3], String)> = (0..m.len())
            .map(|i| {
                let p = [0, 1, 2].map(|k| ((m.positions[i][k] + m.centre[k]) * 1000.0).round() as i64);
                (p, m.species[m.species_index[i]].label.to_string())
            })
            .collect();
        keys.sort();
        keys
    };
    let (ka, kb) = (key(a), key(b));
    let mut j = 0;
    let mut missing = 0;
    for x in &ka {
        while j < kb.len() && kb[j] < *x {
            j += 1;
        }
        if j < kb.len() && kb[j] == *x {
            j += 1;
        } else {
            missing += 1;
        }
    }
    missing
}

fn read(path: &std::path::Path) -> std::thread::Result<anyhow::Result<Molecule>> {
    catch_unwind(AssertUnwindSafe(|| read_structure(path, &Selection::default())))
}

#[test]
fn mutated_structures_parse_or_name_the_line_and_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    for file in ["2cex_a.pdb", "2cex.pdb"] {
        let original_text = std::fs::read(repo().join("datasets/pdb").join(file)).unwrap();
        let lines: Vec<Vec<u8>> = original_text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        let lines = if lines.last().is_some_and(|l| l.is_empty()) {
            lines[..lines.len() - 1].to_vec()
        } else {
            lines
        };
        let original = read_structure(&repo().join("datasets/pdb").join(file), &Selection::default()).unwrap();
        for case in 0..200 {
            let kind = KINDS[case % KINDS.len()];
            let (text, named) = mutate(&lines, kind, &mut rng);
            let path = dir.path().join(format!("{case}_{file}"));
            std::fs::write(&path, &text).unwrap();
            let outcome = read(&path);
            let what = format!("{file} case {case} ({kind:?}, line {named:?})");
            let result = match outcome {
                Ok(result) => result,
                Err(_) => panic!("{what}: the reader panicked"),
            };
            match (&result, named) {
                (Ok(m), None) if matches!(kind, Kind::DuplicateSerials | Kind::Hybrid36Serials) => {
                    assert_eq!(
                        m.positions, original.positions,
                        "{what}: serial numbers changed the atoms"
                    );
                    assert_eq!(m.composition(), original.composition(), "{what}");
                }
                (Ok(m), _) => {
                    let diff = m.len() as i64 - original.len() as i64;
                    assert!(
                        diff.abs() <= 1,
                        "{what}: {} atoms instead of {}",
                        m.len(),
                        original.len()
                    );
                    assert!(m.positions.iter().flatten().all(|c| c.is_finite()), "{what}");
                    // Every untouched record reads as before: at most the mutated atom differs.
                    let missing = missing_atoms(&original, m);
                    assert!(
                        missing <= 1,
                        "{what}: {missing} of the original atoms are gone or moved"
                    );
                }
                (Err(e), Some(line)) => {
                    let msg = format!("{e:#}");
                    assert!(
                        msg.contains(&format!("line {line}:")),
                        "{what}: the error does not name the line: {msg}"
                    );
                }
                (Err(e), None) => panic!("{what}: a mutation that keeps every record valid was refused: {e:#}"),
            }
            let outcome = if result.is_ok() { "parsed" } else { "refused" };
            *tally.entry(format!("{kind:?} {outcome}")).or_default() += 1;
        }
    }
    eprintln!("{tally:#?}");
    // The mutations must actually exercise both outcomes.
    assert!(tally.keys().any(|k| k.ends_with("refused")) && tally.keys().any(|k| k.ends_with("parsed")));
}
