//! MRC2014 maps (Cheng et al. 2015, J. Struct. Biol. 192, 146), the format ChimeraX, PyMOL,
//! RELION, cryoDRGN, Dragonfly and every cryo-EM package read and write.
//!
//! **Writing**: mode 2 (float32), little-endian, cubic, axes in file order x, y, z
//! (mapc/mapr/maps = 1, 2, 3), cell = m · voxel size, and origin = −c · voxel, so that the centre
//! voxel `c = m / 2` (integer division: `(m − 1)/2` for odd m, `m/2` for even m, the FFT
//! convention) sits at 0 Å. A reciprocal-space volume (an amplitude |F| to be phased) goes in
//! the same way with Δs in Å⁻¹ as its "voxel size". Writing goes to a temporary file in the target
//! folder, then a rename, so a crash never leaves a half-written map; an existing file is replaced
//! only when asked.
//!
//! **Reading** accepts any cubic map, even or odd side:
//! - modes 0 (int8, signed as MRC2014 defines it), 1 (int16), 2 (float32) and 6 (uint16), all read
//!   as f32;
//! - either byte order (machine stamp 0x44 little-endian, 0x11 big-endian; a file without a stamp
//!   is read in the order that gives a known mode);
//! - any axis order mapc/mapr/maps (the voxels are permuted to x fastest, then y, then z);
//! - an extended header of `nsymbt` bytes, skipped.
//!
//! The voxel size is cella / mx along each axis (Å); the three must agree (to 0.1 %), since a
//! [`Volume`] has one spacing. A header with a zero cell or zero sampling (some writers leave
//! them unset) gives a voxel size of 1 and [`MrcMap::voxel_from_header`] false.
//!
//! **Origin convention.** Voxel index `(0, 0, 0)` sits at the header's `origin` (words 50–52, Å)
//! when any of those is non-zero, and otherwise at (nxstart, nystart, nzstart) × voxel size (the
//! CCP4 convention) — the rule ChimeraX follows. [`MrcMap::origin_index`] is where 0 Å falls, in
//! voxel indices (x, y, z). The voxels themselves are returned as stored: every comparison in
//! this program (FSC, alignment, phasing) works voxel to voxel, with the centre of the box at
//! index m/2, and [`MrcMap::origin_offset`] says how far the header's origin lies from that centre
//! (zero for maps this module writes). Two maps compared without `--align` must share their
//! origin; `fsc --align` removes any translation between them.
//!
//! Maps that are not cubes, truncated files, unknown modes and the like are refused with a message
//! that names the file and says what is wrong.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::volume::{DensityMap, Volume};

const HEADER_BYTES: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum MrcError {
    // The OS error is part of the message, not a `source`, so that an error chain prints it once.
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("{}: not an MRC map ({reason})", path.display())]
    NotMrc { path: PathBuf, reason: String },
    #[error("{}: truncated: the header promises {expected} bytes, the file has {found}", path.display())]
    Truncated { path: PathBuf, expected: u64, found: u64 },
    #[error(
        "{}: MRC mode {mode} is not supported (modes 0 int8, 1 int16, 2 float32 and 6 uint16 are)",
        path.display()
    )]
    Mode { path: PathBuf, mode: i32 },
    #[error("{}: {reason}", path.display())]
    Unsupported { path: PathBuf, reason: String },
    #[error("{}: already exists (pass overwrite to replace it)", path.display())]
    Exists { path: PathBuf },
}

/// A map read from a file, with what its header says about placement.
#[derive(Clone, Debug)]
pub struct MrcMap {
    /// The voxels (x fastest) and the voxel size.
    pub map: DensityMap,
    /// Where 0 Å falls, in voxel indices along x, y, z (see the module docs for the rule).
    pub origin_index: [f64; 3],
    /// False when the header carries no cell size and the voxel size was set to 1.
    pub voxel_from_header: bool,
    /// The header's mode (0, 1, 2 or 6).
    pub mode: i32,
}

impl MrcMap {
    /// `origin_index` − m/2 per axis: how far, in voxels, the header's origin lies from the voxel
    /// this program treats as the centre of the box.
    pub fn origin_offset(&self) -> [f64; 3] {
        let c = (self.map.m / 2) as f64;
        self.origin_index.map(|o| o - c)
    }
}

