//! Evaluation timings on the simulator's default grid for 2CEX chain A (M = 105, Δs = 1/(12 (R+1))):
//! one phasing start of 100 iterations (the default run is 4 starts × 300 iterations, i.e. 12× this),
//! an FSC and the alignment without rotation search.

#[path = "../tests/support/synthetic.rs"]
#[allow(dead_code)] // the bench uses only part of the test support
mod synthetic;

use criterion::{criterion_group, criterion_main, Criterion};
use xrai_bench::eval::align::{align, AlignParams};
use xrai_bench::eval::density::density_from_transform;
use xrai_bench::eval::fsc::fsc;
use xrai_bench::eval::phasing::{phase, PhasingParams};

fn eval(c: &mut Criterion) {
    let atoms = synthetic::Atoms::cex_a();
    let m = 105;
    let ds = 1.0 / (12.0 * (atoms.radius() + 1.0));
    let transform = atoms.transform(m, ds, 15.0);
    let amplitude = transform.amplitude();
    let density = density_from_transform(&transform);
    let params = PhasingParams {
        starts: 1,
        iterations: 100,
        final_er: 20,
        ..PhasingParams::default()
    };
    let phased = phase(&amplitude, &params).density;

    let mut group = c.benchmark_group("eval_105");
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
