//! The expand–likelihood–probability step of one chunk (streaming blocks of rotations past the
//! chunk's frames, keeping each frame's posterior as a short list) and the maximize–compress
//! accumulation of that chunk into the running merge (module docs of [`super::engine`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use super::chunk::{Chunk, Frames};
use super::engine::{Assignment, Emc, MergeRule};
use super::kernels::{ln_in_place, sparse_dot};
use crate::gemm::gemm;
use crate::physics::slice::Slicer;

/// A frame's candidates while rotation blocks stream past: (rotation, L_ir).
pub(super) struct Candidates {
    pub(super) gmax: f32,
    pub(super) list: Vec<(u32, f32)>,
    pub(super) prune_at: usize,
}

/// A frame's posterior after all rotations.
pub(super) struct Posterior {
    pub(super) entries: Vec<(u32, f32)>,
    pub(super) log_likelihood: f64,
    pub(super) mutual_information: f64,
    pub(super) best: Assignment,
    /// Σ_r P_ir T_r (the scale update's denominator).
    pub(super) expected_total: f64,
}

/// Floor of the model inside the logarithm (a zero voxel makes a photon impossible, not NaN).
pub(super) const LOG_FLOOR: f32 = 1e-20;
/// Frames per GEMM call (rows of A); rayon spreads the calls over threads.
pub(super) const GEMM_ROWS: usize = 128;
/// Rotations whose Σ_i P_ir K_i are formed together in the merge.
pub(super) const MERGE_BLOCK: usize = 32;

impl Emc {
    pub(super) fn frame_total(&self, chunk: &Chunk, i: usize) -> f64 {
        match &chunk.frames {
            Frames::Dense { full, .. } => {
                let p = self.pixels();
                self.lik_pixels.iter().map(|&q| full[i * p + q as usize] as f64).sum()
            }
            Frames::Sparse { lik, .. } => lik.row(i).1.iter().map(|&v| v as f64).sum(),
        }
    }

