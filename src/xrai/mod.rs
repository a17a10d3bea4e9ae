//! X-RAI: amortized pose inference with a physics-based decoder (paper section 2.2).
//!
//! An encoder CNN maps each amplitude image to K pose hypotheses (6D → rotation, Zhou et al.
//! 2019); a decoder samples a learned Fourier-amplitude volume at the rotated Ewald
//! coordinates R̂ s_p (a trilinear custom op with its own backward); the loss compares the
//! prediction with the image and with its in-plane π rotation (equation 4), generalised to a
//! winner-takes-all minimum over heads (cryoSPIN), plus a pose-uniformity penalty.
//!
//! Photon counts, beyond the paper, change three things. The data term becomes the Poisson
//! likelihood. Each pattern's unknown scale is profiled out of it, and a known background
//! enters the expected image ([`loss::DataModel`]). The encoder sees √counts, normalised per
//! image and scaled globally, not standardised per pixel ([`trainer::Trainer`]'s input).
//!
//! One file per concept. The model, in the candle-transformers style (config struct,
//! `VarBuilder`, `forward`): [`config`], [`encoder`], [`decoder`]. Kernels apart from the
//! models: [`conv`] (im2col + GEMM convolution), [`layers`] (batch norm, ReLU + max pool) and the
//! decoder's trilinear op. Training: [`geometry`] (working-size images from a
//! [`crate::data::Source`]), [`init`] (input statistics, starting volume), [`pyramid`], [`loss`],
//! [`optim`], [`trainer`] (step, prediction, checkpoints), [`train`] (the loop), [`refine`]
//! (after training: each image's pose against the frozen decoder, then the volume with the poses
//! fixed; [`mates`]: the near-2-fold mates it can also try; [`plan`]: what it costs and what fits
//! the budget), [`options`] (the command's options and the configuration they make) and [`run`] (the
//! method as the benchmark runs it).

pub mod config;
pub mod conv;
pub mod decoder;
pub mod encoder;
pub mod geometry;
pub mod init;
pub mod layers;
pub mod loss;
pub mod mates;
pub mod optim;
pub mod options;
pub mod plan;
pub mod pyramid;
pub mod refine;
pub mod run;
pub mod train;
pub mod trainer;

pub use config::{SymmetricBranch, XraiConfig};
pub use decoder::{Decoder, Trilinear};
pub use encoder::{sixd_to_rotation, Encoder};
pub use geometry::WorkingGeometry;
pub use trainer::Trainer;

use candle_core::Tensor;

/// CPU settings for training, called before the first tensor operation:
/// - Candle's CPU thread pool waits on spinning barriers between ops; with the small ops of
///   this network on a shared 2-core machine the spinning cost 4× per training step
///   (measured: 0.64 s → 0.16 s per step). Unless the user set `CANDLE_NUM_THREADS`, use one
///   candle thread (rayon, used by the custom ops and the simulator, keeps its threads).
/// - glibc returns freed blocks above its mmap/trim thresholds to the kernel, so every step's
///   multi-megabyte activations came back as fresh zeroed pages (page faults and page clearing
///   were ~7 % of a step's profile). Keeping up to 256 MiB of freed memory for reuse removes
///   that, as PyTorch's caching allocator does; peak memory is unchanged.
pub fn configure_cpu() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// Names of [`with_f32`]'s inputs in errors (no formatting on the hot path).
const INPUT_NAMES: [&str; 4] = ["input 0", "input 1", "input 2", "input 3"];

/// Runs `f` on the f32 data of N CPU tensors at once, without copying contiguous ones — for
/// the custom ops' backward passes, which receive tensors rather than storages. `op` names the
/// operation in the error.
pub(crate) fn with_f32<R, const N: usize>(
    op: &str,
    tensors: [&Tensor; N],
    f: impl FnOnce([&[f32]; N]) -> R,
) -> candle_core::Result<R> {
    let tensors = tensors.map(|t| t.contiguous());
    let mut owned = Vec::with_capacity(N);
    for t in tensors {
        owned.push(t?);
    }
    let guards: Vec<_> = owned.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices: Vec<&[f32]> = Vec::with_capacity(N);
    for (i, (storage, layout)) in guards.iter().enumerate() {
        match &**storage {
            candle_core::Storage::Cpu(s) => slices.push(contiguous_f32(
                s,
                layout,
                op,
                INPUT_NAMES.get(i).copied().unwrap_or("an input"),
            )?),
            _ => candle_core::bail!("{op}: input {i} must be on the CPU"),
        }
    }
    let slices: [&[f32]; N] = slices.try_into().expect("one slice per tensor");
    Ok(f(slices))
}

/// The f32 data of a contiguous CPU tensor, for the custom ops' kernels; `op` and `what` name
/// the operation and the argument in the error.
pub(crate) fn contiguous_f32<'a>(
    s: &'a candle_core::CpuStorage,
    l: &candle_core::Layout,
    op: &str,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    use candle_core::backend::BackendStorage;
    let data = match s {
        candle_core::CpuStorage::F32(d) => d.as_slice(),
        _ => candle_core::bail!("{op}: {what} must be f32, got {:?}", s.dtype()),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op}: {what} must be contiguous"),
    }
}
