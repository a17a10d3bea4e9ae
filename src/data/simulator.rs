//! Image i of a stream as a pure function of (seed, split, i): its pose and its photon noise
//! come from a ChaCha8 generator keyed by (seed, split) and positioned on stream i, so an
//! image never depends on batch size, thread count or which images were made before it. The
//! shot-to-shot effects ([`Acquisition`]: fluence jitter, the particle's place in the focus)
//! each draw from a generator of their own, keyed by the effect as well, so switching one on
//! changes neither the pose, the noise's random numbers nor the other effects.
//!
//! A pattern is made in this order: the expected photons at the pose (rescaled; 0 in bad
//! pixels), times the pattern's scale, plus the background's expected photons, then counted
//! (Poisson, one process along the pattern's cumulative mean: [`poisson_counts_in_place`]).

use nalgebra::UnitQuaternion;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::physics::acquisition::Acquisition;
use crate::physics::beam::Beam;
use crate::physics::detector::{Detector, PixelDetector};
use crate::physics::molecule::Molecule;
use crate::physics::noise::poisson_counts_in_place;
use crate::physics::slice::Slicer;
use crate::physics::symmetry::PointGroup;
use crate::physics::transform::{direct_transform, grid_transform, GridSpec};
use crate::rotation::{random_rotation, to_matrix};
use crate::volume::ComplexVolume;

/// Disjoint seed domains: a test stream never produces a training image, whatever the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    fn domain(self) -> u64 {
        match self {
            Split::Train => 0x7472_6169_6e00_0001, // "train"
            Split::Test => 0x7465_7374_0000_0002,  // "test"
        }
    }
}

/// How |F|² is evaluated at the pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Trilinear interpolation in a precomputed M³ intensity grid (fast).
    Grid,
    /// Exact summation over atoms at every pixel (slow, the yardstick).
    Direct,
}

/// Optional rescaling of the expected photons.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rescale {
    /// Physical expected photons.
    None,
    /// Every image scaled to exactly this total (the paper: ≥ 20,000).
    PerImage(f64),
    /// One constant for all images, chosen so the mean total over random poses is this;
    /// keeps the physical variation of the total with pose.
    MeanTotal(f64),
}

/// Everything that decides the images, as stored in `meta.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimulationConfig {
    pub beam: Beam,
    pub detector: Detector,
    pub mode: Mode,
    /// Intensity oversampling k of the default grid rule (Δs = 1/(4kR)).
    pub oversampling: f64,
    /// Grid size override (`--grid M`).
    pub grid: Option<usize>,
    pub rescale: Rescale,
    pub poisson: bool,
    pub seed: u64,
    /// Fluence jitter, focus profile and background (none in configurations from before them).
    #[serde(default)]
    pub acquisition: Acquisition,
}

impl Default for SimulationConfig {
    fn default() -> Self {
        SimulationConfig {
            beam: Beam::default(),
            detector: Detector::default(),
            mode: Mode::Grid,
            oversampling: crate::physics::transform::DEFAULT_OVERSAMPLING,
            grid: None,
            rescale: Rescale::None,
            poisson: false,
            seed: 0,
            acquisition: Acquisition::default(),
        }
    }
}

/// A molecule, a detector and a beam, ready to produce images.
pub struct ImageSimulator {
    pub config: SimulationConfig,
    pub geometry: PixelDetector,
    /// Expected photons per unit |F|² per pixel (fluence · r_e² · P · Ω).
    pub scale: Vec<f64>,
    /// The grid and its transform (always built: grid mode slices it, and it sets the global
    /// rescaling constant in both modes).
    pub grid: GridSpec,
    pub transform: ComplexVolume,
    slicer: Slicer,
    molecule: Molecule,
    /// The molecule's exact rotational symmetry: poses known only up to its rotations.
    symmetry: PointGroup,
    /// Global multiplier applied to every image (1, or the mean-total constant).
    global_scale: f64,
    /// Expected background photons per pixel (empty: none).
    background: Vec<f32>,
    /// Seconds spent on the grid transform.
    pub transform_seconds: f64,
}

