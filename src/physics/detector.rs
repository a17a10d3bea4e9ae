//! Detectors. [`Detector`] is the simulator's parametric description (a square, flat detector
//! normal to the beam, centred on it); [`PixelDetector`] is the one detector model every stage
//! consumes — a rows × cols frame of pixels, each with its scattering vector, its correction and
//! its mask — into which the parametric detector and the field's detector files convert
//! (DESIGN.md, "Physics conventions" and "Detectors, masks and counts as experiments have them").
//!
//! **Binning** ([`PixelDetector::binned`]) sums b × b blocks of pixels. Blocks start at row 0 and
//! column 0; when b does not divide a side, the last block row or column is partial (it holds the
//! pixels there are) and is kept. A block's correction is the sum of its unmasked pixels'
//! corrections (the expected photons of the block are the sum over the pixels it adds up); its
//! scattering vector is that of the mean of its pixels' positions on a flat detector normal to
//! the beam (exactly the block centre for such a detector, whatever the mask); it is bad only
//! if all its pixels are bad, merge-only if none is good and some are merge-only.

use anyhow::{bail, ensure};
use serde::{Deserialize, Serialize};

use super::beam::{Beam, CLASSICAL_ELECTRON_RADIUS_M};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detector {
    /// Pixels per side (N).
    pub pixels: usize,
    /// Side length L in metres.
    pub side_m: f64,
    /// Sample–detector distance D in metres.
    pub distance_m: f64,
    /// Beamstop radius in pixels: pixels whose centre lies closer to the beam (the detector's
    /// centre) are bad. 0: none.
    #[serde(default)]
    pub beamstop_radius_px: f64,
    /// Width in pixels of a horizontal and a vertical band of bad pixels through the centre (the
    /// gaps between the panels of a pnCCD or CSPAD): rows and columns ⌊(N − g)/2⌋ … +g − 1. 0: none.
    #[serde(default)]
    pub gap_px: usize,
    /// Further bad pixels, frame order (row-major), e.g. from `--mask FILE.npy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bad_pixels: Vec<u32>,
}

impl Default for Detector {
    /// The paper's detector (appendix A.1; distance from DESIGN.md): 128 × 128 pixels, 0.1 m,
    /// 0.2 m, nothing masked.
    fn default() -> Self {
        Detector {
            pixels: 128,
            side_m: 0.1,
            distance_m: 0.2,
            beamstop_radius_px: 0.0,
            gap_px: 0,
            bad_pixels: Vec::new(),
        }
    }
}

/// What a pixel is used for (Dragonfly's mask values 0, 1, 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PixelMask {
    /// Used for everything.
    Good = 0,
    /// Merged into the model but left out of orientation finding (EMC's likelihood).
    MergeOnly = 1,
    /// Bad (beamstop, gap, dead or hot pixel): read as 0 and used nowhere.
    Bad = 2,
}

/// The detector model every stage takes: per pixel, in frame order (row-major `[row][col]`), the
/// scattering vector, the correction and the mask. Not necessarily square, the beam not
/// necessarily on the centre.
#[derive(Clone, Debug, PartialEq)]
pub struct PixelDetector {
    /// Frame shape: pixel t is at row t / cols, column t % cols.
    pub rows: usize,
    pub cols: usize,
    /// Scattering vector s = (û − ẑ)/λ of each pixel, Å⁻¹, detector frame.
    pub s: Vec<[f64; 3]>,
    /// Polarisation × solid angle, P · Ω (steradians): the expected photons per unit |F|²
    /// divided by fluence · r_e² (see [`PixelDetector::scale`]).
    pub correction: Vec<f64>,
    pub mask: Vec<PixelMask>,
    /// Wavelength, Å.
    pub wavelength: f64,
}

