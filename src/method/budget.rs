//! One meaning of `--budget` for every method.
//!
//! **The clock starts when the method's process starts** (`main` marks the instant before it
//! parses its arguments) and covers everything the method does: building its simulator or
//! opening its data, its own preparation (input statistics, reading frames), training or
//! iterations, and the poses of the held-out test set. The table's time column is the same
//! interval, measured from outside by the benchmark as the child process's wall time. A
//! resumed method counts the seconds its interrupted process had already spent.
//!
//! A method checks the budget where it can stop cleanly (between steps or iterations, and
//! inside a pass over the frames) and reserves the time its closing work needs — the test-set
//! poses and its outputs — from what it measured, so that it ends inside the budget rather than
//! one final pass beyond it. A method that stops before it has converged says so
//! (`out_of_budget` in its output).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

static PROCESS_START: OnceLock<Instant> = OnceLock::new();

/// Records this process's start; `main` calls it first. Later calls change nothing.
pub fn mark_process_start() -> Instant {
    *PROCESS_START.get_or_init(Instant::now)
}

/// The instant this process started (as marked by `main`; for library use, the first call).
pub fn process_start() -> Instant {
    mark_process_start()
}

/// The longest budget accepted: one year. Longer ones are almost certainly a typo (and would
/// overflow the clock arithmetic).
pub const MAX_BUDGET: Duration = Duration::from_secs(365 * 86_400);

/// "90s", "60m", "24h", "1h30m", "2d" or plain seconds; at most [`MAX_BUDGET`].
pub fn parse_budget(text: &str) -> Result<Duration> {
    let t = text.trim();
    let seconds = if let Ok(s) = t.parse::<f64>() {
        s
    } else {
        let mut total = 0.0;
        let mut number = String::new();
        for ch in t.chars() {
            if ch.is_ascii_digit() || ch == '.' {
                number.push(ch);
                continue;
            }
            let unit = match ch {
                's' => 1.0,
                'm' => 60.0,
                'h' => 3600.0,
                'd' => 86400.0,
                _ => bail!("--budget {text:?}: unknown unit {ch:?} (use s, m, h or d, e.g. 60m)"),
            };
            let v: f64 = number
                .parse()
                .with_context(|| format!("--budget {text:?}: expected a number before {ch:?}"))?;
            total += v * unit;
            number.clear();
        }
        ensure!(
            number.is_empty(),
            "--budget {text:?}: a number without a unit at the end (e.g. 60m)"
        );
        total
    };
    ensure!(
        seconds.is_finite() && seconds > 0.0,
        "--budget {text:?} must be a positive time (e.g. 60m)"
    );
    ensure!(
        seconds <= MAX_BUDGET.as_secs_f64(),
        "--budget {text:?} is {seconds:.3e} s, more than 365 days; give a shorter budget, e.g. 24h or 7d"
    );
    Ok(Duration::from_secs_f64(seconds))
}

/// A method's wall-clock budget, counted from its process start.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    start: Instant,
    /// Seconds spent before this process (a resumed method's earlier process).
    spent_before: f64,
    limit: Option<Duration>,
}

impl Budget {
    /// `limit` None: no budget (the method stops on its own step or iteration count).
    pub fn new(limit: Option<Duration>) -> Budget {
        Budget {
            start: process_start(),
            spent_before: 0.0,
            limit,
        }
    }

    /// From an optional `--budget` text.
    pub fn parse(text: Option<&str>) -> Result<Budget> {
        Ok(Budget::new(text.map(parse_budget).transpose()?))
    }

    /// The same budget, with `seconds` already spent by an earlier process of the same run.
    pub fn resumed(self, seconds: f64) -> Budget {
        Budget {
            spent_before: seconds.max(0.0),
            ..self
        }
    }

    pub fn limit_s(&self) -> Option<f64> {
        self.limit.map(|d| d.as_secs_f64())
    }

    /// Seconds counted against the budget so far.
    pub fn elapsed_s(&self) -> f64 {
        self.spent_before + self.start.elapsed().as_secs_f64()
    }

    /// Seconds left (infinite without a budget; never negative).
    pub fn remaining_s(&self) -> f64 {
        self.limit_s()
            .map_or(f64::INFINITY, |l| (l - self.elapsed_s()).max(0.0))
    }

    /// True once the budget, less `reserve_s` kept for closing work, is spent.
    pub fn exhausted(&self, reserve_s: f64) -> bool {
        self.remaining_s() <= reserve_s.max(0.0)
    }

    /// The instant at which only `reserve_s` seconds remain (None without a budget).
    pub fn deadline(&self, reserve_s: f64) -> Option<Instant> {
        let limit = self.limit_s()?;
        let left = (limit - self.spent_before - reserve_s.max(0.0)).max(0.0);
        Some(self.start + Duration::from_secs_f64(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_refuses_nonsense() {
        assert_eq!(parse_budget("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_budget("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_budget("2d").unwrap(), Duration::from_secs(172_800));
        for bad in [
            "0",
            "0m",
            "-5",
            "NaN",
            "inf",
            "1e30",
            "999999999999999999999d",
            "366d",
            "5x",
            "5m3",
        ] {
            let e = parse_budget(bad).unwrap_err().to_string();
            assert!(e.contains("--budget"), "{bad}: {e}");
        }
        assert!(parse_budget("365d").is_ok());
    }

    #[test]
    fn remaining_and_deadline_account_for_earlier_processes_and_reserves() {
        let b = Budget::new(Some(Duration::from_secs(100))).resumed(40.0);
        assert!(b.remaining_s() <= 60.0 && b.remaining_s() > 59.0);
        assert!(!b.exhausted(10.0));
        assert!(b.exhausted(61.0));
        let d = b.deadline(10.0).unwrap();
        let from_start = d.duration_since(process_start()).as_secs_f64();
        assert!((from_start - 50.0).abs() < 1e-6, "{from_start}");
        assert!(Budget::new(None).deadline(5.0).is_none());
        assert!(Budget::new(None).remaining_s().is_infinite());
    }
}
