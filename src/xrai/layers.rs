//! The encoder's other per-block layers as Candle custom ops with their own backward: batch
//! normalisation (training mode) and a fused ReLU + 2×2 max pool.
//!
//! Why: after the convolutions moved to [`super::conv`], Candle's batch norm (transposes and
//! strided reductions, ~46 ms forward + backward per step over the four blocks) and max-pool
//! backward (~14 ms) were most of an encoder step. Here each is one pass over the data per
//! direction. (Candle 0.11's max-pool backward also scales the gradient at each window's
//! maximum by 1/4 — measured on one 2×2 window: [0, 0, 0, 0.25] instead of [0, 0, 0, 1] — so
//! the encoder trained through it saw early-layer gradients shrunk by 4 per block.) ReLU and max pool commute (max(relu(a), relu(b)) = relu(max(a, b))), so the
//! fused op pools first and clamps once.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor, Var};
use candle_nn::{Init, VarBuilder};

use rayon::prelude::*;

use super::{contiguous_f32, with_f32};

fn dims4(l: &Layout, op: &str) -> Result<[usize; 4]> {
    match l.dims() {
        &[b, c, h, w] => Ok([b, c, h, w]),
        d => candle_core::bail!("{op}: expected [B, C, H, W], got {d:?}"),
    }
}

/// Per-channel mean and biased variance of `x` `[B, C, H, W]` (f64 accumulation).
fn channel_stats(x: &[f32], [b, c, h, w]: [usize; 4]) -> (Vec<f32>, Vec<f32>) {
    let hw = h * w;
    let n = (b * hw) as f64;
    let mut mean = vec![0f32; c];
    let mut var = vec![0f32; c];
    for ch in 0..c {
        let (mut s1, mut s2) = (0f64, 0f64);
        for img in 0..b {
            for &v in &x[(img * c + ch) * hw..][..hw] {
                s1 += v as f64;
                s2 += (v as f64) * (v as f64);
            }
        }
        let m = s1 / n;
        mean[ch] = m as f32;
        var[ch] = (s2 / n - m * m).max(0.0) as f32;
    }
    (mean, var)
}

/// Training-mode batch normalisation `(x [B, C, H, W], γ [C], β [C])` → `γ x̂ + β`, x̂ = (x − μ_c)
/// / √(σ²_c + ε) with the batch statistics; records (μ, σ²) for the running averages.
#[derive(Clone, Debug)]
struct BatchNormTrain {
    eps: f64,
    stats: Arc<Mutex<Option<(Vec<f32>, Vec<f32>)>>>,
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "batch-norm-train"
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
        let d = dims4(l1, "batch norm")?;
        let [b, c, h, w] = d;
        let x = contiguous_f32(s1, l1, "batch norm", "x")?;
        let gamma = contiguous_f32(s2, l2, "batch norm", "weight")?;
        let beta = contiguous_f32(s3, l3, "batch norm", "bias")?;
        if gamma.len() != c || beta.len() != c {
            candle_core::bail!(
                "batch norm: {c} channels but weight {} and bias {}",
                gamma.len(),
                beta.len()
            );
        }
        let (mean, var) = channel_stats(x, d);
        let hw = h * w;
        let mut y = vec![0f32; x.len()];
        for img in 0..b {
            for ch in 0..c {
                let inv = 1.0 / (var[ch] as f64 + self.eps).sqrt() as f32;
                let (scale, shift) = (gamma[ch] * inv, beta[ch] - gamma[ch] * inv * mean[ch]);
                let o = (img * c + ch) * hw;
                for (yv, &xv) in y[o..o + hw].iter_mut().zip(&x[o..o + hw]) {
                    *yv = xv * scale + shift;
                }
            }
        }
        *self.stats.lock().unwrap() = Some((mean, var));
        Ok((CpuStorage::F32(y), Shape::from_dims(&d)))
    }

    /// dγ = Σ dy·x̂, dβ = Σ dy, dx = γ/(σ N) · (N dy − Σ dy − x̂ Σ dy·x̂), sums over (B, H, W).
    /// The batch statistics are the forward pass's; the sums run in parallel over channels and
    /// dx over (image, channel) planes.
    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, c, h, w) = x.dims4()?;
        let hw = h * w;
        let n = (b * hw) as f64;
        let gs = gamma.to_vec1::<f32>()?;
        let cached = self.stats.lock().unwrap().clone();
        let (dx, dgamma, dbeta) = with_f32("batch norm backward", [x, grad], |[xs, dy]| {
            let (mean, var) = cached.unwrap_or_else(|| channel_stats(xs, [b, c, h, w]));
            let inv: Vec<f32> = var
                .iter()
                .map(|v| (1.0 / (*v as f64 + self.eps).sqrt()) as f32)
                .collect();
            // per channel: (Σ dy, Σ dy·x̂), f32 within a plane, f64 across planes
            let sums: Vec<(f64, f64)> = (0..c)
                .into_par_iter()
                .map(|ch| {
                    let (mut s1, mut s2) = (0f64, 0f64);
                    for img in 0..b {
                        let o = (img * c + ch) * hw;
                        let (mut p1, mut p2) = (0f32, 0f32);
                        for (&d, &xv) in dy[o..o + hw].iter().zip(&xs[o..o + hw]) {
                            p1 += d;
                            p2 += d * (xv - mean[ch]);
                        }
                        s1 += p1 as f64;
                        s2 += p2 as f64 * inv[ch] as f64;
                    }
                    (s1, s2)
                })
                .collect();
            let mut dx = vec![0f32; xs.len()];
            dx.par_chunks_mut(hw).enumerate().for_each(|(plane, out)| {
                let ch = plane % c;
                let (sum_dy, sum_dy_xhat) = sums[ch];
                let k1 = (gs[ch] as f64 * inv[ch] as f64 / n) as f32;
                let (nf, sdy) = (n as f32, sum_dy as f32);
                let coef = (sum_dy_xhat as f32) * inv[ch];
                let o = plane * hw;
                for ((d, &g), &xv) in out.iter_mut().zip(&dy[o..o + hw]).zip(&xs[o..o + hw]) {
                    *d = k1 * (nf * g - sdy - (xv - mean[ch]) * coef);
                }
            });
            let dgamma = sums.iter().map(|s| s.1 as f32).collect::<Vec<_>>();
            let dbeta = sums.iter().map(|s| s.0 as f32).collect::<Vec<_>>();
            (dx, dgamma, dbeta)
        })?;
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, (b, c, h, w), dev)?),
            Some(Tensor::from_vec(dgamma, c, dev)?),
            Some(Tensor::from_vec(dbeta, c, dev)?),
        ))
    }
}

