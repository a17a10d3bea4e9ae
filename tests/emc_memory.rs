//! EMC in bounded memory: the chunk plan fits its budget, peak memory does not grow with N
//! beyond a few bytes per frame, `--chunk-mb` bounds the whole working set of a chunk, and the
//! chunk size changes the model only through the order of floating-point sums.
//!
//! Peak memory is each run's own VmHWM (`peak_memory_mib` of its output.json), so every size
//! runs as its own `xrai-bench emc` process: a tiny problem (32² frames, a 41³ grid, 420
//! rotations), one iteration, a 24 MiB chunk budget, two threads (the fixed scratch grows
//! with the thread count, so the figures are the same on any machine).

use std::path::Path;
use std::process::Command;

use xrai_bench::data::{ImageSimulator, Rescale, SimulationConfig, Source, Split};
use xrai_bench::emc::{Emc, EmcParams, OrientationGrid};
use xrai_bench::method::MethodOutput;
use xrai_bench::mrc::read_mrc;
use xrai_bench::physics::molecule::load;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xrai-bench"));
    // glibc raises its mmap threshold to the largest buffer freed so far and then keeps such
    // buffers in its arenas: a few MiB of peak resident memory that depend on the order of
    // frees, not on N. A fixed threshold makes VmHWM measure the program's own allocations
    // (20K → 200K frames: +5.9 MiB with the dynamic threshold, +0.8 MiB fixed, measured).
    c.env("XRAI_OFFLINE", "1")
        .env("MALLOC_MMAP_THRESHOLD_", "131072")
        .env("RAYON_NUM_THREADS", "2")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// One EMC iteration over `n` tiny frames with a `chunk_mb` budget; its output record.
fn tiny_emc(out: &Path, n: u64, chunk_mb: usize) -> MethodOutput {
    let o = bin()
        .args([
            "emc", "--pixels", "32", "--grid", "41", "--level", "2", "--iters", "1", "--n-test", "0",
        ])
        .args(["--n", &n.to_string(), "--chunk-mb", &chunk_mb.to_string(), "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    MethodOutput::read(out).unwrap()
}

#[test]
fn peak_memory_does_not_grow_with_n() {
    let dir = tempfile::tempdir().unwrap();
    let small = tiny_emc(&dir.path().join("n20k"), 20_000, 24);
    let large = tiny_emc(&dir.path().join("n200k"), 200_000, 24);
    let (a, b) = (small.peak_memory_mib, large.peak_memory_mib);
    eprintln!("peak memory: {a:.1} MiB at 20,000 frames, {b:.1} MiB at 200,000");
    assert!(a.is_finite() && b.is_finite(), "VmHWM not reported");
    // Both sizes fill whole chunks; per frame the engine keeps its latest most likely rotation
    // (4 bytes, and 4 more for the previous iteration's): 180,000 more frames may add 1.4 MiB.
    // (Before the chunk plan the per-frame totals, scales and assignments added 6.8 MiB here.)
    assert!(b - a <= 3.0, "peak memory grew from {a:.1} to {b:.1} MiB with N");
    assert_eq!(
        large.pose_error.train.map(|e| e.images),
        Some(10_000),
        "train poses are the first 10,000"
    );
}

#[test]
fn the_chunk_budget_bounds_a_chunks_working_set() {
    // Doubling --chunk-mb from 24 to 48 MiB adds at most the 24 MiB of extra budget: the plan
    // counts each frame's candidate list and merge buffers, not only its pixels (which are a
    // quarter of it here; counting only those, the old sizing added ~90 MiB).
    let dir = tempfile::tempdir().unwrap();
    let a = tiny_emc(&dir.path().join("c24"), 20_000, 24).peak_memory_mib;
    let b = tiny_emc(&dir.path().join("c48"), 20_000, 48).peak_memory_mib;
    eprintln!("peak memory: {a:.1} MiB with --chunk-mb 24, {b:.1} MiB with 48");
    assert!(
        b > a,
        "a larger chunk budget used no more memory ({a:.1} → {b:.1} MiB): is it used?"
    );
    assert!(b - a <= 24.0 + 1.0, "24 MiB more chunk budget added {:.1} MiB", b - a);
    // The same frames, chunked differently: the same model up to summation order.
    let ma = read_mrc(dir.path().join("c24/model.mrc")).unwrap();
    let mb = read_mrc(dir.path().join("c48/model.mrc")).unwrap();
    let rel = max_relative_difference(&ma.data, &mb.data);
    assert!(rel < 1e-4, "max relative model difference {rel:.2e} between chunkings");
}

fn max_relative_difference(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().map(|v| v.abs()).fold(0.0f32, f32::max) as f64;
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).abs() / (x.abs().max(y.abs()) as f64).max(1e-6 * scale))
        .fold(0.0, f64::max)
}

fn simulator() -> ImageSimulator {
    let pdb = concat!(env!("CARGO_MANIFEST_DIR"), "/datasets/pdb/2cex_a.pdb");
    let molecule = load(pdb, Some("A"), false, false).unwrap();
    let config = SimulationConfig {
        rescale: Rescale::PerImage(20_000.0),
        poisson: true,
        seed: 5,
        grid: Some(41),
        ..Default::default()
    };
    ImageSimulator::new(molecule, config).unwrap()
}