    /// Expand + likelihood + probabilities for one chunk, streaming rotation blocks.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn e_step(
        &self,
        slicer: &Slicer,
        t: &[f32],
        chunk: &Chunk,
        phi: &[f32],
        beta: f64,
        deadline: Option<Instant>,
        progress: &dyn Fn(f64),
    ) -> Option<Vec<Posterior>> {
        let (p, pl, n) = (self.pixels(), self.lik_pixels.len(), chunk.n);
        let n_rot = self.rotations.len();
        let rb = self.params.rotation_block.min(n_rot);
        let thr = self.params.threshold as f32;
        let beta32 = beta as f32;
        let cap = self.params.max_candidates.max(1);
        let lnw = &self.ln_weights;
        let bound = self.candidate_bound();
        let mut cands: Vec<Candidates> = (0..n)
            .map(|_| Candidates {
                gmax: f32::NEG_INFINITY,
                list: Vec::with_capacity(bound),
                prune_at: 64,
            })
            .collect();
        let mut slices = vec![0.0f32; rb * p];
        let mut lt = vec![0.0f32; pl * rb];
        let mut c = vec![0.0f32; n * rb];
        for r0 in (0..n_rot).step_by(rb) {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
            progress(r0 as f64 / n_rot as f64);
            let nb = rb.min(n_rot - r0);
            // Expand: log-slices of this block, then pixel-major [P_L × rb] for the products.
            slices[..nb * p].par_chunks_mut(p).enumerate().for_each(|(j, out)| {
                slicer.slice_into(&self.rotations[r0 + j], out);
                out.iter_mut().zip(&self.params.background).for_each(|(w, b)| *w += b);
                ln_in_place(out, LOG_FLOOR);
            });
            const ROWS: usize = 64;
            lt.par_chunks_mut(ROWS * rb).enumerate().for_each(|(qb, rows)| {
                for (k, row) in rows.chunks_exact_mut(rb).enumerate() {
                    let q = self.lik_pixels[qb * ROWS + k] as usize;
                    for (j, v) in row[..nb].iter_mut().enumerate() {
                        *v = slices[j * p + q];
                    }
                }
            });
            // Σ_p K_ip ln W_rp for every frame of the chunk and rotation of the block.
            match &chunk.frames {
                Frames::Dense { full, lik } => {
                    let a = lik.as_deref().unwrap_or(full);
                    c.par_chunks_mut(GEMM_ROWS * rb)
                        .zip(a.par_chunks(GEMM_ROWS * pl))
                        .for_each(|(cc, aa)| {
                            gemm(aa.len() / pl, pl, nb, 1.0, aa, (pl, 1), &lt, (rb, 1), 0.0, cc, (rb, 1));
                        });
                }
                Frames::Sparse { lik, .. } => {
                    c.par_chunks_mut(rb).enumerate().for_each(|(i, row)| {
                        let (idx, val) = lik.row(i);
                        sparse_dot(idx, val, &lt, rb, &mut row[..nb]);
                    });
                }
            }
            cands
                .par_iter_mut()
                .zip(c.par_chunks(rb))
                .enumerate()
                .for_each(|(i, (cand, row))| {
                    let ph = phi[i];
                    // The list was allocated at the bound the chunk plan counts, once: the prune
                    // schedule keeps it within, so it never reallocates (growing in steps
                    // would leave freed fragments behind in the allocator's per-thread arenas).
                    debug_assert!(cand.list.len() + nb <= cand.list.capacity());
                    for (j, &kl) in row[..nb].iter().enumerate() {
                        let r = r0 + j;
                        let l = kl - ph * t[r];
                        let g = beta32 * l + lnw[r];
                        if g > cand.gmax - thr {
                            cand.list.push((r as u32, l));
                            cand.gmax = cand.gmax.max(g);
                        }
                    }
                    if cand.list.len() >= cand.prune_at {
                        let floor = cand.gmax - thr;
                        cand.list.retain(|&(r, l)| beta32 * l + lnw[r as usize] > floor);
                        if cand.list.len() > cap {
                            let key = |&(r, l): &(u32, f32)| beta32 * l + lnw[r as usize];
                            cand.list
                                .select_nth_unstable_by(cap - 1, |a, b| key(b).total_cmp(&key(a)));
                            cand.list.truncate(cap);
                        }
                        cand.prune_at = (2 * cand.list.len()).max(64);
                    }
                });
        }
        let min_p = self.params.min_probability;
        Some(
            cands
                .into_par_iter()
                .map(|mut cand| {
                    let g: Vec<f64> = cand
                        .list
                        .iter()
                        .map(|&(r, l)| beta * l as f64 + lnw[r as usize] as f64)
                        .collect();
                    let gmax = g.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = g
                        .iter()
                        .map(|&x| if x > gmax - thr as f64 { (x - gmax).exp() } else { 0.0 })
                        .collect();
                    let z: f64 = e.iter().sum();
                    let marg: Vec<f64> = cand
                        .list
                        .iter()
                        .map(|&(r, l)| l as f64 + lnw[r as usize] as f64)
                        .collect();
                    let mmax = marg.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let log_likelihood = mmax + marg.iter().map(|&x| (x - mmax).exp()).sum::<f64>().ln();
                    let mut best = Assignment {
                        rotation: 0,
                        probability: 0.0,
                    };
                    let (mut mutual_information, mut expected_total) = (0.0, 0.0);
                    // The posterior takes the candidate list's place (same allocation).
                    let mut kept = 0;
                    for (k, &ek) in e.iter().enumerate() {
                        let r = cand.list[k].0;
                        let prob = ek / z;
                        if prob > 0.0 {
                            mutual_information += prob * (prob.ln() - lnw[r as usize] as f64);
                            expected_total += prob * t[r as usize] as f64;
                        }
                        if prob > best.probability as f64 || (prob == best.probability as f64 && r < best.rotation) {
                            best = Assignment {
                                rotation: r,
                                probability: prob as f32,
                            };
                        }
                        if prob >= min_p {
                            cand.list[kept] = (r, prob as f32);
                            kept += 1;
                        }
                    }
                    let mut entries = cand.list;
                    entries.truncate(kept);
                    // By rotation, for the merge's per-block gathering (the order of a
                    // frame's entries changes no sum: each rotation appears once).
                    entries.sort_unstable_by_key(|&(r, _)| r);
                    Posterior {
                        entries,
                        log_likelihood,
                        mutual_information,
                        best,
                        expected_total,
                    }
                })
                .collect(),
        )
    }

    /// Maximize + compress for one chunk: Σ_i P_ir K_i per rotation, merged with weight
    /// Σ_i P_ir φ_i into the running numerator and denominator volumes. Returns false, adding
    /// nothing, when `deadline` passes first (checked before every block of rotations).
    ///
    /// The rotations that received probability are split into at most `volumes.len()`
    /// contiguous parts, each merged into its private volume pair (allocated once per pass by
    /// the caller, so that no chunk leaves freed volumes behind in a thread's allocator arena)
    /// and summed in order, so results do not depend on scheduling. A part walks its rotations in blocks of [`MERGE_BLOCK`]; for each
    /// block it gathers the block's entries from every frame's rotation-sorted posterior
    /// (rotation-major, frames in order) with one cursor per frame, so no chunk-wide sorted
    /// copy of the posteriors is ever held.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn accumulate(
        &self,
        slicer: &Slicer,
        chunk: &Chunk,
        posteriors: &[Posterior],
        phi: &[f32],
        num: &mut [f64],
        den: &mut [f64],
        volumes: &mut [(Vec<f32>, Vec<f32>)],
        deadline: Option<Instant>,
    ) -> bool {
        let p = self.pixels();
        let n_rot = self.rotations.len();
        let mut count = vec![0u32; n_rot];
        for post in posteriors {
            for &(r, _) in &post.entries {
                count[r as usize] += 1;
            }
        }
        let groups: Vec<u32> = (0..n_rot as u32).filter(|&r| count[r as usize] > 0).collect();
        let parts = rayon::current_num_threads()
            .min(volumes.len())
            .clamp(1, groups.len().max(1));
        let per_part = groups.len().div_ceil(parts).max(1);
        let n = chunk.n;
        let stop = AtomicBool::new(false);
        let passed = || stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d);
        let used = groups.len().div_ceil(per_part);
        let finished: Vec<bool> = groups
            .par_chunks(per_part)
            .zip(volumes[..used].par_iter_mut())
            .map(|(part, (n_l, d_l))| {
                n_l.fill(0.0);
                d_l.fill(0.0);
                let mut acc = vec![0.0f32; MERGE_BLOCK * p];
                // Block buffers at their largest (one entry per rotation of the block and frame)
                // from the start: resizing in steps would double past what the plan counts.
                let mut pm: Vec<f32> = Vec::with_capacity(MERGE_BLOCK * n);
                let mut old = vec![0.0f32; p];
                // Each frame's next entry at or after the part's first rotation.
                let mut cursor: Vec<u32> = posteriors
                    .iter()
                    .map(|post| post.entries.partition_point(|&(r, _)| r < part[0]) as u32)
                    .collect();
                let mut row_of = vec![0u8; n_rot];
                let mut gathered: Vec<(u32, f32)> = Vec::with_capacity(MERGE_BLOCK * n);
                for block in part.chunks(MERGE_BLOCK) {
                    if passed() {
                        stop.store(true, Ordering::Relaxed);
                        return false;
                    }
                    let rows = block.len();
                    let mut offsets = [0usize; MERGE_BLOCK + 1];
                    for (row, &r) in block.iter().enumerate() {
                        offsets[row + 1] = offsets[row] + count[r as usize] as usize;
                        row_of[r as usize] = row as u8;
                    }
                    let total = offsets[rows];
                    gathered.clear();
                    gathered.resize(total, (0, 0.0));
                    let mut fill = offsets;
                    let last = block[rows - 1];
                    for (i, post) in posteriors.iter().enumerate() {
                        let c = &mut cursor[i];
                        // Every entry's rotation is a group, so those up to `last` are this block's.
                        while let Some(&(r, prob)) = post.entries.get(*c as usize) {
                            if r > last {
                                break;
                            }
                            let row = row_of[r as usize] as usize;
                            gathered[fill[row]] = (i as u32, prob);
                            fill[row] += 1;
                            *c += 1;
                        }
                    }
                    let acc = &mut acc[..rows * p];
                    let of_row = |row: usize| &gathered[offsets[row]..offsets[row + 1]];
                    match &chunk.frames {
                        // Soft posteriors (small β) touch many frames per rotation: then
                        // Σ_i P_ir K_i for the block is a GEMM (rotations × frames)·(frames × pixels).
                        Frames::Dense { full, .. } if total * 8 > rows * n => {
                            pm.clear();
                            pm.resize(rows * n, 0.0);
                            for row in 0..rows {
                                for &(i, prob) in of_row(row) {
                                    pm[row * n + i as usize] = prob;
                                }
                            }
                            gemm(rows, n, p, 1.0, &pm, (n, 1), full, (p, 1), 0.0, acc, (p, 1));
                        }
                        Frames::Dense { full, .. } => {
                            acc.fill(0.0);
                            for row in 0..rows {
                                let a = &mut acc[row * p..(row + 1) * p];
                                for &(i, prob) in of_row(row) {
                                    let i = i as usize;
                                    for (x, &k) in a.iter_mut().zip(&full[i * p..(i + 1) * p]) {
                                        *x += prob * k;
                                    }
                                }
                            }
                        }
                        Frames::Sparse { full, .. } => {
                            acc.fill(0.0);
                            for row in 0..rows {
                                let a = &mut acc[row * p..(row + 1) * p];
                                for &(i, prob) in of_row(row) {
                                    let (idx, val) = full.row(i as usize);
                                    for (&q, &k) in idx.iter().zip(val) {
                                        a[q as usize] += prob * k;
                                    }
                                }
                            }
                        }
                    }
                    for (row, &r) in block.iter().enumerate() {
                        let a = &mut acc[row * p..(row + 1) * p];
                        let weight: f32 = of_row(row).iter().map(|&(i, prob)| prob * phi[i as usize]).sum();
                        let r = r as usize;
                        let bg = &self.params.background;
                        if self.params.merge == MergeRule::Em {
                            // K / S with S the old model's slice: old = c·S, so K c / old; with a
                            // background K c / (old + b), each photon's signal share.
                            slicer.slice_into(&self.rotations[r], &mut old);
                            for (q, ((x, &w), &c)) in a.iter_mut().zip(&old).zip(&self.factors).enumerate() {
                                let w = w + bg.get(q).copied().unwrap_or(0.0);
                                *x = if w > 0.0 { *x * c / w } else { 0.0 };
                            }
                        } else {
                            // Σ_i P_ir (K_i − φ_i b): the frames' expected background removed
                            a.iter_mut().zip(bg).for_each(|(x, &b)| *x -= weight * b);
                        }
                        self.merger.merge(&self.rotations[r], a, weight, n_l, d_l);
                    }
                }
                true
            })
            .collect();
        if stop.load(Ordering::Relaxed) || !finished.iter().all(|&f| f) {
            return false;
        }
        for (n_l, d_l) in &volumes[..used] {
            num.par_iter_mut().zip(n_l).for_each(|(x, &v)| *x += v as f64);
            den.par_iter_mut().zip(d_l).for_each(|(x, &v)| *x += v as f64);
        }
        true
    }
}
