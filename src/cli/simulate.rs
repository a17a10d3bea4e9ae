//! `xrai-bench simulate`: diffraction images of a molecule written as a numpy-readable dataset,
//! Dragonfly files (`--format emc`) or a CXI file (`--format cxi`, with the `hdf5` feature).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use clap::ValueEnum;
use serde_json::json;

use crate::data::dataset::{check_output_dir, ensure_space, write_atomically};
use crate::data::simulator::{ensure_memory, sum_f64};
use crate::data::{Batch, FrameWriter, ImageSimulator, ImageStream, Split};
use crate::rotation::read_poses;

pub use crate::data::options::{MoleculeArgs, PhysicsArgs, RescaleMode};
pub use crate::data::writer::Format;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example: 1000 noise-free images of 2CEX chain A at the paper's geometry, with the true maps:\n  \
    xrai-bench simulate --n 1000 --rescale-total 20000 --save-volume --out data/cex1k\n\
    Then: xrai-bench phase data/cex1k/amplitude.mrc --out cex_phased.mrc"
)]
pub struct Args {
    #[command(flatten)]
    pub molecule: MoleculeArgs,
    #[command(flatten)]
    pub physics: PhysicsArgs,
    /// Number of images with random poses (ignored with --poses).
    #[arg(long, short = 'n')]
    pub n: Option<u64>,
    /// Poses to render: CSV with header w,x,y,z or .npy of shape (n, 4).
    #[arg(long)]
    pub poses: Option<PathBuf>,
    /// Which seed domain to draw from: train or the held-out test stream.
    #[arg(long, value_enum, default_value_t = SplitArg::Train)]
    pub split: SplitArg,
    /// Output directory (images.npy, poses.csv, meta.json; photons.emc and detector.dat in place
    /// of images.npy with --format emc, data.cxi with --format cxi).
    #[arg(long)]
    pub out: PathBuf,
    /// npy: images.npy (float32); emc: Dragonfly's photon file photons.emc and detector file
    /// detector.dat, which Dragonfly and `emc`/`xrai --data` read (photon counts: needs --poisson);
    /// cxi: data.cxi in Condor's CXI layout (float32 frames, geometry, mask, true poses; needs the
    /// `hdf5` build feature), which `emc`/`xrai --data DIR/data.cxi` read.
    #[arg(long, value_enum, default_value_t = Format::Npy)]
    pub format: Format,
    /// With --format cxi: where data.cxi keeps the frames (default entry_1/data_1/data), e.g.
    /// photonConverter/pnccdBack/photonCount as in CXIDB entry 58.
    #[arg(long)]
    pub dataset_path: Option<String>,
    /// Replace an output directory written earlier by xrai-bench (one holding its meta.json);
    /// any other non-empty directory is refused. Also removes staging directories
    /// (.NAME.partial-PID) left beside it by interrupted runs.
    #[arg(long)]
    pub force: bool,
    /// Also write the grid's |F|² and |F| as intensity.mrc and amplitude.mrc (voxel size = Δs
    /// in Å⁻¹; `xrai-bench phase amplitude.mrc` phases the latter) and the true electron
    /// density on the matching real-space grid as density.mrc (voxel 1/(MΔs) Å).
    #[arg(long)]
    pub save_volume: bool,
    /// Images generated per batch.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SplitArg {
    Train,
    Test,
}

pub fn run(args: Args) -> Result<()> {
    // Every argument is checked, and the molecule and the grid are built, before anything is
    // written: the output directory is touched only once the work can start.
    check_output_dir(&args.out, args.force)?;
    let poses = args.poses.as_deref().map(read_poses).transpose()?;
    let n = match (&poses, args.n) {
        (Some(p), _) => p.len() as u64,
        (None, Some(n)) => n,
        (None, None) => anyhow::bail!("give --n N (number of images) or --poses FILE"),
    };
    ensure!(n > 0, "--n must be at least 1");
    ensure!(
        args.batch > 0,
        "--batch must be at least 1 (images generated at a time)"
    );
    let config = args.physics.config()?;
    ensure!(
        args.dataset_path.is_none() || args.format == Format::Cxi,
        "--dataset-path is where --format cxi writes the frames inside data.cxi; add --format cxi"
    );
    #[cfg(not(feature = "hdf5"))]
    ensure!(
        args.format != Format::Cxi,
        "--format cxi needs the `hdf5` feature, and this xrai-bench was built without it; rebuild with \
         `cargo build --release --features hdf5`, or use --format npy or emc"
    );
    #[cfg(feature = "hdf5")]
    if let Some(d) = &args.dataset_path {
        crate::formats::cxi::normalize_dataset_path(std::path::Path::new("data.cxi"), d).context("--dataset-path")?;
    }
    ensure!(
        args.format != Format::Emc || config.poisson,
        "--format emc writes photon counts (Dragonfly's photon files hold whole numbers), but these images \
         are expected photons: add --poisson, or use --format npy"
    );
    config.beam.validate()?;
    config.detector.validate()?;
    let side = config.detector.pixels as u64;
    let what = format!("--n {n} images of {side}×{side} float32");
    let bytes = side
        .checked_mul(side)
        .and_then(|p| p.checked_mul(4))
        .and_then(|b| b.checked_mul(n))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{what} would take more than 16 EiB; nothing was written. Simulate fewer images or fewer --pixels"
            )
        })?;
    // (a sparse photon file's size depends on the photons, not known before simulating)
    if args.format != Format::Emc {
        ensure_space(
            &args.out,
            bytes,
            &what,
            "Simulate fewer images or fewer --pixels, or let the methods stream images on the fly \
             (emc, xrai and run need no dataset on disk)",
        )?;
    }
    let batch = (args.batch as u64).min(n);
    ensure_memory(
        side.checked_mul(side)
            .and_then(|p| p.checked_mul(4))
            .and_then(|b| b.checked_mul(batch)),
        &format!("a batch of {batch} images of {side}×{side}"),
        "Use a smaller --batch",
    )?;
    let molecule = args.molecule.load()?;
    let simulator = ImageSimulator::new(molecule, config)?;
    write_atomically(&args.out, args.force, false, |staging| {
        simulate_into(&args, staging, &simulator, poses.as_deref(), n)
    })?;
    eprintln!("wrote {n} images to {}", args.out.display());
    Ok(())
}

