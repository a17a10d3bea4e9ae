//! Reproducibility and data sources: image i is a pure function of (seed, split, i).

mod common;

use common::*;
use xrai_bench::data::{Dataset, DatasetWriter, ImageSimulator, ImageStream, Rescale, SimulationConfig, Split};

fn simulator(poisson: bool, seed: u64) -> ImageSimulator {
    let config = SimulationConfig {
        rescale: Rescale::MeanTotal(1000.0),
        poisson,
        seed,
        ..Default::default()
    };
    ImageSimulator::new(cex_a(), config).unwrap()
}

fn collect(sim: &ImageSimulator, split: Split, n: u64, batch: usize, threads: usize) -> (Vec<f32>, Vec<[f64; 4]>) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let mut images = Vec::new();
        let mut poses = Vec::new();
        for b in ImageStream::new(sim, split, n, batch) {
            images.extend_from_slice(&b.images);
            poses.extend(b.poses.iter().map(xrai_bench::rotation::to_wxyz));
        }
        (images, poses)
    })
}

#[test]
fn same_seed_same_images_whatever_the_batch_size_or_thread_count() {
    for poisson in [false, true] {
        let sim = simulator(poisson, 42);
        let reference = collect(&sim, Split::Train, 37, 64, 1);
        for (batch, threads) in [(1, 2), (7, 2), (5, 1), (37, 2)] {
            let other = collect(&sim, Split::Train, 37, batch, threads);
            assert!(
                reference == other,
                "poisson={poisson}: batch {batch}, {threads} threads differ"
            );
        }
        // A window of the stream equals the same images of the full stream.
        let window: Vec<f32> = ImageStream::new(&sim, Split::Train, 37, 8)
            .starting_at(30)
            .flat_map(|b| b.images)
            .collect();
        assert_eq!(&window[..], &reference.0[30 * sim.pixels()..]);
    }
}

#[test]
fn seeds_and_splits_give_different_images() {
    let a = simulator(true, 1);
    let b = simulator(true, 2);
    let train = collect(&a, Split::Train, 20, 8, 2);
    let test = collect(&a, Split::Test, 20, 8, 2);
    let other_seed = collect(&b, Split::Train, 20, 8, 2);
    for (name, other) in [("test split", &test), ("other seed", &other_seed)] {
        let shared = train.1.iter().filter(|p| other.1.contains(p)).count();
        assert_eq!(shared, 0, "{name} repeats training poses");
    }
}

#[test]
fn poisson_images_hold_the_requested_photons() {
    let sim = simulator(true, 5);
    let (images, _) = collect(&sim, Split::Train, 200, 64, 2);
    let totals: Vec<f64> = images
        .chunks(sim.pixels())
        .map(|im| im.iter().map(|&x| x as f64).sum())
        .collect();
    let mean = totals.iter().sum::<f64>() / totals.len() as f64;
    assert!((mean / 1000.0 - 1.0).abs() < 0.05, "mean photons {mean}");
    assert!(
        images.iter().all(|&x| x >= 0.0 && x.fract() == 0.0),
        "counts are non-negative integers"
    );
}

#[test]
fn datasets_round_trip_in_chunks() {
    let sim = simulator(false, 9);
    let dir = tempfile::tempdir().unwrap();
    let n = 10u64;
    let mut writer = DatasetWriter::create(dir.path(), n, 128).unwrap();
    let (images, _) = collect(&sim, Split::Train, n, 4, 2);
    let mut poses = Vec::new();
    for b in ImageStream::new(&sim, Split::Train, n, 4) {
        writer.append(&b.images, &b.poses).unwrap();
        poses.extend(b.poses);
    }
    writer.finish(&serde_json::json!({"n": n})).unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    assert_eq!((ds.len, ds.side), (n, 128));
    let chunk = ds.read_images(3, 4).unwrap();
    assert_eq!(&chunk[..], &images[3 * 16384..7 * 16384]);
    for (a, b) in ds.poses.iter().zip(&poses) {
        assert!(a.angle_to(b) < 1e-12);
    }
    // Truncated file: a clear error, not garbage.
    let path = dir.path().join("images.npy");
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 1000).unwrap();
    let err = Dataset::open(dir.path())
        .err()
        .expect("truncated dataset must fail")
        .to_string();
    assert!(err.contains("truncated"), "{err}");
}
