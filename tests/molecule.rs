//! Structure input: selection rules (chains, HETATM, waters, altlocs) and the mmCIF path.

mod common;

use common::repo;
use xrai_bench::physics::molecule::{read_structure, Selection};

fn count(name: &str, selection: Selection) -> usize {
    read_structure(&repo().join("datasets/pdb").join(name), &selection)
        .unwrap()
        .len()
}

#[test]
fn waters_and_hetatm_are_excluded_unless_asked_for() {
    // 2cex.pdb = chain A's 2362 ATOM records + one Zn²⁺ ion + 89 waters.
    assert_eq!(count("2cex.pdb", Selection::default()), 2362);
    assert_eq!(
        count(
            "2cex.pdb",
            Selection {
                include_hetatm: true,
                ..Default::default()
            }
        ),
        2363
    );
    let all = Selection {
        include_hetatm: true,
        include_water: true,
        ..Default::default()
    };
    assert_eq!(count("2cex.pdb", all), 2452);
    let zn = read_structure(
        &repo().join("datasets/pdb/2cex.pdb"),
        &Selection {
            include_hetatm: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        zn.composition()
            .iter()
            .any(|(label, n)| label.starts_with("Zn") && *n == 1),
        "{:?}",
        zn.composition()
    );
}

#[test]
fn only_the_first_alternate_location_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let a = "ATOM      1  CA ASER A   1      10.000  10.000  10.000  0.60 20.00           C  ";
    let b = "ATOM      2  CA BSER A   1      11.000  10.000  10.000  0.40 20.00           C  ";
    let c = "ATOM      3  N   SER A   1       9.000  10.000  10.000  1.00 20.00           N  ";
    let path = dir.path().join("alt.pdb");
    std::fs::write(&path, format!("{a}\n{b}\n{c}\n")).unwrap();
    let mol = read_structure(&path, &Selection::default()).unwrap();
    assert_eq!(mol.len(), 2, "altloc B dropped, blank altloc kept");
    // Centred on the bounding box of N (x = 9) and CA altloc A (x = 10).
    assert!((mol.centre[0] - 9.5).abs() < 1e-12);
}

#[test]
fn mmcif_files_give_the_same_atoms_as_pdb() {
    let dir = tempfile::tempdir().unwrap();
    let (pdb, _) = pdbtbx::ReadOptions::new()
        .set_level(pdbtbx::StrictnessLevel::Loose)
        .read(repo().join("datasets/pdb/2cex_a.pdb").to_str().unwrap())
        .unwrap();
    let cif = dir.path().join("2cex_a.cif");
    pdbtbx::save(&pdb, cif.to_str().unwrap(), pdbtbx::StrictnessLevel::Loose).unwrap();
    let from_cif = read_structure(&cif, &Selection::default()).unwrap();
    let from_pdb = read_structure(&repo().join("datasets/pdb/2cex_a.pdb"), &Selection::default()).unwrap();
    assert_eq!(from_cif.len(), from_pdb.len());
    assert_eq!(from_cif.composition(), from_pdb.composition());
    let max_diff = from_cif
        .positions
        .iter()
        .zip(&from_pdb.positions)
        .map(|(a, b)| (0..3).map(|k| (a[k] - b[k]).abs()).fold(0.0, f64::max))
        .fold(0.0, f64::max);
    assert!(max_diff < 1e-9, "{max_diff}");
}
