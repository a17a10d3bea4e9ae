//! The physics-based decoder: a learned Fourier-amplitude volume queried at the rotated Ewald
//! coordinates R̂ s_p. Two representations (chosen by `XraiConfig::decoder`):
//! - an explicit M³ voxel grid (Friedel-symmetrised by averaging with its point reflection)
//!   sampled by trilinear interpolation. On CPU the whole slice (rotation R s_p, sampling and
//!   pixel weights) is one custom op, [`RotatedSlice`], with its own backward (the CPU default:
//!   21 ms forward + backward for 512 rotations × 1024 pixels on one thread); [`Trilinear`]
//!   samples explicit coordinates;
//! - cryoAI's FourierNet (the paper's decoder): exp(SIREN envelope) × SIREN modulant of the
//!   frequency, Friedel-symmetrised by averaging s and −s.

use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Result, Shape, Tensor, Var};
use rayon::prelude::*;

use super::{contiguous_f32, with_f32};
use crate::trilinear::{corner_offsets, corner_weights, gradient, Cell};

/// Trilinear sampling of a volume `[M, M, M]` (`[z][y][x]`, f32, contiguous) at coordinates
/// `[.., 3]` = (x, y, z) in voxel units (0 … M−1). Corners outside the grid count as zero
/// ([`Edge::ZeroOutside`](crate::trilinear::Edge::ZeroOutside)). Output: one value per coordinate triple, shape `coords.dims()[..-1]`.
///
/// Backward: the volume gets the scatter of interpolation weights × upstream gradient; the
/// coordinates get the derivative of the trilinear interpolant (what trains the encoder).
#[derive(Clone, Copy, Debug)]
pub struct Trilinear;

/// One sample: Σ w_c v_c over the cell's corners, corners outside the grid counting as zero
/// (factorised weights for a cell fully inside, the common case).
#[inline(always)]
fn sample_one(vol: &[f32], m: usize, p: [f32; 3]) -> f32 {
    Cell::zero_outside(p).interpolate_factorised(vol, m)
}

/// Forward on plain slices (also used by tests and benches).
pub fn trilinear_forward(vol: &[f32], m: usize, coords: &[f32], out: &mut [f32]) {
    let work = |(o, c): (&mut f32, &[f32])| *o = sample_one(vol, m, [c[0], c[1], c[2]]);
    if out.len() >= 16384 {
        out.par_iter_mut()
            .zip(coords.par_chunks_exact(3))
            .with_min_len(4096)
            .for_each(work);
    } else {
        out.iter_mut().zip(coords.chunks_exact(3)).for_each(work);
    }
}

/// Samples per backward work unit. Fixed (not per thread) so that the volume gradient, a sum
/// of per-unit partial grids taken in order, is bit-identical whatever the thread count.
const BACKWARD_CHUNK: usize = 1 << 17;

/// Backward of one sample with upstream gradient g: adds g × weights into `part` (the volume
/// gradient) and returns (∇V at p × g, the interpolated value).
#[inline(always)]
fn sample_backward(vol: &[f32], m: usize, p: [f32; 3], g: f32, part: &mut [f32]) -> ([f32; 3], f32) {
    let cell = Cell::zero_outside(p);
    if let Some(i0) = cell.interior(m) {
        let f = cell.frac;
        let off = corner_offsets(m);
        let v = &vol[i0..=i0 + off[7]];
        let v: [f32; 8] = std::array::from_fn(|k| v[off[k]]);
        let [dx, dy, dz] = gradient(v, f);
        let w = corner_weights(f);
        if g != 0.0 {
            let dst = &mut part[i0..=i0 + off[7]];
            for k in 0..8 {
                dst[off[k]] += w[k] * g;
            }
        }
        let value = (0..8).map(|k| w[k] * v[k]).sum();
        return ([dx * g, dy * g, dz * g], value);
    }
    let mut dv = [0f32; 3];
    let mut value = 0f32;
    cell.corners(m, |idx, w, dw| {
        if let Some(i) = idx {
            let v = vol[i];
            dv[0] += v * dw[0];
            dv[1] += v * dw[1];
            dv[2] += v * dw[2];
            value += w * v;
            part[i] += w * g;
        }
    });
    ([dv[0] * g, dv[1] * g, dv[2] * g], value)
}

