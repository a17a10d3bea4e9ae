//! A 3×3, stride-1, zero-padding-1, bias-free 2-D convolution (the encoder's only convolution)
//! as a Candle custom op with its own backward, computed as im2col + GEMM (`matrixmultiply`).
//!
//! Why: Candle's CPU `conv2d` backward (a `conv_transpose2d` for the input and a convolution
//! for the kernel) is ~4× its forward, which made an encoder training step about twice as
//! slow as PyTorch's on one thread. Here every pass is one GEMM per chunk of images, with the
//! im2col matrix of a chunk small enough to stay in cache (it is recomputed in the backward
//! rather than stored). With `N` = images-in-chunk · H · W columns:
//! - forward:  `Y[O, N]       = W[O, C·9] · cols[C·9, N]`
//! - grad w:   `dW[O, C·9]   += dY[O, N] · colsᵀ[N, C·9]` (accumulated over chunks)
//! - grad x:   `dcols[C·9, N] = Wᵀ[C·9, O] · dY[O, N]`, then col2im (the nine shifted
//!   contributions summed back into `[C, H, W]`).
//!
//! where `cols[c·9 + 3·ky + kx][h·W + w] = x[c][h + ky − 1][w + kx − 1]` (0 outside). Chunks
//! of images run in parallel on rayon's pool when it has several threads, else on the calling
//! thread.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::contiguous_f32;
use crate::gemm::gemm;

/// Target number of GEMM columns (images × H × W) per chunk. Small chunks keep the im2col
/// matrix in L1/L2: on the encoder's shapes (batch 64) 128–512 columns measured alike and
/// 1024 or the whole batch 10–50% slower. Images are not split, so 32² images are one per chunk.
const TARGET_COLS: usize = 256;

/// The convolution as a custom op: `x` `[B, C, H, W]`, `w` `[O, C, 3, 3]` (candle_nn
/// `Conv2d`'s weight layout), both f32 and contiguous → `[B, O, H, W]`. CPU only; use
/// [`conv3x3`], which falls back to Candle's `conv2d` on other devices.
#[derive(Clone, Copy, Debug)]
pub struct Conv3x3;

/// Backward helper (no backward of its own): `(x [B, C, H, W], dY [B, O, H, W])` → `dW [O, C, 3, 3]`.
#[derive(Clone, Copy, Debug)]
pub struct Conv3x3GradW;

/// Backward helper (no backward of its own): `(w [O, C, 3, 3], dY [B, O, H, W])` → `dx [B, C, H, W]`.
#[derive(Clone, Copy, Debug)]
pub struct Conv3x3GradX;

/// `x.conv2d(w, 1, 1, 1, 1)` (padding 1, stride 1, dilation 1, groups 1) for a 3×3 kernel:
/// the custom op on CPU (inputs are made contiguous), Candle's `conv2d` elsewhere.
pub fn conv3x3(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return x.conv2d(w, 1, 1, 1, 1);
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, Conv3x3)
}

fn dims4(l: &Layout, what: &str, expected: &str) -> Result<[usize; 4]> {
    match *l.dims() {
        [a, b, c, d] => Ok([a, b, c, d]),
        ref other => candle_core::bail!("conv3x3: {what} must be {expected}, got {other:?}"),
    }
}

/// Checks a `[O, C, 3, 3]` weight against `c` input channels; returns `O`.
fn weight_dims(l: &Layout, c: Option<usize>) -> Result<(usize, usize)> {
    let [o, wc, kh, kw] = dims4(l, "weight", "[O, C, 3, 3]")?;
    if kh != 3 || kw != 3 {
        candle_core::bail!("conv3x3: kernel must be 3×3, got weight {:?}", l.dims());
    }
    if let Some(c) = c {
        if wc != c {
            candle_core::bail!(
                "conv3x3: weight has {wc} input channels, x has {c} (weight {:?})",
                l.dims()
            );
        }
    }
    Ok((o, wc))
}

/// Images per chunk for `b` images of `hw` pixels: about [`TARGET_COLS`] columns, and at least
/// as many chunks as rayon threads.
fn chunk_images(b: usize, hw: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    (TARGET_COLS / hw).max(1).min(b.div_ceil(threads)).max(1)
}

