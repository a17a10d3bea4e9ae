//! Evaluation of one method's map against the truth: phase its amplitudes (ER + HIO +
//! shrink-wrap), align the density onto the true density, and FSC. Writes
//! `eval/<method>/{density.mrc, fsc.csv, resolution.json}`; a resumed run reads them back.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::MethodRun;
use crate::eval::align::{align, AlignParams};
use crate::eval::fsc::fsc;
use crate::eval::phasing::{phase, PhasingParams};
use crate::method::output::AMPLITUDE_FILE;
use crate::mrc::{read_mrc, write_mrc};
use crate::volume::DensityMap;

/// What `resolution.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    pub resolution_px: f64,
    pub resolution_angstrom: f64,
    /// Whether the FSC crossed its threshold inside the grid (else the resolution is the grid's
    /// limit).
    pub crossed: bool,
    /// The finest period the detector records (its corner's |s|) in the same px and Å; None
    /// when the detector is not known here.
    #[serde(default)]
    pub limit_px: Option<f64>,
    #[serde(default)]
    pub limit_angstrom: Option<f64>,
    pub fourier_error: f64,
    pub alignment_correlation: f64,
    pub seconds: f64,
}

/// The period, in voxels of a density map of `voxel` Å, at spatial frequency `s_max` (Å⁻¹):
/// the finest the detector records, the benchmark's resolution limit.
pub fn limit_px(s_max: f64, voxel: f64) -> f64 {
    1.0 / (s_max * voxel)
}

/// Phase, align onto the truth, FSC read at `threshold`; `s_max` (Å⁻¹), the detector's largest
/// |s|, gives the limit. Returns the evaluation and the FSC
/// curve as (1/Å, FSC).
pub fn evaluate(
    r: &MethodRun,
    truth: &DensityMap,
    staging: &Path,
    starts: usize,
    seed: u64,
    threshold: f64,
    s_max: Option<f64>,
) -> Result<(Evaluation, Vec<(f64, f64)>)> {
    let out = staging.join("eval").join(r.id);
    std::fs::create_dir_all(&out)?;
    let fsc_csv = out.join("fsc.csv");
    let density_path = out.join("density.mrc");
    let record = out.join("resolution.json");
    if !(fsc_csv.exists() && density_path.exists() && record.exists()) {
        let t0 = Instant::now();
        let amplitude = read_mrc(r.dir.join(AMPLITUDE_FILE))?;
        let phased = phase(
            &amplitude,
            &PhasingParams {
                starts,
                seed,
                ..PhasingParams::default()
            },
        );
        let (aligned, alignment) = align(truth, &phased.density, &AlignParams::default())
            .with_context(|| format!("aligning the {} density onto the truth", r.label))?;
        write_mrc(&density_path, &aligned, true)?;
        let curve = fsc(truth, &aligned)?;
        let mut text = String::from("shell,frequency_per_angstrom,fsc,count\n");
        for (k, f) in curve.fsc.iter().enumerate() {
            text.push_str(&format!(
                "{k},{:.6},{f:.6},{}\n",
                curve.frequency(k as f64),
                curve.counts[k]
            ));
        }
        let res = curve.resolution(threshold);
        let evaluation = Evaluation {
            resolution_px: res.resolution_px,
            resolution_angstrom: res.resolution_angstrom,
            crossed: res.crossed,
            limit_px: s_max.map(|s| limit_px(s, truth.spacing)),
            limit_angstrom: s_max.map(|s| 1.0 / s),
            fourier_error: phased.fourier_error(),
            alignment_correlation: alignment.correlation,
            seconds: t0.elapsed().as_secs_f64(),
        };
        std::fs::write(&record, serde_json::to_string_pretty(&evaluation)?)?;
        std::fs::write(&fsc_csv, text)?;
        eprintln!(
            "  {}: phased and aligned in {:.0} s, FSC {threshold} at {:.2} px ({:.2} Å)",
            r.label, evaluation.seconds, res.resolution_px, res.resolution_angstrom
        );
    }
    let text = std::fs::read_to_string(&record).with_context(|| format!("cannot read {}", record.display()))?;
    let mut evaluation: Evaluation = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a complete evaluation record", record.display()))?;
    // a record from before the limit was kept: the limit on the truth's grid
    if let (None, Some(s)) = (evaluation.limit_px, s_max) {
        evaluation.limit_px = Some(limit_px(s, truth.spacing));
        evaluation.limit_angstrom = Some(1.0 / s);
    }
    let curve: Vec<(f64, f64)> = std::fs::read_to_string(&fsc_csv)?
        .lines()
        .skip(1)
        .filter_map(|l| {
            let v: Vec<f64> = l.split(',').filter_map(|x| x.parse().ok()).collect();
            (v.len() == 4).then(|| (v[1], v[2]))
        })
        .collect();
    Ok((evaluation, curve))
}