/// Backward on plain slices: returns (d loss / d volume, d loss / d coords). One pass per
/// sample does both: the coordinate gradient (the interpolant's derivative × g) and the
/// scatter of g × weights into a partial volume gradient of its work unit.
pub fn trilinear_backward(vol: &[f32], m: usize, coords: &[f32], grad: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let n = grad.len();
    let mut gc = vec![0f32; n * 3];
    let parts: Vec<Vec<f32>> = gc
        .par_chunks_mut(BACKWARD_CHUNK * 3)
        .zip(coords.par_chunks(BACKWARD_CHUNK * 3))
        .zip(grad.par_chunks(BACKWARD_CHUNK))
        .map(|((gcs, cs), gs)| {
            let mut part = vec![0f32; vol.len()];
            for ((d, c), &g) in gcs.chunks_exact_mut(3).zip(cs.chunks_exact(3)).zip(gs) {
                let (dc, _) = sample_backward(vol, m, [c[0], c[1], c[2]], g, &mut part);
                d.copy_from_slice(&dc);
            }
            part
        })
        .collect();
    (sum_in_order(parts, vol.len()), gc)
}

/// M of a volume `[M, M, M]`.
fn cube_side(l: &Layout, op: &str) -> Result<usize> {
    match l.dims() {
        &[a, b, c] if a == b && b == c => Ok(a),
        d => candle_core::bail!("{op}: volume must be [M, M, M], got {d:?}"),
    }
}

/// Σ of per-work-unit partial volume gradients, added in work-unit order (deterministic).
fn sum_in_order(parts: Vec<Vec<f32>>, len: usize) -> Vec<f32> {
    let mut parts = parts.into_iter();
    let mut total = parts.next().unwrap_or_else(|| vec![0f32; len]);
    for q in parts {
        total.iter_mut().zip(&q).for_each(|(a, b)| *a += b);
    }
    total
}

impl CustomOp2 for Trilinear {
    fn name(&self) -> &'static str {
        "trilinear"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let m = cube_side(l1, "trilinear")?;
        let cd = l2.dims();
        if cd.last() != Some(&3) {
            candle_core::bail!("trilinear: coordinates must be [.., 3], got {cd:?}");
        }
        let vol = contiguous_f32(s1, l1, "trilinear", "volume")?;
        let coords = contiguous_f32(s2, l2, "trilinear", "coordinates")?;
        let mut out = vec![0f32; coords.len() / 3];
        trilinear_forward(vol, m, coords, &mut out);
        Ok((CpuStorage::F32(out), Shape::from(&cd[..cd.len() - 1])))
    }

    fn bwd(
        &self,
        vol: &Tensor,
        coords: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let m = vol.dim(0)?;
        let (gv, gc) = with_f32("trilinear backward", [vol, coords, grad], |[v, c, g]| {
            trilinear_backward(v, m, c, g)
        })?;
        let gv = Tensor::from_vec(gv, vol.shape(), vol.device())?;
        let gc = Tensor::from_vec(gc, coords.shape(), coords.device())?;
        Ok((Some(gv), Some(gc)))
    }
}

/// The decoder's slice as one op: `(volume [M, M, M], rotations [N, 3, 3])` → `[N, P]`,
/// a[n, p] = w_p · V(R_n s_p + c), with the working pixels' s-vectors s_p in voxel units, the
/// grid centre c and a per-pixel weight w_p held by the op. The same values as
/// [`Decoder::coordinates`] → [`trilinear`] → × w, but the `[N, P, 3]` coordinates never
/// become a tensor: backward goes straight to ∂/∂V (the scatter) and ∂/∂R_n = Σ_p ∇V · g w_p
/// s_pᵀ, which saved the copies and gradient bookkeeping of four `[N, P, 3]` tensors per step.
#[derive(Clone, Debug)]
pub struct RotatedSlice {
    /// s_p in voxel units, `[P][3]`.
    s: std::sync::Arc<Vec<[f32; 3]>>,
    weight: std::sync::Arc<Vec<f32>>,
    centre: f32,
}

/// Rows (rotations) per backward work unit: fixed, so the volume gradient's sum of partial
/// grids is bit-identical whatever the thread count (as in [`trilinear_backward`]).
fn slice_rows_per_unit(p: usize) -> usize {
    (BACKWARD_CHUNK / p.max(1)).max(1)
}

