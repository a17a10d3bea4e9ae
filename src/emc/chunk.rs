//! Chunks of frames as EMC holds them while one chunk is processed — dense rows (for the GEMM
//! likelihood) or CSR rows of non-zero pixels (the sparse-photon path), both with the
//! likelihood pixels apart when a resolution cut-off applies — and the plan that sizes them.
//!
//! **Memory.** Everything an iteration holds apart from the model and a few numbers per frame
//! lives in one chunk's working set, and [`ChunkPlan`] sizes the chunk so that the whole working
//! set fits `EmcParams::chunk_bytes`: the frames themselves, each frame's candidate list while
//! the rotation blocks stream past (which becomes its posterior), its row of likelihoods for one
//! rotation block, its share of the merge's gather buffers, and the fixed scratch (one rotation
//! block of slices, the merge's private volumes, the read buffer). A frame's list is the large
//! part: while β is small nearly every rotation stays within the threshold, so a list holds up
//! to `2 · max_candidates + rotation_block` entries (8 bytes each) between two prunes — 66 KiB
//! at the defaults against the 16 KiB of a 64² frame. Peak memory is then the chunk budget plus
//! the model and the per-frame numbers, whatever N is.

use std::time::Instant;

use anyhow::{ensure, Result};

use super::engine::{Emc, READ_BATCH};
use super::estep::{GEMM_ROWS, MERGE_BLOCK};
use crate::data::Source;

/// CSR rows of non-zero pixels.
#[derive(Default)]
pub(super) struct Csr {
    pub(super) offsets: Vec<usize>,
    pub(super) index: Vec<u32>,
    pub(super) value: Vec<f32>,
}

impl Csr {
    pub(super) fn new(frames: usize) -> Csr {
        let mut offsets = Vec::with_capacity(frames + 1);
        offsets.push(0);
        Csr {
            offsets,
            ..Default::default()
        }
    }
    pub(super) fn push(&mut self, entries: impl Iterator<Item = (u32, f32)>) {
        for (i, v) in entries {
            self.index.push(i);
            self.value.push(v);
        }
        self.offsets.push(self.index.len());
    }
    /// Room for `more` entries without doubling past them.
    fn reserve(&mut self, more: usize) {
        self.index.reserve_exact(more);
        self.value.reserve_exact(more);
    }
    pub(super) fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.offsets[i], self.offsets[i + 1]);
        (&self.index[a..b], &self.value[a..b])
    }
}

pub(super) enum Frames {
    /// Full frames (n × P) and, when a cut-off applies, their likelihood pixels (n × P_L).
    Dense { full: Vec<f32>, lik: Option<Vec<f32>> },
    /// Non-zero pixels: all of them (merge) and the likelihood ones, in compact indices.
    Sparse { full: Csr, lik: Csr },
}

pub(super) struct Chunk {
    pub(super) n: usize,
    pub(super) frames: Frames,
}

/// Frames per chunk and where the chunk budget goes (bytes).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct ChunkPlan {
    /// Frames held at a time.
    pub frames: usize,
    /// The budget the plan fits (`--chunk-mb`).
    pub budget_bytes: usize,
    /// Per frame of the chunk: the frame, its candidate list at its longest, its likelihood
    /// row, and its entries in the merge's gather buffers.
    pub bytes_per_frame: usize,
    /// Independent of the chunk's size: a rotation block's slices (twice), the running merge
    /// volumes, each merge part's private volumes, the read buffer, per-thread GEMM scratch.
    pub fixed_bytes: usize,
    /// Merge parts (each with a private pair of volumes): the thread count, fewer when the
    /// volumes would take more than a quarter of the budget.
    pub merge_parts: usize,
}

/// The smallest chunk worth running (the likelihood GEMM takes 128 frames at a time).
pub const MIN_CHUNK_FRAMES: usize = 64;

/// Per-thread scratch outside the plan's explicit buffers: GEMM packing (matrixmultiply's
/// panels, ~1.1 MiB for f32) and a frame's posterior temporaries (~0.2 MiB), which the
/// allocator keeps in the arena of each thread that ran them.
const THREAD_SCRATCH: usize = 2 << 20;

impl Emc {
    /// Longest a frame's candidate list gets: after a prune it holds at most `max_candidates`
    /// and the next prune comes once it has doubled (at least 64), plus the block just added.
    pub(super) fn candidate_bound(&self) -> usize {
        let cap = self.params.max_candidates.max(1);
        let rb = self.params.rotation_block.min(self.rotations.len());
        self.rotations.len().min((2 * cap).max(64) + rb - 1)
    }

