//! Simulator stages on 2CEX chain A at the paper's geometry (128², 0.1 m at 0.2 m, 4.6 keV).
//! Targets on 2 cores: transform < 2 s; ≥ 20,000 sliced images/s; direct ≤ 50 ms per image.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
use xrai_bench::data::{Batch, ImageSimulator, ImageStream, Mode, Rescale, SimulationConfig, Split};
use xrai_bench::physics::molecule::{read_structure, Selection};
use xrai_bench::physics::transform::{grid_transform, GridSpec, DEFAULT_OVERSAMPLING};

fn molecule() -> xrai_bench::physics::molecule::Molecule {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/pdb/2cex_a.pdb");
    read_structure(&path, &Selection::default()).unwrap()
}

fn transform(c: &mut Criterion) {
    let mol = molecule();
    let config = SimulationConfig::default();
    let g = config.detector.geometry(&config.beam);
    let spec = GridSpec::for_molecule(mol.radius(), g.s_max(), DEFAULT_OVERSAMPLING).unwrap();
    let mut group = c.benchmark_group("transform");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.bench_function(format!("2cex_a_grid_{}", spec.m), |b| {
        b.iter(|| grid_transform(&mol, &spec))
    });
    group.finish();
}

fn images(c: &mut Criterion) {
    let mol = molecule();
    let batch = 2048;
    let mut group = c.benchmark_group("images");
    group.sample_size(10).measurement_time(Duration::from_secs(8));
    for (name, poisson) in [("sliced_scaled", false), ("sliced_poisson", true)] {
        let config = SimulationConfig {
            rescale: Rescale::PerImage(20_000.0),
            poisson,
            ..Default::default()
        };
        let sim = ImageSimulator::new(mol.clone(), config).unwrap();
        group.throughput(Throughput::Elements(batch as u64));
        // Buffers reused across batches, as a training or EMC loop consumes the stream.
        let mut buffer = Batch::empty();
        group.bench_function(name, |b| {
            b.iter(|| ImageStream::new(&sim, Split::Train, batch as u64, batch).next_into(&mut buffer))
        });
    }
    let config = SimulationConfig {
        mode: Mode::Direct,
        ..Default::default()
    };
    let sim = ImageSimulator::new(mol, config).unwrap();
    group.throughput(Throughput::Elements(1));
    group.bench_function("direct", |b| {
        b.iter(|| ImageStream::new(&sim, Split::Train, 1, 1).next().unwrap())
    });
    group.finish();
}

criterion_group!(benches, transform, images);
criterion_main!(benches);
