//! X-RAI timings (criterion: `cargo bench --bench xrai`, or a part: `cargo bench --bench xrai
//! -- step`): one training step of the default configuration (batch 64, 32×32, widths
//! 16-32-64-128, 8 heads, 41³ voxels), its parts (encoder forward, forward + backward, the four
//! convolutions against Candle's conv2d, the trilinear op, the decoder's fused slice), encoder
//! inference images/s, and the 64² and `--paper` steps. Synthetic inputs where the timings do
//! not depend on the data. `RAYON_NUM_THREADS=1 CANDLE_NUM_THREADS=1` gives the 1-thread column
//! of `benches/README.md`; `benches/pytorch/xrai_step.py` times the same step in PyTorch.

use std::time::Duration;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use xrai_bench::data::{ImageSimulator, Rescale, SimulationConfig, Split};
use xrai_bench::physics::molecule;
use xrai_bench::xrai::conv::conv3x3;
use xrai_bench::xrai::decoder::{trilinear, Decoder};
use xrai_bench::xrai::geometry::load_amplitudes;
use xrai_bench::xrai::init::{radial_volume, InputStats};
use xrai_bench::xrai::trainer::VolumeInit;
use xrai_bench::xrai::{sixd_to_rotation, Encoder, XraiConfig};
use xrai_bench::xrai::{Trainer, WorkingGeometry};

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

fn group<'a>(c: &'a mut Criterion, name: &str, seconds: u64) -> Group<'a> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(seconds));
    g
}

fn encoder(c: &mut Criterion) {
    xrai_bench::xrai::configure_cpu();
    eprintln!("rayon threads: {}", rayon::current_num_threads());
    let dev = Device::Cpu;
    let cfg = XraiConfig::default();
    let (b, s) = (cfg.batch, cfg.working_size);
    let vm = VarMap::new();
    let mut enc = Encoder::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev).pp("encoder")).unwrap();
    let x = Tensor::randn(0f32, 1.0, (b, 1, s, s), &dev).unwrap();
    let mut g = group(c, "encoder", 3);
    g.bench_function("forward (train mode, batch 64)", |bch| {
        bch.iter(|| enc.forward_t(&x, true).unwrap())
    });
    g.bench_function("forward + backward (batch 64)", |bch| {
        bch.iter(|| {
            enc.forward_t(&x, true)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
        })
    });
    enc.candle_conv = true;
    g.bench_function("forward + backward with candle's conv2d", |bch| {
        bch.iter(|| {
            enc.forward_t(&x, true)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
        })
    });
    enc.candle_conv = false;
    let xi = Tensor::randn(0f32, 1.0, (256, 1, s, s), &dev).unwrap();
    g.throughput(Throughput::Elements(256));
    g.bench_function("inference (eval mode, 256 images)", |bch| {
        bch.iter(|| enc.forward_t(&xi, false).unwrap())
    });
    g.finish();
}

/// The encoder's four 3×3 convolutions alone (batch 64: 1→16 @ 32², 16→32 @ 16², 32→64 @ 8²,
/// 64→128 @ 4²): the im2col + GEMM custom op (`xrai::conv`) vs candle's conv2d, forward and
/// forward + backward of Σ y². The first layer's input is data (no gradient), the others' are
/// variables, as in the encoder.
fn convolutions(c: &mut Criterion) {
    xrai_bench::xrai::configure_cpu();
    let dev = Device::Cpu;
    let cfg = XraiConfig::default();
    let (b, s) = (cfg.batch, cfg.working_size);
    let mut g = group(c, "conv", 2);
    let mut ch = 1;
    for (i, &o) in cfg.widths.iter().enumerate() {
        let side = s >> i;
        let x = Tensor::randn(0f32, 1.0, (b, ch, side, side), &dev).unwrap();
        let x = if i == 0 {
            x
        } else {
            Var::from_tensor(&x).unwrap().as_tensor().clone()
        };
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, (o, ch, 3, 3), &dev).unwrap()).unwrap();
        let w = w.as_tensor();
        let name = format!("{ch}→{o} @ {side}²");
        g.bench_function(format!("{name} forward, im2col op"), |bch| {
            bch.iter(|| conv3x3(&x, w).unwrap())
        });
        g.bench_function(format!("{name} forward, candle conv2d"), |bch| {
            bch.iter(|| x.conv2d(w, 1, 1, 1, 1).unwrap())
        });
        g.bench_function(format!("{name} fwd + bwd, im2col op"), |bch| {
            bch.iter(|| {
                conv3x3(&x, w)
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap()
            })
        });
        g.bench_function(format!("{name} fwd + bwd, candle conv2d"), |bch| {
            bch.iter(|| {
                x.conv2d(w, 1, 1, 1, 1)
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap()
            })
        });
        ch = o;
    }
    g.finish();
}

