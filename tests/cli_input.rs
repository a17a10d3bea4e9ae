//! Bad input found by trying the CLI as a new user would: each case reproduced, and the fix
//! asserted — a non-zero exit, a message naming the argument or file and what to do, and
//! nothing written or deleted.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{fails_with, repo, stderr};
use xrai_bench::mrc::write_mrc;
use xrai_bench::volume::Volume;

fn xrai_in(cwd: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xrai-bench"));
    cmd.args(args).env_remove("XRAI_PDB_DIR").env("XRAI_OFFLINE", "1");
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn xrai(args: &[&str]) -> Output {
    xrai_in(None, args, &[])
}

/// Every file under `dir` with its contents, to show that nothing was written or deleted.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().filter_map(|e| e.ok()) {
            let p = e.path();
            if p.is_dir() {
                out.insert(p.clone(), b"<dir>".to_vec());
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn meta(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap()
}

const ATOM_N: &str = "ATOM      1  N   ASP A   2      14.312   3.902  -7.338  1.00 34.33           N  ";

// 1. Atoms sharing a serial number each keep their own element.
#[test]
fn duplicate_serials_give_the_right_composition() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("datasets/pdb/2cex_a.pdb")).unwrap();
    let small: String = text
        .lines()
        .filter(|l| l.starts_with("ATOM"))
        .take(40)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.path().join("small.pdb"), &small).unwrap();
    // The issue's command, where sed is there; the same edit in Rust otherwise.
    let dup = dir.path().join("dup.pdb");
    let sed = Command::new("sed")
        .arg(r"s/^\(ATOM  \).\{5\}/\1    1/")
        .arg(dir.path().join("small.pdb"))
        .output();
    match sed {
        Ok(o) if o.status.success() => std::fs::write(&dup, o.stdout).unwrap(),
        _ => std::fs::write(
            &dup,
            small
                .lines()
                .map(|l| format!("ATOM      1{}\n", &l[11..]))
                .collect::<String>(),
        )
        .unwrap(),
    }
    assert!(std::fs::read_to_string(&dup)
        .unwrap()
        .lines()
        .all(|l| &l[6..11] == "    1"));
    let out = dir.path().join("d");
    let o = xrai(&["simulate", "--n", "1", "--pdb", s(&dup), "--out", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let composition: BTreeMap<String, u64> = meta(&out)["molecule"]["composition"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| (pair[0].as_str().unwrap().to_string(), pair[1].as_u64().unwrap()))
        .collect();
    assert_eq!(
        composition,
        BTreeMap::from([("C".into(), 25), ("N".into(), 5), ("O".into(), 10)])
    );
}

// 2. The output size is computed with checked arithmetic.
#[test]
fn an_output_size_that_overflows_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("big");
    fails_with(
        &xrai(&["simulate", "--n", "1125899906842624", "--out", s(&out)]),
        &["--n 1125899906842624", "16 EiB"],
    );
    fails_with(
        &xrai(&["simulate", "--n", "10000000000000", "--out", s(&out)]),
        &["PiB", "free", "fewer"],
    );
    assert!(snapshot(dir.path()).is_empty(), "nothing written");
}

// 3. pose-error --per-image never replaces an input, nor any file without --force.
#[test]
fn per_image_output_is_checked_before_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("t.csv");
    std::fs::write(&truth, "w,x,y,z\n1,0,0,0\n0,1,0,0\n").unwrap();
    let other = dir.path().join("other.csv");
    std::fs::write(&other, "keep me").unwrap();
    let before = snapshot(dir.path());
    let run = |per_image: &Path, force: bool| {
        let mut args = vec![
            "pose-error",
            "--truth",
            s(&truth),
            "--estimate",
            s(&truth),
            "--per-image",
            s(per_image),
        ];
        if force {
            args.push("--force");
        }
        xrai(&args)
    };
    fails_with(&run(&truth, false), &["--per-image", "--truth input"]);
    fails_with(&run(&truth, true), &["--per-image", "--truth input"]);
    fails_with(&run(&other, false), &["--per-image", "already exists", "--force"]);
    fails_with(
        &run(&dir.path().join("nodir/x.csv"), false),
        &["--per-image", "does not exist"],
    );
    assert_eq!(snapshot(dir.path()), before, "nothing written");
    let o = run(&other, true);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read_to_string(&other).unwrap().starts_with("angle_deg,"));
}

