//! Training: the working geometry (binned detector), input statistics, the starting volume,
//! one optimisation step, prediction with head selection, evaluation and checkpoints.

use std::path::Path;

use anyhow::{ensure, Context};
use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder, VarMap};
use nalgebra::{Matrix3, Rotation3, UnitQuaternion};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::config::{DecoderKind, SymmetricBranch, XraiConfig};
use super::decoder::{Amplitudes, Decoder, FourierNet};
use super::encoder::{sixd_to_rotation, Encoder};
use super::loss::{branch_errors, symmetric_multihead, uniformity, winners};
use super::optim::{Adam, ParamGroup};
use crate::data::{Batch, Dataset, ImageSimulator, ImageStream, Rescale, SimulationConfig, Split};
use crate::physics::detector::Detector;
use crate::rotation::{canonical, to_matrix};

/// The detector binned to the working size: per-pixel s-vectors at the block centres and the
/// per-pixel amplitude factor √(Σ polarisation × solid angle over the block), normalised to
/// mean 1.
#[derive(Clone, Debug)]
pub struct WorkingGeometry {
    pub side: usize,
    pub factor: usize,
    pub full_side: usize,
    pub s: Vec<[f64; 3]>,
    pub pixel_weight: Vec<f32>,
    /// Largest |s| among the working pixels (Å⁻¹).
    pub s_max: f64,
}

impl WorkingGeometry {
    pub fn new(sim: &ImageSimulator, side: usize) -> anyhow::Result<WorkingGeometry> {
        WorkingGeometry::from_config(&sim.config, side)
    }

    /// From a simulation config alone (e.g. an on-disk dataset's meta.json).
    pub fn from_config(config: &SimulationConfig, side: usize) -> anyhow::Result<WorkingGeometry> {
        let det = &config.detector;
        let full_geometry = det.geometry(&config.beam);
        let full = det.pixels;
        ensure!(
            side <= full && full % side == 0,
            "--working-size {side} must divide the detector's {full} pixels (images are binned by summing blocks)"
        );
        let factor = full / side;
        let small = Detector { pixels: side, side_m: det.side_m, distance_m: det.distance_m };
        let g = small.geometry(&config.beam);
        let mut block = vec![0f64; side * side];
        for (i, w) in full_geometry.scale.iter().enumerate() {
            let (r, c) = (i / full, i % full);
            block[(r / factor) * side + c / factor] += w;
        }
        let mean = block.iter().sum::<f64>() / block.len() as f64;
        let pixel_weight = block.iter().map(|b| (b / mean).sqrt() as f32).collect();
        Ok(WorkingGeometry { side, factor, full_side: full, s_max: g.s_max(), s: g.s, pixel_weight })
    }

    pub fn pixels(&self) -> usize {
        self.side * self.side
    }

    /// Full-size intensity images → working-size amplitude images (block sums, square root).
    pub fn amplitudes(&self, images: &[f32], out: &mut Vec<f32>) {
        let (full, side, f) = (self.full_side, self.side, self.factor);
        let n = images.len() / (full * full);
        out.clear();
        out.resize(n * side * side, 0.0);
        for (img, o) in images.chunks_exact(full * full).zip(out.chunks_exact_mut(side * side)) {
            for r in 0..full {
                let row = &img[r * full..(r + 1) * full];
                let orow = &mut o[(r / f) * side..(r / f + 1) * side];
                for (c, &v) in row.iter().enumerate() {
                    orow[c / f] += v;
                }
            }
            o.iter_mut().for_each(|v| *v = v.max(0.0).sqrt());
        }
    }

    /// Δs of an M³ grid whose centred half-extent covers every working pixel's |s|.
    pub fn volume_spacing(&self, m: usize) -> f64 {
        self.s_max * 1.02 / ((m - 1) / 2) as f64
    }
}

/// Where training (or test) images come from: the simulator's stream, or a dataset written by
/// `xrai-bench simulate` (read in chunks: memory stays constant in N).
pub enum ImageSource<'a> {
    Stream { sim: &'a ImageSimulator, split: Split },
    Stored(std::sync::Mutex<Dataset>),
}

