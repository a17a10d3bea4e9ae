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

/// |F(q)|² by the direct sum over atoms (form factors at |q|).
fn intensity(m: &xrai_bench::physics::molecule::Molecule, q: &nalgebra::Vector3<f64>) -> f64 {
    let (mut re, mut im) = (0.0, 0.0);
    for (p, &k) in m.positions.iter().zip(&m.species_index) {
        let f = m.species[k].at_s(q.norm());
        let phase = std::f64::consts::TAU * (q[0] * p[0] + q[1] * p[1] + q[2] * p[2]);
        re += f * phase.cos();
        im += f * phase.sin();
    }
    re * re + im * im
}

#[test]
fn the_haemoglobin_tetramer_is_two_fold_and_its_diffraction_says_so() {
    use nalgebra::Vector3;
    use xrai_bench::physics::symmetry::PointGroup;
    let path = repo().join("datasets/pdb/2dhb.pdb");
    let tetramer = read_structure(&path, &Selection::default()).unwrap();
    let g = PointGroup::of_molecule(&tetramer);
    assert_eq!(g.name(), "C2");
    // the two-fold is a symmetry of the diffraction volume: |F(S q)|² = |F(q)|² to rounding,
    // while a rotation by 2π/2 about another axis changes it by tens of per cent
    let s = g.ops()[1];
    let other = nalgebra::UnitQuaternion::from_axis_angle(
        &nalgebra::Unit::new_normalize(s.axis().unwrap().cross(&Vector3::new(0.3, 0.5, 0.8))),
        std::f64::consts::PI,
    );
    let (mut same, mut moved) = (0.0f64, 0.0f64);
    for i in 0..12 {
        let t = i as f64;
        let q = Vector3::new((1.3 * t).sin(), (0.7 * t + 1.0).cos(), (2.1 * t).sin() + 0.2).normalize() * 0.04;
        let i0 = intensity(&tetramer, &q);
        same = same.max(((intensity(&tetramer, &(s * q)) - i0) / i0).abs());
        moved = moved.max(((intensity(&tetramer, &(other * q)) - i0) / i0).abs());
    }
    assert!(same < 1e-4, "|F(Sq)|² differs from |F(q)|² by {same}");
    assert!(moved > 0.1, "another half-turn changed |F|² by only {moved}");
    // the αβ dimer alone (chains A and B) has no symmetry: α and β differ
    let dimer = read_structure(
        &path,
        &Selection {
            chains: vec!["A".into(), "B".into()],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(PointGroup::of_molecule(&dimer).name(), "C1");
    // and neither has the paper's protein
    let cex = read_structure(&repo().join("datasets/pdb/2cex_a.pdb"), &Selection::default()).unwrap();
    assert_eq!(PointGroup::of_molecule(&cex).name(), "C1");
}
