//! One file per command (the cryoDRGN layout): each holds its clap `Args` and a `run`.

pub mod emc;
pub mod fsc;
pub mod phase;
pub mod pose_error;
pub mod run;
pub mod simulate;
pub mod table;
pub mod xrai;

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

/// "90s", "60m", "24h", "1h30m", "2d" or plain seconds.
pub fn parse_budget(text: &str) -> Result<Duration> {
    let t = text.trim();
    if let Ok(s) = t.parse::<f64>() {
        ensure!(s > 0.0 && s.is_finite(), "--budget must be positive");
        return Ok(Duration::from_secs_f64(s));
    }
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
    ensure!(total > 0.0, "--budget must be positive");
    Ok(Duration::from_secs_f64(total))
}
