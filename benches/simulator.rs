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
    for (name, rescale, poisson) in [
        ("sliced_scaled", Rescale::PerImage(20_000.0), false),
        ("sliced_poisson", Rescale::PerImage(20_000.0), true),
        ("sliced_counts_1000_photons", Rescale::MeanTotal(1000.0), true),
    ] {
        let config = SimulationConfig {
            rescale,
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

/// Counting alone, one thread, on a 2CEX_A pattern of 1,000 expected photons: one process
/// sampler against one Poisson draw per pixel.
fn counting(c: &mut Criterion) {
    use rand::SeedableRng;
    use xrai_bench::physics::noise::{poisson_counts_in_place, poisson_in_place};
    let config = SimulationConfig {
        rescale: Rescale::PerImage(1000.0),
        ..Default::default()
    };
    let sim = ImageSimulator::new(molecule(), config).unwrap();
    let mut expected = vec![0.0f32; sim.pixels()];
    sim.image(Split::Train, 0, &mut expected);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut buf = expected.clone();
    let mut group = c.benchmark_group("counting");
    group.sample_size(20).measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(1));
    group.bench_function("process_1000_photons_128x128", |b| {
        b.iter(|| {
            buf.copy_from_slice(&expected);
            poisson_counts_in_place(&mut buf, &mut rng)
        })
    });
    group.bench_function("per_pixel_1000_photons_128x128", |b| {
        b.iter(|| {
            buf.copy_from_slice(&expected);
            poisson_in_place(&mut buf, &mut rng)
        })
    });
    group.finish();
}

criterion_group!(benches, transform, images, counting);
criterion_main!(benches);
