//! Both methods over MPI (cargo feature `mpi`; `.ci/run` installs Open MPI and runs these):
//! - EMC on 2 ranks gives the one-process model, log and poses (to the order of the sums);
//! - X-RAI on 2 ranks, each with half of the global batch, gives the parameters of one process
//!   that averages the two halves' gradients ([`Trainer::train_step_accumulated`]); a step on
//!   the whole batch at once differs (batch norm sees each rank's half), so the check can fail;
//! - the benchmark under `--launcher "mpirun -np 2"` records 2 ranks and writes each output once.
//!
//! The MPI side runs under `mpirun --oversubscribe --allow-run-as-root -np 2` (CI runs as root),
//! one rayon thread per rank.

#![cfg(feature = "mpi")]

mod common;

use std::path::Path;
use std::process::Command;

use candle_core::Device;
use common::ok;
use xrai_bench::comm::share;
use xrai_bench::data::Split;
use xrai_bench::xrai::init::InputStats;
use xrai_bench::xrai::trainer::VolumeInit;
use xrai_bench::xrai::{Trainer, WorkingGeometry, XraiConfig};

const MPIRUN: &str = "mpirun --oversubscribe --allow-run-as-root -np 2";

fn mpirun() -> Command {
    let words: Vec<&str> = MPIRUN.split_whitespace().collect();
    let mut c = Command::new(words[0]);
    c.args(&words[1..]).env("RAYON_NUM_THREADS", "1");
    c
}

fn read_map(path: &Path) -> Vec<f32> {
    xrai_bench::mrc::read_mrc(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .data
}

const EMC_ARGS: [&str; 17] = [
    "emc",
    "--n",
    "1500",
    "--n-test",
    "200",
    "--poisson",
    "--rescale-total",
    "2000",
    "--level",
    "3",
    "--bin",
    "4",
    "--iters",
    "4",
    "--model-seed",
    "3",
    "--save-truth",
];

#[test]
fn emc_on_two_ranks_gives_the_one_process_model() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    ok(&Command::new(env!("CARGO_BIN_EXE_xrai-bench"))
        .args(EMC_ARGS)
        .arg("--out")
        .arg(&one)
        .env("RAYON_NUM_THREADS", "1")
        .env("XRAI_OFFLINE", "1")
        .output()
        .unwrap());
    let err = ok(&mpirun()
        .arg(env!("CARGO_BIN_EXE_xrai-bench"))
        .args(EMC_ARGS)
        .arg("--out")
        .arg(&two)
        .env("XRAI_OFFLINE", "1")
        .output()
        .unwrap());
    assert!(err.contains("MPI: 2 ranks"), "{err}");
    // rank 0 alone speaks
    assert_eq!(err.matches("EMC: 1500 frames").count(), 1, "{err}");
    let (a, b) = (read_map(&one.join("model.mrc")), read_map(&two.join("model.mrc")));
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    // Voxels no frame reached are −1; at the edge of the data a merge weight at the 1e-6
    // probability cut-off can flip with the order of the sums (measured: 18 of 607,507 voxels
    // on the Dragonfly-sized problem, results/example/mpi), so those are counted, not compared.
    let both = |x: &f32, y: &f32| *x >= 0.0 && *y >= 0.0;
    let flipped = a.iter().zip(&b).filter(|(x, y)| (**x >= 0.0) != (**y >= 0.0)).count();
    assert!(flipped * 10_000 <= a.len(), "{flipped} voxels measured in one run only");
    let worst = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| both(x, y))
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    // The merge's sums are added in another order (per rank, then across ranks): the model
    // agrees to float rounding, far below any change an iteration makes.
    eprintln!(
        "EMC: 2-rank model differs by at most {:.2e} of its largest voxel",
        worst / scale
    );
    assert!(worst <= 1e-4 * scale, "2-rank model differs by {worst} (scale {scale})");
    assert!(scale > 0.0);
    let log = |d: &Path| std::fs::read_to_string(d.join("log.csv")).unwrap();
    let ll = |text: String| -> Vec<f64> {
        text.lines()
            .skip(1)
            .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
            .collect()
    };
    let (la, lb) = (ll(log(&one)), ll(log(&two)));
    assert_eq!(la.len(), 4);
    assert_eq!(la.len(), lb.len());
    for (x, y) in la.iter().zip(&lb) {
        assert!((x - y).abs() <= 1e-5 * x.abs(), "log-likelihood {x} vs {y}");
    }
    for f in ["poses_train.csv", "poses_test.csv"] {
        let (pa, pb) = (
            std::fs::read_to_string(one.join(f)).unwrap(),
            std::fs::read_to_string(two.join(f)).unwrap(),
        );
        let differ = pa.lines().zip(pb.lines()).filter(|(x, y)| x != y).count();
        assert_eq!(pa.lines().count(), pb.lines().count(), "{f}");
        // A frame whose two best grid rotations tie to float rounding may take the other one.
        assert!(differ * 20 <= pa.lines().count(), "{f}: {differ} poses differ");
    }
    let o: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(two.join("output.json")).unwrap()).unwrap();
    assert_eq!(o["world"]["ranks"], 2);
    assert_eq!(o["world"]["threads_per_rank"], 1);
}