impl RotatedSlice {
    #[inline(always)]
    fn point(&self, r: &[f32], p: usize) -> [f32; 3] {
        let s = self.s[p];
        std::array::from_fn(|i| r[3 * i] * s[0] + r[3 * i + 1] * s[1] + r[3 * i + 2] * s[2] + self.centre)
    }

    /// Forward on plain slices: `rots` `[N × 9]`, `out` `[N × P]`.
    pub fn forward_slices(&self, vol: &[f32], m: usize, rots: &[f32], out: &mut [f32]) {
        let p = self.s.len();
        out.par_chunks_mut(p).zip(rots.par_chunks(9)).for_each(|(row, r)| {
            for (j, o) in row.iter_mut().enumerate() {
                *o = self.weight[j] * sample_one(vol, m, self.point(r, j));
            }
        });
    }

    /// Backward on plain slices: (∂/∂V `[M³]`, ∂/∂R `[N × 9]`).
    pub fn backward_slices(&self, vol: &[f32], m: usize, rots: &[f32], grad: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let p = self.s.len();
        let rows = slice_rows_per_unit(p);
        let mut grot = vec![0f32; rots.len()];
        let parts: Vec<Vec<f32>> = grot
            .par_chunks_mut(rows * 9)
            .zip(rots.par_chunks(rows * 9))
            .zip(grad.par_chunks(rows * p))
            .map(|((gr, rs), gs)| {
                let mut part = vec![0f32; vol.len()];
                for ((gr, r), g) in gr.chunks_exact_mut(9).zip(rs.chunks_exact(9)).zip(gs.chunks_exact(p)) {
                    let mut acc = [0f64; 9];
                    for j in 0..p {
                        let gw = g[j] * self.weight[j];
                        let (gc, _) = sample_backward(vol, m, self.point(r, j), gw, &mut part);
                        let sj = self.s[j];
                        for i in 0..3 {
                            for k in 0..3 {
                                acc[3 * i + k] += (gc[i] * sj[k]) as f64;
                            }
                        }
                    }
                    gr.iter_mut().zip(&acc).for_each(|(d, a)| *d = *a as f32);
                }
                part
            })
            .collect();
        (sum_in_order(parts, vol.len()), grot)
    }
}

impl CustomOp2 for RotatedSlice {
    fn name(&self) -> &'static str {
        "rotated-slice"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let m = cube_side(l1, "rotated slice")?;
        let n = match l2.dims() {
            &[n, 3, 3] => n,
            d => candle_core::bail!("rotated slice: rotations must be [N, 3, 3], got {d:?}"),
        };
        let vol = contiguous_f32(s1, l1, "rotated slice", "volume")?;
        let rots = contiguous_f32(s2, l2, "rotated slice", "rotations")?;
        let mut out = vec![0f32; n * self.s.len()];
        self.forward_slices(vol, m, rots, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((n, self.s.len()))))
    }

    fn bwd(
        &self,
        vol: &Tensor,
        rots: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let m = vol.dim(0)?;
        let (gv, gr) = with_f32("rotated slice backward", [vol, rots, grad], |[v, r, g]| {
            self.backward_slices(v, m, r, g)
        })?;
        Ok((
            Some(Tensor::from_vec(gv, vol.shape(), vol.device())?),
            Some(Tensor::from_vec(gr, rots.shape(), rots.device())?),
        ))
    }
}

