//! Dragonfly's ASCII detector file (`detector.dat`) and its conversion to and from this program's
//! detector model.
//!
//! **Layout** (what `detector.py` writes and `detector.c` reads): a header line
//! `num_pix detd ewald_rad`, then one line per pixel, `qx qy qz corr mask`, whitespace-separated.
//! Old files have only `num_pix` in the header; they read with `detd` and `ewald_rad` absent
//! (Dragonfly's C reader treats 0 the same way).
//!
//! **Units.**
//! - `qx qy qz`: the pixel's scattering vector in Dragonfly's *voxel units*, q = s / q_sep, where
//!   s = (û − ẑ)/λ in Å⁻¹ (no 2π; û the unit vector to the pixel, ẑ the beam) — the s of
//!   [`crate::physics::detector::PixelDetector`] — and q_sep is the spacing of the reciprocal-space
//!   grid in Å⁻¹. The pixels lie on the Ewald sphere through the origin,
//!   |q + ewald_rad ẑ| = ewald_rad, with qz ≤ 0 (files with positive qz on average, an older
//!   convention Dragonfly's Python reader also accepts, are read with qz negated).
//! - `ewald_rad`: the Ewald sphere's radius in voxels, 1 / (λ q_sep). Hence
//!   **s = q / (λ · ewald_rad)**: the file does not store λ, so converting back needs it.
//! - `detd`: the sample–detector distance in pixel sizes (D / pixel size); Dragonfly uses it with
//!   `ewald_rad` to lay pixels out as a 2D image (x = qx · detd / (ewald_rad + qz)).
//! - `corr`: polarisation × solid angle. Dragonfly's `make_detector.py` writes
//!   detd / r³ × P with lengths in pixel sizes, which is the solid angle Ω = A·D/r³ in steradians
//!   (A = one pixel²) times P = 1 − x²/r² for a beam polarised along x — the product
//!   `polarization × solid_angle` of this program's detector. (Dragonfly divides `corr` by its
//!   mean when it loads a detector, so only its shape matters there.)
//! - `mask`: 0 pixel used for everything; 1 merged into the model but not used to find
//!   orientations (Dragonfly marks the corners beyond the inscribed circle so); 2 ignored
//!   (beamstop, bad pixels).
//!
//! **Our detector as a Dragonfly detector** ([`DragonflyDetector::from_detector`]): pixel t =
//! row · N + col (row = y, col = x), the order of this program's frames, so a frame's pixel
//! numbers in a photon file index the detector directly; qx along x (columns), qy along y (rows);
//! detd = D / (L / N); `ewald_rad = detd` (Dragonfly's default: one voxel ≈ one pixel at the
//! detector's centre, q_sep = 1 / (λ · detd)); mask 0 everywhere.
//! [`DragonflyDetector::to_pixels`] goes back to this program's detector model
//! ([`PixelDetector`]: per-pixel s in Å⁻¹, P·Ω, mask, frame shape), whose
//! [`PixelDetector::scale`] gives the expected photons per unit |F|², fluence · r_e² · P · Ω.
//!
//! **Numbers in the file.** Pixel columns are written as C's `%22.16e` (Dragonfly writes
//! `%21.15e`; the one extra digit makes every f64 read back exactly), the header's `detd` and
//! `ewald_rad` in the shortest form that reads back exactly (Dragonfly writes `%.6f`). Dragonfly's
//! readers (`fscanf`/`sscanf` `%lf`, pandas) read both forms.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use crate::formats::{place_file, temporary_path, FormatError};
use crate::physics::beam::Beam;
use crate::physics::detector::{frame_shape, Detector, PixelDetector, PixelMask};

/// Mask value: pixel used for everything.
pub const MASK_GOOD: u8 = 0;
/// Mask value: pixel merged into the model but not used to find orientations.
pub const MASK_MERGE_ONLY: u8 = 1;
/// Mask value: pixel ignored.
pub const MASK_IGNORED: u8 = 2;

