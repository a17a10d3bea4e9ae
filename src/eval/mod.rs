//! Evaluation: pose error, phasing, map alignment, FSC. Knows nothing of how a volume or pose was made.

pub mod align;
pub mod density;
pub mod fft;
pub mod fsc;
pub mod phasing;
pub mod pose_error;

/// What can go wrong when two inputs of an evaluation do not belong together. Callers that read
/// the inputs from files add the file names (see `cli`).
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("the maps differ in size: {0}³ and {1}³ voxels")]
    SizeMismatch(usize, usize),
    #[error("the maps differ in voxel size: {0} Å and {1} Å")]
    VoxelMismatch(f64, f64),
    #[error("{truth} true poses but {estimate} estimated poses; they must be the same images in the same order")]
    PoseCountMismatch { truth: usize, estimate: usize },
    #[error("no poses to compare")]
    NoPoses,
}

/// Checks that two maps sit on the same grid (size, and voxel size to 0.1 %).
pub fn check_same_grid<T>(a: &crate::volume::Volume<T>, b: &crate::volume::Volume<T>) -> Result<(), EvalError> {
    if a.m != b.m {
        return Err(EvalError::SizeMismatch(a.m, b.m));
    }
    if (a.spacing - b.spacing).abs() > 1e-3 * a.spacing.abs().max(b.spacing.abs()) {
        return Err(EvalError::VoxelMismatch(a.spacing, b.spacing));
    }
    Ok(())
}
