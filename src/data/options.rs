//! The data options commands share: those of every command that simulates (the molecule, the
//! beam, the detector and image formation), as clap arguments that build a [`SimulationConfig`],
//! and [`DataArgs`], the methods' one block for data read from files (`--data`, `--detector`,
//! `--frames`, `--test-data`, …). They live in `data` because the methods' subcommands flatten
//! them as well as `simulate`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::ValueEnum;

use crate::data::{Mode, Rescale, SimulationConfig};
use crate::physics::acquisition::{Acquisition, BackgroundProfile, FocusProfile};
use crate::physics::beam::Beam;
use crate::physics::detector::Detector;
use crate::physics::molecule::{self, SelectionError};

/// Where a molecule comes from; shared by every command that simulates.
#[derive(clap::Args, Debug, Clone)]
pub struct MoleculeArgs {
    /// PDB ID (e.g. 2CEX_A = chain A of 2CEX) or path to a .pdb/.cif file. IDs are looked up in
    /// datasets/pdb/, then $XRAI_PDB_DIR, then downloaded from the RCSB (unless XRAI_OFFLINE).
    /// Read: the first model only; per residue, atoms without an alternate location plus the
    /// altloc with the highest occupancy (ties: the first listed); waters and HETATM excluded
    /// unless asked for. Serial numbers may repeat or be hybrid-36; each line keeps its element.
    #[arg(long, default_value = "2CEX_A")]
    pub pdb: String,
    /// Chains to keep, comma-separated (default: the chain in the ID, else all).
    #[arg(long)]
    pub chain: Option<String>,
    /// Keep HETATM records other than waters (ligands, ions); excluded by default.
    #[arg(long)]
    pub include_hetatm: bool,
    /// Keep waters (HOH, WAT, DOD, …), whether stored as ATOM or HETATM; excluded by default.
    #[arg(long)]
    pub include_water: bool,
}

impl MoleculeArgs {
    /// Loads the molecule; a selection that keeps nothing names the flag that would help.
    pub fn load(&self) -> Result<molecule::Molecule> {
        crate::data::pdb::load(
            &self.pdb,
            self.chain.as_deref(),
            self.include_hetatm,
            self.include_water,
        )
        .map_err(|e| {
            let hint = match e.downcast_ref::<SelectionError>() {
                Some(SelectionError::NoSuchChain { .. }) => "Pick one of those with --chain".to_string(),
                Some(SelectionError::NothingLeft { waters, hetero, .. }) => {
                    let mut flags = Vec::new();
                    if *waters > 0 {
                        flags.push("--include-water keeps the waters");
                    }
                    if *hetero > 0 {
                        flags.push("--include-hetatm keeps the HETATM records");
                    }
                    flags.join("; ")
                }
                None => return e,
            };
            if hint.is_empty() {
                e
            } else {
                anyhow::anyhow!("{e:#}. {hint}")
            }
        })
    }
}

