//! The symmetric loss (equation 4) generalised to K heads trained winner-takes-all, and the
//! pose-uniformity penalty.

use candle_core::{Device, Result, Tensor, D};

pub use super::config::DataLoss;

/// Per image, head and branch: the data term averaged over pixels, divided by `norm` (the mean
/// squared target amplitude, i.e. the mean intensity per pixel, so the term is a relative error
/// of order 1). `pred`: `[B, K, P]` amplitudes for branch 0; `pred_pi`: `[B, K, P]` for branch 1
/// (the same tensor in the cheap form); `target`, `target_pi`: `[B, P]` amplitudes. Returns
/// `[B, K, 2]`.
pub fn branch_errors(pred: &Tensor, pred_pi: &Tensor, target: &Tensor, target_pi: &Tensor, norm: f64, kind: DataLoss) -> Result<Tensor> {
    let term = |p: &Tensor, t: &Tensor| -> Result<Tensor> {
        let t = t.unsqueeze(1)?;
        match kind {
            DataLoss::Mse => p.broadcast_sub(&t)?.sqr()?.mean(D::Minus1),
            DataLoss::Poisson => poisson_deviance(&p.sqr()?, &t.sqr()?),
        }
    };
    let e0 = term(pred, target)?;
    let e1 = term(pred_pi, target_pi)?;
    Tensor::stack(&[e0, e1], D::Minus1)? / norm
}

/// Half the Poisson deviance per pixel, averaged over the last axis: λ − k − k ln(λ / k) for
/// expected counts λ (the predicted intensity) and measured counts k (the image), with
/// k ln k → 0 at k = 0. It is the negative log-likelihood −ln P(k | λ) up to a term free of
/// λ, shifted so that a perfect prediction scores 0 (comparable across images and branches).
/// `lambda`: `[B, K, P]`, `counts`: `[B, 1, P]`.
pub fn poisson_deviance(lambda: &Tensor, counts: &Tensor) -> Result<Tensor> {
    const EPS: f64 = 1e-6;
    let lam = (lambda + EPS)?;
    let k = counts.broadcast_as(lam.shape())?;
    let k_log_k = (&k * (&k + EPS)?.log()?)?;
    let d = ((&lam - &k)? - (&k * lam.log()?)?)?.add(&k_log_k)?;
    d.mean(D::Minus1)
}

/// Winner-takes-all symmetric loss: batch mean of the minimum over heads and branches, plus
/// `mean_weight` × the batch mean of the mean over heads of each head's better branch.
/// With K = 1 and `mean_weight` = 0 this is equation 4 (as a batch mean).
pub fn symmetric_multihead(errors: &Tensor, mean_weight: f64) -> Result<Tensor> {
    let per_head = errors.min(D::Minus1)?; // [B, K]
    let best = per_head.min(D::Minus1)?.mean_all()?;
    if mean_weight > 0.0 {
        best + (per_head.mean_all()? * mean_weight)?
    } else {
        Ok(best)
    }
}

/// Index of the winning (head, branch) per image: `errors` `[B, K, 2]` → `(head, branch)`.
pub fn winners(errors: &Tensor) -> Result<Vec<(usize, usize)>> {
    let (b, k, _) = errors.dims3()?;
    let e = errors.flatten_all()?.to_vec1::<f32>()?;
    Ok((0..b)
        .map(|i| {
            let row = &e[i * k * 2..(i + 1) * k * 2];
            let (arg, _) = row.iter().enumerate().fold((0, f32::INFINITY), |acc, (j, &v)| if v < acc.1 { (j, v) } else { acc });
            (arg / 2, arg % 2)
        })
        .collect())
}

/// Pose-uniformity penalty for rotations `[B, K, 3, 3]`: for each head, ‖batch mean of R‖²
/// (uniform poses average to 0) plus Σ_j ‖E[c_j c_jᵀ] − I/3‖² over the columns c_j (each
/// column uniform on the sphere); averaged over heads.
pub fn uniformity(rots: &Tensor) -> Result<Tensor> {
    let (_, k, _, _) = rots.dims4()?;
    let mean = rots.mean(0)?; // [K, 3, 3]
    let mut total = mean.sqr()?.sum_all()?;
    let eye = (Tensor::eye(3, rots.dtype(), &Device::Cpu)?.to_device(rots.device())? / 3.0)?;
    for j in 0..3 {
        let c = rots.narrow(3, j, 1)?.contiguous()?; // [B, K, 3, 1]
        let outer = c.matmul(&c.transpose(2, 3)?.contiguous()?)?; // [B, K, 3, 3]
        let second = outer.mean(0)?.broadcast_sub(&eye)?; // [K, 3, 3]
        total = (total + second.sqr()?.sum_all()?)?;
    }
    total / k as f64
}