/// Trilinear sampling written with Candle primitives (index_select + arithmetic), so autograd
/// derives its backward: the path for non-CPU devices and the reference the custom op is
/// tested against.
pub fn trilinear_generic(vol: &Tensor, coords: &Tensor) -> Result<Tensor> {
    let m = vol.dim(0)?;
    let out_shape: Vec<usize> = coords.dims()[..coords.rank() - 1].to_vec();
    let c = coords.reshape(((), 3))?;
    let flat = vol.flatten_all()?;
    let fl = c.detach().floor()?;
    let fr = (&c - &fl)?;
    let mut acc: Option<Tensor> = None;
    for k in 0..8usize {
        let o = [(k & 1) as f64, ((k >> 1) & 1) as f64, ((k >> 2) & 1) as f64];
        let mut w: Option<Tensor> = None;
        let mut idx: Option<Tensor> = None;
        let mut valid: Option<Tensor> = None;
        for (a, oa) in o.iter().enumerate().rev() {
            let f = fr.narrow(1, a, 1)?.squeeze(1)?;
            let wa = if *oa == 1.0 { f } else { f.affine(-1.0, 1.0)? };
            w = Some(match w {
                None => wa,
                Some(w) => (w * wa)?,
            });
            let ia = (fl.narrow(1, a, 1)?.squeeze(1)? + *oa)?;
            let ok = (ia.ge(0.0)?.to_dtype(DType::F32)? * ia.le((m - 1) as f64)?.to_dtype(DType::F32)?)?;
            valid = Some(match valid {
                None => ok,
                Some(v) => (v * ok)?,
            });
            let ia = ia.clamp(0.0, (m - 1) as f64)?;
            idx = Some(match idx {
                None => ia,
                Some(i) => ((i * m as f64)? + ia)?,
            });
        }
        let idx = idx.unwrap().to_dtype(DType::U32)?;
        let term = (flat.index_select(&idx, 0)? * (w.unwrap() * valid.unwrap())?)?;
        acc = Some(match acc {
            None => term,
            Some(a) => (a + term)?,
        });
    }
    acc.unwrap().reshape(out_shape)
}

/// Samples `vol` at `coords` with the custom op on CPU, the generic path elsewhere.
pub fn trilinear(vol: &Tensor, coords: &Tensor) -> Result<Tensor> {
    match vol.device() {
        Device::Cpu => vol.contiguous()?.apply_op2(&coords.contiguous()?, Trilinear),
        _ => trilinear_generic(vol, coords),
    }
}

/// Friedel symmetrisation: ½ (V + V reflected through the centre voxel).
pub fn friedel_symmetrize(vol: &Tensor) -> Result<Tensor> {
    (vol + vol.flip(&[0, 1, 2])?)? * 0.5
}

/// A SIREN (Sitzmann et al. 2020): sine layers sin(ω₀ (W x + b)) and a linear output layer.
pub struct Siren {
    hidden: Vec<candle_nn::Linear>,
    out: candle_nn::Linear,
    omega: f64,
}

impl Siren {
    /// Weights from a seeded generator (candle's own cannot be seeded): the first layer
    /// uniform in ±1/fan-in, later ones in ±√(6/fan-in)/ω₀ (the SIREN initialisation).
    pub fn new(
        inputs: usize,
        width: usize,
        layers: usize,
        omega: f64,
        vb: candle_nn::VarBuilder,
        rng: &mut impl rand::Rng,
    ) -> Result<Siren> {
        let mut linear = |fan_in: usize, fan_out: usize, bound: f64, name: String| -> Result<candle_nn::Linear> {
            let mut uniform = |n: usize, b: f64| -> Vec<f32> {
                (0..n).map(|_| (b * (2.0 * rng.random::<f64>() - 1.0)) as f32).collect()
            };
            let w = Tensor::from_vec(uniform(fan_in * fan_out, bound), (fan_out, fan_in), vb.device())?;
            let b = Tensor::from_vec(uniform(fan_out, 1.0 / (fan_in as f64).sqrt()), fan_out, vb.device())?;
            let vw = vb.get_with_hints(
                (fan_out, fan_in),
                &format!("{name}.weight"),
                candle_nn::Init::Const(0.0),
            )?;
            let vbias = vb.get_with_hints(fan_out, &format!("{name}.bias"), candle_nn::Init::Const(0.0))?;
            // get_with_hints returns the VarMap's tensor: overwrite it in place with the seeded values
            set_in_place(&vw, &w)?;
            set_in_place(&vbias, &b)?;
            Ok(candle_nn::Linear::new(vw, Some(vbias)))
        };
        let mut hidden = Vec::with_capacity(layers);
        let mut fan_in = inputs;
        for l in 0..layers {
            let bound = if l == 0 {
                1.0 / fan_in as f64
            } else {
                (6.0 / fan_in as f64).sqrt() / omega
            };
            hidden.push(linear(fan_in, width, bound, format!("l{l}"))?);
            fan_in = width;
        }
        let out = linear(fan_in, 1, (6.0 / fan_in as f64).sqrt() / omega, "out".into())?;
        Ok(Siren { hidden, out, omega })
    }

