//! Chunks of frames as EMC holds them while one chunk is processed: dense rows (for the GEMM
//! likelihood) or CSR rows of non-zero pixels (the sparse-photon path), both with the
//! likelihood pixels apart when a resolution cut-off applies.

use anyhow::ensure;

use super::engine::{Emc, READ_BATCH};
use crate::data::Source;

/// CSR rows of non-zero pixels.
#[derive(Default)]
pub(super) struct Csr {
    pub(super) offsets: Vec<usize>,
    pub(super) index: Vec<u32>,
    pub(super) value: Vec<f32>,
}

impl Csr {
    pub(super) fn new() -> Csr {
        Csr {
            offsets: vec![0],
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
    pub(super) start: usize,
    pub(super) n: usize,
    pub(super) frames: Frames,
}

impl Emc {
    pub(super) fn chunk_frames(&self, sparse: bool) -> usize {
        let per_frame = if sparse {
            let nnz = self.density.unwrap_or(1.0) * self.pixels() as f64;
            (nnz * 16.0).max(64.0) as usize
        } else {
            let lik = if self.lik_pixels.len() < self.pixels() {
                self.lik_pixels.len()
            } else {
                0
            };
            4 * (self.pixels() + lik)
        };
        (self.params.chunk_bytes / per_frame).max(64)
    }

    pub(super) fn load_chunk(
        &self,
        source: &Source,
        start: usize,
        count: usize,
        sparse: bool,
    ) -> anyhow::Result<Chunk> {
        let p = self.pixels();
        let cut = self.lik_pixels.len() < p;
        let mut n = 0;
        let mut frames = if sparse {
            Frames::Sparse {
                full: Csr::new(),
                lik: Csr::new(),
            }
        } else {
            Frames::Dense {
                full: Vec::new(),
                lik: cut.then(Vec::new),
            }
        };
        while n < count {
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
        Ok(Chunk { start, n, frames })
    }
}