/// im2col of one image `x [C, H, W]` into the columns `off .. off + H·W` of `cols`
/// (`[C·9, ld]`, row-major): `cols[c·9 + 3·ky + kx][off + h·W + w] = x[c][h+ky−1][w+kx−1]`.
fn im2col(x: &[f32], c: usize, h: usize, w: usize, cols: &mut [f32], ld: usize, off: usize) {
    let hw = h * w;
    for ci in 0..c {
        let src = &x[ci * hw..(ci + 1) * hw];
        for ky in 0..3 {
            for kx in 0..3 {
                let r = ci * 9 + ky * 3 + kx;
                let dst = &mut cols[r * ld + off..r * ld + off + hw];
                for yy in 0..h {
                    let d = &mut dst[yy * w..(yy + 1) * w];
                    let sy = yy + ky;
                    if sy < 1 || sy > h {
                        d.fill(0.0);
                        continue;
                    }
                    let s = &src[(sy - 1) * w..sy * w];
                    match kx {
                        0 => {
                            d[0] = 0.0;
                            d[1..].copy_from_slice(&s[..w - 1]);
                        }
                        1 => d.copy_from_slice(s),
                        _ => {
                            d[..w - 1].copy_from_slice(&s[1..]);
                            d[w - 1] = 0.0;
                        }
                    }
                }
            }
        }
    }
}

/// col2im of columns `off .. off + H·W` of `dcols` (`[C·9, ld]`) accumulated into one image
/// `dx [C, H, W]` (which must start zeroed): the adjoint of [`im2col`].
fn col2im(dcols: &[f32], ld: usize, off: usize, c: usize, h: usize, w: usize, dx: &mut [f32]) {
    let hw = h * w;
    for ci in 0..c {
        let dst = &mut dx[ci * hw..(ci + 1) * hw];
        for ky in 0..3 {
            for kx in 0..3 {
                let r = ci * 9 + ky * 3 + kx;
                let src = &dcols[r * ld + off..r * ld + off + hw];
                for yy in 0..h {
                    let sy = yy + ky;
                    if sy < 1 || sy > h {
                        continue;
                    }
                    let s = &src[yy * w..(yy + 1) * w];
                    let d = &mut dst[(sy - 1) * w..sy * w];
                    match kx {
                        0 => d[..w - 1].iter_mut().zip(&s[1..]).for_each(|(a, b)| *a += b),
                        1 => d.iter_mut().zip(s).for_each(|(a, b)| *a += b),
                        _ => d[1..].iter_mut().zip(&s[..w - 1]).for_each(|(a, b)| *a += b),
                    }
                }
            }
        }
    }
}

/// Gathers `dY` of `g` images (`[g, O, HW]`) into `[O, g·HW]`.
fn gather_dy(dy: &[f32], g: usize, o: usize, hw: usize, out: &mut [f32]) {
    let n = g * hw;
    for gi in 0..g {
        for oi in 0..o {
            out[oi * n + gi * hw..oi * n + (gi + 1) * hw]
                .copy_from_slice(&dy[(gi * o + oi) * hw..(gi * o + oi + 1) * hw]);
        }
    }
}

/// Per-thread scratch buffers of a chunk: the (d)cols matrix and a `[O, n]` staging matrix.
type Scratch = (Vec<f32>, Vec<f32>);

/// Calls `f(scratch, out chunk, in chunk)` on matching chunks of `out` and `inp`: on rayon's
/// pool when it has several threads, else on the calling thread (no hand-off to a worker).
fn for_chunks<F>(out: &mut [f32], out_chunk: usize, inp: &[f32], in_chunk: usize, f: F)
where
    F: Fn(&mut Scratch, &mut [f32], &[f32]) + Sync,
{
    if rayon::current_num_threads() > 1 {
        out.par_chunks_mut(out_chunk)
            .zip(inp.par_chunks(in_chunk))
            .for_each_init(Scratch::default, |s, (o, i)| f(s, o, i));
    } else {
        let mut s = Scratch::default();
        out.chunks_mut(out_chunk)
            .zip(inp.chunks(in_chunk))
            .for_each(|(o, i)| f(&mut s, o, i));
    }
}