/// Writes `map` to `path`; refuses to replace an existing file unless `overwrite`.
pub fn write_mrc(path: impl AsRef<Path>, map: &DensityMap, overwrite: bool) -> Result<(), MrcError> {
    let path = path.as_ref();
    let io_err = |error| MrcError::Io {
        path: path.to_path_buf(),
        error,
    };
    if !overwrite && path.exists() {
        return Err(MrcError::Exists {
            path: path.to_path_buf(),
        });
    }
    let bytes = encode(map);
    let tmp = crate::formats::temporary_path(path, "mrc");
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(e));
    }
    match crate::formats::place(&tmp, path, overwrite) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(MrcError::Exists {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(io_err(e)),
    }
}

fn encode(map: &DensityMap) -> Vec<u8> {
    let m = map.m;
    let mut h = [0u8; HEADER_BYTES];
    let mut put_i32 = |word: usize, v: i32| h[4 * word..4 * word + 4].copy_from_slice(&v.to_le_bytes());
    for w in 0..3 {
        put_i32(w, m as i32); // nx, ny, nz
        put_i32(7 + w, m as i32); // mx, my, mz
        put_i32(16 + w, w as i32 + 1); // mapc, mapr, maps
    }
    put_i32(3, 2); // mode: float32
    put_i32(22, 1); // ispg: a single volume
    put_i32(27, 20140); // nversion
    put_i32(55, 1); // nlabl
    let (min, max, sum) = map.data.iter().fold((f32::MAX, f32::MIN, 0.0f64), |(lo, hi, s), &v| {
        (lo.min(v), hi.max(v), s + v as f64)
    });
    let n = map.data.len().max(1) as f64;
    let mean = sum / n;
    let rms = (map.data.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    let origin = -((m / 2) as f64) * map.spacing;
    let mut put_f32 = |word: usize, v: f32| h[4 * word..4 * word + 4].copy_from_slice(&v.to_le_bytes());
    for w in 0..3 {
        put_f32(10 + w, (m as f64 * map.spacing) as f32); // cella
        put_f32(13 + w, 90.0); // cellb
        put_f32(49 + w, origin as f32); // origin
    }
    put_f32(19, min);
    put_f32(20, max);
    put_f32(21, mean as f32);
    put_f32(54, rms as f32);
    h[208..212].copy_from_slice(b"MAP ");
    h[212..216].copy_from_slice(&[0x44, 0x44, 0, 0]); // little-endian machine stamp
    let label = b"xrai-bench";
    h[224..224 + label.len()].copy_from_slice(label);

    let mut bytes = Vec::with_capacity(HEADER_BYTES + 4 * map.data.len());
    bytes.extend_from_slice(&h);
    for v in &map.data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes
}

/// Reads a cubic map (any side, modes 0/1/2/6); `spacing` is the voxel size from the header.
pub fn read_mrc(path: impl AsRef<Path>) -> Result<DensityMap, MrcError> {
    read_mrc_map(path).map(|m| m.map)
}

/// Reads a cubic map with its header's placement (see the module docs).
pub fn read_mrc_map(path: impl AsRef<Path>) -> Result<MrcMap, MrcError> {
    let path = path.as_ref();
    let io_err = |error| MrcError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut file = fs::File::open(path).map_err(io_err)?;
    let found = file.metadata().map_err(io_err)?.len();
    let mut header = [0u8; HEADER_BYTES];
    if found < HEADER_BYTES as u64 {
        return Err(DecodeError::NotMrc(format!("{found} bytes, shorter than the 1024-byte header")).at(path));
    }
    file.read_exact(&mut header).map_err(io_err)?;
    let h = Header::parse(&header).map_err(|e| e.at(path))?;
    if found < h.expected_len {
        return Err(DecodeError::Truncated(h.expected_len, found).at(path));
    }
    let skip = h.nsymbt as usize;
    let mut body = vec![0u8; skip + h.data_len];
    file.read_exact(&mut body).map_err(io_err)?;
    Ok(h.decode(&body[skip..]))
}

/// A decoding failure before the path is known.
enum DecodeError {
    NotMrc(String),
    Truncated(u64, u64),
    Mode(i32),
    Unsupported(String),
}

impl DecodeError {
    fn at(self, path: &Path) -> MrcError {
        let path = path.to_path_buf();
        match self {
            DecodeError::NotMrc(reason) => MrcError::NotMrc { path, reason },
            DecodeError::Truncated(expected, found) => MrcError::Truncated { path, expected, found },
            DecodeError::Mode(mode) => MrcError::Mode { path, mode },
            DecodeError::Unsupported(reason) => MrcError::Unsupported { path, reason },
        }
    }
}

/// The header fields reading needs, validated.
struct Header {
    little_endian: bool,
    m: usize,
    mode: i32,
    /// Bytes per voxel of `mode`.
    width: usize,
    /// File axis (0 = x, 1 = y, 2 = z) of columns, rows and sections.
    axes: [usize; 3],
    nsymbt: u32,
    data_len: usize,
    expected_len: u64,
    spacing: f64,
    voxel_from_header: bool,
    origin_index: [f64; 3],
}

fn mode_width(mode: i32) -> Option<usize> {
    match mode {
        0 => Some(1),
        1 | 6 => Some(2),
        2 => Some(4),
        _ => None,
    }
}

impl Header {
    fn parse(bytes: &[u8; HEADER_BYTES]) -> Result<Header, DecodeError> {
        if &bytes[208..212] != b"MAP " {
            return Err(DecodeError::NotMrc("no 'MAP ' stamp at byte 208".into()));
        }
        let word = |w: usize| -> [u8; 4] { bytes[4 * w..4 * w + 4].try_into().expect("4 bytes") };
        let little_endian = match bytes[212] {
            0x44 | 0x41 => true,
            0x11 => false,
            _ => {
                // No usable stamp: the byte order that yields a mode this reader knows.
                let le = i32::from_le_bytes(word(3));
                let be = i32::from_be_bytes(word(3));
                match (mode_width(le), mode_width(be)) {
                    (Some(_), _) => true,
                    (None, Some(_)) => false,
                    _ => {
                        return Err(DecodeError::NotMrc(format!(
                            "unknown machine stamp 0x{:02x} and no known mode in either byte order",
                            bytes[212]
                        )))
                    }
                }
            }
        };
        let i32_at = |w: usize| {
            if little_endian {
                i32::from_le_bytes(word(w))
            } else {
                i32::from_be_bytes(word(w))
            }
        };
        let f32_at = |w: usize| f32::from_bits(i32_at(w) as u32) as f64;

        let (nx, ny, nz) = (i32_at(0), i32_at(1), i32_at(2));
        if nx <= 0 || ny <= 0 || nz <= 0 {
            return Err(DecodeError::NotMrc(format!("dimensions {nx}×{ny}×{nz}")));
        }
        let mode = i32_at(3);
        let width = mode_width(mode).ok_or(DecodeError::Mode(mode))?;
        // Columns, rows, sections → axes; all-zero means the standard order.
        let raw_axes = [i32_at(16), i32_at(17), i32_at(18)];
        let axes = if raw_axes == [0, 0, 0] {
            [0, 1, 2]
        } else {
            let mut sorted = raw_axes;
            sorted.sort_unstable();
            if sorted != [1, 2, 3] {
                return Err(DecodeError::NotMrc(format!(
                    "axis order mapc/mapr/maps = {}/{}/{} is not a permutation of 1/2/3",
                    raw_axes[0], raw_axes[1], raw_axes[2]
                )));
            }
            raw_axes.map(|a| (a - 1) as usize)
        };
        // Shape along x, y, z.
        let mut shape = [0i32; 3];
        for (k, &n) in [nx, ny, nz].iter().enumerate() {
            shape[axes[k]] = n;
        }
        if shape[0] != shape[1] || shape[1] != shape[2] {
            return Err(DecodeError::Unsupported(format!(
                "the map is {}×{}×{} voxels (x×y×z); fsc, phase and align need a cube \
                 (pad or resample the map to a cubic box first)",
                shape[0], shape[1], shape[2]
            )));
        }
        let m = nx as usize;
        let nsymbt = i32_at(23);
        let nsymbt = u32::try_from(nsymbt)
            .map_err(|_| DecodeError::NotMrc(format!("negative extended header size {nsymbt}")))?;
        let too_big = || DecodeError::NotMrc(format!("dimensions {nx}×{ny}×{nz} overflow"));
        let data_len = m
            .checked_mul(m)
            .and_then(|v| v.checked_mul(m))
            .and_then(|v| v.checked_mul(width))
            .ok_or_else(too_big)?;
        let expected_len = (HEADER_BYTES as u64)
            .checked_add(nsymbt as u64)
            .and_then(|v| v.checked_add(data_len as u64))
            .ok_or_else(too_big)?;

        let sampling = [i32_at(7), i32_at(8), i32_at(9)];
        let cell = [f32_at(10), f32_at(11), f32_at(12)];
        let voxel_from_header = sampling.iter().all(|&s| s > 0) && cell.iter().all(|&c| c.is_finite() && c > 0.0);
        let spacing = if voxel_from_header {
            let sizes: Vec<f64> = (0..3).map(|a| cell[a] / sampling[a] as f64).collect();
            let (lo, hi) = sizes
                .iter()
                .fold((f64::MAX, 0.0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            if hi - lo > 1e-3 * hi {
                return Err(DecodeError::Unsupported(format!(
                    "voxel sizes differ between axes ({:.5}, {:.5}, {:.5} Å from cella/mx); \
                     only isotropic voxels are supported",
                    sizes[0], sizes[1], sizes[2]
                )));
            }
            sizes[0]
        } else {
            1.0
        };
        let origin = [f32_at(49), f32_at(50), f32_at(51)];
        let origin_angstrom = if origin.iter().any(|&o| o != 0.0 && o.is_finite()) {
            origin.map(|o| if o.is_finite() { o } else { 0.0 })
        } else {
            let start = [i32_at(4), i32_at(5), i32_at(6)];
            let mut o = [0.0; 3];
            for k in 0..3 {
                o[axes[k]] = start[k] as f64 * spacing;
            }
            o
        };
        Ok(Header {
            little_endian,
            m,
            mode,
            width,
            axes,
            nsymbt,
            data_len,
            expected_len,
            spacing,
            voxel_from_header,
            origin_index: origin_angstrom.map(|o| -o / spacing),
        })
    }

    /// The voxels in `body` (exactly `data_len` bytes), permuted to x fastest.
    fn decode(&self, body: &[u8]) -> MrcMap {
        let m = self.m;
        let le = self.little_endian;
        let value = |c: &[u8]| -> f32 {
            match self.mode {
                0 => c[0] as i8 as f32,
                1 => {
                    let b = [c[0], c[1]];
                    (if le {
                        i16::from_le_bytes(b)
                    } else {
                        i16::from_be_bytes(b)
                    }) as f32
                }
                6 => {
                    let b = [c[0], c[1]];
                    (if le {
                        u16::from_le_bytes(b)
                    } else {
                        u16::from_be_bytes(b)
                    }) as f32
                }
                _ => {
                    let b = [c[0], c[1], c[2], c[3]];
                    if le {
                        f32::from_le_bytes(b)
                    } else {
                        f32::from_be_bytes(b)
                    }
                }
            }
        };
        let values = body.chunks_exact(self.width).map(value);
        let data = if self.axes == [0, 1, 2] {
            values.collect()
        } else {
            let mut data = vec![0f32; m * m * m];
            // File order: section s, row r, column c (fastest).
            let stride = |axis: usize| [1, m, m * m][axis];
            let (sc, sr, ss) = (stride(self.axes[0]), stride(self.axes[1]), stride(self.axes[2]));
            for (i, v) in values.enumerate() {
                let (c, r, s) = (i % m, (i / m) % m, i / (m * m));
                data[c * sc + r * sr + s * ss] = v;
            }
            data
        };
        MrcMap {
            map: Volume {
                m,
                spacing: self.spacing,
                data,
            },
            origin_index: self.origin_index,
            voxel_from_header: self.voxel_from_header,
            mode: self.mode,
        }
    }
}
