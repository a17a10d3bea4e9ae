//! Dragonfly's photon file (`.emc`): sparse photon counts, frame after frame.
//!
//! Layout, all integers 32-bit little-endian (what `writeemc.py` writes with numpy's `i4` and what
//! `emcfile.c` reads with `fread(int)` on a little-endian machine), N = `num_data`:
//!
//! | bytes | field | meaning |
//! |---|---|---|
//! | 0–3 | `num_data` | number of frames N |
//! | 4–7 | `num_pix` | pixels per frame (must match the detector file) |
//! | 8–11 | `ftype` | 0 sparse, 1 dense int32, 2 dense float64 |
//! | 12–1023 | | zeros (the header is 256 `i4` words) |
//! | N × 4 | `ones[d]` | pixels with exactly one photon in frame d |
//! | N × 4 | `multi[d]` | pixels with more than one photon in frame d |
//! | Σ ones × 4 | `place_ones` | their pixel numbers, frame after frame |
//! | Σ multi × 4 | `place_multi` | pixel numbers of the multi-photon pixels, frame after frame |
//! | Σ multi × 4 | `count_multi` | their photon counts, in the same order |
//!
//! Dense files (`ftype` 1 and 2) hold N × `num_pix` values (int32 or float64) after the header
//! instead. Pixel numbers index the detector file's pixels (0-based). Pixels with no photon are not
//! listed. Dragonfly writes counts ≥ 2 in `count_multi`; a count of 1 there is accepted on reading,
//! and a pixel listed twice in one frame has its counts added.
//!
//! [`EmcReader`] indexes the file once when it opens it — it streams the `ones` and `multi` arrays
//! in chunks, checks every count, adds them up with checked arithmetic and checks the sums
//! against the file's size — and keeps one pair of running totals per 1024 frames, so that any
//! range of frames is read with a few seeks and the frames never have to fit in memory together.
//! [`EmcWriter`] writes frames as they come: the five arrays go to temporary files beside the target
//! (as Dragonfly's own writer does), which [`EmcWriter::finish`] joins behind the header.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::formats::{place_file, temporary_path, FormatError};

/// Bytes of the header before the first array.
pub const HEADER_BYTES: u64 = 1024;
/// Frames between the running totals kept by [`EmcReader`].
const CHECKPOINT: usize = 1024;
/// Entries of `ones`/`multi` read at once while indexing.
const CHUNK: usize = 1 << 16;
/// The first bytes of every HDF5 file.
const HDF5_SIGNATURE: [u8; 8] = [137, b'H', b'D', b'F', b'\r', b'\n', 26, b'\n'];

/// The header's `ftype`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmcKind {
    /// 0: the sparse lists (what Dragonfly writes).
    Sparse,
    /// 1: N × num_pix int32 counts.
    DenseInt,
    /// 2: N × num_pix float64 values.
    DenseDouble,
}

impl EmcKind {
    fn from_code(code: i32) -> Option<Self> {
        match code {
            0 => Some(EmcKind::Sparse),
            1 => Some(EmcKind::DenseInt),
            2 => Some(EmcKind::DenseDouble),
            _ => None,
        }
    }
}

/// One frame's photons as Dragonfly stores them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SparseFrame {
    /// Pixels with one photon.
    pub ones: Vec<u32>,
    /// Pixels with more than one photon …
    pub multi: Vec<u32>,
    /// … and their counts.
    pub counts: Vec<u32>,
}

impl SparseFrame {
    /// The sparse form of a dense frame of photon counts. A value that is not a whole,
    /// non-negative number below 2³¹ is refused: `Err((pixel, value))`.
    pub fn from_dense(frame: &[f32]) -> Result<Self, (usize, f32)> {
        let mut sparse = SparseFrame::default();
        for (p, &v) in frame.iter().enumerate() {
            let whole = v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 2_147_483_648.0;
            if !whole {
                return Err((p, v));
            }
            if v == 1.0 {
                sparse.ones.push(p as u32);
            } else if v >= 2.0 {
                sparse.multi.push(p as u32);
                sparse.counts.push(v as u32);
            }
        }
        Ok(sparse)
    }