/// Batch normalisation over (B, H, W) per channel, with running statistics for evaluation
/// (the variable names and update rule of `candle_nn::BatchNorm`, so checkpoints carry over:
/// running ← (1 − m) running + m · batch, the variance unbiased, m = 0.1).
pub struct BatchNorm2d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
}

impl BatchNorm2d {
    pub fn new(channels: usize, eps: f64, vb: VarBuilder) -> Result<BatchNorm2d> {
        let running_mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?;
        let running_var = vb.get_with_hints(channels, "running_var", Init::Const(1.0))?;
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        Ok(BatchNorm2d {
            weight,
            bias,
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
            eps,
            momentum: 0.1,
        })
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let c = x.dim(1)?;
        if !train && x.device().is_cpu() {
            // evaluation on CPU: one affine pass per channel with the running statistics
            let (b, _, h, w) = x.dims4()?;
            let hw = h * w;
            let rm = self.running_mean.as_tensor().to_vec1::<f32>()?;
            let rv = self.running_var.as_tensor().to_vec1::<f32>()?;
            let g = self.weight.to_vec1::<f32>()?;
            let be = self.bias.to_vec1::<f32>()?;
            let mut y = x.flatten_all()?.to_vec1::<f32>()?;
            for img in 0..b {
                for ch in 0..c {
                    let scale = g[ch] / (rv[ch] as f64 + self.eps).sqrt() as f32;
                    let shift = be[ch] - scale * rm[ch];
                    y[(img * c + ch) * hw..][..hw]
                        .iter_mut()
                        .for_each(|v| *v = *v * scale + shift);
                }
            }
            return Tensor::from_vec(y, (b, c, h, w), x.device());
        }
        if !train || !x.device().is_cpu() {
            let shape = (1, c, 1, 1);
            let (mean, var) = if train {
                // non-CPU devices: batch statistics with tensor ops
                let mean = x.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
                let var = x
                    .broadcast_sub(&mean)?
                    .sqr()?
                    .mean_keepdim(0)?
                    .mean_keepdim(2)?
                    .mean_keepdim(3)?;
                (mean, var)
            } else {
                (
                    self.running_mean.as_detached_tensor().reshape(shape)?,
                    self.running_var.as_detached_tensor().reshape(shape)?,
                )
            };
            let xhat = x.broadcast_sub(&mean)?.broadcast_div(&(var + self.eps)?.sqrt()?)?;
            return xhat
                .broadcast_mul(&self.weight.reshape(shape)?)?
                .broadcast_add(&self.bias.reshape(shape)?);
        }
        let op = BatchNormTrain {
            eps: self.eps,
            stats: Arc::new(Mutex::new(None)),
        };
        let y = x.contiguous()?.apply_op3(&self.weight, &self.bias, op.clone())?;
        if let Some((mean, var)) = op.stats.lock().unwrap().clone() {
            let (b, _, h, w) = x.dims4()?;
            let n = (b * h * w) as f64;
            let unbias = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
            let m = self.momentum;
            let rm = self.running_mean.as_tensor().to_vec1::<f32>()?;
            let rv = self.running_var.as_tensor().to_vec1::<f32>()?;
            let new_mean: Vec<f32> = rm
                .iter()
                .zip(&mean)
                .map(|(r, b)| ((1.0 - m) * *r as f64 + m * *b as f64) as f32)
                .collect();
            let new_var: Vec<f32> = rv
                .iter()
                .zip(&var)
                .map(|(r, b)| ((1.0 - m) * *r as f64 + m * unbias * *b as f64) as f32)
                .collect();
            self.running_mean.set(&Tensor::from_vec(new_mean, c, x.device())?)?;
            self.running_var.set(&Tensor::from_vec(new_var, c, x.device())?)?;
        }
        Ok(y)
    }
}

