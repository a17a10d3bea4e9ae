//! Processes that work as one: the ranks of an MPI job, or the single process of a plain run.
//!
//! Both methods scale out the way the field's MPI codes do (Dragonfly's EMC, spinifel):
//! every rank holds the whole model, works on its own share of the frames or of the batch,
//! and the sums that make the next model (EMC's Σ_i P_ir K_i and Σ_i P_ir, X-RAI's gradients)
//! are combined with `allreduce`. [`Comm`] is the small set of collectives the methods need;
//! [`Single`] is the one-process world (every collective the identity) and, with the cargo
//! feature `mpi`, [`init`] returns the MPI world through rsmpi (Open MPI or MPICH).
//!
//! Rules that keep ranks in step (a rank that skips a collective the others enter hangs the
//! job): every decision that ends a loop early — a budget, a non-finite loss — is itself
//! combined ([`Comm::any`]), so all ranks stop at the same iteration or step; only rank 0
//! writes files and prints progress; frames are split into contiguous shares by [`share`], so
//! a rank reads (or regenerates from the seed) only its own.

use std::ops::Range;
use std::sync::Arc;

use anyhow::{bail, Result};

/// The collectives the methods use. Every call is collective: all ranks make it, in the same
/// order, from the thread that started the job.
pub trait Comm: Send + Sync {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Element-wise sum over ranks, in place (every rank receives the same result).
    fn sum_f64(&self, values: &mut [f64]);
    /// Element-wise sum over ranks, in place.
    fn sum_f32(&self, values: &mut [f32]);
    /// Whether any rank passed true.
    fn any(&self, flag: bool) -> bool {
        let mut v = [if flag { 1.0 } else { 0.0 }];
        self.sum_f64(&mut v);
        v[0] > 0.0
    }
    /// Every rank's values, concatenated in rank order, on every rank.
    fn gather_u32(&self, local: &[u32]) -> Vec<u32>;
    /// Rank 0's values on every rank.
    fn broadcast_f64(&self, values: &mut [f64]);
    /// Whether this rank writes outputs and logs.
    fn is_root(&self) -> bool {
        self.rank() == 0
    }
    /// What the run records: ranks, rayon threads per rank and the MPI library (None alone).
    fn describe(&self) -> World {
        World {
            ranks: self.size(),
            threads_per_rank: rayon::current_num_threads(),
            library: None,
        }
    }
}

/// The processes of a run, as `run.json` and the table record them.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct World {
    pub ranks: usize,
    pub threads_per_rank: usize,
    /// The MPI library's version string, when the run used MPI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub library: Option<String>,
}

impl Default for World {
    fn default() -> Self {
        World {
            ranks: 1,
            threads_per_rank: 1,
            library: None,
        }
    }
}

/// Rank `rank`'s contiguous share of `n` items among `size` ranks: the first `n mod size`
/// ranks hold one more, so shares differ by at most one and cover 0..n in rank order.
pub fn share(n: usize, rank: usize, size: usize) -> Range<usize> {
    let size = size.max(1);
    let (base, extra) = (n / size, n % size);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// The one-process world.
#[derive(Clone, Copy, Debug, Default)]
pub struct Single;

impl Comm for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn sum_f64(&self, _: &mut [f64]) {}
    fn sum_f32(&self, _: &mut [f32]) {}
    fn gather_u32(&self, local: &[u32]) -> Vec<u32> {
        local.to_vec()
    }
    fn broadcast_f64(&self, _: &mut [f64]) {}
}

/// Ranks the environment says this process is one of, from the variables MPI launchers set
/// (Open MPI's `mpirun`, MPICH/Hydra and Slurm's `srun` through PMI or PMIx).
pub fn launched_ranks() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.trim().parse::<usize>().ok())
}

/// The world this process belongs to: MPI's when it was started by an MPI launcher and the
/// program was built with the `mpi` feature, else [`Single`]. Keep the returned handle for the
/// whole run: MPI is finalised when the last clone is dropped. A launch on several ranks of a
/// build without MPI is refused, since every copy would write the same outputs.
pub fn init() -> Result<Arc<dyn Comm>> {
    match launched_ranks() {
        None => Ok(Arc::new(Single)),
        Some(_) if cfg!(feature = "mpi") => mpi_world(),
        Some(1) => Ok(Arc::new(Single)),
        Some(k) => bail!(
            "started as one of {k} MPI ranks, but this build has no MPI: rebuild with \
             `cargo build --release --features mpi` (needs Open MPI: apt-get install libopenmpi-dev openmpi-bin), \
             or run without mpirun/srun"
        ),
    }
}