// 4. --force replaces only this program's own output directories.
#[test]
fn force_replaces_only_xrai_bench_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let thesis = dir.path().join("thesis");
    std::fs::create_dir_all(thesis.join("sub")).unwrap();
    std::fs::write(thesis.join("notes.txt"), "notes").unwrap();
    std::fs::write(thesis.join("sub/thesis.tex"), "\\documentclass{book}").unwrap();
    let before = snapshot(dir.path());
    fails_with(
        &xrai(&["simulate", "--n", "1", "--out", s(&thesis), "--force"]),
        &[
            "--out",
            "thesis",
            "written by xrai-bench",
            "notes.txt",
            "nothing was deleted",
        ],
    );
    // `.`, `..` and the home directory, with or without --force.
    for (out, what) in [
        (".", "the current directory"),
        ("..", "a directory above the current one"),
    ] {
        fails_with(
            &xrai_in(Some(&thesis), &["simulate", "--n", "1", "--out", out, "--force"], &[]),
            &[what, "--out"],
        );
    }
    fails_with(
        &xrai_in(
            Some(dir.path()),
            &["simulate", "--n", "1", "--out", s(&thesis), "--force"],
            &[("HOME", s(&thesis))],
        ),
        &["your home directory"],
    );
    fails_with(
        &xrai(&["simulate", "--n", "1", "--out", "/", "--force"]),
        &["the root directory"],
    );
    assert_eq!(snapshot(dir.path()), before, "nothing written or deleted");
    // An output of this program is replaced.
    let run = dir.path().join("run");
    for _ in 0..2 {
        let o = xrai(&["simulate", "--n", "1", "--out", s(&run), "--force"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(meta(&run)["software"]["name"], "xrai-bench");
}

// 5. Budgets are bounded.
#[test]
fn a_huge_budget_is_refused_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    for budget in ["1e30", "999999999999999999999d"] {
        fails_with(
            &xrai_in(
                Some(dir.path()),
                &[
                    "--n",
                    "4",
                    "--budget",
                    budget,
                    "--out",
                    s(&out),
                    "--summary-dir",
                    s(dir.path()),
                ],
                &[],
            ),
            &["--budget", "365 days"],
        );
        fails_with(
            &xrai(&["emc", "--n", "4", "--budget", budget, "--out", s(&out)]),
            &["--budget", "365 days"],
        );
    }
    assert!(!out.exists());
}

// 6. The grid's memory is estimated before it is allocated.
#[test]
fn a_grid_too_big_for_memory_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g");
    let t0 = std::time::Instant::now();
    fails_with(
        &xrai(&["simulate", "--n", "1", "--grid", "100001", "--out", s(&out)]),
        &["100001³", "memory", "--grid"],
    );
    fails_with(
        &xrai(&["simulate", "--n", "1", "--pixels", "1000000", "--out", s(&out)]),
        &["--pixels"],
    );
    assert!(t0.elapsed().as_secs() < 30, "refused only after {:?}", t0.elapsed());
    assert!(snapshot(dir.path()).is_empty());
}

