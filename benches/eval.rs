//! Evaluation timings on the simulator's default grid for 2CEX chain A at the paper's geometry
//! (M = 125, Δs = 1/(12 (R+1))): one phasing start of 100 iterations (the default run is 4 starts
//! × 240 iterations, i.e. 9.6× this), an FSC and the alignment without rotation search.

use criterion::{criterion_group, criterion_main, Criterion};
use xrai_bench::data::SimulationConfig;
use xrai_bench::eval::align::{align, AlignParams};
use xrai_bench::eval::density::density_from_transform;
use xrai_bench::eval::fsc::fsc;
use xrai_bench::eval::phasing::{phase, PhasingParams};
use xrai_bench::physics::molecule::{read_structure, Selection};
use xrai_bench::physics::transform::{grid_transform, GridSpec};

fn eval(c: &mut Criterion) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/pdb/2cex_a.pdb");
    let molecule = read_structure(&path, &Selection::default()).unwrap();
    let config = SimulationConfig::default();
    let s_max = config.detector.geometry(&config.beam).s_max();
    let spec = GridSpec::for_molecule(molecule.radius(), s_max, config.oversampling).unwrap();
    let transform = grid_transform(&molecule, &spec);
    let amplitude = transform.amplitude();
    let density = density_from_transform(&transform);
    let params = PhasingParams {
        starts: 1,
        iterations: 100,
        final_er: 20,
        ..PhasingParams::default()
    };
    let phased = phase(&amplitude, &params).density;

    let mut group = c.benchmark_group(format!("eval_{}", spec.m));
    group.sample_size(10);
    group.bench_function("phase_1_start_100_iterations", |b| {
        b.iter(|| phase(&amplitude, &params))
    });
    group.bench_function("fsc", |b| b.iter(|| fsc(&density, &phased).unwrap()));
    let no_rotation = AlignParams {
        rotation: false,
        ..AlignParams::default()
    };
    group.bench_function("align_translation_inversion", |b| {
        b.iter(|| align(&density, &phased, &no_rotation).unwrap())
    });
    group.finish();
}

criterion_group!(benches, eval);
criterion_main!(benches);
