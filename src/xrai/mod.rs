//! X-RAI: amortized pose inference with a physics-based decoder (paper section 2.2).
//!
//! An encoder CNN maps each amplitude image to K pose hypotheses (6D → rotation, Zhou et al.
//! 2019); a decoder samples a learned Fourier-amplitude volume at the rotated Ewald
//! coordinates R̂ s_p (a trilinear custom op with its own backward); the loss compares the
//! prediction with the image and with its in-plane π rotation (equation 4), generalised to a
//! winner-takes-all minimum over heads (cryoSPIN), plus a pose-uniformity penalty.
//!
//! One file per concept: [`config`], [`encoder`], [`decoder`], [`loss`], [`optim`], [`train`].

pub mod config;
pub mod conv;
pub mod decoder;
pub mod encoder;
pub mod layers;
pub mod loss;
pub mod optim;
pub mod train;

pub use config::{SymmetricBranch, XraiConfig};
pub use decoder::{Decoder, Trilinear};
pub use encoder::{sixd_to_rotation, Encoder};
pub use train::{Trainer, WorkingGeometry};

/// Candle's CPU thread pool waits on spinning barriers between ops; with the small ops of this
/// network on a shared 2-core machine the spinning cost 4× per training step (measured:
/// 0.64 s → 0.16 s per step). Unless the user set `CANDLE_NUM_THREADS`, use one candle
/// thread (rayon, used by the trilinear op and the simulator, keeps its threads).
/// Call before the first tensor operation.
pub fn default_cpu_threads() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
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
