//! The PDB reader against files whose answer is known: duplicate, restarting and hybrid-36
//! serial numbers, hybrid-36 residue numbers, several models, alternate locations, and the
//! real structures in datasets/pdb/ and ../shared/pdb/.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::repo;
use xrai_bench::physics::molecule::{hy36_encode, read_pdb_text, read_structure, Molecule, Selection};

/// A coordinate record with the given fields, in the format's columns.
#[allow(clippy::too_many_arguments)]
fn atom(
    serial: &str,
    name: &str,
    altloc: char,
    residue: &str,
    number: &str,
    xyz: [f64; 3],
    occupancy: f64,
    element: &str,
) -> String {
    // Names of one-letter elements start in column 14 (" CA " is carbon alpha).
    let name = if name.len() < 4 {
        format!(" {name:<3}")
    } else {
        name.to_string()
    };
    format!(
        "ATOM  {serial:>5} {name:<4}{altloc}{residue:>3} A{number:>4}    {:8.3}{:8.3}{:8.3}{occupancy:6.2} 20.00          {element:>2}  ",
        xyz[0], xyz[1], xyz[2]
    )
}

fn composition(m: &Molecule) -> BTreeMap<String, usize> {
    m.composition().into_iter().collect()
}

/// Element counts straight from columns 77–78 of the ATOM records (the files' own answer).
fn element_column_counts(text: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("ATOM  ")) {
        let e = line[76..78].trim();
        let e = if e.len() == 2 {
            format!("{}{}", &e[..1], e[1..].to_ascii_lowercase())
        } else {
            e.to_string()
        };
        *counts.entry(e).or_insert(0) += 1;
    }
    counts
}

fn bundled(name: &str) -> String {
    std::fs::read_to_string(repo().join("datasets/pdb").join(name)).unwrap()
}