/// ReLU then 2×2 max pool (stride 2): `[B, C, H, W]` → `[B, C, H/2, W/2]` (H, W even).
/// The forward pass records each window's winner (0–3 in row-major order, 4 when the window's
/// maximum is ≤ 0 and ReLU stops the gradient), so backward is a plain scatter instead of a
/// second, branchy search (the search was ~4 % of a training step).
#[derive(Clone, Debug, Default)]
pub struct ReluMaxPool2 {
    winners: Arc<Mutex<Option<Vec<u8>>>>,
}

impl CustomOp1 for ReluMaxPool2 {
    fn name(&self) -> &'static str {
        "relu-max-pool-2x2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let [b, c, h, w] = dims4(l, "relu max pool")?;
        if h % 2 != 0 || w % 2 != 0 {
            candle_core::bail!("relu max pool: H and W must be even, got {h}×{w}");
        }
        let x = contiguous_f32(s, l, "relu max pool", "x")?;
        let (ho, wo) = (h / 2, w / 2);
        let mut y = vec![0f32; b * c * ho * wo];
        let mut win = vec![0u8; y.len()];
        y.par_chunks_mut(ho * wo)
            .zip(win.par_chunks_mut(ho * wo))
            .zip(x.par_chunks(h * w))
            .for_each(|((out, wn), plane)| {
                for i in 0..ho {
                    let (r0, r1) = (&plane[2 * i * w..][..w], &plane[(2 * i + 1) * w..][..w]);
                    for j in 0..wo {
                        // the first maximum in row-major order (strict >), as in the gradient rule
                        let (mut m, mut k) = (r0[2 * j], 0u8);
                        if r0[2 * j + 1] > m {
                            (m, k) = (r0[2 * j + 1], 1);
                        }
                        if r1[2 * j] > m {
                            (m, k) = (r1[2 * j], 2);
                        }
                        if r1[2 * j + 1] > m {
                            (m, k) = (r1[2 * j + 1], 3);
                        }
                        out[i * wo + j] = m.max(0.0);
                        wn[i * wo + j] = if m > 0.0 { k } else { 4 };
                    }
                }
            });
        *self.winners.lock().unwrap() = Some(win);
        Ok((CpuStorage::F32(y), Shape::from_dims(&[b, c, ho, wo])))
    }

    /// The gradient goes to the first maximal element of each window, when that maximum is > 0.
    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (b, c, h, w) = x.dims4()?;
        let (ho, wo) = (h / 2, w / 2);
        let winners = self.winners.lock().unwrap();
        let win = match winners.as_deref() {
            Some(v) if v.len() == b * c * ho * wo => v,
            _ => candle_core::bail!("relu max pool: backward without its forward pass"),
        };
        let mut dx = vec![0f32; b * c * h * w];
        with_f32("relu max pool backward", [grad], |[gs]| {
            dx.par_chunks_mut(h * w)
                .zip(win.par_chunks(ho * wo))
                .zip(gs.par_chunks(ho * wo))
                .for_each(|((d, wn), g)| {
                    for i in 0..ho {
                        for j in 0..wo {
                            let k = wn[i * wo + j] as usize;
                            if k < 4 {
                                d[(2 * i + k / 2) * w + 2 * j + k % 2] = g[i * wo + j];
                            }
                        }
                    }
                })
        })?;
        Ok(Some(Tensor::from_vec(dx, (b, c, h, w), x.device())?))
    }
}

/// `max_pool2d(relu(x), 2)`: the custom op on CPU, Candle's ops elsewhere.
pub fn relu_max_pool2(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return x.relu()?.max_pool2d(2);
    }
    x.contiguous()?.apply_op1(ReluMaxPool2::default())
}