fn tiny_trainer() -> (XraiConfig, WorkingGeometry, Vec<f32>, impl Fn() -> Trainer) {
    xrai_bench::xrai::configure_cpu();
    let sim = common::cex_a_simulator();
    let cfg = XraiConfig {
        heads: 2,
        working_size: 16,
        widths: vec![8, 8],
        volume_size: 15,
        batch: 16,
        ..XraiConfig::default()
    };
    let geo = WorkingGeometry::new(&sim, cfg.working_size).unwrap();
    let (amps, _) = xrai_bench::xrai::geometry::load_amplitudes(&sim, &geo, Split::Train, 0, STEPS * cfg.batch);
    let stats = InputStats::from_amplitudes(&amps, geo.pixels());
    let m = cfg.volume_size;
    let v0 = xrai_bench::xrai::init::radial_volume(&geo, &amps, m, geo.volume_spacing(m), 0.01, 0);
    let (c, g) = (cfg.clone(), geo.clone());
    let new = move || {
        Trainer::new(
            c.clone(),
            g.clone(),
            Some(&stats),
            VolumeInit::Learned(v0.clone()),
            None,
            Device::Cpu,
        )
        .unwrap()
    };
    (cfg, geo, amps, new)
}

const STEPS: usize = 4;

/// Every parameter and running statistic, in name order.
fn parameters(t: &Trainer) -> Vec<f32> {
    let data = t.varmap.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    names
        .iter()
        .flat_map(|n| data[*n].as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect()
}

/// Run by `xrai_ranks_average_their_gradients` under mpirun (ignored otherwise): each rank
/// trains on its half of every global batch; rank 0 writes the parameters.
#[test]
#[ignore = "a rank of xrai_ranks_average_their_gradients, started by it under mpirun"]
fn xrai_rank_worker() {
    let Some(out) = std::env::var_os("XRAI_MPI_TEST_OUT") else {
        return;
    };
    let comm = xrai_bench::comm::init().unwrap();
    assert_eq!(comm.size(), 2);
    let (cfg, geo, amps, new) = tiny_trainer();
    let mut t = new();
    let p = geo.pixels();
    let mine = share(cfg.batch, comm.rank(), comm.size());
    for step in 0..STEPS {
        let batch = &amps[(step * cfg.batch + mine.start) * p..(step * cfg.batch + mine.end) * p];
        t.train_step_shared(batch, comm.as_ref()).unwrap();
    }
    if comm.is_root() {
        let bytes: Vec<u8> = parameters(&t).iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(out, bytes).unwrap();
    }
}

#[test]
fn xrai_ranks_average_their_gradients() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("params.bin");
    ok(&mpirun()
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "xrai_rank_worker", "--ignored", "--test-threads", "1"])
        .env("XRAI_MPI_TEST_OUT", &out)
        .env("XRAI_OFFLINE", "1")
        .output()
        .unwrap());
    let ranks: Vec<f32> = std::fs::read(&out)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let (cfg, geo, amps, new) = tiny_trainer();
    let p = geo.pixels();
    let half = cfg.batch / 2;
    let (mut accumulated, mut whole) = (new(), new());
    for step in 0..STEPS {
        let b = &amps[step * cfg.batch * p..(step + 1) * cfg.batch * p];
        accumulated
            .train_step_accumulated(&[&b[..half * p], &b[half * p..]])
            .unwrap();
        whole.train_step(b).unwrap();
    }
    let (acc, whole) = (parameters(&accumulated), parameters(&whole));
    assert_eq!(ranks.len(), acc.len());
    let scale = acc.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    // Two ranks sum two gradients as the one process does (a + b is commutative in floating
    // point): the parameters agree to the last bits that Adam's division can amplify.
    let d = diff(&ranks, &acc);
    let d_whole = diff(&whole, &acc);
    eprintln!(
        "X-RAI after {STEPS} steps: 2 ranks vs accumulated {:.2e}, whole batch vs accumulated {:.2e} (of the largest parameter)",
        d / scale,
        d_whole / scale
    );
    assert!(d <= 1e-5 * scale, "2 ranks vs accumulated: {d} (scale {scale})");
    // One step on the whole batch normalises over 16 images, not 8 + 8: measurably different.
    assert!(
        d_whole > 100.0 * d.max(1e-7 * scale),
        "the whole-batch step is as close ({d_whole}) as the ranks ({d})"
    );
}