impl Detector {
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.pixels > 0, "--pixels must be at least 1");
        ensure!(
            self.side_m.is_finite() && self.side_m > 0.0,
            "--det-size must be positive (metres), got {}",
            self.side_m
        );
        ensure!(
            self.distance_m.is_finite() && self.distance_m > 0.0,
            "--det-dist must be positive (metres), got {}",
            self.distance_m
        );
        ensure!(
            self.beamstop_radius_px.is_finite() && self.beamstop_radius_px >= 0.0,
            "--beamstop-radius must be a radius in pixels, 0 or more, got {}",
            self.beamstop_radius_px
        );
        ensure!(
            self.gap_px < self.pixels,
            "--gap {} leaves no pixels of a {}-pixel side: give fewer pixels (pnCCD: about 2–4)",
            self.gap_px,
            self.pixels
        );
        let total = self.pixels.saturating_mul(self.pixels);
        if let Some(&p) = self.bad_pixels.iter().find(|&&p| p as usize >= total) {
            bail!(
                "--mask: bad pixel {p} is outside the {}×{} detector",
                self.pixels,
                self.pixels
            );
        }
        // (a detector too large to list is refused by the memory check that follows)
        ensure!(
            total > 1 << 26 || self.mask().iter().any(|&bad| !bad),
            "the beamstop, gaps and --mask leave no pixel of the detector"
        );
        Ok(())
    }

    /// Which pixels are bad (frame order): the beamstop, the gaps and `bad_pixels`.
    pub fn mask(&self) -> Vec<bool> {
        let n = self.pixels;
        let c = (n as f64 - 1.0) / 2.0;
        let gap = (n.saturating_sub(self.gap_px) / 2)..(n.saturating_sub(self.gap_px) / 2 + self.gap_px);
        let r2 = self.beamstop_radius_px * self.beamstop_radius_px;
        let mut bad: Vec<bool> = (0..n * n)
            .map(|t| {
                let (row, col) = (t / n, t % n);
                let (dy, dx) = (row as f64 - c, col as f64 - c);
                gap.contains(&row) || gap.contains(&col) || dx * dx + dy * dy < r2
            })
            .collect();
        for &p in &self.bad_pixels {
            if let Some(b) = bad.get_mut(p as usize) {
                *b = true;
            }
        }
        bad
    }

    /// Centre of pixel index i along either axis, metres: −L/2 + (i + ½) L/N.
    pub fn pixel_centre(&self, i: usize) -> f64 {
        -0.5 * self.side_m + (i as f64 + 0.5) * self.side_m / self.pixels as f64
    }

    /// The detector's pixels for the wavelength of `beam`: N × N, [`Detector::mask`]'s pixels bad, polarisation
    /// P = 1 − (û·x̂)² (beam polarised along x) times solid angle Ω = A_pixel · D / r³.
    pub fn geometry(&self, beam: &Beam) -> PixelDetector {
        let n = self.pixels;
        let lambda = beam.wavelength();
        let pixel_area = (self.side_m / n as f64).powi(2);
        let mut g = PixelDetector {
            rows: n,
            cols: n,
            s: Vec::with_capacity(n * n),
            correction: Vec::with_capacity(n * n),
            mask: vec![PixelMask::Good; n * n],
            wavelength: lambda,
        };
        for row in 0..n {
            for col in 0..n {
                let (x, y, z) = (self.pixel_centre(col), self.pixel_centre(row), self.distance_m);
                let r = (x * x + y * y + z * z).sqrt();
                let u = [x / r, y / r, z / r];
                let polarization = 1.0 - u[0] * u[0];
                let solid_angle = pixel_area * z / (r * r * r);
                g.s.push([u[0] / lambda, u[1] / lambda, (u[2] - 1.0) / lambda]);
                g.correction.push(polarization * solid_angle);
            }
        }
        for (m, bad) in g.mask.iter_mut().zip(self.mask()) {
            if bad {
                *m = PixelMask::Bad;
            }
        }
        g
    }
}

impl PixelDetector {
    /// A flat detector normal to the beam: `rows × cols` square pixels of pitch `pixel_m` at
    /// `distance_m`, the beam meeting it at fractional pixel coordinates `beam` = (row, column)
    /// (pixel centres at integers; the frame centre is ((rows − 1)/2, (cols − 1)/2)), none masked;
    /// corrections as [`Detector::geometry`]'s (P = 1 − (û·x̂)², Ω = A · D / r³). Rows run along y,
    /// columns along x.
    pub fn flat(
        rows: usize,
        cols: usize,
        pixel_m: f64,
        distance_m: f64,
        beam: (f64, f64),
        wavelength: f64,
    ) -> anyhow::Result<PixelDetector> {
        let n = rows
            .checked_mul(cols)
            .filter(|&n| n > 0)
            .ok_or_else(|| anyhow::anyhow!("a frame of {rows} × {cols} pixels"))?;
        let pixel_area = pixel_m * pixel_m;
        let mut s = Vec::with_capacity(n);
        let mut correction = Vec::with_capacity(n);
        for row in 0..rows {
            for col in 0..cols {
                let (x, y, z) = (
                    (col as f64 - beam.1) * pixel_m,
                    (row as f64 - beam.0) * pixel_m,
                    distance_m,
                );
                let r = (x * x + y * y + z * z).sqrt();
                let u = [x / r, y / r, z / r];
                s.push([u[0] / wavelength, u[1] / wavelength, (u[2] - 1.0) / wavelength]);
                correction.push((1.0 - u[0] * u[0]) * pixel_area * z / (r * r * r));
            }
        }
        PixelDetector::new(rows, cols, s, correction, vec![PixelMask::Good; n], wavelength)
    }

