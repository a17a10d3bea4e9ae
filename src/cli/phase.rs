//! `xrai-bench phase`: amplitude volume |F| (MRC) → electron density (MRC).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::eval::phasing::{phase, PhasingParams};
use crate::mrc::{read_mrc, write_mrc};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Amplitude volume |F| on the centred reciprocal grid (MRC; voxel size = Δs in 1/Å)
    pub amplitude: PathBuf,
    /// Output density map (MRC; voxel size 1/(m·Δs) Å)
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the random starting phases
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Independent random starts (the best Fourier error is kept)
    #[arg(long, default_value_t = PhasingParams::default().starts)]
    pub starts: usize,
    /// Iterations per start (HIO/ER cycles, ending with ER)
    #[arg(long, default_value_t = PhasingParams::default().iterations)]
    pub iters: usize,
    /// HIO feedback β
    #[arg(long, default_value_t = PhasingParams::default().beta)]
    pub beta: f32,
    /// Replace OUT if it exists
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(args: Args) -> Result<()> {
    if !args.overwrite && args.out.exists() {
        anyhow::bail!(
            "{} already exists (pass --overwrite to replace it)",
            args.out.display()
        );
    }
    let amplitude = read_mrc(&args.amplitude)?;
    let params = PhasingParams {
        starts: args.starts,
        iterations: args.iters,
        beta: args.beta,
        seed: args.seed,
        ..PhasingParams::default()
    };
    let started = Instant::now();
    let phased = phase(&amplitude, &params);
    let seconds = started.elapsed().as_secs_f64();
    for (i, e) in phased.start_errors.iter().enumerate() {
        let mark = if i == phased.best_start {
            "  ← kept"
        } else {
            ""
        };
        eprintln!("start {i}: Fourier error {e:.4}{mark}");
    }
    write_mrc(&args.out, &phased.density, args.overwrite)
        .with_context(|| format!("writing the phased density of {}", args.amplitude.display()))?;
    println!(
        "phased {} ({}³, voxel {:.3} Å) in {seconds:.1} s, Fourier error {:.4} → {}",
        args.amplitude.display(),
        amplitude.m,
        phased.density.spacing,
        phased.fourier_error(),
        args.out.display()
    );
    Ok(())
}