/// Beam, detector and image-formation options (defaults: the paper's geometry).
#[derive(clap::Args, Debug, Clone)]
pub struct PhysicsArgs {
    /// Detector pixels per side.
    #[arg(long, default_value_t = 128)]
    pub pixels: usize,
    /// Detector side length, metres.
    #[arg(long, default_value_t = 0.1)]
    pub det_size: f64,
    /// Sample–detector distance, metres (default 0.2). For a CXI --data file, the distance when
    /// the file has none (given, it replaces the file's).
    #[arg(long)]
    pub det_dist: Option<f64>,
    /// Photon energy, eV (default 4600). For a CXI --data file, the energy when the file has
    /// none (given, it replaces the file's); for a Dragonfly file without meta.json, the
    /// wavelength of its detector's q vectors.
    #[arg(long)]
    pub energy: Option<f64>,
    /// Photons per pulse.
    #[arg(long, default_value_t = 1e12)]
    pub photons: f64,
    /// Beam focus radius, metres.
    #[arg(long, default_value_t = 0.5e-6)]
    pub focus_radius: f64,
    /// grid: trilinear slices of a precomputed intensity grid; direct: exact sum over atoms.
    #[arg(long, value_enum, default_value_t = Mode::Grid)]
    pub mode: Mode,
    /// Reciprocal grid size M (odd); default from the molecule's size (see --oversampling).
    #[arg(long)]
    pub grid: Option<usize>,
    /// Intensity oversampling k of the default grid: Δs = 1/(4kR), R the molecule's radius.
    #[arg(long, default_value_t = crate::physics::transform::DEFAULT_OVERSAMPLING)]
    pub oversampling: f64,
    /// Rescale images to this total intensity (the paper: ≥ 20,000); see --rescale.
    #[arg(long)]
    pub rescale_total: Option<f64>,
    /// per-image: every image sums to the total; mean: one constant so the mean total over
    /// random poses is the total (keeps the physical variation with pose).
    #[arg(long, value_enum, default_value_t = RescaleMode::PerImage)]
    pub rescale: RescaleMode,
    /// Poisson photon counts instead of expected photons.
    #[arg(long)]
    pub poisson: bool,
    /// Photon-limited data: the beam's expected photons scaled by one constant so that a
    /// pattern holds this many on average over random poses in its unmasked pixels, then counted
    /// (implies --poisson). The physical default beam gives about 12 for 2CEX_A.
    #[arg(long, value_parser = positive_photons, conflicts_with = "rescale_total", allow_negative_numbers = true)]
    pub mean_photons: Option<f64>,
    /// Relative spread (σ/mean) of the pulse fluence, gamma-distributed with mean 1 as in
    /// Dragonfly's simulator (0.2: 20 %); each pattern's scale, unknown to the methods.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub fluence_jitter: f64,
    /// flat: every particle sees the mean fluence; gaussian: anywhere within the focus radius
    /// of a Gaussian focus (a pattern scale from 0.31 to 2.31, mean 1).
    #[arg(long, value_enum, default_value_t = FocusProfile::Flat)]
    pub focus_profile: FocusProfile,
    /// Background photons per pattern (mean, over the unmasked pixels), added to the expected
    /// photons before counting.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub background: f64,
    /// How the background spreads: inverse-q2 (falling as 1/|q|² from the beam, as gas and jet
    /// scattering) or flat.
    #[arg(long, value_enum, default_value_t = BackgroundProfile::InverseQ2)]
    pub background_profile: BackgroundProfile,
    /// Beamstop radius in pixels around the beam: those pixels are bad (written as 0, saved in
    /// mask.npy, used by no method).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub beamstop_radius: f64,
    /// Width in pixels of a horizontal and a vertical band of bad pixels through the centre (the
    /// gaps between pnCCD/CSPAD panels).
    #[arg(long, default_value_t = 0)]
    pub gap: usize,
    /// Bad pixels from a .npy array of booleans with the detector's shape (true = bad).
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// Seed of the pose and noise streams.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `--mean-photons`: a positive, finite number.
fn positive_photons(text: &str) -> std::result::Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!(
            "{text:?} is not a positive number of photons per pattern (e.g. 1000)"
        )),
    }
}