    /// Pixels with scattering vectors `s` (Å⁻¹), corrections and mask, laid out as a frame of
    /// `rows × cols`; checks every field.
    pub fn new(
        rows: usize,
        cols: usize,
        s: Vec<[f64; 3]>,
        correction: Vec<f64>,
        mask: Vec<PixelMask>,
        wavelength: f64,
    ) -> anyhow::Result<PixelDetector> {
        let d = PixelDetector {
            rows,
            cols,
            s,
            correction,
            mask,
            wavelength,
        };
        d.validate()?;
        Ok(d)
    }

    /// Checks shapes, finiteness, that corrections are ≥ 0 and that every pixel lies on the
    /// Ewald sphere of the wavelength (|λ s + ẑ| = 1 to 10⁻⁶) in the forward hemisphere.
    pub fn validate(&self) -> anyhow::Result<()> {
        let n = self.s.len();
        ensure!(n > 0, "the detector has no pixels");
        ensure!(
            self.rows.checked_mul(self.cols) == Some(n),
            "a frame of {} × {} pixels does not hold the detector's {n} pixels",
            self.rows,
            self.cols
        );
        ensure!(
            self.correction.len() == n && self.mask.len() == n,
            "{} corrections and {} mask values for {n} pixels",
            self.correction.len(),
            self.mask.len()
        );
        ensure!(
            self.wavelength.is_finite() && self.wavelength > 0.0,
            "wavelength {} Å: must be positive",
            self.wavelength
        );
        for (t, s) in self.s.iter().enumerate() {
            let u = self.direction(t);
            let norm = (u[0] * u[0] + u[1] * u[1] + u[2] * u[2]).sqrt();
            ensure!(
                s.iter().all(|v| v.is_finite()) && (norm - 1.0).abs() < 1e-6 && u[2] > 0.0,
                "pixel {t}: s = {s:?} Å⁻¹ is not on the forward Ewald sphere of λ = {} Å",
                self.wavelength
            );
        }
        if let Some(t) = self.correction.iter().position(|c| !(c.is_finite() && *c >= 0.0)) {
            bail!(
                "pixel {t}: correction {} must be a finite number ≥ 0",
                self.correction[t]
            );
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.s.len()
    }

    pub fn is_empty(&self) -> bool {
        self.s.is_empty()
    }

    /// Largest |s| on the detector, Å⁻¹.
    pub fn s_max(&self) -> f64 {
        self.s.iter().map(norm).fold(0.0, f64::max)
    }

    /// Pixels that are not [`PixelMask::Bad`].
    pub fn measured(&self) -> usize {
        self.mask.iter().filter(|&&m| m != PixelMask::Bad).count()
    }

    /// Unit vector to pixel t: û = λ s + ẑ.
    pub fn direction(&self, t: usize) -> [f64; 3] {
        let s = self.s[t];
        let l = self.wavelength;
        [l * s[0], l * s[1], l * s[2] + 1.0]
    }

    /// Position of pixel t on a flat detector normal to the beam at unit distance: (ûx/ûz, ûy/ûz).
    pub fn tangent(&self, t: usize) -> [f64; 2] {
        let u = self.direction(t);
        [u[0] / u[2], u[1] / u[2]]
    }

    /// Expected photons per unit |F|² for `beam`: fluence · r_e² · P · Ω; 0 for bad pixels.
    pub fn scale(&self, beam: &Beam) -> Vec<f64> {
        let k = beam.fluence_per_m2() * CLASSICAL_ELECTRON_RADIUS_M * CLASSICAL_ELECTRON_RADIUS_M;
        self.correction
            .iter()
            .zip(&self.mask)
            .map(|(c, m)| if *m == PixelMask::Bad { 0.0 } else { k * c })
            .collect()
    }

    /// The frame's pixel steps in tangent coordinates, (one row down, one column right), when the
    /// pixels form a regular grid in frame order (both None for a single row or column).
    fn steps(&self) -> (Option<[f64; 2]>, Option<[f64; 2]>) {
        let t0 = self.tangent(0);
        let diff = |t: usize| {
            let p = self.tangent(t);
            [p[0] - t0[0], p[1] - t0[1]]
        };
        (
            (self.rows > 1).then(|| diff(self.cols)),
            (self.cols > 1).then(|| diff(1)),
        )
    }

    /// Where the beam (s = 0) meets the frame, in fractional (row, column) pixel coordinates
    /// (pixel centres at integers), from the frame's regular pixel grid; for a single row or
    /// column, the pixel nearest the beam.
    pub fn beam_position(&self) -> (f64, f64) {
        let t0 = self.tangent(0);
        match self.steps() {
            (Some(a), Some(b)) => {
                // t0 + r a + c b = 0
                let det = a[0] * b[1] - a[1] * b[0];
                if det.abs() > 0.0 {
                    let r = (-t0[0] * b[1] + t0[1] * b[0]) / det;
                    let c = (-a[0] * t0[1] + a[1] * t0[0]) / det;
                    return (r, c);
                }
                self.nearest_to_beam()
            }
            _ => self.nearest_to_beam(),
        }
    }

    fn nearest_to_beam(&self) -> (f64, f64) {
        let t = (0..self.len())
            .min_by(|&a, &b| norm(&self.s[a]).total_cmp(&norm(&self.s[b])))
            .unwrap_or(0);
        ((t / self.cols) as f64, (t % self.cols) as f64)
    }

    /// Spacing of the scattering vectors of neighbouring pixels at the beam, Å⁻¹ (the smaller
    /// of the row and column steps).
    pub fn pixel_spacing(&self) -> f64 {
        let (a, b) = self.steps();
        let len = |v: Option<[f64; 2]>| v.map_or(f64::INFINITY, |v| (v[0] * v[0] + v[1] * v[1]).sqrt());
        let step = len(a).min(len(b));
        if step.is_finite() && step > 0.0 {
            step / self.wavelength
        } else {
            self.s_max().max(1e-12) / 16.0
        }
    }

    /// A reciprocal grid (M odd, Δs) for data without a molecule to size it: with `m` given,
    /// the Δs that makes an M³ grid cover the detector; otherwise Δs = one pixel's step at the
    /// beam (Dragonfly's default) and the smallest M that covers the detector. The grid reaches
    /// (M − 1)/2 − 1 voxels from the centre, as [`crate::physics::slice::Slicer`] requires.
    pub fn natural_grid(&self, m: Option<usize>) -> anyhow::Result<(usize, f64)> {
        let s_max = self.s_max();
        ensure!(s_max > 0.0, "every pixel of the detector is on the beam (|s| = 0)");
        match m {
            Some(m) => {
                ensure!(m % 2 == 1 && m >= 7, "--grid {m}: needs an odd size of at least 7");
                Ok((m, s_max / (((m - 1) / 2 - 1) as f64) * (1.0 + 1e-9)))
            }
            None => {
                let spacing = self.pixel_spacing();
                let half = (s_max / spacing).ceil() as usize + 1;
                Ok((2 * half + 1, spacing))
            }
        }
    }

    /// The detector whose pixels are the b × b blocks of this one (see the module docs).
    pub fn binned(&self, b: usize) -> anyhow::Result<PixelDetector> {
        ensure!(b >= 1, "--bin must be at least 1");
        if b == 1 {
            return Ok(self.clone());
        }
        ensure!(
            self.rows > 1 && self.cols > 1,
            "--bin {b}: the detector's pixels have no 2D layout ({} × {}), so they cannot be binned",
            self.rows,
            self.cols
        );
        let (rows, cols) = (self.rows.div_ceil(b), self.cols.div_ceil(b));
        let n = rows * cols;
        let mut tangent = vec![[0.0f64; 2]; n];
        let mut count = vec![0usize; n];
        let mut correction = vec![0.0; n];
        let mut good = vec![false; n];
        let mut merge = vec![false; n];
        for t in 0..self.len() {
            let o = block_of(t, self.cols, b, cols);
            let p = self.tangent(t);
            tangent[o][0] += p[0];
            tangent[o][1] += p[1];
            count[o] += 1;
            match self.mask[t] {
                PixelMask::Good => good[o] = true,
                PixelMask::MergeOnly => merge[o] = true,
                PixelMask::Bad => continue,
            }
            correction[o] += self.correction[t];
        }
        let l = self.wavelength;
        let s = tangent
            .iter()
            .zip(&count)
            .map(|(p, &k)| {
                let (x, y) = (p[0] / k as f64, p[1] / k as f64);
                let r = (x * x + y * y + 1.0).sqrt();
                [x / r / l, y / r / l, (1.0 / r - 1.0) / l]
            })
            .collect();
        let mask = (0..n)
            .map(|o| match (good[o], merge[o]) {
                (true, _) => PixelMask::Good,
                (false, true) => PixelMask::MergeOnly,
                _ => PixelMask::Bad,
            })
            .collect();
        Ok(PixelDetector {
            rows,
            cols,
            s,
            correction,
            mask,
            wavelength: l,
        })
    }
}

/// The block (binned pixel) of pixel t of a frame `cols` wide, in a binned frame `out_cols` wide.
fn block_of(t: usize, cols: usize, b: usize, out_cols: usize) -> usize {
    (t / cols / b) * out_cols + (t % cols) / b
}

/// Sums b × b blocks of `rows × cols` frames, partial blocks at the bottom and right included
/// (the binning of [`PixelDetector::binned`]: the one binning of the program, EMC's frames and
/// X-RAI's working images are both made by it).
pub fn bin_frames_into(frames: &[f32], rows: usize, cols: usize, b: usize, out: &mut Vec<f32>) {
    let (out_rows, out_cols) = (rows.div_ceil(b), cols.div_ceil(b));
    let per = rows * cols;
    let out_per = out_rows * out_cols;
    out.clear();
    out.resize(frames.len() / per * out_per, 0.0);
    for (frame, o) in frames.chunks_exact(per).zip(out.chunks_exact_mut(out_per)) {
        for row in 0..rows {
            let orow = &mut o[(row / b) * out_cols..(row / b + 1) * out_cols];
            for (col, &v) in frame[row * cols..(row + 1) * cols].iter().enumerate() {
                orow[col / b] += v;
            }
        }
    }
}

/// The frame shape (rows, cols) of pixels listed in frame order, found from their positions on a
/// flat detector normal to the beam (tangent coordinates of `s` at wavelength λ): the pixels must
/// lie on one regular grid, filled row after row, to 1 % of a pixel step. None when they do not
/// (a pixel list without a 2D layout, e.g. several panels).
pub fn frame_shape(s: &[[f64; 3]], wavelength: f64) -> Option<(usize, usize)> {
    let n = s.len();
    let tangent = |t: usize| {
        let u = [wavelength * s[t][0], wavelength * s[t][1], wavelength * s[t][2] + 1.0];
        [u[0] / u[2], u[1] / u[2]]
    };
    if n <= 1 {
        return Some((1, n));
    }
    let t0 = tangent(0);
    let t1 = tangent(1);
    let a = [t1[0] - t0[0], t1[1] - t0[1]];
    let step = (a[0] * a[0] + a[1] * a[1]).sqrt();
    if !(step > 0.0) {
        return None;
    }
    let tol = 0.01 * step;
    let near = |p: [f64; 2], q: [f64; 2]| ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt() <= tol;
    let cols = (2..n)
        .find(|&k| !near(tangent(k), [t0[0] + k as f64 * a[0], t0[1] + k as f64 * a[1]]))
        .unwrap_or(n);
    if n % cols != 0 {
        return None;
    }
    let rows = n / cols;
    let b = if rows > 1 {
        let p = tangent(cols);
        [p[0] - t0[0], p[1] - t0[1]]
    } else {
        [0.0, 0.0]
    };
    let regular = (0..n).all(|t| {
        let (r, c) = ((t / cols) as f64, (t % cols) as f64);
        near(tangent(t), [t0[0] + r * b[0] + c * a[0], t0[1] + r * b[1] + c * a[1]])
    });
    regular.then_some((rows, cols))
}

fn norm(s: &[f64; 3]) -> f64 {
    (s[0] * s[0] + s[1] * s[1] + s[2] * s[2]).sqrt()
}