    /// The chunk plan for frames read from a source whose full-size frames have
    /// `source_pixels` pixels (read before binning). An error when the budget cannot hold the
    /// fixed scratch and [`MIN_CHUNK_FRAMES`] frames.
    pub fn chunk_plan(&self, sparse: bool, source_pixels: usize) -> Result<ChunkPlan> {
        let (p, pl) = (self.pixels(), self.lik_pixels.len());
        let cut = if pl < p { pl } else { 0 };
        let rb = self.params.rotation_block.min(self.rotations.len());
        let voxels = self.model.data.len();
        let threads = rayon::current_num_threads().max(1);
        let budget = self.params.chunk_bytes;
        let frame = if sparse {
            // Both CSR copies (all non-zero pixels, and those inside the likelihood), index +
            // value, at the data's mean density with a 10 % margin.
            let nnz = self.density.unwrap_or(1.0) * (p + pl) as f64;
            (1.1 * 8.0 * nnz).ceil() as usize + 16
        } else {
            4 * (p + cut)
        };
        // A frame's list (which becomes its posterior), the structs around it, its row of C.
        let own = frame + 8 * self.candidate_bound() + 128 + 4 * rb;
        // Per merge part and frame: its cursor, one rotation block's gathered entries
        // (≤ 1 per rotation) and the block's dense probability matrix.
        let merge_per_frame = 4 + MERGE_BLOCK * (8 + 4);
        let part_fixed = 4 * (2 * voxels + MERGE_BLOCK * p + p);
        let parts = threads.min((budget / 4 / part_fixed.max(1)).max(1));
        let fixed = 4 * rb * (p + pl)
            + 16 * voxels
            + 8 * (self.rotations.len() + 1)
            + READ_BATCH * 4 * (source_pixels + p)
            + parts * part_fixed
            + threads * THREAD_SCRATCH;
        let per_frame = own + parts * merge_per_frame;
        let frames = budget.saturating_sub(fixed) / per_frame;
        ensure!(
            frames >= MIN_CHUNK_FRAMES,
            "--chunk-mb {}: EMC needs at least {} MiB here ({} MiB of fixed scratch for {} rotations, a {}³ \
             model and {threads} threads, plus {} KiB per frame for at least {MIN_CHUNK_FRAMES} frames); raise --chunk-mb",
            budget >> 20,
            (fixed + MIN_CHUNK_FRAMES * per_frame).div_ceil(1 << 20),
            fixed.div_ceil(1 << 20),
            self.rotations.len(),
            self.model.m,
            per_frame.div_ceil(1024),
        );
        // Whole GEMM row blocks when the chunk is larger than one.
        let frames = if frames > GEMM_ROWS {
            frames / GEMM_ROWS * GEMM_ROWS
        } else {
            frames
        };
        Ok(ChunkPlan {
            frames,
            budget_bytes: budget,
            bytes_per_frame: per_frame,
            fixed_bytes: fixed,
            merge_parts: parts,
        })
    }

    /// Frames `start .. start + count` of the source; None when `deadline` passes first
    /// (checked between reads of [`READ_BATCH`] frames).
    pub(super) fn load_chunk(
        &self,
        source: &Source,
        start: usize,
        count: usize,
        sparse: bool,
        deadline: Option<Instant>,
    ) -> Result<Option<Chunk>> {
        let p = self.pixels();
        let cut = self.lik_pixels.len() < p;
        let mut n = 0;
        // Exact capacities: a doubling Vec would hold up to twice what the plan counted.
        let mut frames = if sparse {
            Frames::Sparse {
                full: Csr::new(count),
                lik: Csr::new(count),
            }
        } else {
            Frames::Dense {
                full: Vec::with_capacity(count * p),
                lik: cut.then(|| Vec::with_capacity(count * self.lik_pixels.len())),
            }
        };
        while n < count {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            let batch = source.read((start + n) as u64, (count - n).min(READ_BATCH))?;
            ensure!(
                !batch.is_empty() && batch.len() % p == 0,
                "the source returned no whole frames at {}",
                start + n
            );
            n += batch.len() / p;
            match &mut frames {
                Frames::Dense { full, lik } => {
                    if let Some(lik) = lik {
                        for f in batch.chunks_exact(p) {
                            lik.extend(self.lik_pixels.iter().map(|&q| f[q as usize]));
                        }
                    }
                    full.extend_from_slice(&batch);
                }
                Frames::Sparse { full, lik } => {
                    let nnz = batch.iter().filter(|&&v| v != 0.0).count();
                    let nnz_lik = batch
                        .chunks_exact(p)
                        .map(|f| {
                            f.iter()
                                .enumerate()
                                .filter(|(q, &v)| v != 0.0 && self.compact[*q] != u32::MAX)
                                .count()
                        })
                        .sum();
                    full.reserve(nnz);
                    lik.reserve(nnz_lik);
                    for f in batch.chunks_exact(p) {
                        let nz = || f.iter().enumerate().filter(|(_, &v)| v != 0.0);
                        full.push(nz().map(|(q, &v)| (q as u32, v)));
                        lik.push(
                            nz().filter(|(q, _)| self.compact[*q] != u32::MAX)
                                .map(|(q, &v)| (self.compact[q], v)),
                        );
                    }
                }
            }
        }
        Ok(Some(Chunk { n, frames }))
    }
}
