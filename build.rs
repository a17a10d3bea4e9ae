//! Records the git commit the binary is built from (`git describe --always --dirty`), so a
//! run's table names the code that produced it rather than whatever is checked out when the
//! table is written. "unknown" outside a git checkout.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=XRAI_BENCH_GIT_COMMIT={commit}");
    // a new commit or staged change moves .git/index; an edit under src/ can make the tree dirty
    for path in [".git/HEAD", ".git/index", "src", "Cargo.toml", "build.rs"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