impl ImageSource<'_> {
    /// Images available (None: an endless stream).
    pub fn len(&self) -> Option<u64> {
        match self {
            ImageSource::Stream { .. } => None,
            ImageSource::Stored(d) => Some(d.lock().unwrap().len),
        }
    }

    /// Working-size amplitude images `start .. start + n` (clamped to the end) and their true poses.
    pub fn amplitudes(&self, geo: &WorkingGeometry, start: u64, n: usize) -> anyhow::Result<(Vec<f32>, Vec<UnitQuaternion<f64>>)> {
        match self {
            ImageSource::Stream { sim, split } => Ok(load_amplitudes(sim, geo, *split, start, n)),
            ImageSource::Stored(d) => {
                let mut d = d.lock().unwrap();
                ensure!(d.side == geo.full_side, "{}: images are {}² but the detector has {}² pixels", d.dir.display(), d.side, geo.full_side);
                let mut amps = Vec::with_capacity(n * geo.pixels());
                let mut tmp = Vec::new();
                let end = (start + n as u64).min(d.len);
                let mut at = start;
                while at < end {
                    let count = ((end - at) as usize).min(1024);
                    let images = d.read_images(at, count)?;
                    geo.amplitudes(&images, &mut tmp);
                    amps.extend_from_slice(&tmp);
                    at += count as u64;
                }
                let poses = d.poses[start.min(d.len) as usize..end as usize].to_vec();
                Ok((amps, poses))
            }
        }
    }
}

/// Reads working-size amplitude images of a split into memory (indices `start..start+n`).
pub fn load_amplitudes(sim: &ImageSimulator, geo: &WorkingGeometry, split: Split, start: u64, n: usize) -> (Vec<f32>, Vec<UnitQuaternion<f64>>) {
    let mut amps = Vec::with_capacity(n * geo.pixels());
    let mut poses = Vec::with_capacity(n);
    let mut stream = ImageStream::new(sim, split, start + n as u64, 256).starting_at(start);
    let mut batch = Batch::empty();
    let mut tmp = Vec::new();
    while stream.next_into(&mut batch) {
        geo.amplitudes(&batch.images[..batch.len() * batch.pixels], &mut tmp);
        amps.extend_from_slice(&tmp);
        poses.extend_from_slice(&batch.poses);
    }
    (amps, poses)
}

/// Fixed per-pixel input statistics and the mean squared amplitude (the loss normaliser).
#[derive(Clone, Debug)]
pub struct InputStats {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub mean_sq: f64,
}

impl InputStats {
    pub fn from_amplitudes(amps: &[f32], pixels: usize) -> InputStats {
        let n = (amps.len() / pixels).max(1);
        let mut s1 = vec![0f64; pixels];
        let mut s2 = vec![0f64; pixels];
        for img in amps.chunks_exact(pixels) {
            for p in 0..pixels {
                s1[p] += img[p] as f64;
                s2[p] += (img[p] as f64).powi(2);
            }
        }
        let mean: Vec<f32> = s1.iter().map(|s| (s / n as f64) as f32).collect();
        let global_sd = {
            let var: f64 = (0..pixels).map(|p| s2[p] / n as f64 - (s1[p] / n as f64).powi(2)).sum::<f64>() / pixels as f64;
            var.max(0.0).sqrt()
        };
        let std = (0..pixels)
            .map(|p| {
                let v = (s2[p] / n as f64 - (s1[p] / n as f64).powi(2)).max(0.0).sqrt();
                v.max(1e-3 * global_sd + 1e-12) as f32
            })
            .collect();
        let mean_sq = s2.iter().sum::<f64>() / (n * pixels) as f64;
        InputStats { mean, std, mean_sq }
    }
}

