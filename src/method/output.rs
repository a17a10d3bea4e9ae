//! What every method hands back: one typed record, [`MethodOutput`], written as `output.json`
//! beside the method's files in one layout:
//!
//! ```text
//! OUT/output.json      this record (serde; every field required)
//! OUT/amplitude.mrc    the reconstructed |F| on the evaluation grid (−1 where nothing was measured)
//! OUT/poses_train.csv  estimated poses (w,x,y,z) of the first `poses.train` training images
//! OUT/poses_test.csv   estimated poses of the held-out images (header only when there are none)
//! ```
//!
//! The benchmark reads it with [`MethodOutput::read`]: a missing or mistyped field is an error
//! that names the field and the file, never a NaN in the table.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::eval::pose_error::PoseErrorSummary;

pub const OUTPUT_FILE: &str = "output.json";
pub const AMPLITUDE_FILE: &str = "amplitude.mrc";
pub const TRAIN_POSES_FILE: &str = "poses_train.csv";
pub const TEST_POSES_FILE: &str = "poses_test.csv";

/// One method's reconstruction, as the benchmark reads it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MethodOutput {
    /// Registry id (`xrai`, `emc`).
    pub method: String,
    pub software: Software,
    /// The reconstructed amplitude volume (`amplitude.mrc`) and its grid.
    pub amplitude: VolumeGrid,
    /// How many images each pose file holds.
    pub poses: PoseCounts,
    /// Pose error against the truth where the method's data carried true poses (None: unknown).
    pub pose_error: PoseErrors,
    pub timings: Timings,
    pub budget: BudgetRecord,
    /// Peak resident memory of the method's process (its own VmHWM), MiB.
    pub peak_memory_mib: f64,
    /// Training images processed per second of reconstruction (X-RAI: images seen by gradient
    /// steps; EMC: frames × iterations).
    pub images_per_s: f64,
    /// What the progress curve's objective is.
    pub objective: Objective,
    /// One point per evaluation (X-RAI) or iteration (EMC).
    pub progress: Vec<ProgressPoint>,
    /// The method's key settings for the table (budget, steps or iterations, grid, heads, …).
    pub params: serde_json::Value,
    /// When the budget stopped the method before its planned work: the wall time the whole
    /// planned run would take, projected from its measured cost (EMC: seconds per frame and
    /// iteration × N × iterations requested + preparation + test assignment). None when it
    /// finished, or when nothing was measured to project from.
    pub projected_wall_s: Option<f64>,
    /// The processes the method ran as: MPI ranks and threads per rank (absent in outputs
    /// from before MPI: one process).
    #[serde(default)]
    pub world: crate::comm::World,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Software {
    pub name: String,
    pub version: String,
    pub git_commit: String,
}

impl Software {
    pub fn this() -> Software {
        Software {
            name: "xrai-bench".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            git_commit: env!("XRAI_BENCH_GIT_COMMIT").into(),
        }
    }
}

/// A centred m³ reciprocal grid of spacing Δs (Å⁻¹).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VolumeGrid {
    pub m: usize,
    pub spacing_per_angstrom: f64,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PoseCounts {
    pub train: usize,
    pub test: usize,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PoseErrors {
    pub train: Option<PoseErrorSummary>,
    pub test: Option<PoseErrorSummary>,
}

/// Seconds, all counted from the method's process start ([`super::budget`]).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Timings {
    /// From process start to the output being written: the budget's clock.
    pub wall_s: f64,
    /// Simulator, data and preparation before the first step or iteration.
    pub preparation_s: f64,
    /// Training or iterations.
    pub reconstruction_s: f64,
    /// The held-out images' poses.
    pub test_s: f64,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BudgetRecord {
    pub budget_s: Option<f64>,
    /// The method stopped because its budget ran out before it finished its planned work.
    pub out_of_budget: bool,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// A training loss (lower is better), with test pose error at evaluations.
    Loss,
    /// A log-likelihood per iteration (higher is better), with the annealing β.
    LogLikelihood,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProgressPoint {
    /// Gradient step or iteration.
    pub step: u64,
    /// Seconds since the process start.
    pub elapsed_s: f64,
    pub objective: f64,
    pub test_median_deg: Option<f64>,
    pub beta: Option<f64>,
}

impl MethodOutput {
    /// Writes `dir/output.json`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(OUTPUT_FILE);
        std::fs::write(&path, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Reads `dir/output.json`; a missing, unknown or mistyped field is an error naming it.
    pub fn read(dir: &Path) -> Result<MethodOutput> {
        let path = dir.join(OUTPUT_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: the method wrote no output record (did it finish?)", path.display()))?;
        let out: MethodOutput = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a complete method output record", path.display()))?;
        ensure!(
            out.amplitude.m >= 3 && out.amplitude.spacing_per_angstrom > 0.0,
            "{}: amplitude grid {}³ with spacing {} is not a grid",
            path.display(),
            out.amplitude.m,
            out.amplitude.spacing_per_angstrom
        );
        Ok(out)
    }
}

/// This process's peak resident memory (VmHWM from /proc/self/status), MiB; NaN where the
/// kernel does not report it.
pub fn own_peak_memory_mib() -> f64 {
    vm_hwm_kib("self").map_or(f64::NAN, |k| k as f64 / 1024.0)
}

/// VmHWM of a process (`"self"` or a pid), KiB.
pub fn vm_hwm_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
