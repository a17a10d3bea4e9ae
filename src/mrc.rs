//! MRC2014 maps (Cheng et al. 2015, J. Struct. Biol. 192, 146), the format ChimeraX, PyMOL and
//! every cryo-EM package open.
//!
//! Written maps are mode 2 (float32), little-endian, cubic, axes in file order x, y, z
//! (mapc/mapr/maps = 1, 2, 3), cell = m · voxel size, and origin = −c · voxel so that the centre
//! voxel `c = (m−1)/2` sits at 0 Å. A reciprocal-space volume (an amplitude |F| to be phased)
//! goes in the same way with Δs in Å⁻¹ as its "voxel size".
//!
//! Writing goes to a temporary file in the target folder, then a rename, so a crash never leaves a
//! half-written map; an existing file is replaced only when asked. Reading accepts what this
//! module writes and any cubic, odd-sided mode-2 little-endian map with standard axis order, and
//! otherwise says which file is wrong and why.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::volume::{DensityMap, Volume};

const HEADER_BYTES: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum MrcError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: not an MRC map ({reason})", path.display())]
    NotMrc { path: PathBuf, reason: String },
    #[error("{}: truncated: the header promises {expected} bytes, the file has {found}", path.display())]
    Truncated {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("{}: MRC mode {mode} is not supported (only mode 2, 32-bit float)", path.display())]
    Mode { path: PathBuf, mode: i32 },
    #[error("{}: {reason}", path.display())]
    Unsupported { path: PathBuf, reason: String },
    #[error("{}: already exists (pass overwrite to replace it)", path.display())]
    Exists { path: PathBuf },
}

/// Writes `map` to `path`; refuses to replace an existing file unless `overwrite`.
pub fn write_mrc(
    path: impl AsRef<Path>,
    map: &DensityMap,
    overwrite: bool,
) -> Result<(), MrcError> {
    let path = path.as_ref();
    let io_err = |source| MrcError::Io {
        path: path.to_path_buf(),
        source,
    };
    if !overwrite && path.exists() {
        return Err(MrcError::Exists {
            path: path.to_path_buf(),
        });
    }
    let bytes = encode(map);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(e));
    }
    let placed = if overwrite {
        fs::rename(&tmp, path)
    } else {
        // A hard link fails if the target appeared meanwhile: no clobbering, even in a race.
        fs::hard_link(&tmp, path).or_else(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => Err(e),
            _ if !path.exists() => fs::rename(&tmp, path),
            _ => Err(e),
        })
    };
    let _ = fs::remove_file(&tmp);
    match placed {
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
    let mut put_i32 =
        |word: usize, v: i32| h[4 * word..4 * word + 4].copy_from_slice(&v.to_le_bytes());
    for w in 0..3 {
        put_i32(w, m as i32); // nx, ny, nz
        put_i32(7 + w, m as i32); // mx, my, mz
        put_i32(16 + w, w as i32 + 1); // mapc, mapr, maps
    }
    put_i32(3, 2); // mode: float32
    put_i32(22, 1); // ispg: a single volume
    put_i32(27, 20140); // nversion
    put_i32(55, 1); // nlabl
    let (min, max, sum) = map
        .data
        .iter()
        .fold((f32::MAX, f32::MIN, 0.0f64), |(lo, hi, s), &v| {
            (lo.min(v), hi.max(v), s + v as f64)
        });
    let n = map.data.len().max(1) as f64;
    let mean = sum / n;
    let rms = (map
        .data
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    let origin = -(((m - 1) / 2) as f64) * map.spacing;
    let mut put_f32 =
        |word: usize, v: f32| h[4 * word..4 * word + 4].copy_from_slice(&v.to_le_bytes());
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

/// Reads a cubic, odd-sided, mode-2 map; `spacing` is the voxel size from the header.
pub fn read_mrc(path: impl AsRef<Path>) -> Result<DensityMap, MrcError> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|source| MrcError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode(&bytes).map_err(|e| e.at(path))
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
            DecodeError::Truncated(expected, found) => MrcError::Truncated {
                path,
                expected,
                found,
            },
            DecodeError::Mode(mode) => MrcError::Mode { path, mode },
            DecodeError::Unsupported(reason) => MrcError::Unsupported { path, reason },
        }
    }
}

fn decode(bytes: &[u8]) -> Result<DensityMap, DecodeError> {
    if bytes.len() < HEADER_BYTES {
        return Err(DecodeError::NotMrc(format!(
            "{} bytes, shorter than the 1024-byte header",
            bytes.len()
        )));
    }
    if &bytes[208..212] != b"MAP " {
        return Err(DecodeError::NotMrc("no 'MAP ' stamp at byte 208".into()));
    }
    match bytes[212] {
        0x44 | 0x41 => {}
        0x11 => {
            return Err(DecodeError::Unsupported(
                "big-endian MRC files are not supported".into(),
            ))
        }
        b => {
            return Err(DecodeError::NotMrc(format!(
                "unknown machine stamp 0x{b:02x}"
            )))
        }
    }
    let i32_at = |word: usize| {
        i32::from_le_bytes(bytes[4 * word..4 * word + 4].try_into().expect("4 bytes"))
    };
    let f32_at = |word: usize| {
        f32::from_le_bytes(bytes[4 * word..4 * word + 4].try_into().expect("4 bytes"))
    };
    let (nx, ny, nz) = (i32_at(0), i32_at(1), i32_at(2));
    if nx <= 0 || ny <= 0 || nz <= 0 {
        return Err(DecodeError::NotMrc(format!("dimensions {nx}×{ny}×{nz}")));
    }
    let mode = i32_at(3);
    if mode != 2 {
        return Err(DecodeError::Mode(mode));
    }
    let axes = (i32_at(16), i32_at(17), i32_at(18));
    if axes != (1, 2, 3) && axes != (0, 0, 0) {
        return Err(DecodeError::Unsupported(format!(
            "axis order mapc/mapr/maps = {}/{}/{} (only 1/2/3 is supported)",
            axes.0, axes.1, axes.2
        )));
    }
    let nsymbt = i32_at(23);
    if nsymbt < 0 {
        return Err(DecodeError::NotMrc(format!(
            "negative extended header size {nsymbt}"
        )));
    }
    let voxels = nx as u64 * ny as u64 * nz as u64;
    let expected = HEADER_BYTES as u64 + nsymbt as u64 + 4 * voxels;
    if (bytes.len() as u64) < expected {
        return Err(DecodeError::Truncated(expected, bytes.len() as u64));
    }
    if nx != ny || ny != nz || nx % 2 == 0 {
        return Err(DecodeError::Unsupported(format!(
            "map is {nx}×{ny}×{nz}; xrai-bench needs a cube with an odd side (centre voxel at the origin)"
        )));
    }
    let m = nx as usize;
    let mx = i32_at(7);
    let cella = f32_at(10) as f64;
    let spacing = if mx > 0 && cella > 0.0 {
        cella / mx as f64
    } else {
        1.0
    };
    let start = HEADER_BYTES + nsymbt as usize;
    let data = bytes[start..start + 4 * m * m * m]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    Ok(Volume { m, spacing, data })
}