impl ImageSimulator {
    pub fn new(molecule: Molecule, config: SimulationConfig) -> anyhow::Result<ImageSimulator> {
        config.beam.validate()?;
        config.detector.validate()?;
        config.acquisition.validate()?;
        if let Rescale::PerImage(t) | Rescale::MeanTotal(t) = config.rescale {
            anyhow::ensure!(t.is_finite() && t > 0.0, "--rescale-total must be positive, got {t}");
        }
        let pixels = config.detector.pixels;
        ensure_memory(
            (pixels as u64)
                .checked_mul(pixels as u64)
                .and_then(|n| n.checked_mul(BYTES_PER_PIXEL)),
            &format!("the {pixels}×{pixels} detector's pixel geometry"),
            "Use fewer --pixels (the paper: 128)",
        )?;
        let geometry = config.detector.geometry(&config.beam);
        let s_max = geometry.s_max();
        let radius = molecule.radius();
        let grid = match config.grid {
            Some(m) => GridSpec::with_size(m, radius, s_max)?,
            None => GridSpec::for_molecule(radius, s_max, config.oversampling)?,
        };
        let m = grid.m as u64;
        ensure_memory(
            m.checked_mul(m)
                .and_then(|v| v.checked_mul(m))
                .and_then(|v| v.checked_mul(BYTES_PER_VOXEL)),
            &format!("the {m}³ reciprocal grid (--grid)"),
            "Use a smaller --grid, or leave it out for the default size this molecule and detector need",
        )?;
        let t0 = std::time::Instant::now();
        let transform = grid_transform(&molecule, &grid);
        let transform_seconds = t0.elapsed().as_secs_f64();
        let slicer = Slicer::new(&transform.intensity(), &geometry, &config.beam)?;
        let scale = geometry.scale(&config.beam);
        let global_scale = match config.rescale {
            Rescale::MeanTotal(t) => t / slicer.mean_total(),
            _ => 1.0,
        };
        let background = config.acquisition.background_per_pixel(&geometry);
        let symmetry = PointGroup::of_molecule(&molecule);
        Ok(ImageSimulator {
            config,
            geometry,
            scale,
            grid,
            transform,
            slicer,
            molecule,
            symmetry,
            global_scale,
            background,
            transform_seconds,
        })
    }

    pub fn pixels(&self) -> usize {
        self.geometry.len()
    }

    /// The molecule's exact rotational symmetry ([`crate::physics::symmetry`]): the image of pose
    /// R is also that of S · R for each of its rotations S.
    pub fn symmetry(&self) -> &PointGroup {
        &self.symmetry
    }

    pub fn molecule(&self) -> &Molecule {
        &self.molecule
    }