/// A Dragonfly detector file's contents, in its own units (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct DragonflyDetector {
    /// Scattering vector per pixel, voxel units.
    pub qx: Vec<f64>,
    pub qy: Vec<f64>,
    pub qz: Vec<f64>,
    /// Polarisation × solid angle (steradians) per pixel.
    pub corr: Vec<f64>,
    /// 0, 1 or 2 per pixel ([`MASK_GOOD`], [`MASK_MERGE_ONLY`], [`MASK_IGNORED`]).
    pub mask: Vec<u8>,
    /// Sample–detector distance in pixel sizes; absent in old-format files.
    pub detd: Option<f64>,
    /// Ewald sphere radius in voxels; absent in old-format files.
    pub ewald_rad: Option<f64>,
}

/// Why a Dragonfly detector cannot be turned into scattering vectors.
#[derive(Debug, thiserror::Error)]
pub enum ConversionError {
    #[error("the detector has no ewald_rad (an old-format file); its q vectors cannot be put in 1/Å")]
    NoEwaldRadius,
    #[error("wavelength {0} Å: must be a positive number")]
    Wavelength(f64),
    #[error(
        "pixel {pixel}: q = ({qx}, {qy}, {qz}) lies {distance} voxels from the centre of the Ewald \
         sphere, not ewald_rad = {ewald_rad}; the file's ewald_rad does not belong to its q vectors"
    )]
    OffSphere {
        pixel: usize,
        qx: f64,
        qy: f64,
        qz: f64,
        distance: f64,
        ewald_rad: f64,
    },
}

impl DragonflyDetector {
    pub fn num_pix(&self) -> usize {
        self.qx.len()
    }

    /// This program's detector and beam as a Dragonfly detector (see the module docs).
    pub fn from_detector(detector: &Detector, beam: &Beam) -> Self {
        let detd = detector.distance_m / (detector.side_m / detector.pixels as f64);
        Self::from_pixels(&detector.geometry(beam), detd, detd)
    }

    /// Pixels with scattering vectors in Å⁻¹ as a Dragonfly detector with the given `detd`
    /// (pixel sizes) and `ewald_rad` (voxels): q = s · λ · ewald_rad. The frame shape is not
    /// stored: the pixels' positions give it back ([`DragonflyDetector::to_pixels`]).
    pub fn from_pixels(pixels: &PixelDetector, detd: f64, ewald_rad: f64) -> Self {
        let k = pixels.wavelength * ewald_rad;
        DragonflyDetector {
            qx: pixels.s.iter().map(|s| s[0] * k).collect(),
            qy: pixels.s.iter().map(|s| s[1] * k).collect(),
            qz: pixels.s.iter().map(|s| s[2] * k).collect(),
            corr: pixels.correction.clone(),
            mask: pixels.mask.iter().map(|&m| m as u8).collect(),
            detd: Some(detd),
            ewald_rad: Some(ewald_rad),
        }
    }

    /// This program's detector model: per-pixel s = q / (λ · ewald_rad) in Å⁻¹ for wavelength λ
    /// (Å), P·Ω and mask (0 → good, 1 → merge only, 2 → bad). Checks that every pixel lies on
    /// the Ewald sphere of radius `ewald_rad` (to 0.1 %). The frame shape is found from the
    /// pixels' positions ([`frame_shape`]: a regular grid filled row after row); pixels that do
    /// not form one are a single row of `num_pix` (a pixel list, which cannot be binned or made
    /// an image).
    pub fn to_pixels(&self, wavelength: f64) -> Result<PixelDetector, ConversionError> {
        if !(wavelength.is_finite() && wavelength > 0.0) {
            return Err(ConversionError::Wavelength(wavelength));
        }
        let radius = self.ewald_rad.ok_or(ConversionError::NoEwaldRadius)?;
        let n = self.num_pix();
        let flip = n > 0 && self.qz.iter().sum::<f64>() > 0.0;
        let qz = |t: usize| if flip { -self.qz[t] } else { self.qz[t] };
        for t in 0..n {
            let (x, y, z) = (self.qx[t], self.qy[t], qz(t));
            let distance = (x * x + y * y + (z + radius) * (z + radius)).sqrt();
            if (distance - radius).abs() > 1e-3 * radius {
                return Err(ConversionError::OffSphere {
                    pixel: t,
                    qx: x,
                    qy: y,
                    qz: z,
                    distance,
                    ewald_rad: radius,
                });
            }
        }
        let k = 1.0 / (wavelength * radius);
        let s: Vec<[f64; 3]> = (0..n).map(|t| [self.qx[t] * k, self.qy[t] * k, qz(t) * k]).collect();
        let (rows, cols) = frame_shape(&s, wavelength).unwrap_or((1, n));
        Ok(PixelDetector {
            rows,
            cols,
            s,
            correction: self.corr.clone(),
            mask: self
                .mask
                .iter()
                .map(|&m| match m {
                    MASK_GOOD => PixelMask::Good,
                    MASK_MERGE_ONLY => PixelMask::MergeOnly,
                    _ => PixelMask::Bad,
                })
                .collect(),
            wavelength,
        })
    }
}

