//! The run's figures, drawn from the methods' typed outputs and the evaluation: FSC, pose-error
//! histogram and CDF, each method's progress (a training loss with test error, or an EMC
//! log-likelihood with β), a gallery of inputs against reconstructed slices, and central slices
//! of the amplitudes and densities. The drawing itself is [`crate::report::plots`].

use std::path::Path;

use anyhow::{ensure, Result};

use super::MethodRun;
use crate::data::{ImageSimulator, Split};
use crate::eval::pose_error::pose_error;
use crate::method::output::{Objective, AMPLITUDE_FILE, TEST_POSES_FILE};
use crate::mrc::read_mrc;
use crate::report::plots;
use crate::rotation::read_poses;

/// Per-image test pose errors of a method (degrees).
fn test_errors(r: &MethodRun, sim: &ImageSimulator) -> Result<Vec<f64>> {
    let est = read_poses(&r.dir.join(TEST_POSES_FILE))?;
    let truth: Vec<_> = (0..est.len() as u64).map(|i| sim.pose(Split::Test, i)).collect();
    Ok(pose_error(&truth, &est, sim.symmetry().ops())?.angles_deg)
}

pub fn draw(
    sim: &ImageSimulator,
    dir: &Path,
    runs: &[MethodRun],
    fsc_curves: &[(String, Vec<(f64, f64)>)],
) -> Result<()> {
    let plots_dir = dir.join("plots");
    std::fs::create_dir_all(&plots_dir)?;
    plots::fsc_curves(&plots_dir.join("fsc"), fsc_curves)?;
    let mut errs = Vec::new();
    for r in runs.iter().filter(|r| r.output.poses.test > 0) {
        errs.push((r.label.to_string(), test_errors(r, sim)?));
    }
    plots::pose_error_distribution(&plots_dir.join("pose_error"), &errs)?;
    for r in runs.iter().filter(|r| !r.output.progress.is_empty()) {
        let progress = &r.output.progress;
        match r.output.objective {
            Objective::Loss => {
                let points: Vec<plots::TrainingPoint> = progress
                    .iter()
                    .map(|p| plots::TrainingPoint {
                        step: p.step as usize,
                        elapsed_s: p.elapsed_s,
                        loss: p.objective,
                        test_median_deg: p.test_median_deg.unwrap_or(f64::NAN),
                    })
                    .collect();
                plots::training_curves(&plots_dir.join(format!("{}_training", r.id)), &points)?;
            }
            Objective::LogLikelihood => {
                let iters: Vec<plots::EmcIteration> = progress
                    .iter()
                    .map(|p| plots::EmcIteration {
                        iteration: p.step as usize,
                        log_likelihood: p.objective,
                        beta: p.beta.unwrap_or(f64::NAN),
                    })
                    .collect();
                plots::emc_log_likelihood(&plots_dir.join(format!("{}_log_likelihood", r.id)), &iters)?;
            }
        }
    }
    gallery(sim, &plots_dir, runs)?;
    slices(dir, &plots_dir, runs)
}

/// Test images against each method's slice at its estimated pose.
fn gallery(sim: &ImageSimulator, plots_dir: &Path, runs: &[MethodRun]) -> Result<()> {
    let side = sim.config.detector.pixels;
    let mut rows = Vec::new();
    for r in runs {
        let path = r.dir.join(AMPLITUDE_FILE);
        let mut model = read_mrc(&path)?.map(|&a| if a > 0.0 { a * a } else { 0.0 });
        // the simulator's grid by construction; the MRC header stores Δs only to f32 precision
        ensure!(
            model.m == sim.grid.m,
            "{}: {}³, but the evaluation grid is {}³",
            path.display(),
            model.m,
            sim.grid.m
        );
        model.spacing = sim.grid.spacing;
        let slicer = crate::physics::slice::Slicer::new(&model, &sim.geometry, &sim.config.beam)?;
        let poses = read_poses(&r.dir.join(TEST_POSES_FILE))?;
        for (i, pose) in poses.iter().take(3).enumerate() {
            let mut input = vec![0f32; side * side];
            sim.image(Split::Test, i as u64, &mut input);
            let recon = slicer.slice(&crate::rotation::to_matrix(pose));
            rows.push((format!("{} · test {}", r.label, i + 1), input, recon));
        }
    }
    plots::image_gallery(&plots_dir.join("gallery"), side, &rows)?;
    Ok(())
}

/// Central slices: amplitudes (log) and aligned densities (linear), truth vs each method.
fn slices(dir: &Path, plots_dir: &Path, runs: &[MethodRun]) -> Result<()> {
    let truth_amp = read_mrc(dir.join("truth/amplitude.mrc"))?;
    let truth_den = read_mrc(dir.join("truth/density.mrc"))?;
    let mut columns = vec!["truth".to_string()];
    let mut amp_slices = vec![central_slice(&truth_amp)];
    let mut den_slices = vec![central_slice(&truth_den)];
    for r in runs {
        columns.push(r.label.to_string());
        amp_slices.push(central_slice(&read_mrc(r.dir.join(AMPLITUDE_FILE))?));
        den_slices.push(central_slice(&read_mrc(
            dir.join("eval").join(r.id).join("density.mrc"),
        )?));
    }
    // The density box is 1/Δs = 4kR wide (k = 3): the molecule fills its central sixth, so
    // show the central third (twice the molecule's diameter) rather than a speck.
    let crop = (truth_den.m / 3) | 1;
    let den_slices: Vec<Vec<f32>> = den_slices.iter().map(|s| central_crop(s, truth_den.m, crop)).collect();
    plots::volume_slices(
        &plots_dir.join("slices"),
        &columns,
        &[
            ("|F| (own frame)".into(), truth_amp.m, amp_slices),
            ("density (aligned)".into(), crop, den_slices),
        ],
        &[true, false],
    )?;
    Ok(())
}

/// The central `side × side` window of an `m × m` slice.
fn central_crop(slice: &[f32], m: usize, side: usize) -> Vec<f32> {
    let side = side.min(m);
    let start = (m - side) / 2;
    (start..start + side)
        .flat_map(|row| slice[row * m + start..][..side].iter().copied())
        .collect()
}

fn central_slice(v: &crate::volume::Volume<f32>) -> Vec<f32> {
    let m = v.m;
    let c = v.centre();
    v.data[c * m * m..(c + 1) * m * m].to_vec()
}