#[test]
fn the_benchmark_under_a_launcher_records_the_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_xrai-bench"))
        .args([
            "run",
            "--launcher",
            MPIRUN,
            "--n",
            "600",
            "--n-test",
            "100",
            "--grid",
            "41",
            "--xrai-steps",
            "20",
            "--emc-level",
            "2",
            "--emc-bin",
            "4",
            "--emc-iters",
            "2",
            "--phasing-starts",
            "1",
            "--no-plots",
            "--xrai-args",
            "--batch 16 --eval-every 10 --eval-images 50",
        ])
        .arg("--out")
        .arg(&out)
        .arg("--summary-dir")
        .arg(dir.path())
        .env("RAYON_NUM_THREADS", "1")
        .env("XRAI_OFFLINE", "1")
        .output()
        .unwrap();
    let err = ok(&o);
    assert!(err.contains("$ mpirun"), "{err}");
    let rows = xrai_bench::report::table::read_table(&out.join("table.parquet")).unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r.ranks, 2, "{}", r.method);
        assert_eq!(r.threads_per_rank, 1, "{}", r.method);
        assert!(r.test_median_deg.is_finite(), "{}", r.method);
    }
    // each method's outputs once (rank 0's), no stray staging directories
    let entries: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!entries.iter().any(|e| e.contains("partial")), "{entries:?}");
}

/// A checkpoint written by rank 0 of a 2-rank run resumes in one process (and the reverse):
/// the parameters are the same on every rank, so any rank count continues from them.
#[test]
fn xrai_checkpoints_resume_on_another_rank_count() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second, third) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    // (no refinement stage: it would refine 20,000 images of the stream in each of the three runs)
    let common = [
        "xrai",
        "--batch",
        "16",
        "--working-size",
        "16",
        "--test-images",
        "50",
        "--eval-every",
        "0",
        "--refine-steps",
        "0",
    ];
    ok(&mpirun()
        .arg(env!("CARGO_BIN_EXE_xrai-bench"))
        .args(common)
        .args(["--steps", "6", "--out"])
        .arg(&first)
        .env("XRAI_OFFLINE", "1")
        .output()
        .unwrap());
    let err = ok(&Command::new(env!("CARGO_BIN_EXE_xrai-bench"))
        .args(common)
        .args(["--steps", "10", "--resume"])
        .arg(first.join("checkpoint"))
        .arg("--out")
        .arg(&second)
        .env("XRAI_OFFLINE", "1")
        .output()
        .unwrap());
    let state = |d: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("checkpoint/state.json")).unwrap()).unwrap()
    };
    assert_eq!(state(&first)["step"], 6);
    assert_eq!(state(&second)["step"], 10, "{err}");
    ok(&mpirun()
        .arg(env!("CARGO_BIN_EXE_xrai-bench"))
        .args(common)
        .args(["--steps", "14", "--resume"])
        .arg(second.join("checkpoint"))
        .arg("--out")
        .arg(&third)
        .env("XRAI_OFFLINE", "1")
        .output()
        .unwrap());
    assert_eq!(state(&third)["step"], 14);
}