/// Reads an ASCII detector file, checking every line (see the module docs for the layout).
pub fn read_detector(path: impl AsRef<Path>) -> Result<DragonflyDetector, FormatError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| FormatError::io(path, e))?;
    let len = file.metadata().map_err(|e| FormatError::io(path, e))?.len();
    let mut lines = BufReader::new(file).lines();
    let mut next_line = || lines.next().transpose().map_err(|e| FormatError::io(path, e));

    let header = next_line()?.ok_or_else(|| FormatError::invalid(path, "line 1", "empty file"))?;
    let fields: Vec<&str> = header.split_whitespace().collect();
    if fields.len() != 1 && fields.len() != 3 {
        return Err(FormatError::invalid(
            path,
            "line 1",
            format!(
                "the header should be `num_pix detd ewald_rad` (or `num_pix`), found {} fields",
                fields.len()
            ),
        ));
    }
    let num_pix: usize = fields[0]
        .parse()
        .ok()
        .filter(|&n: &usize| n > 0 && n <= i32::MAX as usize)
        .ok_or_else(|| {
            FormatError::invalid(
                path,
                "line 1, num_pix",
                format!("'{}' is not a pixel count ≥ 1", fields[0]),
            )
        })?;
    let optional = |i: usize, name: &str| -> Result<Option<f64>, FormatError> {
        let Some(text) = fields.get(i) else {
            return Ok(None);
        };
        match text.parse::<f64>() {
            Ok(v) if v == 0.0 => Ok(None),
            Ok(v) if v.is_finite() && v > 0.0 => Ok(Some(v)),
            _ => Err(FormatError::invalid(
                path,
                format!("line 1, {name}"),
                format!("'{text}' is not a positive number"),
            )),
        }
    };
    let (detd, ewald_rad) = (optional(1, "detd")?, optional(2, "ewald_rad")?);

    // Each pixel line has at least 10 bytes, which bounds what a corrupt header can make us reserve.
    let capacity = num_pix.min((len / 10) as usize);
    let mut det = DragonflyDetector {
        qx: Vec::with_capacity(capacity),
        qy: Vec::with_capacity(capacity),
        qz: Vec::with_capacity(capacity),
        corr: Vec::with_capacity(capacity),
        mask: Vec::with_capacity(capacity),
        detd,
        ewald_rad,
    };
    let mut number = 1;
    while let Some(line) = next_line()? {
        number += 1;
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let at = |name: &str| format!("line {number}, {name}");
        if fields.len() != 5 {
            return Err(FormatError::invalid(
                path,
                format!("line {number}"),
                format!("expected 5 fields `qx qy qz corr mask`, found {}", fields.len()),
            ));
        }
        if det.qx.len() == num_pix {
            return Err(FormatError::invalid(
                path,
                format!("line {number}"),
                format!("more pixel lines than the header's num_pix = {num_pix}"),
            ));
        }
        let mut values = [0.0; 4];
        for (k, name) in ["qx", "qy", "qz", "corr"].into_iter().enumerate() {
            values[k] = fields[k].parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| {
                FormatError::invalid(path, at(name), format!("'{}' is not a finite number", fields[k]))
            })?;
        }
        let mask = fields[4]
            .parse::<u8>()
            .ok()
            .filter(|&m| m <= MASK_IGNORED)
            .ok_or_else(|| FormatError::invalid(path, at("mask"), format!("'{}' is not 0, 1 or 2", fields[4])))?;
        det.qx.push(values[0]);
        det.qy.push(values[1]);
        det.qz.push(values[2]);
        det.corr.push(values[3]);
        det.mask.push(mask);
    }
    if det.qx.len() != num_pix {
        return Err(FormatError::invalid(
            path,
            "num_pix",
            format!(
                "the header says {num_pix} pixels, the file has {} pixel lines",
                det.qx.len()
            ),
        ));
    }
    Ok(det)
}

