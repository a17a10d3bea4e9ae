//! The trainer: encoder + decoder + optimiser with the fixed input statistics; one
//! optimisation step, prediction with head selection, and checkpoints (weights, input
//! statistics, Adam moments) that resume exactly.

use std::path::Path;

use anyhow::{ensure, Context};
use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder, VarMap};
use nalgebra::{Matrix3, UnitQuaternion};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::config::{DecoderKind, PatternScale, SymmetricBranch, XraiConfig};
use super::decoder::{Amplitudes, Decoder, FourierNet};
use super::encoder::{sixd_to_rotation, Encoder};
use super::geometry::WorkingGeometry;
use super::init::{normalize_totals, InputStats};
use super::loss::{branch_errors, symmetric_multihead, uniformity, DataModel};
use super::optim::{Adam, ParamGroup};
use super::pyramid::gaussian_pyramid;
use crate::data::Rescale;
use crate::rotation::to_matrix;

/// Rotation matrices of quaternions as a `[N, 3, 3]` tensor.
pub fn rotations_tensor(poses: &[UnitQuaternion<f64>], dev: &Device) -> candle_core::Result<Tensor> {
    let mats: Vec<Matrix3<f64>> = poses.iter().map(|q| *to_matrix(q).matrix()).collect();
    matrices_tensor(&mats, dev)
}