fn simulate_into(
    args: &Args,
    staging: &std::path::Path,
    simulator: &ImageSimulator,
    poses: Option<&[nalgebra::UnitQuaternion<f64>]>,
    n: u64,
) -> Result<()> {
    let started = Instant::now();
    let molecule = simulator.molecule();
    let composition = molecule.composition();
    let (source, n_atoms, radius) = (molecule.source.clone(), molecule.len(), molecule.radius());
    eprintln!(
        "{source}: {n_atoms} atoms, radius {radius:.1} Å; grid {m}³, Δs = {ds:.5} Å⁻¹ ({t:.2} s)",
        m = simulator.grid.m,
        ds = simulator.grid.spacing,
        t = simulator.transform_seconds
    );
    let split = match args.split {
        SplitArg::Train => Split::Train,
        SplitArg::Test => Split::Test,
    };
    let side = simulator.config.detector.pixels;
    let mut writer = FrameWriter::create(
        args.format,
        staging,
        n,
        &simulator.config.detector,
        &simulator.config.beam,
        args.dataset_path.as_deref(),
    )?;
    let bar = indicatif::ProgressBar::new(n).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} images  {per_sec}  ETA {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut stream = match poses {
        Some(p) => ImageStream::with_poses(simulator, split, p, args.batch),
        None => ImageStream::new(simulator, split, n, args.batch),
    };
    let images_started = Instant::now();
    let mut totals = Vec::with_capacity(n.min(1 << 20) as usize);
    let mut batch = Batch::empty();
    while stream.next_into(&mut batch) {
        for k in 0..batch.len() {
            totals.push(sum_f64(batch.image(k)));
        }
        writer.append(&batch.images, &batch.poses)?;
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    let image_seconds = images_started.elapsed().as_secs_f64();
    let mean_total = totals.iter().sum::<f64>() / totals.len() as f64;
    if args.save_volume {
        // Reciprocal volumes store Δs (Å⁻¹) as their voxel size, as `phase` expects.
        crate::mrc::write_mrc(staging.join("intensity.mrc"), &simulator.transform.intensity(), false)
            .context("writing intensity.mrc")?;
        crate::mrc::write_mrc(staging.join("amplitude.mrc"), &simulator.transform.amplitude(), false)
            .context("writing amplitude.mrc")?;
        // The ground truth every reconstruction is compared with (`xrai-bench fsc density.mrc …`).
        let density = crate::eval::density::density_from_transform(&simulator.transform);
        crate::mrc::write_mrc(staging.join("density.mrc"), &density, false).context("writing density.mrc")?;
    }
    let mask = crate::data::dataset::write_mask(staging, &simulator.config.detector)?;
    let meta = json!({
        "software": {"name": "xrai-bench", "version": env!("CARGO_PKG_VERSION")},
        "command": std::env::args().collect::<Vec<_>>(),
        "molecule": {
            "pdb": args.molecule.pdb, "source": source, "atoms": n_atoms,
            "radius_angstrom": radius, "composition": composition,
            "include_hetatm": args.molecule.include_hetatm, "include_water": args.molecule.include_water,
            "symmetry": simulator.symmetry().to_json(),
        },
        "config": simulator.config,
        "mask": mask.then_some("mask.npy (true = bad pixel, written as 0)"),
        "split": format!("{:?}", split).to_lowercase(),
        "poses_file": args.poses,
        "n": n,
        "format": args.format.name(),
        "images": args.format.describe(n, side, simulator.config.poisson, args.dataset_path.as_deref()),
        "wavelength_angstrom": simulator.geometry.wavelength,
        "s_max_per_angstrom": simulator.geometry.s_max(),
        "grid": {"m": simulator.grid.m, "spacing_per_angstrom": simulator.grid.spacing},
        "global_scale": simulator.global_scale(),
        "mean_total": mean_total,
        "conventions": {
            "pose": "image i samples |F|^2 at R_i s_p (R_i maps detector-frame s into the molecule frame); quaternions w,x,y,z, w >= 0",
            "s": "s = (u - z)/lambda in 1/Angstrom, |s| = 2 sin(theta)/lambda",
        },
        "timings_seconds": {
            "transform": simulator.transform_seconds,
            "images": image_seconds,
            "images_per_second": n as f64 / image_seconds.max(1e-9),
            "total": simulator.transform_seconds + started.elapsed().as_secs_f64(),
        },
    });
    writer.finish(&meta)
}
