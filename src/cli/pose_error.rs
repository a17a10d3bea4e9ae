//! `xrai-bench pose-error`: per-image pose error after global alignment and π-flip resolution.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::data::output::{check_output_file, write_file_atomically};
use crate::eval::pose_error::pose_error;
use crate::physics::symmetry::PointGroup;
use crate::rotation::{read_poses, to_wxyz};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example: score the test poses an X-RAI run inferred (xrai writes both files):\n  \
    xrai-bench pose-error --truth runs/xrai55m/poses_test_true.csv --estimate runs/xrai55m/poses_test.csv \
    --per-image errors.csv"
)]
pub struct Args {
    /// True poses: CSV with header `w,x,y,z` (unit quaternions, scalar first), as written by `simulate`
    #[arg(long)]
    pub truth: PathBuf,
    /// Estimated poses for the same images in the same order (same format)
    #[arg(long)]
    pub estimate: PathBuf,
    /// Print a JSON object instead of text
    #[arg(long)]
    pub json: bool,
    /// Also write the per-image residual angles (degrees) and flip flags to this CSV (a new
    /// file; an existing one is replaced only with --force, and never an input)
    #[arg(long)]
    pub per_image: Option<PathBuf>,
    /// Replace an existing --per-image file
    #[arg(long)]
    pub force: bool,
    /// The molecule the poses belong to (PDB ID or file, as for `simulate`): errors are taken
    /// modulo its exact rotational symmetry, found from its atoms (2DHB's two-fold: the image of
    /// pose R is also that of S·R). Default: the symmetry `simulate` recorded in meta.json beside
    /// --truth, else none
    #[arg(long)]
    pub pdb: Option<String>,
}

pub fn run(args: Args) -> Result<()> {
    if let Some(path) = &args.per_image {
        check_output_file(
            "--per-image",
            path,
            &[("--truth", &args.truth), ("--estimate", &args.estimate)],
            args.force,
        )?;
    }
    let symmetry = match &args.pdb {
        Some(spec) => PointGroup::of_molecule(&crate::data::pdb::load(spec, None, false, false).context("--pdb")?),
        None => crate::data::open::recorded_symmetry(&args.truth).unwrap_or_default(),
    };
    let truth = read_poses(&args.truth)?;
    let estimate = read_poses(&args.estimate)?;
    let result = pose_error(&truth, &estimate, symmetry.ops())
        .with_context(|| format!("comparing {} with {}", args.truth.display(), args.estimate.display()))?;
    if let Some(path) = &args.per_image {
        let mut text = String::from("angle_deg,flipped,view_direction_deg\n");
        for ((a, f), v) in result
            .angles_deg
            .iter()
            .zip(&result.flipped)
            .zip(&result.view_direction_deg)
        {
            text.push_str(&format!("{a:.6},{},{v:.6}\n", u8::from(*f)));
        }
        write_file_atomically(path, text.as_bytes())?;
    }
    let s = &result.summary;
    if args.json {
        let json = serde_json::json!({
            "images": s.images,
            "median_deg": s.median_deg,
            "mean_deg": s.mean_deg,
            "rms_deg": s.rms_deg,
            "mean_view_direction_deg": s.mean_view_direction_deg,
            "flipped_fraction": s.flipped_fraction,
            "alignment_wxyz": to_wxyz(&result.alignment),
            "symmetry": symmetry.name(),
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!("images            {}", s.images);
        println!("median error      {:.3}°", s.median_deg);
        println!("mean error        {:.3}°", s.mean_deg);
        println!("RMS error         {:.3}°   (the paper's \"MSE\" column)", s.rms_deg);
        println!("mean view-dir     {:.3}°", s.mean_view_direction_deg);
        println!("π-flipped         {:.1} %", 100.0 * s.flipped_fraction);
        let [w, x, y, z] = to_wxyz(&result.alignment);
        println!("alignment (wxyz)  {w:.6} {x:.6} {y:.6} {z:.6}");
        println!(
            "symmetry          {} (errors modulo its {} rotations)",
            symmetry.name(),
            symmetry.order()
        );
    }
    Ok(())
}
