//! EMC's budget holds in the middle of a pass, and a run it stops reports its measured cost
//! per frame and iteration and the projected time of the full run.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use xrai_bench::method::MethodOutput;

/// Runs `xrai-bench emc ARGS --out OUT`; its output record and the process's wall time.
fn emc(out: &Path, args: &[&str]) -> (MethodOutput, f64) {
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_xrai-bench"))
        .env("XRAI_OFFLINE", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("emc")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let wall = t.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (MethodOutput::read(out).unwrap(), wall)
}

fn param(o: &MethodOutput, key: &str) -> f64 {
    o.params[key].as_f64().unwrap_or(f64::NAN)
}

#[test]
fn a_budget_bound_run_stops_on_time_and_projects_its_full_cost() {
    // 100,000 tiny frames in chunks of ~1,000: one iteration takes longer than the 5 s
    // budget, so the run stops inside its first pass, between chunks.
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--n",
        "100000",
        "--pixels",
        "32",
        "--grid",
        "41",
        "--level",
        "2",
        "--iters",
        "50",
        "--budget",
        "5s",
        "--chunk-mb",
        "24",
        "--n-test",
        "100",
    ];
    let (o, wall) = emc(&dir.path().join("run"), &args);
    assert!(
        o.budget.out_of_budget,
        "a 5 s budget for 50 passes over 100,000 frames must run out"
    );
    assert!(
        (o.timings.wall_s - 5.0).abs() <= 2.0 && (wall - 5.0).abs() <= 2.0,
        "ran {:.2} s (process {wall:.2} s) for a 5 s budget",
        o.timings.wall_s
    );
    // The cost measured on the partial pass: its completed chunks' frames and seconds.
    let (frames, seconds) = (param(&o, "partial_iteration_frames"), param(&o, "partial_iteration_s"));
    assert!(
        frames > 0.0 && frames < 100_000.0 && seconds > 0.0,
        "partial pass: {frames} frames in {seconds} s"
    );
    let per_frame = param(&o, "seconds_per_frame_iteration");
    assert!(
        (per_frame - seconds / frames).abs() <= 1e-12 * per_frame,
        "{per_frame} ≠ {seconds} / {frames}"
    );
    // Projection: preparation + cost per frame × N × iterations requested + test assignment.
    let projected = o
        .projected_wall_s
        .expect("a budget-bound run with a measured cost projects");
    let expected = o.timings.preparation_s + per_frame * 100_000.0 * 50.0 + o.timings.test_s;
    assert!(
        (projected - expected).abs() <= 1e-9 * expected,
        "projected {projected} s, expected {expected} s"
    );
    assert!(
        projected > 10.0 * o.timings.wall_s,
        "projected {projected:.1} s for 50 passes, measured {:.1} s",
        o.timings.wall_s
    );
    assert!(o.images_per_s > 0.0, "the partial pass's frames count in images/s");
}

#[test]
fn the_budget_holds_inside_one_chunk() {
    // 4,000 frames of 64² at 10,860 rotations in one chunk: its E-step alone takes well over
    // the 6 s budget, so the deadline must be honoured between rotation blocks.
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--n", "4000", "--bin", "2", "--level", "6", "--iters", "1", "--budget", "6s", "--n-test", "20",
    ];
    let (o, wall) = emc(&dir.path().join("run"), &args);
    assert!(
        o.budget.out_of_budget,
        "one pass over 4,000 frames at level 6 fits in 6 s?"
    );
    assert!(
        (o.timings.wall_s - 6.0).abs() <= 2.0 && (wall - 6.0).abs() <= 2.0,
        "ran {:.2} s (process {wall:.2} s) for a 6 s budget",
        o.timings.wall_s
    );
    // Not one chunk got through: nothing measured, nothing projected.
    assert_eq!(param(&o, "partial_iteration_frames"), 0.0);
    assert!(o.params["seconds_per_frame_iteration"].is_null());
    assert_eq!(o.projected_wall_s, None);
}

#[test]
fn a_finished_run_projects_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--n", "2000", "--pixels", "32", "--grid", "41", "--level", "1", "--iters", "2", "--n-test", "0",
    ];
    let (o, _) = emc(&dir.path().join("run"), &args);
    assert!(!o.budget.out_of_budget);
    assert_eq!(o.projected_wall_s, None);
    // two full passes: the cost is their seconds over 2 × 2,000 frames
    let per_frame = param(&o, "seconds_per_frame_iteration");
    let total = param(&o, "iteration_seconds_total");
    assert!(
        (per_frame - total / 4000.0).abs() <= 1e-12 * per_frame,
        "{per_frame} vs {total} / 4000"
    );
}
