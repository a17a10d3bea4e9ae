//! Publication-quality figures for the benchmark report.
//!
//! The figures, one module each:
//! - [`fsc_curves`] (`fsc`): FSC of each reconstruction against the ground
//!   truth, with the 0.5 and 0.143 thresholds;
//! - [`pose_error_distribution`] (`pose_error`): per-image pose errors as a
//!   histogram and as the empirical CDF;
//! - [`training_curves`] (`training`): X-RAI training loss and test-set pose
//!   error against wall-clock time;
//! - [`emc_log_likelihood`] (`emc_log`): EMC log-likelihood and annealing
//!   parameter β per iteration;
//! - [`image_gallery`] (`gallery`): input against reconstructed diffraction
//!   images;
//! - [`volume_slices`] (`slices`): central slices of amplitudes and densities;
//! - [`scaling`] (`scaling`): a quantity against the number of training
//!   images N, log–log.
//!
//! The shared look (fonts, sizes, palette, mesh, legend, PNG + SVG rendering)
//! is in `style`, axis ranges and tick labels in `axes`, and what the two
//! image grids share in `heatmap`.
//!
//! Every public plotting function takes plain data, draws the figure once per
//! backend through a single generic drawing function over
//! `DrawingArea<DB, Shift>`, and writes `<stem>.png` (bitmap) and `<stem>.svg`
//! (vector) next to each other. `stem` carries no extension; missing parent
//! directories are created. The functions return the two paths written.
//!
//! All text uses the DejaVu Sans font bundled with the crate (registered under
//! the family name `"sans-serif"`), so the figures render identically on
//! machines without any system fonts.
//!
//! Non-finite values are skipped (or, where the plot gives them a meaning,
//! drawn specially: "not measured" voxels in grey, runs over the time budget
//! as triangles at the budget line). An empty list of series/rows is an error
//! that names the plot.

mod axes;
mod emc_log;
mod fsc;
mod gallery;
mod heatmap;
mod photons;
mod pose_error;
mod scaling;
mod slices;
mod style;
mod training;

pub use emc_log::emc_log_likelihood;
pub use fsc::fsc_curves;
pub use gallery::image_gallery;
pub use photons::photons;
pub use pose_error::pose_error_distribution;
pub use scaling::{scaling, scaling_projected};
pub use slices::volume_slices;
pub use style::register_font;
pub use training::training_curves;

/// One logged point of an X-RAI training run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainingPoint {
    /// Wall-clock time since the start of training, seconds.
    pub elapsed_s: f64,
    /// Optimiser step.
    pub step: usize,
    /// Training loss at this step.
    pub loss: f64,
    /// Median pose error on the test images (degrees); NaN where not evaluated.
    pub test_median_deg: f64,
}

/// One EMC iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmcIteration {
    pub iteration: usize,
    /// Total log-likelihood of the data (a large negative number).
    pub log_likelihood: f64,
    /// Deterministic-annealing parameter β.
    pub beta: f64,
}
