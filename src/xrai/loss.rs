//! The symmetric loss (equation 4) generalised to K heads trained winner-takes-all, and the
//! pose-uniformity penalty.

use candle_core::{CpuStorage, CustomOp3, Device, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::{contiguous_f32, with_f32};

pub use super::config::{DataLoss, PatternScale};

/// How a predicted slice becomes the expected image it is scored against: the data term, the
/// pattern's scale and the background.
#[derive(Clone, Debug)]
pub struct DataModel {
    pub loss: DataLoss,
    pub scale: PatternScale,
    /// Known expected background per pixel `[P]` of the working image (photons, the loss's
    /// pixels only; None: none): the expected image is φ·(amplitude²) + b.
    pub background: Option<Tensor>,
}

impl DataModel {
    /// The data term alone: one shared scale, no background (the paper's setting).
    pub fn plain(loss: DataLoss) -> DataModel {
        DataModel {
            loss,
            scale: PatternScale::Fixed,
            background: None,
        }
    }
}

/// Per image, head and branch: the data term averaged over pixels, divided by `norm` (the mean
/// squared target amplitude, i.e. the mean intensity per pixel, so the term is a relative error
/// of order 1). `pred`: `[B, K, P]` amplitudes for branch 0; `pred_pi`: `[B, K, P]` for branch 1
/// (the same tensor in the cheap form); `target`, `target_pi`: `[B, P]` amplitudes. Returns
/// `[B, K, 2]`. The predictions become expected images by `model` ([`expected_intensity`]).
pub fn branch_errors(
    pred: &Tensor,
    pred_pi: &Tensor,
    target: &Tensor,
    target_pi: &Tensor,
    norm: f64,
    model: &DataModel,
) -> Result<Tensor> {
    let plain = model.scale == PatternScale::Fixed && model.background.is_none();
    if plain && model.loss == DataLoss::Mse && pred.id() == pred_pi.id() && pred.device().is_cpu() {
        // the cheap π branch on CPU: both squared errors in one pass
        return pred
            .contiguous()?
            .apply_op3(&target.contiguous()?, &target_pi.contiguous()?, MseBranches)?
            / norm;
    }
    let term = |p: &Tensor, t: &Tensor| -> Result<Tensor> {
        let t = t.unsqueeze(1)?;
        match (model.loss, &model.background) {
            (DataLoss::Mse, None) => {
                let p = if plain {
                    p.clone()
                } else {
                    fit_scale(p, &t, DataLoss::Mse)?
                };
                p.broadcast_sub(&t)?.sqr()?.mean(D::Minus1)
            }
            (DataLoss::Mse, Some(_)) => (expected_intensity(p, &t, model)? + 1e-12)?
                .sqrt()?
                .broadcast_sub(&t)?
                .sqr()?
                .mean(D::Minus1),
            (DataLoss::Poisson, _) => poisson_deviance(&expected_intensity(p, &t, model)?, &t.sqr()?),
        }
    };
    let e0 = term(pred, target)?;
    let e1 = term(pred_pi, target_pi)?;
    Tensor::stack(&[e0, e1], D::Minus1)? / norm
}

/// The expected image λ `[B, K, P]` of predicted amplitudes `pred` `[B, K, P]` against target
/// amplitudes `[B, 1, P]`: φ·pred² + b. φ is 1 with a fixed scale; fitted, it is Σk / Σpred²
/// without a background ([`fit_scale`]'s maximum), and with one the moment estimate
/// (Σk − Σb) / Σpred², floored at 5 % of Σk / Σpred² (the likelihood's maximum has no closed
/// form then; the two agree in expectation). The scale stays in the graph.
pub fn expected_intensity(pred: &Tensor, target: &Tensor, model: &DataModel) -> Result<Tensor> {
    let Some(b) = &model.background else {
        let p = match model.scale {
            PatternScale::Fixed => pred.clone(),
            PatternScale::Fit => fit_scale(pred, target, DataLoss::Poisson)?,
        };
        return p.sqr();
    };
    let lam = pred.sqr()?;
    let lam = match model.scale {
        PatternScale::Fixed => lam,
        PatternScale::Fit => {
            let k = target.sqr()?.sum_keepdim(D::Minus1)?; // [B, 1, 1]
            let signal = k
                .affine(1.0, -b.sum_all()?.to_scalar::<f32>()? as f64)?
                .maximum(&(&k * 0.05)?)?;
            let total = (lam.sum_keepdim(D::Minus1)? + 1e-12)?; // [B, K, 1]
            lam.broadcast_mul(&signal.broadcast_div(&total)?)?
        }
    };
    lam.broadcast_add(b)
}

/// Predicted amplitudes `[B, K, P]` times each one's maximum-likelihood pattern scale against
/// its target amplitudes `[B, 1, P]`, the scale kept in the graph (a profile likelihood: its
/// gradient is the scale-free one). Poisson: the intensity scale φ̂ = Σk / Σλ (k = t², λ = p²;
/// the stationary point of Σ φλ − k ln φλ), so the amplitudes are multiplied by √φ̂. Squared
/// error: the least-squares amplitude factor Σ p t / Σ p². Pixels outside the loss are zero in
/// both and add nothing to the sums.
pub fn fit_scale(pred: &Tensor, target: &Tensor, kind: DataLoss) -> Result<Tensor> {
    const EPS: f64 = 1e-12;
    let factor = match kind {
        DataLoss::Poisson => {
            let k = target.sqr()?.sum_keepdim(D::Minus1)?; // [B, 1, 1]
            let lam = (pred.sqr()?.sum_keepdim(D::Minus1)? + EPS)?; // [B, K, 1]
            k.broadcast_div(&lam)?.sqrt()?
        }
        DataLoss::Mse => {
            let pt = pred.broadcast_mul(target)?.sum_keepdim(D::Minus1)?;
            let pp = (pred.sqr()?.sum_keepdim(D::Minus1)? + EPS)?;
            (pt / pp)?
        }
    };
    pred.broadcast_mul(&factor)
}

/// `(pred [B, K, P], target [B, P], target_pi [B, P])` → `[B, K, 2]`: the mean squared error
/// of each head's prediction against the image and against its π rotation, as one op (the
/// tensor-op form made six `[B, K, P]` temporaries per step and as many in backward).
/// Backward: ∂/∂pred = 2/P [g₀ (pred − t) + g₁ (pred − t_π)]; the targets are data.
#[derive(Clone, Copy, Debug)]
struct MseBranches;

impl CustomOp3 for MseBranches {
    fn name(&self) -> &'static str {
        "mse-branches"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, k, p) = match l1.dims() {
            &[b, k, p] => (b, k, p),
            d => candle_core::bail!("mse branches: predictions must be [B, K, P], got {d:?}"),
        };
        if l2.dims() != [b, p] || l3.dims() != [b, p] {
            candle_core::bail!(
                "mse branches: targets must be [{b}, {p}], got {:?} and {:?}",
                l2.dims(),
                l3.dims()
            );
        }
        let pred = contiguous_f32(s1, l1, "mse branches", "predictions")?;
        let t = contiguous_f32(s2, l2, "mse branches", "target")?;
        let tp = contiguous_f32(s3, l3, "mse branches", "π target")?;
        let mut out = vec![0f32; b * k * 2];
        out.par_chunks_mut(2)
            .zip(pred.par_chunks(p))
            .enumerate()
            .for_each(|(row, (o, pr))| {
                let img = row / k;
                let (t, tp) = (&t[img * p..][..p], &tp[img * p..][..p]);
                let (mut e0, mut e1) = (0f32, 0f32);
                for ((&x, &a), &c) in pr.iter().zip(t).zip(tp) {
                    e0 += (x - a) * (x - a);
                    e1 += (x - c) * (x - c);
                }
                o[0] = e0 / p as f32;
                o[1] = e1 / p as f32;
            });
        Ok((CpuStorage::F32(out), Shape::from((b, k, 2))))
    }

    fn bwd(
        &self,
        pred: &Tensor,
        target: &Tensor,
        target_pi: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, k, p) = pred.dims3()?;
        let mut dp = vec![0f32; b * k * p];
        with_f32(
            "mse branches backward",
            [pred, target, target_pi, grad],
            |[pr, t, tp, g]| {
                dp.par_chunks_mut(p)
                    .zip(pr.par_chunks(p))
                    .enumerate()
                    .for_each(|(row, (d, pr))| {
                        let img = row / k;
                        let (t, tp) = (&t[img * p..][..p], &tp[img * p..][..p]);
                        let (g0, g1) = (2.0 * g[2 * row] / p as f32, 2.0 * g[2 * row + 1] / p as f32);
                        for (((d, &x), &a), &c) in d.iter_mut().zip(pr).zip(t).zip(tp) {
                            *d = g0 * (x - a) + g1 * (x - c);
                        }
                    })
            },
        )?;
        Ok((Some(Tensor::from_vec(dp, (b, k, p), pred.device())?), None, None))
    }
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
            let (arg, _) = row
                .iter()
                .enumerate()
                .fold((0, f32::INFINITY), |acc, (j, &v)| if v < acc.1 { (j, v) } else { acc });
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