/// The orientation-free starting volume: the radial average of the data's amplitudes
/// (divided by the pixel factor), placed on the M³ grid by |s|, times (1 + noise · N(0, 1)).
pub fn radial_volume(geo: &WorkingGeometry, amps: &[f32], m: usize, spacing: f64, noise: f64, seed: u64) -> Vec<f32> {
    let p = geo.pixels();
    let nbins = 2 * m;
    let mut sum = vec![0f64; nbins];
    let mut count = vec![0f64; nbins];
    for img in amps.chunks_exact(p) {
        for (j, s) in geo.s.iter().enumerate() {
            let r = (s[0] * s[0] + s[1] * s[1] + s[2] * s[2]).sqrt() / spacing;
            let b = (r.round() as usize).min(nbins - 1);
            sum[b] += (img[j] / geo.pixel_weight[j]) as f64;
            count[b] += 1.0;
        }
    }
    // Fill empty bins from the nearest filled one below (or above for the centre).
    let mut prof: Vec<Option<f64>> = (0..nbins).map(|b| (count[b] > 0.0).then(|| sum[b] / count[b])).collect();
    let first = prof.iter().position(|v| v.is_some()).map(|i| prof[i].unwrap()).unwrap_or(1.0);
    let mut last = first;
    for v in prof.iter_mut() {
        match v {
            Some(x) => last = *x,
            None => *v = Some(last),
        }
    }
    let prof: Vec<f64> = prof.into_iter().map(|v| v.unwrap()).collect();
    let mean = prof.iter().sum::<f64>() / nbins as f64;
    let c = ((m - 1) / 2) as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x766f_6c75_6d65);
    let mut out = vec![0f32; m * m * m];
    for iz in 0..m {
        for iy in 0..m {
            for ix in 0..m {
                let r = ((ix as f64 - c).powi(2) + (iy as f64 - c).powi(2) + (iz as f64 - c).powi(2)).sqrt();
                let b0 = (r.floor() as usize).min(nbins - 1);
                let b1 = (b0 + 1).min(nbins - 1);
                let f = r - r.floor();
                let v = prof[b0] * (1.0 - f) + prof[b1] * f;
                let z: f64 = StandardNormal.sample(&mut rng);
                out[(iz * m + iy) * m + ix] = (v + noise * mean * z) as f32;
            }
        }
    }
    out
}

/// |F| of the simulator's true transform resampled (trilinearly) on the M³ grid of spacing
/// `spacing`, in the molecule frame; unit scale (fit it with [`Trainer::fit_volume_scale`]).
pub fn true_amplitude_volume(sim: &ImageSimulator, m: usize, spacing: f64) -> Vec<f32> {
    sim.transform.amplitude().resampled(m, spacing, f64::INFINITY, 0.0).data
}

/// cryoAI's fixed input pyramid: each `side`² image blurred by Gaussians of σ = 0.5·2^i pixels,
/// i = 0 … levels − 1 (zero padding, separable, truncated at 3σ), stacked image-major:
/// `[image][level][row][col]`. Computed per image, never learned.
pub fn gaussian_pyramid(images: &[f32], side: usize, levels: usize) -> Vec<f32> {
    let n = images.len() / (side * side);
    let mut out = vec![0f32; n * levels * side * side];
    let mut tmp = vec![0f32; side * side];
    for level in 0..levels {
        let sigma = 0.5 * (1 << level) as f64;
        let r = (3.0 * sigma).ceil() as i64;
        let kernel: Vec<f32> = (-r..=r).map(|d| (-(d * d) as f64 / (2.0 * sigma * sigma)).exp() as f32).collect();
        let total: f32 = kernel.iter().sum();
        let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
        for (i, img) in images.chunks_exact(side * side).enumerate() {
            let o = &mut out[(i * levels + level) * side * side..][..side * side];
            // rows, then columns
            blur_axis(img, &mut tmp, side, &kernel, true);
            blur_axis(&tmp, o, side, &kernel, false);
        }
    }
    out
}

/// One pass of a separable blur of a `side × side` image along x (`along_x`) or y with an
/// odd-length kernel centred on each pixel; pixels outside the image count as zero.
fn blur_axis(src: &[f32], dst: &mut [f32], side: usize, kernel: &[f32], along_x: bool) {
    let r = (kernel.len() / 2) as i64;
    for y in 0..side {
        for x in 0..side {
            let centre = if along_x { x } else { y } as i64;
            let mut acc = 0f32;
            for (k, w) in kernel.iter().enumerate() {
                let t = centre + k as i64 - r;
                if (0..side as i64).contains(&t) {
                    let t = t as usize;
                    acc += w * if along_x { src[y * side + t] } else { src[t * side + x] };
                }
            }
            dst[y * side + x] = acc;
        }
    }
}

/// Rotation matrices of quaternions as a `[N, 3, 3]` tensor.
pub fn rotations_tensor(poses: &[UnitQuaternion<f64>], dev: &Device) -> candle_core::Result<Tensor> {
    let mut v = Vec::with_capacity(poses.len() * 9);
    for q in poses {
        let r = to_matrix(q);
        for i in 0..3 {
            for j in 0..3 {
                v.push(r[(i, j)] as f32);
            }
        }
    }
    Tensor::from_vec(v, (poses.len(), 3, 3), dev)
}

/// Reverses each image's pixel order: the in-plane rotation by π (both axes reversed).
pub fn rotate_pi(amps: &[f32], pixels: usize) -> Vec<f32> {
    crate::rotation::rotate_images_pi(amps, pixels)
}

