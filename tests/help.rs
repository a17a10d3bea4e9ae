//! The README's command reference lists exactly the options each command's `--help` shows, and
//! the plain benchmark says what it is about to do and how long it can take before it starts.

use std::collections::BTreeSet;
use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xrai-bench"));
    c.env("XRAI_OFFLINE", "1")
        .env("CANDLE_NUM_THREADS", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// `--long-flags` in a text.
fn flags(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i + 2 < b.len() {
        if b[i] == b'-'
            && b[i + 1] == b'-'
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric() && b[i - 1] != b'-')
            && b[i + 2].is_ascii_lowercase()
        {
            let start = i;
            i += 2;
            while i < b.len() && (b[i].is_ascii_lowercase() || b[i].is_ascii_digit() || b[i] == b'-') {
                i += 1;
            }
            out.insert(text[start..i].trim_end_matches('-').to_string());
        } else {
            i += 1;
        }
    }
    out
}

/// (command, its README entry) from the README's "## Commands" code block.
fn readme_commands() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("## Commands").expect("a Commands section")..];
    let block = &section[section.find("```bash\n").expect("a code block") + 8..];
    let block = &block[..block.find("```").unwrap()];
    let mut out: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        if let Some(rest) = line.strip_prefix("xrai-bench ") {
            let first = rest.split_whitespace().next().unwrap_or("");
            let cmd = if first.starts_with('[') || first.starts_with('-') {
                "run"
            } else {
                first
            };
            out.push((cmd.to_string(), line.split('#').next().unwrap().to_string()));
        } else if let Some(last) = out.last_mut() {
            last.1.push_str(line.split('#').next().unwrap());
        }
    }
    out
}

#[test]
fn readme_flags_match_help_exactly() {
    let commands = readme_commands();
    assert!(commands.len() >= 9, "{commands:?}");
    let mut problems = Vec::new();
    for (cmd, entry) in &commands {
        let o = bin().args([cmd.as_str(), "--help"]).output().unwrap();
        assert!(o.status.success(), "{cmd} --help failed");
        let help = String::from_utf8_lossy(&o.stdout);
        // options are the lines of the Options section that start with - or --
        let options: String = help
            .lines()
            .filter(|l| l.trim_start().starts_with('-'))
            .map(|l| l.trim_start().split("  ").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ");
        let mut in_help = flags(&options);
        in_help.remove("--help");
        in_help.remove("--version");
        let in_readme = flags(entry);
        for f in in_help.difference(&in_readme) {
            problems.push(format!("{cmd}: {f} is in --help but not in the README"));
        }
        for f in in_readme.difference(&in_help) {
            problems.push(format!("{cmd}: {f} is in the README but not in --help"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_subcommand_help_has_a_worked_example() {
    for cmd in [
        "run",
        "sweep",
        "table",
        "simulate",
        "pose-error",
        "phase",
        "fsc",
        "emc",
        "xrai",
    ] {
        let o = bin().args([cmd, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&o.stdout);
        assert!(help.contains("Example"), "{cmd} --help has no worked example:\n{help}");
    }
}

#[test]
fn the_benchmark_says_what_it_will_do_and_how_long_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let o = bin()
        .args([
            "--n",
            "16",
            "--n-test",
            "4",
            "--grid",
            "41",
            "--methods",
            "emc",
            "--emc-level",
            "1",
            "--emc-iters",
            "1",
        ])
        .args(["--phasing-starts", "1", "--no-plots", "--budget", "90s", "--out"])
        .arg(dir.path().join("r"))
        .arg("--summary-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let plan = err
        .lines()
        .find(|l| l.contains("It takes at most about"))
        .unwrap_or_else(|| panic!("no plan printed:\n{err}"));
    assert!(
        plan.contains("16 training and 4 test images") && plan.contains("EMC (budget 90s)"),
        "{plan}"
    );
    // the plan comes before any method starts
    assert!(
        err.find("It takes at most").unwrap() < err.find("$ xrai-bench emc").unwrap(),
        "{err}"
    );
}
