//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use xrai_bench::physics::molecule::{read_structure, Molecule, Selection};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn reference_dir() -> PathBuf {
    repo().join("tests/data/skopi_2cex_a_d0.1")
}

/// 2CEX chain A, the bundled default protein.
pub fn cex_a() -> Molecule {
    read_structure(&repo().join("datasets/pdb/2cex_a.pdb"), &Selection::default()).expect("bundled 2CEX_A")
}

/// Reads a whole .npy file as f64 (f64, f32 or i32/i64 arrays).
pub fn npy_f64(path: &Path) -> (Vec<u64>, Vec<f64>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    let descr = npy.dtype().descr().trim_matches('\'').to_string();
    let data = match descr.as_str() {
        "<f8" => npy.into_vec::<f64>().unwrap(),
        "<f4" => npy.into_vec::<f32>().unwrap().into_iter().map(f64::from).collect(),
        "<i4" => npy.into_vec::<i32>().unwrap().into_iter().map(f64::from).collect(),
        "<i8" => npy.into_vec::<i64>().unwrap().into_iter().map(|x| x as f64).collect(),
        other => panic!("unsupported dtype {other}"),
    };
    (shape, data)
}

/// √(Σ(a−b)²/Σb²)
pub fn rel_rms(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

/// Reads a boolean .npy file: (shape, values).
pub fn npy_bool(path: &Path) -> (Vec<u64>, Vec<bool>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec::<bool>().unwrap())
}

/// Writes a .npy file of the given shape (f64, bool, … as npyz writes them).
pub fn write_npy<T: npyz::AutoSerialize + Copy>(path: &Path, shape: &[u64], values: &[T]) {
    use npyz::WriterBuilder;
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(std::io::BufWriter::new(std::fs::File::create(path).unwrap()))
        .begin_nd()
        .unwrap();
    w.extend(values.iter().copied()).unwrap();
    w.finish().unwrap();
}

/// The simulator on 2CEX chain A in the paper's setting: noise-free images rescaled by one
/// constant to a mean total of 20,000 photons.
pub fn cex_a_simulator() -> xrai_bench::data::ImageSimulator {
    let mol = xrai_bench::physics::molecule::load("2CEX_A", None, false, false).expect("bundled 2CEX_A");
    xrai_bench::data::ImageSimulator::new(
        mol,
        xrai_bench::data::SimulationConfig {
            rescale: xrai_bench::data::Rescale::MeanTotal(20000.0),
            ..Default::default()
        },
    )
    .expect("the default simulation")
}

/// A command's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Asserts that the command succeeded (showing its stderr and stdout when not); its stderr.
pub fn ok(o: &Output) -> String {
    let err = stderr(o);
    assert!(
        o.status.success(),
        "command failed:\n{err}\n{}",
        String::from_utf8_lossy(&o.stdout)
    );
    err
}

/// Asserts that the command failed with an error, not a panic, whose text holds every one of
/// `needles`; its stderr.
pub fn fails_with(o: &Output, needles: &[&str]) -> String {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success: {err}");
    assert!(!err.contains("panicked"), "panicked instead of an error: {err}");
    for n in needles {
        assert!(err.contains(n), "error lacks {n:?}:\n{err}");
    }
    err
}