/// What one training step measured.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct StepStats {
    pub loss: f64,
    pub data: f64,
    pub uniformity: f64,
    pub grad_norm: f64,
}

/// Encoder + decoder + optimiser, with the fixed input statistics.
pub struct Trainer {
    pub cfg: XraiConfig,
    pub device: Device,
    pub varmap: VarMap,
    pub encoder: Encoder,
    pub decoder: Decoder,
    pub optimizer: Adam,
    pub geometry: WorkingGeometry,
    mean: Tensor,
    inv_std: Tensor,
    norm: f64,
    pub step: usize,
}

/// How the volume starts.
pub enum VolumeInit {
    /// Learned, starting from these values.
    Learned(Vec<f32>),
    /// Frozen (not trained) at these values: the diagnostic with the true volume.
    Frozen(Vec<f32>),
    /// Learned, values to be loaded from a checkpoint.
    FromCheckpoint,
}

impl Trainer {
    /// `stats` None: statistics come from the checkpoint loaded next.
    pub fn new(
        cfg: XraiConfig,
        geometry: WorkingGeometry,
        stats: Option<&InputStats>,
        volume: VolumeInit,
        normalize_total: Option<f64>,
        device: Device,
    ) -> anyhow::Result<Trainer> {
        cfg.validate()?;
        let p = geometry.pixels();
        ensure!(geometry.side == cfg.working_size, "geometry side {} ≠ working size {}", geometry.side, cfg.working_size);
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let encoder = Encoder::new(&cfg, vb.pp("encoder"))?;
        init_encoder(&varmap, cfg.seed)?;
        // The input statistics live in the VarMap so that checkpoints carry them (they are
        // excluded from the optimiser's groups below).
        vb.get_with_hints(p, "stats.mean", Init::Const(0.0))?;
        vb.get_with_hints(p, "stats.std", Init::Const(1.0))?;
        vb.get_with_hints(1, "stats.norm", Init::Const(1.0))?;
        if let Some(s) = stats {
            let set = |name: &str, v: Vec<f32>| -> anyhow::Result<()> {
                let data = varmap.data().lock().unwrap();
                let var = data.get(name).context("missing var")?;
                var.set(&Tensor::from_vec(v, var.shape(), &device)?)?;
                Ok(())
            };
            let std = if cfg.standardize { s.std.clone() } else { vec![s.mean.iter().sum::<f32>() / p as f32; p] };
            let mean = if cfg.standardize { s.mean.clone() } else { vec![0.0; p] };
            set("stats.mean", mean)?;
            set("stats.std", std)?;
            set("stats.norm", vec![s.mean_sq as f32])?;
        }
        let m = cfg.volume_size;
        let spacing = geometry.volume_spacing(m);
        let learned = !matches!(volume, VolumeInit::Frozen(_));
        let amplitudes = match (cfg.decoder, volume) {
            (_, VolumeInit::Learned(v) | VolumeInit::Frozen(v)) if v.len() != m * m * m => {
                anyhow::bail!("volume has {} values, expected {}", v.len(), m * m * m)
            }
            (DecoderKind::FourierNet, VolumeInit::Frozen(_)) => {
                anyhow::bail!("a frozen volume needs the voxel decoder (--decoder voxel)")
            }
            (DecoderKind::FourierNet, _) => Amplitudes::FourierNet(FourierNet::new(
                cfg.siren_width,
                cfg.siren_layers,
                cfg.siren_omega,
                ((m - 1) / 2) as f64,
                vb.pp("decoder.fouriernet"),
                cfg.seed,
            )?),
            (DecoderKind::Voxel, VolumeInit::Learned(v)) => {
                let t = vb.get_with_hints((m, m, m), "decoder.volume", Init::Const(0.0))?;
                let data = varmap.data().lock().unwrap();
                data["decoder.volume"].set(&Tensor::from_vec(v, (m, m, m), &device)?)?;
                Amplitudes::Voxel(t)
            }
            (DecoderKind::Voxel, VolumeInit::FromCheckpoint) => {
                Amplitudes::Voxel(vb.get_with_hints((m, m, m), "decoder.volume", Init::Const(0.0))?)
            }
            (DecoderKind::Voxel, VolumeInit::Frozen(v)) => Amplitudes::Voxel(Tensor::from_vec(v, (m, m, m), &device)?),
        };
        let decoder = Decoder::new(amplitudes, m, spacing, &geometry.s, &geometry.pixel_weight, normalize_total, &device)?;
        let mut enc_vars = Vec::new();
        let mut vol_vars = Vec::new();
        {
            let data = varmap.data().lock().unwrap();
            let mut names: Vec<&String> = data.keys().collect();
            names.sort();
            for name in names {
                if name.starts_with("encoder.") && !name.contains("running_") {
                    enc_vars.push(data[name].clone());
                } else if name.starts_with("decoder.") && learned {
                    vol_vars.push(data[name].clone());
                }
            }
        }
        let mut groups = vec![ParamGroup { name: "encoder".into(), vars: enc_vars, lr: cfg.lr_encoder }];
        if learned {
            groups.push(ParamGroup { name: "volume".into(), vars: vol_vars, lr: cfg.lr_volume });
        }
        let optimizer = Adam::new(groups, cfg.grad_clip, cfg.amsgrad)?;
        let mut t = Trainer {
            cfg,
            device,
            varmap,
            encoder,
            decoder,
            optimizer,
            geometry,
            mean: Tensor::zeros(1, DType::F32, &Device::Cpu)?,
            inv_std: Tensor::zeros(1, DType::F32, &Device::Cpu)?,
            norm: 1.0,
            step: 0,
        };
        t.refresh_stats()?;
        Ok(t)
    }