/// Rotation matrices as a `[N, 3, 3]` f32 tensor.
pub fn matrices_tensor(rots: &[Matrix3<f64>], dev: &Device) -> candle_core::Result<Tensor> {
    let v: Vec<f32> = rots
        .iter()
        .flat_map(|r| (0..9).map(move |k| r[(k / 3, k % 3)] as f32))
        .collect();
    Tensor::from_vec(v, (rots.len(), 3, 3), dev)
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
    /// How a slice becomes the expected image (loss, pattern scale, background).
    pub data_model: DataModel,
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
        ensure!(
            geometry.side == cfg.working_size,
            "geometry side {} ≠ working size {}",
            geometry.side,
            cfg.working_size
        );
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
            let std = if cfg.standardize {
                s.std.clone()
            } else {
                vec![s.mean.iter().sum::<f32>() / p as f32; p]
            };
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
        let decoder = Decoder::new(
            amplitudes,
            m,
            spacing,
            &geometry.s,
            &geometry.pixel_weight,
            normalize_total,
            &device,
        )?;
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
        let mut groups = vec![ParamGroup {
            name: "encoder".into(),
            vars: enc_vars,
            lr: cfg.lr_encoder,
        }];
        if learned {
            groups.push(ParamGroup {
                name: "volume".into(),
                vars: vol_vars,
                lr: cfg.lr_volume,
            });
        }
        let optimizer = Adam::new(groups, cfg.grad_clip, cfg.amsgrad)?;
        let data_model = DataModel {
            loss: cfg.loss,
            scale: cfg.pattern_scale,
            background: None,
        };
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
            data_model,
            step: 0,
        };
        t.refresh_stats()?;
        Ok(t)
    }

    /// The data's known expected background, photons per pixel of the working image
    /// ([`WorkingGeometry::intensities`]), put in the forward model
    /// (λ = φ·slice + b); pixels outside the loss get none.
    pub fn with_background(mut self, background: &[f32]) -> anyhow::Result<Trainer> {
        let p = self.geometry.pixels();
        ensure!(
            background.len() == p,
            "the background has {} pixels, the working image {p}",
            background.len()
        );
        let b: Vec<f32> = match &self.geometry.loss_mask {
            Some(mask) => background.iter().zip(mask).map(|(b, m)| b * m).collect(),
            None => background.to_vec(),
        };
        self.data_model.background = Some(Tensor::from_vec(b, p, &self.device)?);
        Ok(self)
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
    /// channels when configured. The images are amplitudes, √(binned counts) for photon data:
    /// the square root stabilises the Poisson variance (Var √k ≈ 1/4, Anscombe's transform
    /// without its 3/8), and binning 4 × 4 first lifts most pixels off 0 and 1 photon. With a
    /// fitted pattern scale each image is first normalised to the data's mean total.
    fn input(&self, amps: &Tensor) -> candle_core::Result<Tensor> {
        let (b, p) = amps.dims2()?;
        let s = self.cfg.working_size;
        let amps = match self.cfg.pattern_scale {
            PatternScale::Fixed => amps.clone(),
            PatternScale::Fit => normalize_totals(amps, self.norm * p as f64)?,
        };
        let x = amps
            .reshape((b, 1, s, s))?
            .broadcast_sub(&self.mean)?
            .broadcast_mul(&self.inv_std)?;
        let levels = self.cfg.pyramid_levels;
        if levels == 0 {
            return Ok(x);
        }
        let blurred = gaussian_pyramid(&x.flatten_all()?.to_vec1::<f32>()?, s, levels);
        let blurred = Tensor::from_vec(blurred, (b, levels, s, s), x.device())?;
        Tensor::cat(&[&x, &blurred], 1)
    }

    /// The loss's targets of images `[B × P]`: `([B, P], [B, P])`, the images and their π
    /// rotations. The loss sees only the pixels it uses (measured, π partner measured; the mask
    /// is symmetric under π, so the π target is masked alike); the encoder sees all measured ones.
    pub fn targets(&self, amps: &[f32]) -> candle_core::Result<(Tensor, Tensor)> {
        let p = self.geometry.pixels();
        let b = amps.len() / p;
        let masked;
        let values = match &self.geometry.loss_mask {
            Some(mask) => {
                masked = amps
                    .chunks_exact(p)
                    .flat_map(|img| img.iter().zip(mask).map(|(a, m)| a * m))
                    .collect::<Vec<f32>>();
                &masked[..]
            }
            None => amps,
        };
        Ok((
            Tensor::from_vec(values.to_vec(), (b, p), &self.device)?,
            Tensor::from_vec(rotate_pi(values, p), (b, p), &self.device)?,
        ))
    }

    /// The data term of each image against `c` rotations of its own: `rots` `[B·c, 3, 3]`
    /// (image-major), `target` `[B, P]` → `[B, c]`, the loss's per-image value at those poses.
    pub fn slice_errors(&self, rots: &Tensor, target: &Tensor, c: usize) -> candle_core::Result<Tensor> {
        let (b, p) = target.dims2()?;
        let pred = self.decoder.forward(rots)?.reshape((b, c, p))?;
        branch_errors(&pred, &pred, target, target, self.norm, &self.data_model)?
            .narrow(2, 0, 1)?
            .squeeze(2)
    }

    /// Every pose hypothesis of the encoder (evaluation mode) for images `[B × P]` with its data
    /// term: `2K` rotations per image, heads first, then each head's π partner R·Rz(π) (scored
    /// against the image, which is the π branch of the loss), and the `[B × 2K]` errors.
    pub fn hypotheses(&self, amps: &[f32]) -> anyhow::Result<(Vec<Matrix3<f64>>, Vec<f32>)> {
        let p = self.geometry.pixels();
        let k = self.cfg.heads;
        let rz_pi = *to_matrix(&crate::rotation::rz_pi()).matrix();
        let mut rots = Vec::with_capacity(amps.len() / p * 2 * k);
        let mut errs = Vec::with_capacity(amps.len() / p * 2 * k);
        for chunk in amps.chunks(256 * p) {
            let (errors, r, r_pi) = self.forward(chunk, false)?;
            let e = errors.flatten_all()?.to_vec1::<f32>()?;
            let r = r.flatten_all()?.to_vec1::<f32>()?;
            let r_pi = match &r_pi {
                Some(t) => t.flatten_all()?.to_vec1::<f32>()?,
                None => r.clone(),
            };
            for i in 0..chunk.len() / p {
                for branch in 0..2 {
                    let src = if branch == 0 { &r } else { &r_pi };
                    for h in 0..k {
                        let o = (i * k + h) * 9;
                        let mat = Matrix3::from_fn(|a, b| src[o + a * 3 + b] as f64);
                        rots.push(if branch == 0 { mat } else { mat * rz_pi });
                        errs.push(e[(i * k + h) * 2 + branch]);
                    }
                }
            }
        }
        Ok((rots, errs))
    }

    /// Encodes and decodes a batch: (errors `[B, K, 2]`, rotations `[B, K, 3, 3]`, rotations
    /// of the π branch when it is re-encoded).
    pub fn forward(&self, amps: &[f32], train: bool) -> candle_core::Result<(Tensor, Tensor, Option<Tensor>)> {
        let p = self.geometry.pixels();
        let b = amps.len() / p;
        let k = self.cfg.heads;
        let (target, target_pi) = self.targets(amps)?;
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
        let errors = branch_errors(&pred, &pred_pi, &target, &target_pi, self.norm, &self.data_model)?;
        Ok((errors, rots, rots_pi))
    }

    /// One Adam step on a batch of working-size amplitude images `[B × P]`.
    pub fn train_step(&mut self, amps: &[f32]) -> anyhow::Result<StepStats> {
        let (loss, data, unif) = self.objective(amps)?;
        let unif = unif as f64;
        let loss_v = loss.to_scalar::<f32>()? as f64;
        if !loss_v.is_finite() {
            anyhow::bail!("the loss became {loss_v} at step {}", self.step + 1);
        }
        let grads = loss.backward()?;
        let info = self.optimizer.step(&grads)?;
        self.step += 1;
        Ok(StepStats {
            loss: loss_v,
            data: data.to_scalar::<f32>()? as f64,
            uniformity: unif,
            grad_norm: info.grad_norm,
        })
    }

    /// The training objective of a batch: (loss, its data term, the uniformity term's value).
    fn objective(&self, amps: &[f32]) -> anyhow::Result<(Tensor, Tensor, f32)> {
        let (errors, rots, _) = self.forward(amps, true)?;
        let data = symmetric_multihead(&errors, self.cfg.mean_head_weight)?;
        if self.cfg.uniformity_weight > 0.0 {
            let u = uniformity(&rots)?;
            let loss = (&data + (&u * self.cfg.uniformity_weight)?)?;
            Ok((loss, data, u.to_scalar::<f32>()?))
        } else {
            Ok((data.clone(), data, 0.0))
        }
    }

    /// One Adam step on the mean gradient of `comm`'s ranks, each with its own `amps` (its
    /// share of the global batch): one flat buffer of gradients, the batch-norm running
    /// statistics and the loss terms is summed over the ranks, so every rank applies the same
    /// update. As in PyTorch's DDP without SyncBatchNorm, batch normalisation and the
    /// uniformity prior see each rank's batch, and the running statistics are the ranks' mean;
    /// [`Trainer::train_step_accumulated`] is the same step in one process.
    pub fn train_step_shared(&mut self, amps: &[f32], comm: &dyn crate::comm::Comm) -> anyhow::Result<StepStats> {
        if comm.size() == 1 {
            return self.train_step(amps);
        }
        let (mut buffer, stats_at) = self.local_gradient(amps)?;
        comm.sum_f32(&mut buffer);
        self.apply_mean_gradient(buffer, stats_at, comm.size())
    }

    /// The step of `batches.len()` data-parallel ranks, in one process: each batch's gradient
    /// from the same parameters and the same running statistics, then one Adam step on their
    /// mean (the reference that [`Trainer::train_step_shared`] is tested against).
    pub fn train_step_accumulated(&mut self, batches: &[&[f32]]) -> anyhow::Result<StepStats> {
        ensure!(!batches.is_empty(), "no batch");
        let running = self.running_statistics()?;
        let mut total: Vec<f32> = Vec::new();
        let mut stats_at = 0;
        for amps in batches {
            self.set_running_statistics(&running)?;
            let (buffer, at) = self.local_gradient(amps)?;
            if total.is_empty() {
                total = buffer;
            } else {
                total.iter_mut().zip(&buffer).for_each(|(t, b)| *t += b);
            }
            stats_at = at;
        }
        self.apply_mean_gradient(total, stats_at, batches.len())
    }

    /// This rank's part of a shared step: [gradients (optimiser order) | running statistics
    /// after this batch | loss, data term, uniformity], and where the running statistics start.
    fn local_gradient(&mut self, amps: &[f32]) -> anyhow::Result<(Vec<f32>, usize)> {
        let (loss, data, unif) = self.objective(amps)?;
        let loss_v = loss.to_scalar::<f32>()?;
        let data_v = data.to_scalar::<f32>()?;
        let grads = loss.backward()?;
        let mut buffer = self.optimizer.flat_gradient(&grads)?;
        let at = buffer.len();
        buffer.extend(self.running_statistics()?);
        buffer.extend([loss_v, data_v, unif]);
        Ok((buffer, at))
    }

    /// Divides a summed buffer of `parts` ranks by their number, sets the running statistics
    /// and applies the mean gradient. A non-finite loss on any rank stops every rank alike.
    fn apply_mean_gradient(
        &mut self,
        mut buffer: Vec<f32>,
        stats_at: usize,
        parts: usize,
    ) -> anyhow::Result<StepStats> {
        let k = parts as f32;
        buffer.iter_mut().for_each(|v| *v /= k);
        let tail = buffer.len() - 3;
        let (loss_v, data_v, unif) = (buffer[tail] as f64, buffer[tail + 1] as f64, buffer[tail + 2] as f64);
        if !loss_v.is_finite() {
            anyhow::bail!("the loss became {loss_v} at step {}", self.step + 1);
        }
        self.set_running_statistics(&buffer[stats_at..tail])?;
        let info = self.optimizer.step_flat(&buffer[..stats_at])?;
        self.step += 1;
        Ok(StepStats {
            loss: loss_v,
            data: data_v,
            uniformity: unif,
            grad_norm: info.grad_norm,
        })
    }

    /// The names of the batch-norm running statistics, sorted: the order they travel in.
    fn running_names(&self) -> Vec<String> {
        let data = self.varmap.data().lock().unwrap();
        let mut names: Vec<String> = data.keys().filter(|n| n.contains("running_")).cloned().collect();
        names.sort();
        names
    }

    /// The batch-norm running statistics, flat, in name order.
    fn running_statistics(&self) -> anyhow::Result<Vec<f32>> {
        let names = self.running_names();
        let data = self.varmap.data().lock().unwrap();
        let mut out = Vec::new();
        for name in &names {
            out.extend(data[name].as_tensor().flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    fn set_running_statistics(&self, values: &[f32]) -> anyhow::Result<()> {
        let names = self.running_names();
        let data = self.varmap.data().lock().unwrap();
        let mut at = 0;
        for name in &names {
            let var = &data[name];
            let n = var.elem_count();
            let chunk = values.get(at..at + n).context("running statistics are too short")?;
            var.set(&Tensor::from_slice(chunk, var.shape(), var.device())?)?;
            at += n;
        }
        ensure!(
            at == values.len(),
            "running statistics have {} values, expected {at}",
            values.len()
        );
        Ok(())
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
        let (rots, errs) = self.hypotheses(amps)?;
        let (best, _) = super::refine::best_of(&rots, &errs, 2 * self.cfg.heads);
        Ok(crate::rotation::from_matrices(&best))
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
            let tensors = candle_core::safetensors::load(&opt, &self.device)
                .with_context(|| format!("cannot load {}", opt.display()))?;
            self.optimizer
                .load_state_tensors(&tensors)
                .with_context(|| format!("{}: does not match this model", opt.display()))?;
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
    Ok(serde_json::from_str(
        &std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?,
    )?)
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
            (0..n)
                .map(|_| {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    (sd * z) as f32
                })
                .collect::<Vec<_>>()
        } else if name.ends_with("bias") {
            continue; // set with the matching weight's fan-in below
        } else {
            continue;
        };
        var.set(&Tensor::from_vec(vals, dims.as_slice(), var.device())?)?;
    }
    // biases: uniform in ±1/√fan_in of their layer
    let names: Vec<String> = data
        .keys()
        .filter(|n| n.ends_with(".bias") && !n.contains(".bn"))
        .cloned()
        .collect();
    let mut names = names;
    names.sort();
    for name in names {
        let wname = name.replace(".bias", ".weight");
        let fan_in: usize = data.get(&wname).map(|w| w.dims()[1..].iter().product()).unwrap_or(1);
        let bound = 1.0 / (fan_in as f64).sqrt();
        let var = &data[&name];
        let n = var.elem_count();
        let vals: Vec<f32> = (0..n)
            .map(|_| (bound * (2.0 * rand::Rng::random::<f64>(&mut rng) - 1.0)) as f32)
            .collect();
        var.set(&Tensor::from_vec(vals, var.dims(), var.device())?)?;
    }
    Ok(())
}