/// The engine with a chunk budget of `frames` frames beside its fixed scratch (which depends
/// on this machine's thread count), or `None` for 512 MiB.
fn engine_for(sim: &ImageSimulator, frames: Option<usize>) -> Emc {
    let big = engine(sim, 512 << 20);
    let plan = big.chunk_plan(false, 128 * 128).unwrap();
    match frames {
        Some(f) => engine(sim, plan.fixed_bytes + f * plan.bytes_per_frame),
        None => big,
    }
}

fn engine(sim: &ImageSimulator, chunk_bytes: usize) -> Emc {
    let g = sim.geometry.binned(4).unwrap();
    let params = EmcParams {
        scale: true,
        chunk_bytes,
        ..Default::default()
    };
    let mut emc = Emc::new(
        OrientationGrid::new(3).unwrap(),
        g.s.clone(),
        &g.scale(&sim.config.beam),
        sim.grid.m,
        sim.grid.spacing,
        params,
    )
    .unwrap();
    emc.random_start(4);
    emc
}

/// Relative RMS difference √(Σ(a−b)²/Σa²), and the largest relative difference among the
/// voxels above 10⁻³ of the maximum.
fn differences(a: &[f32], b: &[f32]) -> (f64, f64) {
    let max = a.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
    let num: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let den: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
    let worst = a
        .iter()
        .zip(b)
        .filter(|(x, _)| x.abs() as f64 > 1e-3 * max)
        .map(|(x, y)| ((*x as f64 - *y as f64) / *x as f64).abs())
        .fold(0.0, f64::max);
    ((num / den).sqrt(), worst)
}

#[test]
fn chunk_size_changes_the_model_only_by_summation_order() {
    // 1,500 Poisson frames, annealed from β = 0.001 to 0.128 over 8 iterations (posteriors
    // from flat to sharp), in chunks of 384 frames or in one chunk. The merge sums per chunk,
    // so the two differ only in the order of floating-point sums: ~10⁻⁶ of the model (RMS)
    // each iteration; as the posteriors sharpen, a voxel fed by few frames differs more (10⁻³
    // at β = 0.128) without moving any frame's most likely rotation.
    let sim = simulator();
    let source = Source::stream(&sim, Split::Train, Some(1500)).binned(4).unwrap();
    let mut chunked = engine_for(&sim, Some(400));
    let mut whole = engine_for(&sim, None);
    let frames = [&chunked, &whole].map(|e| e.chunk_plan(false, 128 * 128).unwrap().frames);
    assert!(
        frames[0] < 1500 && frames[1] >= 1500,
        "chunkings of {frames:?} frames: not several chunks against one"
    );
    let mut worst = 0.0;
    for k in 0..8 {
        let beta = 0.001 * 2f64.powi(k);
        chunked.iterate(&source, beta, None, &|_| {}).unwrap().unwrap();
        whole.iterate(&source, beta, None, &|_| {}).unwrap().unwrap();
        let (rms, max) = differences(&whole.model.data, &chunked.model.data);
        eprintln!(
            "iteration {}: relative RMS difference {rms:.2e}, largest {max:.2e}",
            k + 1
        );
        assert!(
            rms < 1e-5,
            "iteration {}: relative RMS model difference {rms:.2e} between chunkings",
            k + 1
        );
        worst = max;
    }
    assert!(
        worst < 1e-2,
        "largest relative voxel difference {worst:.2e} between chunkings"
    );
    assert_eq!(
        chunked.assignments, whole.assignments,
        "the chunking moved a most likely rotation"
    );
    assert_ne!(
        chunked.model.data, whole.model.data,
        "no difference at all: were there several chunks?"
    );
    // The same chunking repeats bit for bit.
    let mut again = engine_for(&sim, Some(400));
    for k in 0..8 {
        again
            .iterate(&source, 0.001 * 2f64.powi(k), None, &|_| {})
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        again.model.data, chunked.model.data,
        "the same chunking gave a different model"
    );
}

#[test]
fn the_plan_fits_its_budget_and_refuses_one_too_small() {
    let sim = simulator();
    let fixed = engine_for(&sim, None).chunk_plan(false, 128 * 128).unwrap().fixed_bytes;
    for mb in [2usize, 8, 64, 512] {
        let budget = fixed + (mb << 20);
        let plan = engine(&sim, budget).chunk_plan(false, 128 * 128).unwrap();
        assert!(
            plan.frames >= 64 && plan.fixed_bytes + plan.frames * plan.bytes_per_frame <= budget,
            "{mb} MiB: {plan:?}"
        );
        // a frame costs more than its pixels: its candidate list (1,380 rotations here) and row
        assert!(plan.bytes_per_frame > 4 * 32 * 32 + 8 * 1380, "{plan:?}");
    }
    let e = engine(&sim, fixed)
        .chunk_plan(false, 128 * 128)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--chunk-mb") && e.contains("raise --chunk-mb"), "{e}");
    // the command line refuses it before writing anything
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = bin()
        .args(["emc", "--n", "100", "--level", "1", "--chunk-mb", "1", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--chunk-mb"), "{err}");
    assert!(!out.exists(), "an output directory was created");
}