    /// Re-reads the statistics tensors (after construction or a checkpoint load).
    fn refresh_stats(&mut self) -> anyhow::Result<()> {
        let s = self.cfg.working_size;
        let data = self.varmap.data().lock().unwrap();
        self.mean = data["stats.mean"].as_tensor().detach().reshape((1, 1, s, s))?;
        self.inv_std = data["stats.std"].as_tensor().detach().recip()?.reshape((1, 1, s, s))?;
        self.norm = data["stats.norm"].as_tensor().to_vec1::<f32>()?[0] as f64;
        Ok(())
    }

    /// Encoder input: standardised images `[B, 1, S, S]`, plus the fixed Gaussian-pyramid
    /// channels when configured.
    fn input(&self, amps: &Tensor) -> candle_core::Result<Tensor> {
        let (b, _) = amps.dims2()?;
        let s = self.cfg.working_size;
        let x = amps.reshape((b, 1, s, s))?.broadcast_sub(&self.mean)?.broadcast_mul(&self.inv_std)?;
        let levels = self.cfg.pyramid_levels;
        if levels == 0 {
            return Ok(x);
        }
        let blurred = gaussian_pyramid(&x.flatten_all()?.to_vec1::<f32>()?, s, levels);
        let blurred = Tensor::from_vec(blurred, (b, levels, s, s), x.device())?;
        Tensor::cat(&[&x, &blurred], 1)
    }

    /// Encodes and decodes a batch: (errors `[B, K, 2]`, rotations `[B, K, 3, 3]`, rotations
    /// of the π branch when it is re-encoded).
    pub fn forward(&self, amps: &[f32], train: bool) -> candle_core::Result<(Tensor, Tensor, Option<Tensor>)> {
        let p = self.geometry.pixels();
        let b = amps.len() / p;
        let k = self.cfg.heads;
        let target = Tensor::from_vec(amps.to_vec(), (b, p), &self.device)?;
        let target_pi = Tensor::from_vec(rotate_pi(amps, p), (b, p), &self.device)?;
        let decode = |x: &Tensor| -> candle_core::Result<(Tensor, Tensor)> {
            let sixd = self.encoder.forward_t(&self.input(x)?, train)?;
            let rots = sixd_to_rotation(&sixd.reshape((b * k, 6))?)?;
            let pred = self.decoder.forward(&rots)?.reshape((b, k, p))?;
            Ok((pred, rots.reshape((b, k, 3, 3))?))
        };
        let (pred, rots) = decode(&target)?;
        let (pred_pi, rots_pi) = match self.cfg.branch {
            SymmetricBranch::Flip => (pred.clone(), None),
            SymmetricBranch::ReEncode => {
                let (p2, r2) = decode(&target_pi)?;
                (p2, Some(r2))
            }
        };
        let errors = branch_errors(&pred, &pred_pi, &target, &target_pi, self.norm, self.cfg.loss)?;
        Ok((errors, rots, rots_pi))
    }