    /// `x`: `[N, inputs]` → `[N, 1]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        use candle_core::Module;
        let mut h = x.clone();
        for layer in &self.hidden {
            h = (layer.forward(&h)? * self.omega)?.sin()?;
        }
        self.out.forward(&h)
    }
}

/// Overwrites a VarMap-backed tensor's values (the tensor shares storage with its `Var`).
fn set_in_place(target: &Tensor, values: &Tensor) -> Result<()> {
    let var = Var::from_tensor(target)?;
    var.set(values)?;
    Ok(())
}

/// cryoAI's FourierNet for amplitudes: A(s) = ½ [g(s) + g(−s)], g(s) = exp(envelope(s/s₀)) ·
/// modulant(s/s₀), with s₀ the grid's half extent (so inputs lie in [−1, 1]). The envelope
/// carries the fall-off of |F| over orders of magnitude, the modulant its speckle.
pub struct FourierNet {
    envelope: Siren,
    modulant: Siren,
    /// s₀ in voxel units of the decoder grid.
    scale: f64,
}

impl FourierNet {
    pub fn new(
        width: usize,
        layers: usize,
        omega: f64,
        half_extent_voxels: f64,
        vb: candle_nn::VarBuilder,
        seed: u64,
    ) -> Result<FourierNet> {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x0051_574e_4554);
        let envelope = Siren::new(3, width, layers, omega, vb.pp("envelope"), &mut rng)?;
        let modulant = Siren::new(3, width, layers, omega, vb.pp("modulant"), &mut rng)?;
        Ok(FourierNet {
            envelope,
            modulant,
            scale: half_extent_voxels,
        })
    }

    /// Amplitudes at points `[N, 3]` given in voxel units relative to the grid centre → `[N]`.
    pub fn forward(&self, points: &Tensor) -> Result<Tensor> {
        let x = (points / self.scale)?;
        let g = |x: &Tensor| -> Result<Tensor> { self.envelope.forward(x)?.exp()? * self.modulant.forward(x)? };
        let both = Tensor::cat(&[&x, &x.neg()?], 0)?;
        let n = x.dim(0)?;
        let v = g(&both)?.squeeze(1)?;
        (v.narrow(0, 0, n)? + v.narrow(0, n, n)?)? * 0.5
    }
}

/// The learned amplitude representation.
pub enum Amplitudes {
    /// `[M, M, M]` amplitudes, `[z][y][x]`; a `Var` when learned, a plain tensor when frozen.
    Voxel(Tensor),
    FourierNet(FourierNet),
}

/// The learned amplitude volume and the fixed detector geometry it is queried with.
pub struct Decoder {
    pub amplitudes: Amplitudes,
    pub m: usize,
    /// Δs of the grid (Å⁻¹).
    pub spacing: f64,
    /// Working-pixel s-vectors in voxel units, `[3, P]` (for one gemm R · s).
    s_grid: Tensor,
    /// √(relative polarisation × solid angle) per working pixel, `[1, P]`.
    pixel_weight: Tensor,
    /// Rescale each predicted image so Σ amplitude² equals this (per-image rescaled data).
    pub normalize_total: Option<f64>,
    /// The fused CPU slice of a voxel volume (the same s-vectors and weights).
    slice_op: RotatedSlice,
}

impl Decoder {
    /// `s`: working-pixel s-vectors (Å⁻¹), `pixel_weight`: per-pixel amplitude factor.
    /// `m`, `spacing`: the grid the amplitudes live on (FourierNet: where it is evaluated for
    /// output, and its coordinate scale).
    pub fn new(
        amplitudes: Amplitudes,
        m: usize,
        spacing: f64,
        s: &[[f64; 3]],
        pixel_weight: &[f32],
        normalize_total: Option<f64>,
        dev: &Device,
    ) -> Result<Decoder> {
        let p = s.len();
        let mut sg = vec![0f32; 3 * p];
        for (j, v) in s.iter().enumerate() {
            for a in 0..3 {
                sg[a * p + j] = (v[a] / spacing) as f32;
            }
        }
        let slice_op = RotatedSlice {
            s: std::sync::Arc::new((0..p).map(|j| [sg[j], sg[p + j], sg[2 * p + j]]).collect()),
            weight: std::sync::Arc::new(pixel_weight.to_vec()),
            centre: ((m - 1) / 2) as f32,
        };
        let s_grid = Tensor::from_vec(sg, (3, p), dev)?;
        let pixel_weight = Tensor::from_vec(pixel_weight.to_vec(), (1, p), dev)?;
        Ok(Decoder {
            amplitudes,
            m,
            spacing,
            s_grid,
            pixel_weight,
            normalize_total,
            slice_op,
        })
    }

