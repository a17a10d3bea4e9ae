//! `xrai-bench fsc`: Fourier shell correlation of two maps, optionally after aligning the second
//! onto the first.

use std::path::PathBuf;

use anyhow::{ensure, Context, Result};

use super::{check_finite_map, read_map};
use crate::data::output::check_output_file;
use crate::eval::align::{align, AlignParams};
use crate::eval::fsc::{fsc, THRESHOLD_1_7, THRESHOLD_HALF};
use crate::mrc::write_mrc;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example: resolution of a phased reconstruction against the simulated truth:\n  \
    xrai-bench fsc data/cex1k/density.mrc phased.mrc --align --aligned-out phased_aligned.mrc"
)]
pub struct Args {
    /// Reference map (MRC), e.g. the ground-truth density
    pub reference: PathBuf,
    /// Map to compare (MRC), same size and voxel size
    pub map: PathBuf,
    /// Align MAP onto REFERENCE first (translation, inversion, rotation)
    #[arg(long)]
    pub align: bool,
    /// With --align: search translation and inversion only, no rotation
    #[arg(long, requires = "align")]
    pub no_rotation: bool,
    /// With --align: write the aligned map here (a new file unless --force)
    #[arg(long, requires = "align")]
    pub aligned_out: Option<PathBuf>,
    /// Replace an existing --aligned-out file (never an input)
    #[arg(long)]
    pub force: bool,
    /// Print a JSON object (resolution_px, resolution_angstrom, the curve, …) instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    if let Some(path) = &args.aligned_out {
        check_output_file(
            "--aligned-out",
            path,
            &[("REFERENCE", &args.reference), ("MAP", &args.map)],
            args.force,
        )?;
    }
    let reference = read_map("REFERENCE", &args.reference)?;
    let map = read_map("MAP", &args.map)?;
    let context = || format!("comparing {} with {}", args.map.display(), args.reference.display());
    // The grids first (the most basic mismatch), then each map's content.
    crate::eval::check_same_grid(&reference, &map).with_context(context)?;
    check_finite_map("REFERENCE", &args.reference, &reference)?;
    check_finite_map("MAP", &args.map, &map)?;
    let map = if args.align {
        let params = AlignParams {
            rotation: !args.no_rotation,
            ..AlignParams::default()
        };
        let (aligned, alignment) = align(&reference, &map, &params).with_context(context)?;
        ensure!(
            alignment.correlation.is_finite() && aligned.data.iter().all(|v| v.is_finite()),
            "{}: the alignment gave correlation {} (a map without contrast?); nothing was written",
            context(),
            alignment.correlation
        );
        eprintln!(
            "aligned: correlation {:.4}, inverted {}, rotation {:.2}°",
            alignment.correlation,
            alignment.inverted,
            alignment.rotation.angle().to_degrees()
        );
        if let Some(path) = &args.aligned_out {
            write_mrc(path, &aligned, args.force).map_err(|e| anyhow::anyhow!("--aligned-out {e}"))?;
        }
        aligned
    } else {
        map
    };
    let curve = fsc(&reference, &map).with_context(context)?;
    ensure!(
        curve.fsc.iter().all(|f| f.is_finite()),
        "{}: the FSC curve is not finite",
        context()
    );
    let half = curve.resolution(THRESHOLD_HALF);
    let seventh = curve.resolution(THRESHOLD_1_7);
    if args.json {
        let shells: Vec<serde_json::Value> = curve
            .fsc
            .iter()
            .enumerate()
            .map(|(k, f)| {
                serde_json::json!({
                    "shell": k,
                    "frequency_per_angstrom": curve.frequency(k as f64),
                    "fsc": f,
                    "count": curve.counts[k],
                })
            })
            .collect();
        let json = serde_json::json!({
            "resolution_px": half.resolution_px,
            "resolution_angstrom": half.resolution_angstrom,
            "crossed": half.crossed,
            "resolution_0143_px": seventh.resolution_px,
            "resolution_0143_angstrom": seventh.resolution_angstrom,
            "crossed_0143": seventh.crossed,
            "voxel_size": curve.voxel_size,
            "m": curve.m,
            "curve": shells,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        for r in [half, seventh] {
            let bound = if r.crossed { "" } else { "≤ " };
            println!(
                "FSC = {:<5}: {bound}{:.2} px  ({bound}{:.2} Å){}",
                r.threshold,
                r.resolution_px,
                r.resolution_angstrom,
                if r.crossed {
                    ""
                } else {
                    "  (no crossing up to the last shell)"
                }
            );
        }
    }
    Ok(())
}
