//! The refinement stage's budget: what its passes cost on this machine (timed on a few test
//! images once the network is built), and the plan that fits them into the share of the budget
//! the stage may keep from training. What is given up first when they do not fit: training
//! images refined beyond `--train-pose-images`, then the near-2-fold mates (a fourth of the
//! first pass's starts on counts), then the stage itself (the encoder's poses are the result).

use anyhow::Result;

use super::refine::{refine_rotations, starts, RefineOptions};
use super::trainer::Trainer;

/// Most of a budget the refinement stage may keep from training.
pub const REFINE_SHARE: f64 = 0.4;

/// What the stage took against its estimate from the timed steps, measured on 2CEX_A with
/// 20,000 training and 10,000 test images (2 cores; 25- and 60-minute runs): the first pass
/// 1.33× (280 s against 210 s), a round 1.4–1.46× (57–59 s against 39–42 s; the volume's Adam
/// updates and the shuffled batch copies).
const FIRST_PASS_MEASURED: f64 = 1.35;
const ROUND_MEASURED: f64 = 1.5;

/// The refinement stage's measured unit costs: per image for the encoder's hypotheses, per
/// rotation and descent step (which a volume step per image shares), per rotation scored in
/// the global search; and the options they multiply.
#[derive(Clone, Debug, Default)]
pub struct RefineCost {
    hypotheses_s: f64,
    pub step_s: f64,
    opts: RefineOptions,
    per: usize,
}

impl RefineCost {
    /// No costs measured (the stage not planned on this rank, or skipped): it reserves nothing.
    pub fn unmeasured(opts: RefineOptions) -> RefineCost {
        RefineCost {
            opts,
            ..RefineCost::default()
        }
    }

    /// Times the encoder's hypotheses and a few descent steps on up to 128 test images.
    pub fn measure(t: &Trainer, test_amps: &[f32], opts: &RefineOptions) -> Result<RefineCost> {
        let p = t.geometry.pixels();
        let n = (test_amps.len() / p).min(128);
        if n == 0 {
            return Ok(RefineCost::unmeasured(opts.clone()));
        }
        let per = 2 * t.cfg.heads;
        let amps = &test_amps[..n * p];
        let t0 = std::time::Instant::now();
        let (hyp, errs) = t.hypotheses(amps)?;
        let hypotheses_s = t0.elapsed().as_secs_f64() / n as f64;
        let start = starts(&hyp, &errs, per, 2);
        let steps = 3;
        // the faster of two timings (the first pays for first-touch allocations), per rotation
        // and step (the closing scoring pass counts as one more step)
        let mut step_s = f64::INFINITY;
        for _ in 0..2 {
            let t0 = std::time::Instant::now();
            refine_rotations(t, amps, &start, 2, steps, opts.schedule())?;
            step_s = step_s.min(t0.elapsed().as_secs_f64() / (2 * n * (steps + 1)) as f64);
        }
        Ok(RefineCost {
            hypotheses_s,
            step_s,
            opts: opts.clone(),
            per,
        })
    }

    /// The first pose pass over `n_train` + `n_test` images: hypotheses, the candidates'
    /// descent, the retried images' descent from every hypothesis and the searched images'.
    pub fn first_s(&self, n_train: usize, n_test: usize) -> f64 {
        let o = &self.opts;
        let images = (n_train + n_test) as f64;
        let steps = (o.pose_steps + 1) as f64;
        let c = o.candidates.clamp(1, self.per.max(1)) as f64;
        let retried = images * o.retry_fraction;
        let searched = images * o.search_fraction;
        let mates = if o.mates { super::mates::MATES as f64 } else { 0.0 };
        FIRST_PASS_MEASURED
            * (images * (self.hypotheses_s + self.step_s * (c + mates) * steps)
                + retried * self.step_s * self.per as f64 * steps
                + searched * self.step_s * (o.search_rotations as f64 / 2.0 + c * steps))
    }

    /// One round: the volume's epochs over the training images, then a pose pass over all.
    pub fn round_s(&self, n_train: usize, n_test: usize) -> f64 {
        let o = &self.opts;
        ROUND_MEASURED
            * self.step_s
            * (n_train as f64 * o.volume_epochs as f64 + (n_train + n_test) as f64 * (o.pose_steps + 1) as f64)
    }

    /// What the budget keeps for the stage: the first pass and one round (later rounds use
    /// what is left).
    pub fn reserve_s(&self, n_train: usize, n_test: usize, rounds: usize) -> f64 {
        if self.step_s == 0.0 {
            return 0.0;
        }
        self.first_s(n_train, n_test) + rounds.min(1) as f64 * self.round_s(n_train, n_test)
    }
}