/// Replaces columns 7–11 (the serial) of every coordinate record.
fn with_serials(text: &str, serial: impl Fn(usize) -> String) -> String {
    let mut k = 0;
    text.lines()
        .map(|l| {
            if l.starts_with("ATOM  ") || l.starts_with("HETATM") {
                k += 1;
                format!("{}{:>5}{}", &l[..6], serial(k), &l[11..])
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn same_atoms(a: &Molecule, b: &Molecule) {
    assert_eq!(composition(a), composition(b));
    assert_eq!(a.positions, b.positions);
    assert_eq!(a.species_index, b.species_index);
}

#[test]
fn duplicate_serials_keep_each_lines_element() {
    // The case: `sed 's/^\(ATOM  \).\{5\}/\1    1/'` on the first 40 atoms of 2CEX A.
    let text = bundled("2cex_a.pdb");
    let small: String = text
        .lines()
        .filter(|l| l.starts_with("ATOM"))
        .take(40)
        .map(|l| format!("{l}\n"))
        .collect();
    let expected = element_column_counts(&small);
    assert_eq!(
        expected,
        BTreeMap::from([("C".into(), 25), ("N".into(), 5), ("O".into(), 10)])
    );
    let dup = with_serials(&small, |_| "1".to_string());
    assert!(dup.lines().all(|l| &l[6..11] == "    1"));
    let m = read_pdb_text("dup.pdb", &dup, &Selection::default()).unwrap();
    assert_eq!(composition(&m), expected);
    same_atoms(&m, &read_pdb_text("small.pdb", &small, &Selection::default()).unwrap());
}

#[test]
fn restarting_and_hybrid_36_serials_read_like_the_original() {
    for file in ["2cex_a.pdb", "2cex.pdb"] {
        let text = bundled(file);
        let all = Selection {
            include_hetatm: true,
            include_water: true,
            ..Default::default()
        };
        let original = read_pdb_text(file, &text, &all).unwrap();
        // Serials restarting every 1000 atoms (files split and concatenated).
        let restarting = with_serials(&text, |k| (k % 1000).to_string());
        same_atoms(&read_pdb_text(file, &restarting, &all).unwrap(), &original);
        // Serials past 99,999 in hybrid-36 ("A0000" …), as wwPDB writes large particles.
        let hy36 = with_serials(&text, |k| hy36_encode(5, 99_000 + k as i64).unwrap());
        assert!(hy36.contains("A0000"));
        same_atoms(&read_pdb_text(file, &hy36, &all).unwrap(), &original);
        // Blank serials (some modelling programs).
        let blank = with_serials(&text, |_| String::new());
        same_atoms(&read_pdb_text(file, &blank, &all).unwrap(), &original);
    }
}

#[test]
fn hybrid_36_residue_numbers_group_alternate_locations() {
    // Residues 9999 and 10000 ("A000"); each has altlocs A and B, and B wins on occupancy in
    // 10000 only: the reader must tell the two residues apart.
    let lines = [
        atom("99998", "CA", 'A', "SER", "9999", [0.0, 0.0, 0.0], 0.70, "C"),
        atom("99999", "CA", 'B', "SER", "9999", [1.0, 0.0, 0.0], 0.30, "C"),
        atom("A0000", "OG", 'A', "SER", "A000", [2.0, 0.0, 0.0], 0.30, "O"),
        atom("A0001", "OG", 'B', "SER", "A000", [3.0, 0.0, 0.0], 0.70, "O"),
        atom("A0002", "N", ' ', "SER", "A000", [4.0, 0.0, 0.0], 1.00, "N"),
    ];
    let m = read_pdb_text("h36.pdb", &lines.join("\n"), &Selection::default()).unwrap();
    let xs: Vec<f64> = m.positions.iter().map(|p| p[0] + m.centre[0]).collect();
    let mut xs_sorted = xs.clone();
    xs_sorted.sort_by(f64::total_cmp);
    assert_eq!(
        xs_sorted,
        vec![0.0, 3.0, 4.0],
        "9999: altloc A (0.70); 10000: altloc B (0.70) and N"
    );
}

#[test]
fn alternate_locations_keep_the_highest_occupancy_ties_the_first() {
    let res = |alt_occ: &[(char, f64)]| -> Vec<f64> {
        let mut lines = Vec::new();
        for (k, &(alt, occ)) in alt_occ.iter().enumerate() {
            for (j, name) in ["CB", "OG"].iter().enumerate() {
                let x = 10.0 * k as f64 + j as f64;
                lines.push(atom(
                    &(2 * k + j + 1).to_string(),
                    name,
                    alt,
                    "SER",
                    "5",
                    [x, 0.0, 0.0],
                    occ,
                    &name[..1],
                ));
            }
        }
        lines.push(atom("99", "N", ' ', "SER", "5", [-5.0, 0.0, 0.0], 1.0, "N"));
        let m = read_pdb_text("alt.pdb", &lines.join("\n"), &Selection::default()).unwrap();
        let mut xs: Vec<f64> = m.positions.iter().map(|p| p[0] + m.centre[0]).collect();
        xs.sort_by(f64::total_cmp);
        xs
    };
    assert_eq!(
        res(&[('A', 0.4), ('B', 0.6)]),
        vec![-5.0, 10.0, 11.0],
        "B has the higher occupancy"
    );
    assert_eq!(res(&[('A', 0.6), ('B', 0.4)]), vec![-5.0, 0.0, 1.0]);
    assert_eq!(
        res(&[('A', 0.5), ('B', 0.5)]),
        vec![-5.0, 0.0, 1.0],
        "tie: the first listed"
    );
    assert_eq!(res(&[('B', 0.3), ('A', 0.3), ('C', 0.4)]), vec![-5.0, 20.0, 21.0]);
}

#[test]
fn only_the_first_model_is_read() {
    let model = |x: f64, element: &str| atom("1", "CA", ' ', "GLY", "1", [x, 0.0, 0.0], 1.0, element);
    let text = format!(
        "MODEL        1\n{}\n{}\nENDMDL\nMODEL        2\n{}\n{}\n{}\nENDMDL\nEND\n",
        model(0.0, "C"),
        model(2.0, "N"),
        model(5.0, "S"),
        model(6.0, "S"),
        model(7.0, "S")
    );
    let m = read_pdb_text("nmr.pdb", &text, &Selection::default()).unwrap();
    assert_eq!(composition(&m), BTreeMap::from([("C".into(), 1), ("N".into(), 1)]));
    // Later models are not even read: damage there does not matter.
    let damaged = text.replace(&model(6.0, "S"), "ATOM      1  CA  GLY A   1       garbage");
    assert_eq!(
        read_pdb_text("nmr.pdb", &damaged, &Selection::default()).unwrap().len(),
        2
    );
}

#[test]
fn bundled_and_shared_structures_match_their_element_columns() {
    let mut files: Vec<PathBuf> = vec![
        repo().join("datasets/pdb/2cex_a.pdb"),
        repo().join("datasets/pdb/2cex.pdb"),
    ];
    let shared = repo().join("../shared/pdb");
    for name in ["1ei7.pdb", "2cex.pdb", "2cex_a.pdb", "2dhb.pdb"] {
        if shared.join(name).is_file() {
            files.push(shared.join(name));
        }
    }
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let m = read_structure(path, &Selection::default()).unwrap();
        let expected = element_column_counts(&text);
        assert_eq!(composition(&m), expected, "{}", path.display());
        // Every serial set to 1 changes nothing.
        let dup = with_serials(&text, |_| "1".to_string());
        same_atoms(&read_pdb_text("dup", &dup, &Selection::default()).unwrap(), &m);
    }
}

#[test]
fn a_coordinate_no_pdb_record_can_hold_is_refused_with_its_line() {
    let text = [
        atom("1", "CA", ' ', "GLY", "1", [0.0, 0.0, 0.0], 1.0, "C"),
        format!(
            "{}{:>8}{}",
            &atom("2", "N", ' ', "GLY", "1", [0.0; 3], 1.0, "N")[..30],
            "1e30",
            &atom("2", "N", ' ', "GLY", "1", [0.0; 3], 1.0, "N")[38..]
        ),
    ]
    .join("\n");
    let e = read_pdb_text("far.pdb", &text, &Selection::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("far.pdb, line 2") && e.contains("x coordinate") && e.contains("1e30"),
        "{e}"
    );
}