    /// A voxel decoder (`volume` `[M, M, M]`).
    pub fn voxel(
        volume: Tensor,
        spacing: f64,
        s: &[[f64; 3]],
        pixel_weight: &[f32],
        normalize_total: Option<f64>,
    ) -> Result<Decoder> {
        let m = volume.dim(0)?;
        let dev = volume.device().clone();
        Decoder::new(
            Amplitudes::Voxel(volume),
            m,
            spacing,
            s,
            pixel_weight,
            normalize_total,
            &dev,
        )
    }

    pub fn pixels(&self) -> usize {
        self.s_grid.dim(1).unwrap_or(0)
    }

    /// Voxel coordinates of R s_p: `rots` `[N, 3, 3]` → `[N, P, 3]`.
    pub fn coordinates(&self, rots: &Tensor) -> Result<Tensor> {
        let n = rots.dim(0)?;
        let p = self.pixels();
        let centre = ((self.m - 1) / 2) as f64;
        let rs = rots.reshape((n * 3, 3))?.matmul(&self.s_grid)?; // [N*3, P]
        rs.reshape((n, 3, p))?
            .transpose(1, 2)?
            .affine(1.0, centre)?
            .contiguous()
    }

    /// Predicted amplitude images for rotations `[N, 3, 3]` → `[N, P]`.
    pub fn forward(&self, rots: &Tensor) -> Result<Tensor> {
        let a = match &self.amplitudes {
            Amplitudes::Voxel(volume) if volume.device().is_cpu() => friedel_symmetrize(volume)?
                .contiguous()?
                .apply_op2(&rots.contiguous()?, self.slice_op.clone())?,
            amplitudes => self.forward_unfused(amplitudes, rots)?,
        };
        match self.normalize_total {
            None => Ok(a),
            Some(t) => {
                let sum = (a.sqr()?.sum_keepdim(1)? + 1e-12)?;
                a.broadcast_mul(&(sum.recip()? * t)?.sqrt()?)
            }
        }
    }

    /// The slice through tensor ops: explicit coordinates, then trilinear sampling or
    /// FourierNet, then the pixel weights (non-CPU devices, FourierNet, and the reference the
    /// fused [`RotatedSlice`] is tested against).
    pub fn forward_unfused(&self, amplitudes: &Amplitudes, rots: &Tensor) -> Result<Tensor> {
        let coords = self.coordinates(rots)?;
        let a = match amplitudes {
            Amplitudes::Voxel(volume) => trilinear(&friedel_symmetrize(volume)?, &coords)?,
            Amplitudes::FourierNet(net) => {
                let (n, p, _) = coords.dims3()?;
                let centre = ((self.m - 1) / 2) as f64;
                net.forward(&(coords.reshape((n * p, 3))? - centre)?)?.reshape((n, p))?
            }
        };
        a.broadcast_mul(&self.pixel_weight)
    }

    /// The Friedel-symmetrised amplitude volume on the decoder's M³ grid as a flat `[z][y][x]`
    /// vector (FourierNet: evaluated at the voxel centres).
    pub fn symmetrized_volume(&self) -> Result<Vec<f32>> {
        match &self.amplitudes {
            Amplitudes::Voxel(volume) => friedel_symmetrize(&volume.detach())?.flatten_all()?.to_vec1::<f32>(),
            Amplitudes::FourierNet(net) => {
                let m = self.m;
                let c = ((m - 1) / 2) as f32;
                let mut out = Vec::with_capacity(m * m * m);
                let dev = self.s_grid.device();
                for iz in 0..m {
                    let mut pts = Vec::with_capacity(m * m * 3);
                    for iy in 0..m {
                        for ix in 0..m {
                            pts.extend_from_slice(&[ix as f32 - c, iy as f32 - c, iz as f32 - c]);
                        }
                    }
                    let t = Tensor::from_vec(pts, (m * m, 3), dev)?;
                    out.extend(net.forward(&t)?.detach().to_vec1::<f32>()?);
                }
                Ok(out)
            }
        }
    }
}