/// C's `%22.16e`: 17 significant digits, a signed exponent of at least two digits, right-aligned.
fn c_exponential(v: f64) -> String {
    let rust = format!("{v:.16e}");
    let (mantissa, exponent) = rust.split_once('e').expect("Rust's {:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("Rust's exponent is an integer");
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{:>22}", format!("{mantissa}e{sign}{:02}", exponent.abs()))
}

/// Writes `det` as an ASCII detector file; refuses an existing file unless `overwrite`.
pub fn write_detector(path: impl AsRef<Path>, det: &DragonflyDetector, overwrite: bool) -> Result<(), FormatError> {
    let path = path.as_ref();
    let n = det.num_pix();
    if n == 0 || n > i32::MAX as usize {
        return Err(FormatError::invalid(
            path,
            "num_pix",
            format!("{n} pixels (1 … 2³¹ − 1)"),
        ));
    }
    for (name, len) in [
        ("qy", det.qy.len()),
        ("qz", det.qz.len()),
        ("corr", det.corr.len()),
        ("mask", det.mask.len()),
    ] {
        if len != n {
            return Err(FormatError::invalid(
                path,
                name,
                format!("{len} values for {n} pixels (qx)"),
            ));
        }
    }
    let positive = |name: &str, v: Option<f64>| match v {
        Some(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(FormatError::invalid(
            path,
            name,
            format!("{v:?}: Dragonfly needs a positive value"),
        )),
    };
    let (detd, ewald_rad) = (positive("detd", det.detd)?, positive("ewald_rad", det.ewald_rad)?);
    for (name, column) in [("qx", &det.qx), ("qy", &det.qy), ("qz", &det.qz), ("corr", &det.corr)] {
        if let Some(t) = column.iter().position(|v| !v.is_finite()) {
            return Err(FormatError::invalid(
                path,
                format!("{name}[{t}]"),
                format!("{} is not finite", column[t]),
            ));
        }
    }
    if let Some(t) = det.mask.iter().position(|&m| m > MASK_IGNORED) {
        return Err(FormatError::invalid(
            path,
            format!("mask[{t}]"),
            format!("{} is not 0, 1 or 2", det.mask[t]),
        ));
    }
    if !overwrite && path.exists() {
        return Err(FormatError::Exists {
            path: path.to_path_buf(),
        });
    }
    let tmp = temporary_path(path, "dat");
    let result = (|| -> io::Result<()> {
        let mut out = BufWriter::new(File::create(&tmp)?);
        writeln!(out, "{n} {detd} {ewald_rad}")?;
        for t in 0..n {
            writeln!(
                out,
                "{} {} {} {} {}",
                c_exponential(det.qx[t]),
                c_exponential(det.qy[t]),
                c_exponential(det.qz[t]),
                c_exponential(det.corr[t]),
                det.mask[t]
            )?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(FormatError::io(path, e));
    }
    place_file(&tmp, path, overwrite)
}

#[cfg(test)]
mod tests {
    use super::c_exponential;

    #[test]
    fn c_exponential_matches_printf() {
        // Python's '%22.16e' % v (C's printf) for these values.
        assert_eq!(c_exponential(1.0), "1.0000000000000000e+00");
        assert_eq!(c_exponential(2.0 / 3.0), "6.6666666666666663e-01");
        assert_eq!(c_exponential(-0.5), "-5.0000000000000000e-01");
        assert_eq!(c_exponential(0.0), "0.0000000000000000e+00");
        assert_eq!(c_exponential(1.5e-300), "1.5000000000000001e-300");
        assert_eq!(c_exponential(123456.0), "1.2345600000000000e+05");
    }
}