fn simulator() -> ImageSimulator {
    let mol = molecule::load("2CEX_A", None, false, false).unwrap();
    ImageSimulator::new(
        mol,
        SimulationConfig {
            rescale: Rescale::MeanTotal(20000.0),
            ..Default::default()
        },
    )
    .unwrap()
}

/// The decoder: the trilinear op on 64 images × 8 heads × 1024 pixels of random coordinates,
/// and the fused slice (rotation + trilinear + pixel weights) against the explicit path.
fn decoder(c: &mut Criterion) {
    xrai_bench::xrai::configure_cpu();
    let dev = Device::Cpu;
    let cfg = XraiConfig::default();
    let m = cfg.volume_size;
    let n = cfg.batch * cfg.heads;
    let vol = Var::from_tensor(&Tensor::rand(0f32, 1.0, (m, m, m), &dev).unwrap()).unwrap();
    let coords = Var::from_tensor(
        &Tensor::rand(2f32, (m - 3) as f32, (n * cfg.working_size * cfg.working_size, 3), &dev).unwrap(),
    )
    .unwrap();
    let mut g = group(c, "decoder", 3);
    g.bench_function("trilinear forward (524,288 samples)", |bch| {
        bch.iter(|| trilinear(vol.as_tensor(), coords.as_tensor()).unwrap())
    });
    g.bench_function("trilinear forward + backward", |bch| {
        bch.iter(|| {
            trilinear(vol.as_tensor(), coords.as_tensor())
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
        })
    });
    let sim = simulator();
    let geo = WorkingGeometry::new(&sim, cfg.working_size).unwrap();
    let sixd = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, 6), &dev).unwrap()).unwrap();
    let dec = Decoder::voxel(
        vol.as_tensor().clone(),
        geo.volume_spacing(m),
        &geo.s,
        &geo.pixel_weight,
        None,
    )
    .unwrap();
    g.bench_function("slice fwd + bwd, fused op (512 × 1024)", |bch| {
        bch.iter(|| {
            let r = sixd_to_rotation(sixd.as_tensor()).unwrap();
            dec.forward(&r).unwrap().sum_all().unwrap().backward().unwrap()
        })
    });
    g.bench_function("slice fwd + bwd, coordinates + trilinear op", |bch| {
        bch.iter(|| {
            let r = sixd_to_rotation(sixd.as_tensor()).unwrap();
            dec.forward_unfused(&dec.amplitudes, &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
        })
    });
    g.finish();
}

/// A trainer on real images (2CEX_A, paper geometry) and one batch of them.
fn trainer(sim: &ImageSimulator, cfg: &XraiConfig) -> (Trainer, Vec<f32>) {
    let geo = WorkingGeometry::new(sim, cfg.working_size).unwrap();
    let (amps, _) = load_amplitudes(sim, &geo, Split::Train, 0, 512);
    let stats = InputStats::from_amplitudes(&amps, geo.pixels());
    let m = cfg.volume_size;
    let v0 = radial_volume(&geo, &amps, m, geo.volume_spacing(m), 0.01, 0);
    let t = Trainer::new(
        cfg.clone(),
        geo.clone(),
        Some(&stats),
        VolumeInit::Learned(v0),
        None,
        Device::Cpu,
    )
    .unwrap();
    (t, amps[..cfg.batch * geo.pixels()].to_vec())
}

fn training_step(c: &mut Criterion) {
    xrai_bench::xrai::configure_cpu();
    let sim = simulator();
    let cfg = XraiConfig::default();
    let mut g = group(c, "step", 5);
    let geo = WorkingGeometry::new(&sim, cfg.working_size).unwrap();
    g.bench_function("simulate + bin 64 images (128² → 32²)", |bch| {
        bch.iter(|| load_amplitudes(&sim, &geo, Split::Train, 0, cfg.batch))
    });
    let (mut t, batch) = trainer(&sim, &cfg);
    g.bench_function("training step (no data), default config", |bch| {
        bch.iter(|| t.train_step(&batch).unwrap())
    });
    g.bench_function("forward only (train mode)", |bch| {
        bch.iter(|| t.forward(&batch, true).unwrap())
    });
    // a 64² working size (4× the pixels of the default 32²)
    let (mut t64, batch64) = trainer(
        &sim,
        &XraiConfig {
            working_size: 64,
            ..cfg.clone()
        },
    );
    g.bench_function("training step, 64² working size", |bch| {
        bch.iter(|| t64.train_step(&batch64).unwrap())
    });
    // the paper's design: one head, π branch re-encoded, FourierNet decoder (2 SIRENs, 3 × 64)
    let (mut tp, batchp) = trainer(&sim, &XraiConfig::paper());
    g.measurement_time(Duration::from_secs(30));
    g.bench_function("training step, --paper (FourierNet, 1 head)", |bch| {
        bch.iter(|| tp.train_step(&batchp).unwrap())
    });
    g.finish();
}

criterion_group!(benches, encoder, convolutions, decoder, training_step);
criterion_main!(benches);
