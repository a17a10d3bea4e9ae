//! One EMC iteration (dense GEMM path and sparse-photon path) on 2CEX chain A, as throughput in
//! rotations × frames × pixels per second, beside the f32 GEMM throughput (multiply-adds per
//! second) of the same kernel on the same shapes, parallelised the same way. The iteration's
//! ratio to the GEMM is the fraction of the machine's GEMM speed EMC reaches (target ≥ 50 %).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rayon::prelude::*;
use std::time::Duration;
use xrai_bench::data::{bin_frames, ImageSimulator, ImageStream, Rescale, SimulationConfig, Source, Split};
use xrai_bench::emc::{Emc, EmcParams, LikelihoodPath, OrientationGrid};
use xrai_bench::gemm::gemm;
use xrai_bench::physics::molecule::{read_structure, Selection};

const FRAMES: usize = 2048;
const LEVEL: usize = 4;

fn simulator(rescale: Rescale, poisson: bool) -> ImageSimulator {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/pdb/2cex_a.pdb");
    let molecule = read_structure(&path, &Selection::default()).unwrap();
    ImageSimulator::new(
        molecule,
        SimulationConfig {
            rescale,
            poisson,
            ..Default::default()
        },
    )
    .unwrap()
}

fn problem(sim: &ImageSimulator, bin: usize, path: LikelihoodPath, scale: bool) -> (Emc, Source<'static>) {
    let batch = ImageStream::new(sim, Split::Train, FRAMES as u64, FRAMES)
        .next()
        .unwrap();
    // binned once here, so that the iterations time EMC alone
    let detector = sim.geometry.binned(bin).unwrap();
    let frames = bin_frames(&batch.images, sim.config.detector.pixels, bin);
    let source = Source::memory(frames, detector.clone(), sim.config.beam.clone(), None).unwrap();
    let g = &detector;
    let params = EmcParams {
        path,
        scale,
        ..Default::default()
    };
    let mut emc = Emc::new(
        OrientationGrid::new(LEVEL).unwrap(),
        g.s.clone(),
        &g.scale(&sim.config.beam),
        sim.grid.m,
        sim.grid.spacing,
        params,
    )
    .unwrap();
    emc.random_start(1);
    (emc, source)
}

fn iteration(c: &mut Criterion) {
    let mut group = c.benchmark_group("emc");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_secs(3));
    // Dense: noise-free frames, 64 × 64.
    let sim = simulator(Rescale::PerImage(20_000.0), false);
    let (mut emc, frames) = problem(&sim, 2, LikelihoodPath::Dense, true);
    let (r, p) = (emc.grid.len(), emc.pixels());
    emc.prepare(&frames).unwrap();
    group.throughput(Throughput::Elements((r * FRAMES * p) as u64));
    group.bench_function(format!("iteration_dense_{FRAMES}x{p}px_{r}rot"), |b| {
        b.iter(|| emc.iterate(&frames, 1.0, None, &|_| {}).unwrap().unwrap())
    });
    // The GEMM alone on the same shapes: (frames × pixels)·(pixels × 256 rotations), rows split
    // over rayon in blocks of 128 as the likelihood step does.
    let rb = 256;
    let a: Vec<f32> = (0..FRAMES * p).map(|i| (i % 97) as f32 * 0.01).collect();
    let bm: Vec<f32> = (0..p * rb).map(|i| (i % 89) as f32 * 0.01 - 0.3).collect();
    let mut cm = vec![0.0f32; FRAMES * rb];
    group.throughput(Throughput::Elements((FRAMES * p * rb) as u64));
    group.bench_function(format!("sgemm_{FRAMES}x{p}x{rb}"), |b| {
        b.iter(|| {
            cm.par_chunks_mut(128 * rb)
                .zip(a.par_chunks(128 * p))
                .for_each(|(cc, aa)| {
                    gemm(aa.len() / p, p, rb, 1.0, aa, (p, 1), &bm, (rb, 1), 0.0, cc, (rb, 1));
                })
        })
    });
    // Sparse: Poisson frames at ~880 photons on the full 128 × 128 detector.
    let sim = simulator(Rescale::MeanTotal(880.0), true);
    let (mut emc, frames) = problem(&sim, 1, LikelihoodPath::Sparse, false);
    let (r, p) = (emc.grid.len(), emc.pixels());
    emc.prepare(&frames).unwrap();
    group.throughput(Throughput::Elements((r * FRAMES * p) as u64));
    group.bench_function(format!("iteration_sparse_poisson880_{FRAMES}x{p}px_{r}rot"), |b| {
        b.iter(|| emc.iterate(&frames, 1.0, None, &|_| {}).unwrap().unwrap())
    });
    group.finish();
}

criterion_group!(benches, iteration);
criterion_main!(benches);