    /// One Adam step on a batch of working-size amplitude images `[B × P]`.
    pub fn train_step(&mut self, amps: &[f32]) -> anyhow::Result<StepStats> {
        let (errors, rots, _) = self.forward(amps, true)?;
        let data = symmetric_multihead(&errors, self.cfg.mean_head_weight)?;
        let (loss, unif) = if self.cfg.uniformity_weight > 0.0 {
            let u = uniformity(&rots)?;
            ((&data + (&u * self.cfg.uniformity_weight)?)?, u.to_scalar::<f32>()? as f64)
        } else {
            (data.clone(), 0.0)
        };
        let loss_v = loss.to_scalar::<f32>()? as f64;
        if !loss_v.is_finite() {
            anyhow::bail!("the loss became {loss_v} at step {}", self.step + 1);
        }
        let grads = loss.backward()?;
        let info = self.optimizer.step(&grads)?;
        self.step += 1;
        Ok(StepStats { loss: loss_v, data: data.to_scalar::<f32>()? as f64, uniformity: unif, grad_norm: info.grad_norm })
    }

    /// Least-squares scale that makes the decoder's slices at the true poses match the data
    /// (for a frozen true volume, whose units differ from the images').
    pub fn fit_volume_scale(&self, amps: &[f32], poses: &[UnitQuaternion<f64>]) -> anyhow::Result<f64> {
        let rots = rotations_tensor(poses, &self.device)?;
        let pred = self.decoder.forward(&rots)?.flatten_all()?.to_vec1::<f32>()?;
        let (mut num, mut den) = (0f64, 0f64);
        for (p, t) in pred.iter().zip(amps) {
            num += (*p as f64) * (*t as f64);
            den += (*p as f64).powi(2);
        }
        ensure!(den > 0.0, "the volume predicts all-zero images");
        Ok(num / den)
    }

    /// Poses of images (encoder in evaluation mode); each image takes the head and branch
    /// whose slice matches it best, a π-branch winner composed with the in-plane π rotation.
    pub fn predict(&self, amps: &[f32]) -> anyhow::Result<Vec<UnitQuaternion<f64>>> {
        let p = self.geometry.pixels();
        let n = amps.len() / p;
        let mut out = Vec::with_capacity(n);
        let rz_pi = Matrix3::new(-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0);
        for chunk in amps.chunks(256 * p) {
            let (errors, rots, rots_pi) = self.forward(chunk, false)?;
            let win = winners(&errors)?;
            let r = rots.flatten_all()?.to_vec1::<f32>()?;
            let r_pi = match &rots_pi {
                Some(t) => Some(t.flatten_all()?.to_vec1::<f32>()?),
                None => None,
            };
            let k = self.cfg.heads;
            for (i, (head, branch)) in win.into_iter().enumerate() {
                let src = if branch == 1 { r_pi.as_ref().unwrap_or(&r) } else { &r };
                let o = (i * k + head) * 9;
                let mut mat = Matrix3::from_fn(|a, b| src[o + a * 3 + b] as f64);
                if branch == 1 {
                    mat *= rz_pi;
                }
                let rot = Rotation3::from_matrix(&mat);
                out.push(canonical(UnitQuaternion::from_rotation_matrix(&rot)));
            }
        }
        Ok(out)
    }

    /// Writes `model.safetensors`, `config.json` and `state.json` into `dir` (atomically per file).
    pub fn save_checkpoint(&self, dir: &Path, extra: &CheckpointState) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join("model.safetensors.tmp");
        self.varmap.save(&tmp)?;
        std::fs::rename(&tmp, dir.join("model.safetensors"))?;
        let tmp = dir.join("optimizer.safetensors.tmp");
        candle_core::safetensors::save(&self.optimizer.state_tensors(), &tmp)?;
        std::fs::rename(&tmp, dir.join("optimizer.safetensors"))?;
        write_json(&dir.join("config.json"), &self.cfg)?;
        let mut st = extra.clone();
        st.step = self.step;
        write_json(&dir.join("state.json"), &st)?;
        Ok(())
    }

    /// Loads parameters and statistics from a checkpoint directory.
    pub fn load_checkpoint(&mut self, dir: &Path) -> anyhow::Result<CheckpointState> {
        self.varmap
            .load(dir.join("model.safetensors"))
            .with_context(|| format!("cannot load {}", dir.join("model.safetensors").display()))?;
        self.refresh_stats()?;
        // Adam's moments (checkpoints from before they were saved resume with fresh moments)
        let opt = dir.join("optimizer.safetensors");
        if opt.exists() {
            let tensors = candle_core::safetensors::load(&opt, &self.device).with_context(|| format!("cannot load {}", opt.display()))?;
            self.optimizer.load_state_tensors(&tensors).with_context(|| format!("{}: does not match this model", opt.display()))?;
        }
        let st: CheckpointState = serde_json::from_str(&std::fs::read_to_string(dir.join("state.json"))?)?;
        self.step = st.step;
        self.optimizer.step = st.step;
        Ok(st)
    }
}