// 8. Ctrl-C removes the staging directory; stale ones are reported, and removed with --force.
#[cfg(unix)]
#[test]
fn interrupted_simulate_leaves_no_staging_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d");
    for (signal, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let child = Command::new(env!("CARGO_BIN_EXE_xrai-bench"))
            .args([
                "simulate",
                "--n",
                "100000",
                "--pixels",
                "16",
                "--mode",
                "direct",
                "--batch",
                "16",
                "--out",
                s(&out),
            ])
            .env("XRAI_OFFLINE", "1")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let staging = dir.path().join(format!(".d.partial-{}", child.id()));
        let t0 = std::time::Instant::now();
        while !staging.join("images.npy").exists() {
            assert!(t0.elapsed().as_secs() < 60, "no staging directory appeared");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(code), "{}", stderr(&o));
        assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
        assert!(
            snapshot(dir.path()).is_empty(),
            "left behind: {:?}",
            snapshot(dir.path()).keys().collect::<Vec<_>>()
        );
    }

    // A staging directory of a process that is gone (killed with SIGKILL).
    let gone = Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait_with_output().unwrap();
    let stale = dir.path().join(format!(".d.partial-{pid}"));
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("images.npy"), vec![0u8; 5000]).unwrap();
    let o = xrai(&["simulate", "--n", "1", "--out", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(s(&stale)) && err.contains("4.9 KiB") && err.contains("--force"),
        "{err}"
    );
    assert!(stale.exists(), "removed without consent");
    let o = xrai(&["simulate", "--n", "1", "--out", s(&out), "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stale.exists(), "--force removes it");
}

fn map(m: usize, f: impl Fn(usize) -> f32) -> Volume<f32> {
    Volume {
        m,
        spacing: 2.0,
        data: (0..m * m * m).map(f).collect(),
    }
}

fn blob(i: usize) -> f32 {
    let m = 15;
    let (x, y, z) = (
        (i % m) as f32 - 6.0,
        ((i / m) % m) as f32 - 7.0,
        (i / (m * m)) as f32 - 7.5,
    );
    (-(x * x + 2.0 * y * y + 3.0 * z * z) / 8.0).exp()
}

// 9. Bad maps and phasing parameters.
#[test]
fn nan_or_empty_maps_and_bad_phasing_parameters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    write_mrc(p("ref.mrc"), &map(15, blob), false).unwrap();
    write_mrc(
        p("nan.mrc"),
        &map(15, |i| if i == 100 { f32::NAN } else { blob(i) }),
        false,
    )
    .unwrap();
    write_mrc(p("zero.mrc"), &map(15, |_| 0.0), false).unwrap();
    write_mrc(p("allnan.mrc"), &map(15, |_| f32::NAN), false).unwrap();
    let before = snapshot(dir.path());
    fails_with(
        &xrai(&["fsc", s(&p("ref.mrc")), s(&p("nan.mrc"))]),
        &["MAP", "nan.mrc", "1 of 3375 voxels", "NaN"],
    );
    fails_with(
        &xrai(&["fsc", s(&p("nan.mrc")), s(&p("ref.mrc")), "--align"]),
        &["REFERENCE", "nan.mrc", "NaN"],
    );
    fails_with(
        &xrai(&["fsc", s(&p("ref.mrc")), s(&p("zero.mrc"))]),
        &["zero.mrc", "every voxel is zero"],
    );
    let out = p("out.mrc");
    fails_with(
        &xrai(&["phase", s(&p("allnan.mrc")), "--out", s(&out)]),
        &["allnan.mrc", "no voxel holds a measured amplitude"],
    );
    fails_with(
        &xrai(&["phase", s(&p("zero.mrc")), "--out", s(&out)]),
        &["zero.mrc", "every measured amplitude is zero"],
    );
    fails_with(
        &xrai(&["phase", s(&p("ref.mrc")), "--out", s(&out), "--iters", "0"]),
        &["--iters 0"],
    );
    fails_with(
        &xrai(&["phase", s(&p("ref.mrc")), "--out", s(&out), "--starts", "0"]),
        &["--starts 0"],
    );
    for beta in ["NaN", "0", "1.5", "-1", "inf"] {
        let flag = format!("--beta={beta}");
        fails_with(
            &xrai(&["phase", s(&p("ref.mrc")), "--out", s(&out), &flag]),
            &["--beta", "(0, 1]"],
        );
    }
    assert_eq!(snapshot(dir.path()), before, "nothing written");
}

// 10. Messages that misled.
#[test]
fn messages_name_the_flag_that_helps() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let water = dir.path().join("water.pdb");
    std::fs::write(
        &water,
        ATOM_N
            .replace("ATOM  ", "HETATM")
            .replace(" N   ASP", " O   HOH")
            .replace("  N  ", "  O  ")
            + "\n",
    )
    .unwrap();
    let err = fails_with(
        &xrai(&["simulate", "--pdb", s(&water), "--n", "1", "--out", s(&out)]),
        &["1 water", "--include-water"],
    );
    assert!(!err.contains("--include-hetatm"), "{err}");
    // `run` has no such flags and suggests none.
    let err = fails_with(
        &xrai(&[
            "--pdb",
            s(&water),
            "--n",
            "4",
            "--out",
            s(&out),
            "--summary-dir",
            s(dir.path()),
        ]),
        &["water.pdb", "1 water", "left out unless asked for"],
    );
    assert!(!err.contains("--include"), "{err}");
    // A chain the bundled file does not hold.
    fails_with(
        &xrai(&["simulate", "--pdb", "2CEX_B", "--n", "1", "--out", s(&out)]),
        &["chain A only", "--pdb /path/to/2cex.pdb"],
    );
    // A directory is not "no such file".
    fails_with(
        &xrai(&["simulate", "--pdb", s(dir.path()), "--n", "1", "--out", s(&out)]),
        &["is a directory", "water.pdb"],
    );
    // A 1e30 coordinate names its line, not a "1³ grid".
    let far = dir.path().join("far.pdb");
    std::fs::write(&far, format!("{ATOM_N}\n{}    1e30{}\n", &ATOM_N[..30], &ATOM_N[38..])).unwrap();
    let err = fails_with(
        &xrai(&["simulate", "--pdb", s(&far), "--n", "1", "--out", s(&out)]),
        &["far.pdb, line 2", "x coordinate"],
    );
    assert!(!err.contains("grid"), "{err}");
    // /proc holds no storage.
    fails_with(
        &xrai(&["simulate", "--n", "1", "--out", "/proc/x/out"]),
        &["/proc", "virtual filesystem"],
    );
    // simulate has no --bin: the disk-space advice does not suggest it.
    let err = fails_with(
        &xrai(&["simulate", "--n", "10000000000000", "--out", s(&out)]),
        &["--pixels"],
    );
    assert!(!err.contains("bin"), "{err}");
    // A missing map: the OS error once, and the argument named.
    let err = fails_with(
        &xrai(&["fsc", "/nonexistent/a.mrc", "/nonexistent/b.mrc"]),
        &["REFERENCE", "a.mrc"],
    );
    assert_eq!(err.matches("os error").count(), 1, "{err}");
    assert!(!out.exists());
}

