//! X-RAI timings (plain harness: `cargo bench --bench xrai`): one training step of the default
//! configuration (batch 64, 32×32, widths 16-32-64-128, 8 heads, 41³ voxels), its parts
//! (encoder forward, encoder forward + backward, trilinear op forward + backward), and encoder
//! inference images/s. Synthetic inputs: the timings do not depend on the data.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use xrai_bench::data::{ImageSimulator, Rescale, SimulationConfig, Split};
use xrai_bench::physics::molecule;
use xrai_bench::xrai::conv::conv3x3;
use xrai_bench::xrai::decoder::{trilinear, Decoder};
use xrai_bench::xrai::train::{load_amplitudes, radial_volume, InputStats, Trainer, VolumeInit, WorkingGeometry};
use xrai_bench::xrai::{sixd_to_rotation, Encoder, XraiConfig};

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
    xrai_bench::xrai::configure_cpu();
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
    enc.candle_conv = true;
    time("  same with candle's conv2d", reps, || {
        let y = enc.forward_t(&x, true).unwrap();
        y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    });
    enc.candle_conv = false;
    let xi = Tensor::randn(0f32, 1.0, (256, 1, s, s), &dev).unwrap();
    let inf = time("encoder inference (eval mode, 256 images)", reps, || {
        enc.forward_t(&xi, false).unwrap();
    });
    println!("{:<44} {:>9.0} images/s", "encoder inference", 256.0 / inf);

    conv_layers(reps, b, s, 1, &cfg.widths);
    if std::env::var_os("XRAI_BENCH_CONV_ONLY").is_some() {
        return;
    }

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

    // the decoder's fused slice (rotation + trilinear + pixel weights) against the explicit path
    let sixd = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b * cfg.heads, 6), &dev).unwrap()).unwrap();
    let dec = Decoder::voxel(vol.as_tensor().clone(), geo.volume_spacing(m), &geo.s, &geo.pixel_weight, None).unwrap();
    time("decoder slice fwd + bwd, fused op (512 × 1024)", reps, || {
        let r = sixd_to_rotation(sixd.as_tensor()).unwrap();
        dec.forward(&r).unwrap().sum_all().unwrap().backward().unwrap();
    });
    time("  same through coordinates + trilinear op", reps, || {
        let r = sixd_to_rotation(sixd.as_tensor()).unwrap();
        dec.forward_unfused(&dec.amplitudes, &r).unwrap().sum_all().unwrap().backward().unwrap();
    });
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
    // a 64² working size (4× the pixels of the default 32²)
    let cfg64 = XraiConfig { working_size: 64, ..cfg.clone() };
    let geo64 = WorkingGeometry::new(&sim, 64).unwrap();
    let (amps64, _) = load_amplitudes(&sim, &geo64, Split::Train, 0, b);
    let stats64 = InputStats::from_amplitudes(&amps64, geo64.pixels());
    let v64 = radial_volume(&geo64, &amps64, m, geo64.volume_spacing(m), 0.01, 0);
    let mut t64 = Trainer::new(cfg64, geo64, Some(&stats64), VolumeInit::Learned(v64), None, dev.clone()).unwrap();
    time("training step, 64² working size", reps.min(5), || {
        t64.train_step(&amps64).unwrap();
    });
    // the paper's design: one head, π branch re-encoded, FourierNet decoder (2 SIRENs, 3 × 64)
    let paper = XraiConfig::paper();
    let mut tp = Trainer::new(paper.clone(), geo.clone(), Some(&stats), VolumeInit::Learned(vec![0.0; m * m * m]), None, dev.clone()).unwrap();
    time("training step, --paper (FourierNet, 1 head)", reps.min(5), || {
        tp.train_step(batch).unwrap();
    });
}

/// The encoder's four 3×3 convolutions alone (batch 64: 1→16 @ 32², 16→32 @ 16², 32→64 @ 8²,
/// 64→128 @ 4²): the im2col + GEMM custom op (`xrai::conv`) vs candle's conv2d, forward and
/// forward + backward of Σ y². The first layer's input is data (no gradient), the others' are
/// variables, as in the encoder. `XRAI_BENCH_CONV_ONLY=1` stops the bench after these timings.
fn conv_layers(reps: usize, b: usize, s: usize, in_ch: usize, widths: &[usize]) {
    let dev = Device::Cpu;
    let (mut tot_op, mut tot_candle) = ([0f64; 2], [0f64; 2]);
    let mut c = in_ch;
    for (i, &o) in widths.iter().enumerate() {
        let side = s >> i;
        let x = Tensor::randn(0f32, 1.0, (b, c, side, side), &dev).unwrap();
        let x = if i == 0 { x } else { Var::from_tensor(&x).unwrap().as_tensor().clone() };
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, (o, c, 3, 3), &dev).unwrap()).unwrap();
        let w = w.as_tensor();
        let name = format!("conv {c}→{o} @ {side}²");
        tot_op[0] += time(&format!("{name} forward, im2col op"), reps, || {
            conv3x3(&x, w).unwrap();
        });
        tot_candle[0] += time(&format!("{name} forward, candle conv2d"), reps, || {
            x.conv2d(w, 1, 1, 1, 1).unwrap();
        });
        tot_op[1] += time(&format!("{name} fwd + bwd, im2col op"), reps, || {
            conv3x3(&x, w).unwrap().sqr().unwrap().sum_all().unwrap().backward().unwrap();
        });
        tot_candle[1] += time(&format!("{name} fwd + bwd, candle conv2d"), reps, || {
            x.conv2d(w, 1, 1, 1, 1).unwrap().sqr().unwrap().sum_all().unwrap().backward().unwrap();
        });
        c = o;
    }
    println!("{:<44} {:>9.2} ms (candle {:.2} ms)", "4 convs forward, im2col op", tot_op[0] * 1e3, tot_candle[0] * 1e3);
    println!("{:<44} {:>9.2} ms (candle {:.2} ms)", "4 convs fwd + bwd, im2col op", tot_op[1] * 1e3, tot_candle[1] * 1e3);
}