/// Run state saved beside a checkpoint.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CheckpointState {
    pub step: usize,
    pub elapsed_s: f64,
    pub images_seen: u64,
    pub rescale: Option<Rescale>,
    pub normalize_total: Option<f64>,
}

pub fn read_config(dir: &Path) -> anyhow::Result<XraiConfig> {
    let p = dir.join("config.json");
    Ok(serde_json::from_str(&std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?)?)
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(v)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Seeded initialisation of the encoder (candle's CPU generator cannot be seeded): Kaiming
/// normal weights (fan-in), biases uniform in ±1/√fan-in, batch norm at identity.
fn init_encoder(varmap: &VarMap, seed: u64) -> anyhow::Result<()> {
    let data = varmap.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let is_bn = name.contains(".bn");
        if is_bn {
            continue;
        }
        let n: usize = dims.iter().product();
        let vals: Vec<f32> = if name.ends_with("weight") {
            let fan_in: usize = dims[1..].iter().product();
            let sd = (2.0 / fan_in as f64).sqrt();
            (0..n).map(|_| { let z: f64 = StandardNormal.sample(&mut rng); (sd * z) as f32 }).collect::<Vec<_>>()
        } else if name.ends_with("bias") {
            continue; // set with the matching weight's fan-in below
        } else {
            continue;
        };
        var.set(&Tensor::from_vec(vals, dims.as_slice(), var.device())?)?;
    }
    // biases: uniform in ±1/√fan_in of their layer
    let names: Vec<String> = data.keys().filter(|n| n.ends_with(".bias") && !n.contains(".bn")).cloned().collect();
    let mut names = names;
    names.sort();
    for name in names {
        let wname = name.replace(".bias", ".weight");
        let fan_in: usize = data.get(&wname).map(|w| w.dims()[1..].iter().product()).unwrap_or(1);
        let bound = 1.0 / (fan_in as f64).sqrt();
        let var = &data[&name];
        let n = var.elem_count();
        let vals: Vec<f32> = (0..n).map(|_| (bound * (2.0 * rand::Rng::random::<f64>(&mut rng) - 1.0)) as f32).collect();
        var.set(&Tensor::from_vec(vals, var.dims(), var.device())?)?;
    }
    Ok(())
}

/// How long and how a run trains.
#[derive(Clone, Debug, Default)]
pub struct LoopOptions {
    pub steps: Option<usize>,
    /// Wall-clock budget in seconds (training + evaluation), counted from the run's start.
    pub budget_s: Option<f64>,
    /// Fixed training set of this many images (revisited by epochs); None: fresh images every step.
    pub train_n: Option<u64>,
    /// Test pose error every this many steps (0: only at the end).
    pub eval_every: usize,
    pub checkpoint_every: usize,
    pub checkpoint_dir: Option<std::path::PathBuf>,
    pub progress: bool,
    /// Seconds already trained (resume).
    pub elapsed0: f64,
    /// The data's rescaling (recorded in checkpoints).
    pub rescale: Option<Rescale>,
}

/// One line of the learning curve.
#[derive(Clone, Debug, Serialize)]
pub struct CurveRow {
    pub step: usize,
    pub elapsed_s: f64,
    pub images: u64,
    pub loss: f64,
    pub data: f64,
    pub uniformity: f64,
    pub test_median_deg: f64,
    pub test_mean_deg: f64,
    pub test_rms_deg: f64,
}

/// Test pose error of the first `n` cached test images.
pub fn test_error(t: &Trainer, amps: &[f32], poses: &[UnitQuaternion<f64>], n: usize) -> anyhow::Result<crate::eval::pose_error::PoseErrorSummary> {
    let n = n.min(poses.len());
    let est = t.predict(&amps[..n * t.geometry.pixels()])?;
    Ok(crate::eval::pose_error::pose_error(&poses[..n], &est)?.summary)
}

/// Trains until `steps` or the budget; evaluates every `eval_every` steps on `eval_images` test
/// images (rows go to `curve`), checkpoints every `checkpoint_every`. A non-finite loss stops
/// the run with an error that names the last good checkpoint.
pub fn train_loop(
    t: &mut Trainer,
    source: &ImageSource,
    opts: &LoopOptions,
    test: (&[f32], &[UnitQuaternion<f64>]),
    eval_images: usize,
    curve: &mut dyn FnMut(&CurveRow) -> anyhow::Result<()>,
) -> anyhow::Result<CheckpointState> {
    let start = std::time::Instant::now();
    let elapsed = |s: &std::time::Instant| opts.elapsed0 + s.elapsed().as_secs_f64();
    let b = t.cfg.batch;
    let p = t.geometry.pixels();
    let bar = if opts.progress {
        let pb = match opts.steps {
            Some(n) => indicatif::ProgressBar::new(n as u64),
            None => indicatif::ProgressBar::new_spinner(),
        };
        pb.set_style(
            indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} steps {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb.set_position(t.step as u64);
        pb
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut ema: Option<f64> = None;
    let mut last: StepStats;
    let mut last_ckpt: Option<usize> = None;
    let mut rate_t = std::time::Instant::now();
    let mut rate_steps = 0usize;
    let state = |t: &Trainer, secs: f64| CheckpointState {
        step: t.step,
        elapsed_s: secs,
        images_seen: (t.step * b) as u64,
        rescale: opts.rescale,
        normalize_total: t.decoder.normalize_total,
    };
    loop {
        if opts.steps.is_some_and(|n| t.step >= n) || opts.budget_s.is_some_and(|bud| elapsed(&start) >= bud) {
            break;
        }
        // the next batch: image indices step·B … (mod N for a fixed training set)
        let first = (t.step * b) as u64;
        let (from, end) = match opts.train_n {
            Some(n) => {
                let f = first % n;
                (f, (f + b as u64).min(n))
            }
            None => (first, first + b as u64),
        };
        let (amps, _) = source.amplitudes(&t.geometry, from, (end - from) as usize)?;
        if amps.len() / p < 2 {
            t.step += 1; // a one-image tail of an epoch: batch norm needs two
            continue;
        }
        match t.train_step(&amps) {
            Ok(s) => last = s,
            Err(e) => {
                bar.abandon();
                let kept = match (&opts.checkpoint_dir, last_ckpt) {
                    (Some(d), Some(s)) => format!("the last good checkpoint (step {s}) is in {}", d.display()),
                    _ => "no checkpoint had been written yet".to_string(),
                };
                anyhow::bail!("{e:#}: training stopped; {kept}. Lower --lr-volume/--lr-encoder or pass --clip 1");
            }
        }
        rate_steps += 1;
        ema = Some(match ema { None => last.loss, Some(e) => 0.98 * e + 0.02 * last.loss });
        if rate_steps >= 20 {
            let ips = (rate_steps * b) as f64 / rate_t.elapsed().as_secs_f64();
            bar.set_message(format!("loss {:.4}  {ips:.0} images/s", ema.unwrap()));
            rate_t = std::time::Instant::now();
            rate_steps = 0;
        }
        bar.set_position(t.step as u64);
        if opts.eval_every > 0 && t.step % opts.eval_every == 0 {
            let e = test_error(t, test.0, test.1, eval_images)?;
            let row = CurveRow {
                step: t.step,
                elapsed_s: elapsed(&start),
                images: (t.step * b) as u64,
                loss: ema.unwrap_or(f64::NAN),
                data: last.data,
                uniformity: last.uniformity,
                test_median_deg: e.median_deg,
                test_mean_deg: e.mean_deg,
                test_rms_deg: e.rms_deg,
            };
            let line = format!(
                "step {:>6}  {:>7.0} s  loss {:.4}  test pose error median {:.2}°  rms {:.2}° ({} images)",
                row.step, row.elapsed_s, row.loss, row.test_median_deg, row.test_rms_deg, e.images
            );
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
            curve(&row)?;
        }
        if let Some(dir) = &opts.checkpoint_dir {
            if opts.checkpoint_every > 0 && t.step % opts.checkpoint_every == 0 {
                t.save_checkpoint(dir, &state(t, elapsed(&start)))?;
                last_ckpt = Some(t.step);
            }
        }
    }
    bar.finish_and_clear();
    let st = state(t, elapsed(&start));
    if let Some(dir) = &opts.checkpoint_dir {
        t.save_checkpoint(dir, &st)?;
    }
    Ok(st)
}