// 11. Output paths are checked before the work.
#[test]
fn outputs_are_checked_before_phasing_or_aligning() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    write_mrc(p("ref.mrc"), &map(15, blob), false).unwrap();
    write_mrc(p("existing.mrc"), &map(15, |_| 1.0), false).unwrap();
    let before = snapshot(dir.path());
    let t0 = std::time::Instant::now();
    fails_with(
        &xrai(&["phase", s(&p("ref.mrc")), "--out", s(&p("nodir/x.mrc"))]),
        &["--out", "nodir", "does not exist"],
    );
    fails_with(
        &xrai(&["phase", s(&p("ref.mrc")), "--out", s(&p("ref.mrc")), "--force"]),
        &["--out", "AMPLITUDE input"],
    );
    fails_with(
        &xrai(&["phase", s(&p("ref.mrc")), "--out", s(&p("existing.mrc"))]),
        &["already exists", "--force"],
    );
    let err = fails_with(
        &xrai(&[
            "fsc",
            s(&p("ref.mrc")),
            s(&p("ref.mrc")),
            "--align",
            "--aligned-out",
            s(&p("existing.mrc")),
        ]),
        &["--aligned-out", "already exists", "--force"],
    );
    assert!(
        !err.contains("pass overwrite") && !err.contains("aligned:"),
        "checked after aligning: {err}"
    );
    assert!(t0.elapsed().as_secs() < 10, "took {:?}", t0.elapsed());
    assert_eq!(snapshot(dir.path()), before);
    // With --force the aligned map is written.
    let o = xrai(&[
        "fsc",
        s(&p("ref.mrc")),
        s(&p("ref.mrc")),
        "--align",
        "--aligned-out",
        s(&p("existing.mrc")),
        "--force",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(snapshot(dir.path()), before);
}

/// A build without the `mpi` feature refuses to run as one of several MPI ranks (every copy
/// would write the same outputs) and refuses `--launcher`, before anything is written; with the
/// feature, a launcher whose program is missing is refused by name.
#[test]
fn mpi_without_the_feature_or_the_launcher_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    if !cfg!(feature = "mpi") {
        for method in ["emc", "xrai"] {
            let args: &[&str] = if method == "emc" {
                &["emc", "--n", "20", "--out", s(&out)]
            } else {
                &["xrai", "--n", "20", "--steps", "1", "--out", s(&out)]
            };
            let o = xrai_in(None, args, &[("OMPI_COMM_WORLD_SIZE", "2")]);
            fails_with(&o, &["2 MPI ranks", "--features mpi"]);
            assert!(!out.exists(), "{method} wrote {}", out.display());
        }
        let o = xrai(&["run", "--launcher", "mpirun -np 2", "--n", "16", "--out", s(&out)]);
        fails_with(&o, &["--launcher", "--features mpi"]);
        // One rank of one is a plain run.
        let o = xrai_in(
            None,
            &["emc", "--n", "0", "--out", s(&out)],
            &[("OMPI_COMM_WORLD_SIZE", "1")],
        );
        fails_with(&o, &["--n"]);
        assert!(!stderr(&o).contains("MPI ranks"), "{}", stderr(&o));
    } else {
        let o = xrai(&[
            "run",
            "--launcher",
            "no-such-mpirun -np 2",
            "--n",
            "16",
            "--out",
            s(&out),
        ]);
        fails_with(&o, &["--launcher", "no-such-mpirun", "not on PATH"]);
    }
    assert!(!out.exists());
}