#[cfg(feature = "mpi")]
fn mpi_world() -> Result<Arc<dyn Comm>> {
    Ok(Arc::new(mpi_comm::MpiComm::init()?))
}

#[cfg(not(feature = "mpi"))]
fn mpi_world() -> Result<Arc<dyn Comm>> {
    unreachable!("only called with the mpi feature")
}

#[cfg(feature = "mpi")]
mod mpi_comm {
    use anyhow::{bail, Result};
    use mpi::collective::SystemOperation;
    use mpi::datatype::PartitionMut;
    use mpi::environment::Universe;
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::*;
    use mpi::Count;

    use super::{Comm, World};

    /// The MPI world through rsmpi, initialised with `MPI_THREAD_FUNNELED`: rayon's threads
    /// compute, only the thread that started the job calls MPI.
    pub struct MpiComm {
        world: SimpleCommunicator,
        rank: usize,
        size: usize,
        library: String,
        // Dropped last: finalises MPI.
        _universe: Universe,
    }

    // SAFETY: MPI is initialised with MPI_THREAD_FUNNELED and the methods call the collectives
    // only from the thread that started the job (the trait's contract); the handle is shared
    // with rayon's workers only as part of structs they read other fields of.
    unsafe impl Send for MpiComm {}
    unsafe impl Sync for MpiComm {}

    impl MpiComm {
        pub fn init() -> Result<MpiComm> {
            let Some((universe, threading)) = mpi::initialize_with_threading(mpi::Threading::Funneled) else {
                bail!("MPI was already initialised in this process");
            };
            if threading < mpi::Threading::Funneled {
                bail!("the MPI library offers no MPI_THREAD_FUNNELED support (got {threading:?})");
            }
            let world = universe.world();
            let library = mpi::environment::library_version().unwrap_or_default();
            Ok(MpiComm {
                rank: world.rank() as usize,
                size: world.size() as usize,
                world,
                library: library.lines().next().unwrap_or("").trim().to_string(),
                _universe: universe,
            })
        }
    }

    impl Comm for MpiComm {
        fn rank(&self) -> usize {
            self.rank
        }
        fn size(&self) -> usize {
            self.size
        }
        fn sum_f64(&self, values: &mut [f64]) {
            if self.size > 1 {
                let local = values.to_vec();
                self.world.all_reduce_into(&local[..], values, SystemOperation::sum());
            }
        }
        fn sum_f32(&self, values: &mut [f32]) {
            if self.size > 1 {
                let local = values.to_vec();
                self.world.all_reduce_into(&local[..], values, SystemOperation::sum());
            }
        }
        fn gather_u32(&self, local: &[u32]) -> Vec<u32> {
            if self.size == 1 {
                return local.to_vec();
            }
            let mut counts = vec![0 as Count; self.size];
            self.world.all_gather_into(&(local.len() as Count), &mut counts[..]);
            let displs: Vec<Count> = counts
                .iter()
                .scan(0 as Count, |acc, &c| {
                    let d = *acc;
                    *acc += c;
                    Some(d)
                })
                .collect();
            let total: usize = counts.iter().map(|&c| c as usize).sum();
            let mut out = vec![0u32; total];
            {
                let mut partition = PartitionMut::new(&mut out[..], counts, displs);
                self.world.all_gather_varcount_into(local, &mut partition);
            }
            out
        }
        fn broadcast_f64(&self, values: &mut [f64]) {
            if self.size > 1 {
                self.world.process_at_rank(0).broadcast_into(values);
            }
        }
        fn describe(&self) -> World {
            World {
                ranks: self.size,
                threads_per_rank: rayon::current_num_threads(),
                library: Some(self.library.clone()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_range_in_order_and_differ_by_at_most_one() {
        for n in [0usize, 1, 7, 10, 5_000_003] {
            for size in 1..=5 {
                let shares: Vec<_> = (0..size).map(|r| share(n, r, size)).collect();
                assert_eq!(shares[0].start, 0);
                assert_eq!(shares[size - 1].end, n);
                for w in shares.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                let lens: Vec<_> = shares.iter().map(|s| s.len()).collect();
                assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1);
            }
        }
    }
}