    /// The generator of image i of a split: pose first, then noise.
    pub fn rng(&self, split: Split, index: u64) -> ChaCha8Rng {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&self.config.seed.to_le_bytes());
        key[8..16].copy_from_slice(&split.domain().to_le_bytes());
        key[16..24].copy_from_slice(b"xraibnch");
        let mut rng = ChaCha8Rng::from_seed(key);
        rng.set_stream(index);
        rng
    }

    /// The generator of one shot-to-shot effect of image i (`effect`: 8 bytes naming it).
    fn effect_rng(&self, split: Split, index: u64, effect: &[u8; 8]) -> ChaCha8Rng {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&self.config.seed.to_le_bytes());
        key[8..16].copy_from_slice(&split.domain().to_le_bytes());
        key[16..24].copy_from_slice(b"xraibnch");
        key[24..32].copy_from_slice(effect);
        let mut rng = ChaCha8Rng::from_seed(key);
        rng.set_stream(index);
        rng
    }

    /// Image `index`'s scale (mean 1): its pulse's fluence and its place in the focus. 1 when
    /// neither effect is on.
    pub fn pattern_scale(&self, split: Split, index: u64) -> f64 {
        let acq = &self.config.acquisition;
        if !acq.varies() {
            return 1.0;
        }
        acq.pattern_scale(
            &mut self.effect_rng(split, index, b"fluence\0"),
            &mut self.effect_rng(split, index, b"focus\0\0\0"),
        )
    }

    /// The pose of image `index` of `split` (what [`ImageSimulator::image`] renders), without
    /// rendering it.
    pub fn pose(&self, split: Split, index: u64) -> UnitQuaternion<f64> {
        random_rotation(&mut self.rng(split, index))
    }

    /// Image `index` of `split` with a random pose; returns the pose.
    pub fn image(&self, split: Split, index: u64, out: &mut [f32]) -> UnitQuaternion<f64> {
        let mut rng = self.rng(split, index);
        let pose = random_rotation(&mut rng);
        self.render(&pose, out);
        self.acquire(split, index, out, &mut rng);
        pose
    }

    /// Image `index` of `split` at a given pose (from `--poses`); noise still keyed by index.
    pub fn image_at_pose(&self, split: Split, index: u64, pose: &UnitQuaternion<f64>, out: &mut [f32]) {
        self.render(pose, out);
        let mut rng = self.rng(split, index);
        let _ = random_rotation(&mut rng); // same stream position as `image`
        self.acquire(split, index, out, &mut rng);
    }

    /// The pattern's scale, the background and the counting, on expected photons `out`;
    /// `noise` is the image's generator, past its pose.
    fn acquire(&self, split: Split, index: u64, out: &mut [f32], noise: &mut ChaCha8Rng) {
        let phi = self.pattern_scale(split, index);
        if phi != 1.0 {
            let k = phi as f32;
            out.iter_mut().for_each(|x| *x *= k);
        }
        if !self.background.is_empty() {
            out.iter_mut().zip(&self.background).for_each(|(x, b)| *x += b);
        }
        if self.config.poisson {
            poisson_counts_in_place(out, noise);
        }
    }

    /// Expected photons (after rescaling) at a pose, no noise.
    pub fn render(&self, pose: &UnitQuaternion<f64>, out: &mut [f32]) {
        let r = to_matrix(pose);
        match self.config.mode {
            Mode::Grid => self.slicer.slice_into(&r, out),
            Mode::Direct => {
                let rotated: Vec<[f64; 3]> = self
                    .geometry
                    .s
                    .iter()
                    .map(|s| (r * nalgebra::Vector3::from(*s)).into())
                    .collect();
                let f = direct_transform(&self.molecule, &rotated);
                for ((o, f), w) in out.iter_mut().zip(&f).zip(&self.scale) {
                    *o = (w * f.norm_sqr()) as f32;
                }
            }
        }
        match self.config.rescale {
            Rescale::PerImage(target) => {
                let sum = sum_f64(out);
                if sum > 0.0 {
                    let k = (target / sum) as f32;
                    out.iter_mut().for_each(|x| *x *= k);
                }
            }
            Rescale::MeanTotal(_) => {
                let k = self.global_scale as f32;
                out.iter_mut().for_each(|x| *x *= k);
            }
            Rescale::None => {}
        }
    }

    /// The global rescaling constant (1 unless `MeanTotal`).
    pub fn global_scale(&self) -> f64 {
        self.global_scale
    }
}

/// Lower bound of the memory one reciprocal-grid voxel takes while the simulator is built:
/// the complex transform (16 bytes), its intensity (4), the slicer's copy (4) and bricks (~5.7).
pub const BYTES_PER_VOXEL: u64 = 30;
/// Lower bound per detector pixel: its s vector, polarisation, solid angle and scale (48) and
/// the slicer's points and scale (16).
pub const BYTES_PER_PIXEL: u64 = 64;

/// Memory the kernel says can be allocated without swapping (`MemAvailable`); None off Linux.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Refuses, before allocating, work whose memory (`bytes`; None = overflowed u64) exceeds
/// what is available; `what` names it, `advice` says what to change.
pub fn ensure_memory(bytes: Option<u64>, what: &str, advice: &str) -> anyhow::Result<()> {
    let Some(available) = available_memory() else {
        return Ok(());
    };
    let shown = bytes.map_or_else(|| "more than 16 EiB".to_string(), crate::data::output::format_bytes);
    anyhow::ensure!(
        bytes.is_some_and(|b| b <= available),
        "{what} needs at least {shown} of memory but {} are available; nothing was allocated. {advice}",
        crate::data::output::format_bytes(available)
    );
    Ok(())
}

/// Σ x in f64 with eight independent accumulators (vectorises; a single running sum is bound
/// by the add latency and cost as much as the slice itself).
pub fn sum_f64(x: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = x.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v as f64;
        }
    }
    acc.iter().sum::<f64>() + tail
}