/// Forward on slices: `x [B, C, H, W]`, `w [O, C·9]` → `y [B, O, H, W]` (all dims nonzero).
#[allow(clippy::too_many_arguments)]
pub fn conv3x3_forward(x: &[f32], w: &[f32], b: usize, c: usize, h: usize, wd: usize, o: usize, y: &mut [f32]) {
    let hw = h * wd;
    let (c9, g) = (c * 9, chunk_images(b, hw));
    for_chunks(y, g * o * hw, x, g * c * hw, |(cols, tmp), yc, xc| {
        let gi_n = xc.len() / (c * hw);
        let n = gi_n * hw;
        cols.resize(c9 * n, 0.0);
        for gi in 0..gi_n {
            im2col(&xc[gi * c * hw..(gi + 1) * c * hw], c, h, wd, cols, n, gi * hw);
        }
        // Y[O, n] = W[O, C·9] · cols[C·9, n], straight into the output for one image
        if gi_n == 1 {
            gemm(o, c9, n, 1.0, w, (c9, 1), cols, (n, 1), 0.0, yc, (n, 1));
        } else {
            tmp.resize(o * n, 0.0);
            gemm(o, c9, n, 1.0, w, (c9, 1), cols, (n, 1), 0.0, tmp, (n, 1));
            for gi in 0..gi_n {
                for oi in 0..o {
                    yc[(gi * o + oi) * hw..(gi * o + oi + 1) * hw]
                        .copy_from_slice(&tmp[oi * n + gi * hw..oi * n + (gi + 1) * hw]);
                }
            }
        }
    });
}

/// One chunk's contribution to the weight gradient: `gw[O, C·9] += dY[O, n] · colsᵀ[n, C·9]`.
#[allow(clippy::too_many_arguments)]
fn grad_w_chunk(
    xc: &[f32],
    dc: &[f32],
    c: usize,
    h: usize,
    wd: usize,
    o: usize,
    (cols, dyc): &mut Scratch,
    gw: &mut [f32],
) {
    let hw = h * wd;
    let (c9, gi_n) = (c * 9, xc.len() / (c * hw));
    let n = gi_n * hw;
    cols.resize(c9 * n, 0.0);
    for gi in 0..gi_n {
        im2col(&xc[gi * c * hw..(gi + 1) * c * hw], c, h, wd, cols, n, gi * hw);
    }
    let d: &[f32] = if gi_n == 1 {
        dc
    } else {
        dyc.resize(o * n, 0.0);
        gather_dy(dc, gi_n, o, hw, dyc);
        dyc
    };
    gemm(o, n, c9, 1.0, d, (n, 1), cols, (1, n), 1.0, gw, (c9, 1));
}

/// Weight gradient on slices: `x [B, C, H, W]`, `dy [B, O, H, W]` → `dW [O, C·9]` (all dims
/// nonzero). In parallel, each chunk of images gets its own `dW`, summed in chunk order at the
/// end, so the result does not depend on how rayon happened to split the work (a `fold` per
/// split, as before, grouped chunks differently from run to run and made training
/// irreproducible at a fixed thread count).
#[allow(clippy::too_many_arguments)]
pub fn conv3x3_grad_w(x: &[f32], dy: &[f32], b: usize, c: usize, h: usize, wd: usize, o: usize) -> Vec<f32> {
    let hw = h * wd;
    let (c9, g) = (c * 9, chunk_images(b, hw));
    let (xs, ds) = (g * c * hw, g * o * hw);
    if rayon::current_num_threads() > 1 {
        let parts: Vec<Vec<f32>> = x
            .par_chunks(xs)
            .zip(dy.par_chunks(ds))
            .map_init(Scratch::default, |s, (xc, dc)| {
                let mut gw = vec![0f32; o * c9];
                grad_w_chunk(xc, dc, c, h, wd, o, s, &mut gw);
                gw
            })
            .collect();
        let mut parts = parts.into_iter();
        let mut total = parts.next().unwrap_or_else(|| vec![0f32; o * c9]);
        for q in parts {
            total.iter_mut().zip(&q).for_each(|(a, b)| *a += b);
        }
        total
    } else {
        let (mut gw, mut s) = (vec![0f32; o * c9], Scratch::default());
        for (xc, dc) in x.chunks(xs).zip(dy.chunks(ds)) {
            grad_w_chunk(xc, dc, c, h, wd, o, &mut s, &mut gw);
        }
        gw
    }
}