/// What the refinement stage will do.
#[derive(Clone, Debug)]
pub struct RefinePlan {
    /// Training images refined; `--train-pose-images` of them are scored.
    pub train_images: usize,
    /// The costs and the options the stage runs with (zero costs when skipped).
    pub cost: RefineCost,
    /// The near-2-fold mates were asked for but left out to fit the budget.
    pub dropped_mates: bool,
    /// The stage's estimate when the budget is too short for it.
    pub skipped_s: Option<f64>,
}

impl RefinePlan {
    /// The options asked for, not (yet) fitted to a budget: `train_images` of the training
    /// images' poses, refined unless `opts.pose_steps` is 0.
    pub fn unplanned(opts: RefineOptions, train_images: usize) -> RefinePlan {
        RefinePlan {
            train_images,
            cost: RefineCost::unmeasured(opts),
            dropped_mates: false,
            skipped_s: None,
        }
    }

    pub fn opts(&self) -> &RefineOptions {
        &self.cost.opts
    }

    /// Whether the stage runs.
    pub fn refining(&self) -> bool {
        self.skipped_s.is_none() && self.opts().pose_steps > 0
    }
}

/// Fits the stage into `share_s` seconds (None: no budget, everything asked for): up to
/// `wanted_train` training images, fewer by quarters down to `min_train` while the first pass
/// and one round would not fit; then without the mates if that fits `min_train`; else skipped.
pub fn plan(
    cost: RefineCost,
    wanted_train: usize,
    min_train: usize,
    n_test: usize,
    rounds: usize,
    share_s: Option<f64>,
) -> RefinePlan {
    let wanted = wanted_train.max(min_train);
    let Some(share) = share_s else {
        return RefinePlan {
            train_images: wanted,
            cost,
            dropped_mates: false,
            skipped_s: None,
        };
    };
    let fit = |c: &RefineCost| {
        let mut n = wanted;
        while n > min_train && c.reserve_s(n, n_test, rounds) > share {
            n = (n * 3 / 4).max(min_train);
        }
        n
    };
    let mut train = fit(&cost);
    let needed = cost.reserve_s(train, n_test, rounds);
    if needed <= share {
        return RefinePlan {
            train_images: train,
            cost,
            dropped_mates: false,
            skipped_s: None,
        };
    }
    if cost.opts.mates {
        let mut without = cost.clone();
        without.opts.mates = false;
        train = fit(&without);
        if without.reserve_s(train, n_test, rounds) <= share {
            return RefinePlan {
                train_images: train,
                cost: without,
                dropped_mates: true,
                skipped_s: None,
            };
        }
    }
    RefinePlan {
        skipped_s: Some(needed),
        ..RefinePlan::unplanned(cost.opts, min_train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(mates: bool) -> RefineCost {
        RefineCost {
            hypotheses_s: 1e-3,
            step_s: 1e-4,
            opts: RefineOptions {
                mates,
                ..RefineOptions::default()
            },
            per: 16,
        }
    }

    #[test]
    fn the_plan_gives_up_training_images_then_the_mates_then_the_stage() {
        let (wanted, min, n_test, rounds) = (20_000, 2_500, 10_000, 2);
        let with = cost(true);
        let without = cost(false);
        let full = with.reserve_s(wanted, n_test, rounds);
        let least = with.reserve_s(min, n_test, rounds);
        let least_without = without.reserve_s(min, n_test, rounds);
        assert!(least_without < least && least < full);

        // no budget, or room for all: everything asked for
        for share in [None, Some(full * 1.01)] {
            let p = plan(with.clone(), wanted, min, n_test, rounds, share);
            assert!(p.refining() && !p.dropped_mates && p.opts().mates);
            assert_eq!(p.train_images, wanted);
        }
        // room for fewer training images with the mates: the mates stay
        let p = plan(with.clone(), wanted, min, n_test, rounds, Some((least + full) / 2.0));
        assert!(p.refining() && p.opts().mates && !p.dropped_mates);
        assert!(p.train_images < wanted && p.train_images > min, "{}", p.train_images);
        assert!(p.cost.reserve_s(p.train_images, n_test, rounds) <= (least + full) / 2.0);
        // room only without the mates: they go, the stage stays
        let share = (least_without + least) / 2.0;
        let p = plan(with.clone(), wanted, min, n_test, rounds, Some(share));
        assert!(p.refining() && p.dropped_mates && !p.opts().mates);
        assert!(p.cost.reserve_s(p.train_images, n_test, rounds) <= share);
        // not even that: skipped, its estimate (with the mates, as asked) given
        let p = plan(with, wanted, min, n_test, rounds, Some(least_without * 0.9));
        assert!(!p.refining() && !p.dropped_mates);
        assert_eq!(p.train_images, min);
        assert_eq!(p.skipped_s, Some(least));
        assert_eq!(p.cost.reserve_s(min, n_test, rounds), 0.0);
        // without mates asked for, a share too small for the least is skipped at once
        let p = plan(without, wanted, min, n_test, rounds, Some(least_without * 0.9));
        assert!(!p.refining() && !p.dropped_mates);
    }
}
