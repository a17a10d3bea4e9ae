//! `xrai-bench phase`: amplitude volume |F| (MRC) → electron density (MRC).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{ensure, Context, Result};

use super::read_map;
use crate::data::output::check_output_file;
use crate::eval::phasing::{check_amplitudes, phase, PhasingParams};
use crate::mrc::write_mrc;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example: phase the amplitudes `simulate --save-volume` wrote, then compare with the truth:\n  \
    xrai-bench phase data/cex1k/amplitude.mrc --out phased.mrc\n  \
    xrai-bench fsc data/cex1k/density.mrc phased.mrc --align"
)]
pub struct Args {
    /// Amplitude volume |F| on the centred reciprocal grid (MRC; voxel size = Δs in 1/Å);
    /// negative or non-finite voxels count as unmeasured
    pub amplitude: PathBuf,
    /// Output density map (MRC; voxel size 1/(m·Δs) Å); a new file unless --force
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the random starting phases
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Independent random starts, at least 1 (the best Fourier error is kept)
    #[arg(long, default_value_t = PhasingParams::default().starts)]
    pub starts: usize,
    /// Iterations per start, at least 1 (HIO/ER cycles, ending with ER)
    #[arg(long, default_value_t = PhasingParams::default().iterations)]
    pub iters: usize,
    /// HIO feedback β, in (0, 1]
    #[arg(long, default_value_t = PhasingParams::default().beta)]
    pub beta: f32,
    /// Replace OUT if it exists (never the input)
    #[arg(long, visible_alias = "overwrite")]
    pub force: bool,
}

pub fn run(args: Args) -> Result<()> {
    ensure!(
        args.starts >= 1,
        "--starts {}: at least one start is needed",
        args.starts
    );
    ensure!(
        args.iters >= 1,
        "--iters {}: at least one iteration is needed (0 would write unphased noise)",
        args.iters
    );
    ensure!(
        args.beta.is_finite() && args.beta > 0.0 && args.beta <= 1.0,
        "--beta {}: the HIO feedback must be in (0, 1] (Fienup: 0.5–1; default {})",
        args.beta,
        PhasingParams::default().beta
    );
    check_output_file("--out", &args.out, &[("AMPLITUDE", &args.amplitude)], args.force)?;
    let amplitude = read_map("AMPLITUDE", &args.amplitude)?;
    ensure!(
        amplitude.spacing.is_finite() && amplitude.spacing > 0.0,
        "AMPLITUDE {}: voxel size {} is not a positive Δs (1/Å); the header is damaged",
        args.amplitude.display(),
        amplitude.spacing
    );
    let unmeasured = check_amplitudes(&amplitude)
        .with_context(|| format!("AMPLITUDE {}: nothing was phased", args.amplitude.display()))?;
    if unmeasured > 0 {
        eprintln!(
            "note: {unmeasured} of {} voxels are negative or not finite and are treated as unmeasured",
            amplitude.data.len()
        );
    }
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
        let mark = if i == phased.best_start { "  ← kept" } else { "" };
        eprintln!("start {i}: Fourier error {e:.4}{mark}");
    }
    ensure!(
        phased.fourier_error().is_finite() && phased.density.data.iter().all(|v| v.is_finite()),
        "phasing {} gave a non-finite density; nothing was written",
        args.amplitude.display()
    );
    write_mrc(&args.out, &phased.density, args.force).map_err(|e| anyhow::anyhow!("--out {e}"))?;
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