/// The bad pixels of a boolean .npy mask of an n × n detector (frame order).
pub fn read_mask(path: &Path, n: usize) -> Result<Vec<u32>> {
    let bytes = std::fs::read(path).with_context(|| format!("--mask {}: cannot read it", path.display()))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .with_context(|| format!("--mask {}: not a .npy file (write it with numpy.save)", path.display()))?;
    let shape = npy.shape().to_vec();
    let descr = npy.dtype().descr();
    anyhow::ensure!(
        descr.contains("b1"),
        "--mask {}: an array of {descr}; expected booleans (numpy: np.save(path, mask.astype(bool)), true = bad pixel)",
        path.display()
    );
    anyhow::ensure!(
        shape == [n as u64, n as u64],
        "--mask {}: shape {shape:?}; the detector is {n}×{n} (--pixels)",
        path.display()
    );
    let values: Vec<bool> = npy
        .into_vec()
        .with_context(|| format!("--mask {}: cannot read its values", path.display()))?;
    Ok(values
        .iter()
        .enumerate()
        .filter(|(_, &bad)| bad)
        .map(|(p, _)| p as u32)
        .collect())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RescaleMode {
    PerImage,
    Mean,
}

/// Sample–detector distance without --det-dist, metres (the paper's geometry).
pub const DEFAULT_DET_DIST_M: f64 = 0.2;
/// Photon energy without --energy, eV.
pub const DEFAULT_ENERGY_EV: f64 = 4600.0;

impl PhysicsArgs {
    /// Whether the simulated frames are photon counts (`--poisson`, or `--mean-photons` which
    /// implies it).
    pub fn counts(&self) -> bool {
        self.poisson || self.mean_photons.is_some()
    }

    /// The simulation these options describe (reads `--mask`).
    pub fn config(&self) -> Result<SimulationConfig> {
        let bad_pixels = match &self.mask {
            Some(path) => read_mask(path, self.pixels)?,
            None => Vec::new(),
        };
        Ok(SimulationConfig {
            beam: Beam {
                energy_ev: self.energy.unwrap_or(DEFAULT_ENERGY_EV),
                photons_per_pulse: self.photons,
                focus_radius_m: self.focus_radius,
            },
            detector: Detector {
                pixels: self.pixels,
                side_m: self.det_size,
                distance_m: self.det_dist.unwrap_or(DEFAULT_DET_DIST_M),
                beamstop_radius_px: self.beamstop_radius,
                gap_px: self.gap,
                bad_pixels,
            },
            mode: self.mode,
            oversampling: self.oversampling,
            grid: self.grid,
            rescale: match (self.mean_photons, self.rescale_total, self.rescale) {
                (Some(n), _, _) => Rescale::MeanTotal(n),
                (None, None, _) => Rescale::None,
                (None, Some(t), RescaleMode::PerImage) => Rescale::PerImage(t),
                (None, Some(t), RescaleMode::Mean) => Rescale::MeanTotal(t),
            },
            poisson: self.counts(),
            seed: self.seed,
            acquisition: Acquisition {
                fluence_jitter: self.fluence_jitter,
                focus: self.focus_profile,
                background: self.background,
                background_profile: self.background_profile,
            },
        })
    }
}

/// Where a method's frames come from when they are not simulated: the one data option block of
/// `xrai` and `emc` (opened by [`crate::data::open`]).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DataArgs {
    /// Frames to reconstruct from instead of simulating: a directory written by `simulate`
    /// (images.npy, or photons.emc with --format emc), a Dragonfly photon file (.emc; its
    /// detector from --detector), or a CXI/HDF5 file (.cxi, .h5: needs the `hdf5` build feature).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Detector of --data and --test-data: a Dragonfly detector file (.dat; default detector.dat
    /// beside a .emc file). Its q vectors are put in 1/Å with the wavelength of the beam:
    /// meta.json's beside the data when `simulate` wrote them, else --energy's (a detector file
    /// does not store it). Mask 2 = bad (read as 0, used nowhere), 1 = merged but not used to
    /// find orientations.
    #[arg(long)]
    pub detector: Option<PathBuf>,
    /// Path of the frames inside a CXI/HDF5 file (--data and --test-data .cxi/.h5; default
    /// entry_1/data_1/data, then entry_1/image_1/data), e.g. CXIDB 58's
    /// photonConverter/pnccdBack/photonCount.
    #[arg(long)]
    pub dataset_path: Option<String>,
    /// Pixel pitch of a CXI file's frames as stored, metres (after any binning: 4 × 4 binned
    /// 75 µm pixels are 300e-6), when the file has none (given, it replaces the file's). With
    /// --det-dist and --energy, the geometry of a file that records none.
    #[arg(long)]
    pub pixel_size: Option<f64>,
    /// Where the beam meets a CXI file's frames, ROW,COL in pixels (0-based, pixel centres at
    /// whole numbers; fractions allowed); default the frame centre ((rows − 1)/2, (cols − 1)/2).
    #[arg(long, value_parser = parse_beam_position)]
    pub beam_position: Option<(f64, f64)>,
    /// Frames of --data to train on, A..B (0-based, B excluded); default all.
    #[arg(long, value_parser = parse_frames)]
    pub frames: Option<Range<u64>>,
    /// Held-out test frames: a path as for --data (may be the same file, with --test-frames
    /// apart from --frames); none by default, so only training poses are scored.
    #[arg(long)]
    pub test_data: Option<PathBuf>,
    /// Frames of --test-data held out, A..B (default all); without --test-data, of --data.
    #[arg(long, value_parser = parse_frames)]
    pub test_frames: Option<Range<u64>>,
}

/// `A..B` (0-based, B excluded) as a range of frames.
pub fn parse_frames(text: &str) -> Result<Range<u64>, String> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("'{text}' is not a range A..B (e.g. 0..1000: frames 0 to 999)"))?;
    let number = |v: &str| {
        v.trim()
            .parse::<u64>()
            .map_err(|_| format!("'{text}': '{v}' is not a frame number"))
    };
    let (a, b) = (number(a)?, number(b)?);
    if a >= b {
        return Err(format!("'{text}': the range is empty (A must be below B)"));
    }
    Ok(a..b)
}

/// `ROW,COL` (pixels, fractions allowed) as a beam position.
pub fn parse_beam_position(text: &str) -> Result<(f64, f64), String> {
    let (r, c) = text
        .split_once(',')
        .ok_or_else(|| format!("'{text}' is not ROW,COL (e.g. 129.5,128: pixel row and column of the beam)"))?;
    let number = |v: &str| {
        v.trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(|| format!("'{text}': '{v}' is not a number of pixels"))
    };
    Ok((number(r)?, number(c)?))
}