    /// Photons in the frame.
    pub fn photons(&self) -> u64 {
        self.ones.len() as u64 + self.counts.iter().map(|&c| c as u64).sum::<u64>()
    }

    /// Adds the frame's counts to a dense frame (`out.len()` ≥ the largest pixel number + 1).
    pub fn add_to(&self, out: &mut [f32]) {
        for &p in &self.ones {
            out[p as usize] += 1.0;
        }
        for (&p, &c) in self.multi.iter().zip(&self.counts) {
            out[p as usize] += c as f32;
        }
    }
}

/// Reads frames of a photon file by range (see the module docs).
pub struct EmcReader {
    path: PathBuf,
    file: File,
    num_data: usize,
    num_pix: usize,
    kind: EmcKind,
    /// Sparse files: (Σ ones, Σ multi) over the frames before frame k · CHECKPOINT.
    checkpoints: Vec<(u64, u64)>,
    ones_total: u64,
    multi_total: u64,
}

fn overflow(path: &Path, field: &str) -> FormatError {
    FormatError::invalid(path, field, "sizes overflow 64-bit arithmetic; the header is corrupt")
}

impl EmcReader {
    /// Opens and indexes `path`, checking the header and every per-frame count against the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, FormatError> {
        let path = path.as_ref();
        let mut file = File::open(path).map_err(|e| FormatError::io(path, e))?;
        let len = file.metadata().map_err(|e| FormatError::io(path, e))?.len();
        if len < HEADER_BYTES {
            return Err(FormatError::invalid(
                path,
                "header",
                format!("the file has {len} bytes, fewer than the {HEADER_BYTES}-byte header"),
            ));
        }
        let mut header = [0u8; HEADER_BYTES as usize];
        file.read_exact(&mut header).map_err(|e| FormatError::io(path, e))?;
        if header[..8] == HDF5_SIGNATURE {
            return Err(FormatError::invalid(
                path,
                "header",
                "this is Dragonfly's HDF5 photon format, which is not supported; \
                 write the frames as a binary .emc file instead",
            ));
        }
        let word = |w: usize| i32::from_le_bytes(header[4 * w..4 * w + 4].try_into().expect("4 bytes"));
        let (num_data, num_pix, ftype) = (word(0), word(1), word(2));
        if num_data < 0 {
            return Err(FormatError::invalid(path, "num_data", format!("{num_data} frames")));
        }
        if num_pix <= 0 {
            return Err(FormatError::invalid(
                path,
                "num_pix",
                format!("{num_pix} pixels per frame"),
            ));
        }
        let kind = EmcKind::from_code(ftype).ok_or_else(|| {
            FormatError::invalid(
                path,
                "ftype",
                format!("{ftype} (0 sparse, 1 dense int, 2 dense double)"),
            )
        })?;
        let mut reader = EmcReader {
            path: path.to_path_buf(),
            file,
            num_data: num_data as usize,
            num_pix: num_pix as usize,
            kind,
            checkpoints: Vec::new(),
            ones_total: 0,
            multi_total: 0,
        };
        let expected = match kind {
            EmcKind::Sparse => reader.index(len)?,
            EmcKind::DenseInt | EmcKind::DenseDouble => {
                let width = if kind == EmcKind::DenseInt { 4 } else { 8 };
                (num_data as u64)
                    .checked_mul(num_pix as u64)
                    .and_then(|v| v.checked_mul(width))
                    .and_then(|v| v.checked_add(HEADER_BYTES))
                    .ok_or_else(|| overflow(path, "num_data × num_pix"))?
            }
        };
        let field = if kind == EmcKind::Sparse {
            "count_multi"
        } else {
            "frames"
        };
        if len < expected {
            return Err(FormatError::invalid(
                path,
                field,
                format!("truncated: the header and counts need {expected} bytes, the file has {len}"),
            ));
        }
        if len > expected {
            return Err(FormatError::invalid(
                path,
                field,
                format!(
                    "{} bytes after the end of the data (the header and counts account for {expected} of {len})",
                    len - expected
                ),
            ));
        }
        Ok(reader)
    }

    /// Streams `ones` and `multi`, checks each count, records running totals; returns the file
    /// size the counts imply.
    fn index(&mut self, len: u64) -> Result<u64, FormatError> {
        let n = self.num_data;
        let counts_end = (n as u64)
            .checked_mul(8)
            .and_then(|v| v.checked_add(HEADER_BYTES))
            .ok_or_else(|| overflow(&self.path, "num_data"))?;
        if len < counts_end {
            return Err(FormatError::invalid(
                &self.path,
                "ones/multi",
                format!(
                    "truncated: num_data = {n} needs {counts_end} bytes for the per-frame counts, the file has {len}"
                ),
            ));
        }
        self.checkpoints = Vec::with_capacity(n.div_ceil(CHECKPOINT));
        let (mut ones_total, mut multi_total) = (0u64, 0u64);
        let mut start = 0;
        while start < n {
            let count = CHUNK.min(n - start);
            let ones = self.read_i32s(HEADER_BYTES + 4 * start as u64, count)?;
            let multi = self.read_i32s(HEADER_BYTES + 4 * (n + start) as u64, count)?;
            for (i, (&o, &m)) in ones.iter().zip(&multi).enumerate() {
                let d = start + i;
                if d % CHECKPOINT == 0 {
                    self.checkpoints.push((ones_total, multi_total));
                }
                for (field, what, v) in [("ones", "single-photon", o), ("multi", "multi-photon", m)] {
                    if v < 0 || v as usize > self.num_pix {
                        return Err(FormatError::invalid(
                            &self.path,
                            format!("{field}[{d}]"),
                            format!(
                                "frame {d} lists {v} {what} pixels; must be 0 … num_pix = {}",
                                self.num_pix
                            ),
                        ));
                    }
                }
                ones_total += o as u64;
                multi_total += m as u64;
            }
            start += count;
        }
        self.ones_total = ones_total;
        self.multi_total = multi_total;
        multi_total
            .checked_mul(2)
            .and_then(|v| v.checked_add(ones_total))
            .and_then(|v| v.checked_mul(4))
            .and_then(|v| v.checked_add(counts_end))
            .ok_or_else(|| overflow(&self.path, "ones/multi"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Frames in the file (`num_data`).
    pub fn num_frames(&self) -> usize {
        self.num_data
    }

    /// Pixels per frame (`num_pix`).
    pub fn num_pixels(&self) -> usize {
        self.num_pix
    }

    pub fn kind(&self) -> EmcKind {
        self.kind
    }

    fn read_bytes(&mut self, offset: u64, bytes: usize) -> Result<Vec<u8>, FormatError> {
        let mut buf = vec![0u8; bytes];
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.read_exact(&mut buf))
            .map_err(|e| FormatError::io(&self.path, e))?;
        Ok(buf)
    }

    fn read_i32s(&mut self, offset: u64, count: usize) -> Result<Vec<i32>, FormatError> {
        let bytes = count.checked_mul(4).ok_or_else(|| overflow(&self.path, "read"))?;
        let buf = self.read_bytes(offset, bytes)?;
        Ok(buf
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }

    fn check_range(&self, frames: &Range<usize>) -> Result<(), FormatError> {
        if frames.start > frames.end || frames.end > self.num_data {
            return Err(FormatError::invalid(
                &self.path,
                "frames",
                format!(
                    "frames {}..{} asked for, the file has {}",
                    frames.start, frames.end, self.num_data
                ),
            ));
        }
        Ok(())
    }

    /// The frames in `frames` (indices into the file) as sparse lists. Dense integer files are
    /// sparsified; dense float64 files have no photon lists and are refused (use [`Self::read_dense`]).
    pub fn read_sparse(&mut self, frames: Range<usize>) -> Result<Vec<SparseFrame>, FormatError> {
        self.check_range(&frames)?;
        match self.kind {
            EmcKind::Sparse => self.read_sparse_lists(frames),
            EmcKind::DenseInt => {
                let num_pix = self.num_pix;
                let counts = self.read_dense_ints(frames)?;
                Ok(counts
                    .chunks_exact(num_pix)
                    .map(|f| {
                        let mut sparse = SparseFrame::default();
                        for (p, &c) in f.iter().enumerate() {
                            if c == 1 {
                                sparse.ones.push(p as u32);
                            } else if c > 1 {
                                sparse.multi.push(p as u32);
                                sparse.counts.push(c as u32);
                            }
                        }
                        sparse
                    })
                    .collect())
            }
            EmcKind::DenseDouble => Err(FormatError::invalid(
                &self.path,
                "ftype",
                "2 (dense float64) holds no photon lists; read its frames as dense values",
            )),
        }
    }

    fn read_sparse_lists(&mut self, frames: Range<usize>) -> Result<Vec<SparseFrame>, FormatError> {
        if frames.is_empty() {
            return Ok(Vec::new());
        }
        let n = self.num_data as u64;
        let first = frames.start / CHECKPOINT * CHECKPOINT;
        let (mut o, mut m) = self.checkpoints[frames.start / CHECKPOINT];
        let span = frames.end - first;
        let ones = self.read_i32s(HEADER_BYTES + 4 * first as u64, span)?;
        let multi = self.read_i32s(HEADER_BYTES + 4 * (n + first as u64), span)?;
        let skip = frames.start - first;
        o += ones[..skip].iter().map(|&v| v as u64).sum::<u64>();
        m += multi[..skip].iter().map(|&v| v as u64).sum::<u64>();
        let ones = &ones[skip..];
        let multi = &multi[skip..];
        let o_n: usize = ones.iter().map(|&v| v as usize).sum();
        let m_n: usize = multi.iter().map(|&v| v as usize).sum();
        // Offsets fit: open() checked the whole file's size with checked arithmetic.
        let place_ones_at = HEADER_BYTES + 8 * n;
        let place_multi_at = place_ones_at + 4 * self.ones_total;
        let count_multi_at = place_multi_at + 4 * self.multi_total;
        let place_ones = self.read_i32s(place_ones_at + 4 * o, o_n)?;
        let place_multi = self.read_i32s(place_multi_at + 4 * m, m_n)?;
        let count_multi = self.read_i32s(count_multi_at + 4 * m, m_n)?;

        let num_pix = self.num_pix;
        let pixel = |field: &str, at: u64, d: usize, v: i32| -> Result<u32, FormatError> {
            if v < 0 || v as usize >= num_pix {
                return Err(FormatError::invalid(
                    &self.path,
                    format!("{field}[{at}]"),
                    format!("frame {d}: pixel {v} is outside 0 … num_pix − 1 = {}", num_pix - 1),
                ));
            }
            Ok(v as u32)
        };
        let (mut io, mut im) = (0usize, 0usize);
        let mut out = Vec::with_capacity(frames.len());
        for (i, d) in frames.enumerate() {
            let mut frame = SparseFrame::default();
            for _ in 0..ones[i] {
                frame.ones.push(pixel("place_ones", o + io as u64, d, place_ones[io])?);
                io += 1;
            }
            for _ in 0..multi[i] {
                let at = m + im as u64;
                frame.multi.push(pixel("place_multi", at, d, place_multi[im])?);
                let c = count_multi[im];
                if c < 1 {
                    return Err(FormatError::invalid(
                        &self.path,
                        format!("count_multi[{at}]"),
                        format!("frame {d}: count {c}; a listed pixel holds at least one photon"),
                    ));
                }
                frame.counts.push(c as u32);
                im += 1;
            }
            out.push(frame);
        }
        Ok(out)
    }

    /// The frames in `frames` as dense values, frame after frame (`frames.len() × num_pix`).
    /// Integer counts must be non-negative.
    pub fn read_dense(&mut self, frames: Range<usize>) -> Result<Vec<f32>, FormatError> {
        self.check_range(&frames)?;
        let num_pix = self.num_pix;
        let values = frames
            .len()
            .checked_mul(num_pix)
            .ok_or_else(|| overflow(&self.path, "frames × num_pix"))?;
        match self.kind {
            EmcKind::Sparse => {
                let mut out = vec![0f32; values];
                for (frame, dense) in self
                    .read_sparse_lists(frames)?
                    .iter()
                    .zip(out.chunks_exact_mut(num_pix))
                {
                    frame.add_to(dense);
                }
                Ok(out)
            }
            EmcKind::DenseInt => Ok(self.read_dense_ints(frames)?.into_iter().map(|v| v as f32).collect()),
            EmcKind::DenseDouble => {
                let at = HEADER_BYTES + 8 * (frames.start as u64) * num_pix as u64;
                let bytes = values.checked_mul(8).ok_or_else(|| overflow(&self.path, "frames"))?;
                let raw = self.read_bytes(at, bytes)?;
                Ok(raw
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                    .collect())
            }
        }
    }

    /// Counts of a dense int32 file, checked to be non-negative; the range is checked.
    fn read_dense_ints(&mut self, frames: Range<usize>) -> Result<Vec<i32>, FormatError> {
        let num_pix = self.num_pix;
        let values = frames
            .len()
            .checked_mul(num_pix)
            .ok_or_else(|| overflow(&self.path, "frames × num_pix"))?;
        let at = HEADER_BYTES + 4 * (frames.start as u64) * num_pix as u64;
        let raw = self.read_i32s(at, values)?;
        if let Some(i) = raw.iter().position(|&v| v < 0) {
            let (d, p) = (frames.start + i / num_pix, i % num_pix);
            return Err(FormatError::invalid(
                &self.path,
                format!("frame {d}, pixel {p}"),
                format!("negative photon count {}", raw[i]),
            ));
        }
        Ok(raw)
    }
}

/// What [`EmcWriter::finish`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmcSummary {
    pub frames: usize,
    pub photons: u64,
}

/// Writes a sparse photon file frame by frame (see the module docs).
pub struct EmcWriter {
    path: PathBuf,
    overwrite: bool,
    num_pix: usize,
    /// `ones`, `multi`, `place_ones`, `place_multi`, `count_multi`.
    spools: Vec<(PathBuf, BufWriter<File>)>,
    num_data: usize,
    photons: u64,
}

const SPOOLS: [&str; 5] = ["ones", "multi", "place_ones", "place_multi", "count_multi"];

impl EmcWriter {
    /// Starts `path` for frames of `num_pix` pixels; refuses an existing file unless `overwrite`.
    pub fn create(path: impl AsRef<Path>, num_pix: usize, overwrite: bool) -> Result<Self, FormatError> {
        let path = path.as_ref();
        if num_pix == 0 || num_pix > i32::MAX as usize {
            return Err(FormatError::invalid(
                path,
                "num_pix",
                format!("{num_pix} pixels per frame (1 … 2³¹ − 1)"),
            ));
        }
        if !overwrite && path.exists() {
            return Err(FormatError::Exists {
                path: path.to_path_buf(),
            });
        }
        let mut writer = EmcWriter {
            path: path.to_path_buf(),
            overwrite,
            num_pix,
            spools: Vec::with_capacity(SPOOLS.len()),
            num_data: 0,
            photons: 0,
        };
        for tag in SPOOLS {
            let spool = temporary_path(path, tag);
            let file = File::create(&spool).map_err(|e| FormatError::io(path, e))?;
            writer.spools.push((spool, BufWriter::new(file)));
        }
        Ok(writer)
    }

    /// Frames written so far.
    pub fn frames(&self) -> usize {
        self.num_data
    }

    /// Writes a dense frame of photon counts (`num_pix` values, each a whole number ≥ 0).
    pub fn write_dense(&mut self, frame: &[f32]) -> Result<(), FormatError> {
        let d = self.num_data;
        if frame.len() != self.num_pix {
            return Err(FormatError::invalid(
                &self.path,
                format!("frame {d}"),
                format!("{} values, but the file's num_pix is {}", frame.len(), self.num_pix),
            ));
        }
        let sparse = SparseFrame::from_dense(frame).map_err(|(p, v)| {
            FormatError::invalid(
                &self.path,
                format!("frame {d}, pixel {p}"),
                format!("value {v} is not a photon count (a whole number ≥ 0 below 2³¹)"),
            )
        })?;
        self.write_sparse(&sparse)
    }

    /// Writes a sparse frame; pixel numbers must be below `num_pix`, counts at least 1.
    pub fn write_sparse(&mut self, frame: &SparseFrame) -> Result<(), FormatError> {
        let d = self.num_data;
        let bad = |field: &str, reason: String| FormatError::invalid(&self.path, format!("frame {d}, {field}"), reason);
        if d >= i32::MAX as usize {
            return Err(bad("num_data", "the format holds at most 2³¹ − 1 frames".into()));
        }
        if frame.multi.len() != frame.counts.len() {
            return Err(bad(
                "multi",
                format!("{} pixels but {} counts", frame.multi.len(), frame.counts.len()),
            ));
        }
        if frame.ones.len() > self.num_pix || frame.multi.len() > self.num_pix {
            return Err(bad(
                "ones/multi",
                format!("more pixels listed than num_pix = {}", self.num_pix),
            ));
        }
        if let Some(p) = frame
            .ones
            .iter()
            .chain(&frame.multi)
            .find(|&&p| p as usize >= self.num_pix)
        {
            return Err(bad(
                "pixel",
                format!("pixel {p} is outside 0 … num_pix − 1 = {}", self.num_pix - 1),
            ));
        }
        if let Some(c) = frame.counts.iter().find(|&&c| c < 1 || c > i32::MAX as u32) {
            return Err(bad("count_multi", format!("count {c} (1 … 2³¹ − 1)")));
        }
        let write = |w: &mut BufWriter<File>, values: &[u32]| -> io::Result<()> {
            for &v in values {
                w.write_all(&(v as i32).to_le_bytes())?;
            }
            Ok(())
        };
        let lens = [frame.ones.len() as u32, frame.multi.len() as u32];
        let arrays: [&[u32]; 5] = [&lens[..1], &lens[1..], &frame.ones, &frame.multi, &frame.counts];
        for ((_, spool), values) in self.spools.iter_mut().zip(arrays) {
            write(spool, values).map_err(|e| FormatError::io(&self.path, e))?;
        }
        self.num_data += 1;
        self.photons += frame.photons();
        Ok(())
    }

    /// Joins header and arrays into the target file; nothing appears at the target before this.
    pub fn finish(mut self) -> Result<EmcSummary, FormatError> {
        let path = self.path.clone();
        let tmp = temporary_path(&path, "emc");
        let result = (|| -> io::Result<()> {
            let mut out = BufWriter::new(File::create(&tmp)?);
            let mut header = [0u8; HEADER_BYTES as usize];
            header[0..4].copy_from_slice(&(self.num_data as i32).to_le_bytes());
            header[4..8].copy_from_slice(&(self.num_pix as i32).to_le_bytes());
            // ftype 0 (sparse) and the rest of the header stay zero.
            out.write_all(&header)?;
            for (spool_path, spool) in &mut self.spools {
                spool.flush()?;
                io::copy(&mut File::open(&*spool_path)?, &mut out)?;
            }
            out.into_inner().map_err(|e| e.into_error())?.sync_all()
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(FormatError::io(&path, e));
        }
        place_file(&tmp, &path, self.overwrite)?;
        Ok(EmcSummary {
            frames: self.num_data,
            photons: self.photons,
        })
    }
}

impl Drop for EmcWriter {
    fn drop(&mut self) {
        for (spool, _) in &self.spools {
            let _ = fs::remove_file(spool);
        }
    }
}