/// Input gradient on slices: `w [O, C·9]`, `dy [B, O, H, W]` → `dx [B, C, H, W]` (all dims
/// nonzero).
#[allow(clippy::too_many_arguments)]
pub fn conv3x3_grad_x(w: &[f32], dy: &[f32], b: usize, c: usize, h: usize, wd: usize, o: usize, dx: &mut [f32]) {
    let hw = h * wd;
    let (c9, g) = (c * 9, chunk_images(b, hw));
    for_chunks(dx, g * c * hw, dy, g * o * hw, |(dcols, dyc), xc, dc| {
        let gi_n = xc.len() / (c * hw);
        let n = gi_n * hw;
        let d: &[f32] = if gi_n == 1 {
            dc
        } else {
            dyc.resize(o * n, 0.0);
            gather_dy(dc, gi_n, o, hw, dyc);
            dyc
        };
        // dcols[C·9, n] = Wᵀ[C·9, O] · dY[O, n], then col2im
        dcols.resize(c9 * n, 0.0);
        gemm(c9, o, n, 1.0, w, (1, c9), d, (n, 1), 0.0, dcols, (n, 1));
        xc.fill(0.0);
        for gi in 0..gi_n {
            col2im(dcols, n, gi * hw, c, h, wd, &mut xc[gi * c * hw..(gi + 1) * c * hw]);
        }
    });
}

impl CustomOp2 for Conv3x3 {
    fn name(&self) -> &'static str {
        "conv3x3"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let [b, c, h, wd] = dims4(l1, "x", "[B, C, H, W]")?;
        let (o, _) = weight_dims(l2, Some(c))?;
        let x = contiguous_f32(s1, l1, "conv3x3", "x")?;
        let w = contiguous_f32(s2, l2, "conv3x3", "weight")?;
        let mut y = vec![0f32; b * o * h * wd];
        if !y.is_empty() && c > 0 {
            conv3x3_forward(x, w, b, c, h, wd, o, &mut y);
        }
        Ok((CpuStorage::F32(y), Shape::from((b, o, h, wd))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        // Skip the gradient of an input that needs none (e.g. the encoder's data images).
        let gx = if x.track_op() {
            Some(w.apply_op2_no_bwd(&grad, &Conv3x3GradX)?)
        } else {
            None
        };
        let gw = if w.track_op() {
            Some(x.apply_op2_no_bwd(&grad, &Conv3x3GradW)?)
        } else {
            None
        };
        Ok((gx, gw))
    }
}

/// Checks `dY [B, O, H, W]` and returns its dims.
fn grad_dims(l: &Layout, o: Option<usize>) -> Result<[usize; 4]> {
    let d = dims4(l, "output gradient", "[B, O, H, W]")?;
    if let Some(o) = o {
        if d[1] != o {
            candle_core::bail!("conv3x3: output gradient has {} channels, weight has {o}", d[1]);
        }
    }
    Ok(d)
}

impl CustomOp2 for Conv3x3GradW {
    fn name(&self) -> &'static str {
        "conv3x3-grad-w"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let [b, c, h, wd] = dims4(l1, "x", "[B, C, H, W]")?;
        let [gb, o, gh, gwd] = grad_dims(l2, None)?;
        if (gb, gh, gwd) != (b, h, wd) {
            candle_core::bail!(
                "conv3x3: output gradient {:?} does not match x {:?}",
                l2.dims(),
                l1.dims()
            );
        }
        let x = contiguous_f32(s1, l1, "conv3x3", "x")?;
        let dy = contiguous_f32(s2, l2, "conv3x3", "output gradient")?;
        let gw = if b * c * h * wd * o == 0 {
            vec![0f32; o * c * 9]
        } else {
            conv3x3_grad_w(x, dy, b, c, h, wd, o)
        };
        Ok((CpuStorage::F32(gw), Shape::from((o, c, 3, 3))))
    }
}

impl CustomOp2 for Conv3x3GradX {
    fn name(&self) -> &'static str {
        "conv3x3-grad-x"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (o, c) = weight_dims(l1, None)?;
        let [b, _, h, wd] = grad_dims(l2, Some(o))?;
        let w = contiguous_f32(s1, l1, "conv3x3", "weight")?;
        let dy = contiguous_f32(s2, l2, "conv3x3", "output gradient")?;
        let mut dx = vec![0f32; b * c * h * wd];
        if !dx.is_empty() && o > 0 {
            conv3x3_grad_x(w, dy, b, c, h, wd, o, &mut dx);
        }
        Ok((CpuStorage::F32(dx), Shape::from((b, c, h, wd))))
    }
}
