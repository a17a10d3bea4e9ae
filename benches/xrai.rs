//! X-RAI timings (plain harness: `cargo bench --bench xrai`): one training step of the default
//! configuration (batch 64, 32×32, widths 16-32-64-128, 8 heads, 41³ voxels), its parts
//! (encoder forward, encoder forward + backward, trilinear op forward + backward), and encoder
//! inference images/s. Synthetic inputs: the timings do not depend on the data.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use xrai_bench::data::{ImageSimulator, Rescale, SimulationConfig, Split};
use xrai_bench::physics::molecule;
use xrai_bench::xrai::decoder::trilinear;
use xrai_bench::xrai::train::{load_amplitudes, radial_volume, InputStats, Trainer, VolumeInit, WorkingGeometry};
use xrai_bench::xrai::{Encoder, XraiConfig};

fn time<F: FnMut()>(name: &str, reps: usize, mut f: F) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    let s = t.elapsed().as_secs_f64() / reps as f64;
    println!("{name:<44} {:>9.2} ms", s * 1e3);
    s
}

fn main() {
    xrai_bench::xrai::default_cpu_threads();
    let reps: usize = std::env::var("XRAI_BENCH_REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    println!("threads: {}", rayon::current_num_threads());
    let dev = Device::Cpu;
    let cfg = XraiConfig::default();
    let b = cfg.batch;
    let s = cfg.working_size;

    // encoder alone
    let vm = VarMap::new();
    let mut enc = Encoder::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev).pp("encoder")).unwrap();
    let x = Tensor::randn(0f32, 1.0, (b, 1, s, s), &dev).unwrap();
    time("encoder forward (train mode, batch 64)", reps, || {
        enc.forward_t(&x, true).unwrap();
    });
    time("encoder forward + backward (batch 64)", reps, || {
        let y = enc.forward_t(&x, true).unwrap();
        y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    });
    enc.im2col = true;
    time("  same with im2col + gemm conv", reps, || {
        let y = enc.forward_t(&x, true).unwrap();
        y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    });
    enc.im2col = false;
    let xi = Tensor::randn(0f32, 1.0, (256, 1, s, s), &dev).unwrap();
    let inf = time("encoder inference (eval mode, 256 images)", reps, || {
        enc.forward_t(&xi, false).unwrap();
    });
    println!("{:<44} {:>9.0} images/s", "encoder inference", 256.0 / inf);

    // trilinear op: 64 images × 8 heads × 1024 pixels
    let m = cfg.volume_size;
    let vol = Var::from_tensor(&Tensor::rand(0f32, 1.0, (m, m, m), &dev).unwrap()).unwrap();
    let n = b * cfg.heads * s * s;
    let coords = Var::from_tensor(&Tensor::rand(2f32, (m - 3) as f32, (n, 3), &dev).unwrap()).unwrap();
    time("trilinear forward (524,288 samples)", reps, || {
        trilinear(vol.as_tensor(), coords.as_tensor()).unwrap();
    });
    time("trilinear forward + backward", reps, || {
        trilinear(vol.as_tensor(), coords.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
    });

    // one full training step on real images (2CEX_A, paper geometry)
    let mol = molecule::load("2CEX_A", None, false, false).unwrap();
    let sim = ImageSimulator::new(mol, SimulationConfig { rescale: Rescale::MeanTotal(20000.0), ..Default::default() }).unwrap();
    let geo = WorkingGeometry::new(&sim, s).unwrap();
    let (amps, _) = load_amplitudes(&sim, &geo, Split::Train, 0, 512);
    let stats = InputStats::from_amplitudes(&amps, geo.pixels());
    let v0 = radial_volume(&geo, &amps, m, geo.volume_spacing(m), 0.01, 0);
    let mut t = Trainer::new(cfg.clone(), geo.clone(), Some(&stats), VolumeInit::Learned(v0), None, dev.clone()).unwrap();
    let batch = &amps[..b * geo.pixels()];
    time("simulate + bin 64 images (128² → 32²)", reps, || {
        load_amplitudes(&sim, &geo, Split::Train, 0, b);
    });
    time("training step (no data), default config", reps, || {
        t.train_step(batch).unwrap();
    });
    time("forward only (train mode)", reps, || {
        t.forward(batch, true).unwrap();
    });
}
