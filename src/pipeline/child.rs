//! A method's own process: `xrai-bench <id> …` started by the benchmark, so that its wall time
//! and peak memory are its own and a crash in one method leaves the others' results.

use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Context, Result};

use crate::method::output::vm_hwm_kib;

/// `--launcher`'s words, checked before any work: its program must be on PATH, and this
/// build must have MPI (else every rank would run the whole method and write the same files).
pub fn launcher(spec: Option<&str>) -> Result<Vec<String>> {
    let Some(spec) = spec else {
        return Ok(Vec::new());
    };
    let words: Vec<String> = spec.split_whitespace().map(String::from).collect();
    let program = words
        .first()
        .context("--launcher is empty: give e.g. \"mpirun -np 2\"")?;
    ensure!(
        cfg!(feature = "mpi"),
        "--launcher {spec:?}: this build has no MPI; rebuild with `cargo build --release --features mpi` \
         (needs Open MPI: apt-get install libopenmpi-dev openmpi-bin)"
    );
    let found = program.contains('/') && Path::new(program).is_file()
        || std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()));
    ensure!(found, "--launcher {spec:?}: {program} is not on PATH");
    Ok(words)
}

/// Runs `xrai-bench <argv>` as a child, under `launcher` when given (the MPI launcher's words,
/// e.g. `mpirun -np 2`); returns (wall seconds, peak RSS MiB — the launcher's own under a
/// launcher: the table takes each method's own figure from its output).
pub fn child(launcher: &[String], argv: &[String], log: &Path) -> Result<(f64, f64)> {
    let exe = std::env::current_exe().context("cannot find this program's executable")?;
    let prefix = launcher.iter().map(|w| format!("{w} ")).collect::<String>();
    eprintln!("  $ {prefix}xrai-bench {}", argv.join(" "));
    let t0 = Instant::now();
    let mut cmd = match launcher.split_first() {
        Some((program, rest)) => {
            let mut c = std::process::Command::new(program);
            c.args(rest).arg(exe);
            c
        }
        None => std::process::Command::new(exe),
    };
    cmd.args(argv);
    // A method process must not outlive the benchmark: killed on its own (SIGKILL cannot be
    // caught), the benchmark would leave it writing into the run directory while a
    // `--resume` starts the same method again.
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches only the new process.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let child = cmd.spawn().context("cannot start a method process")?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // Peak memory is the child's own VmHWM, sampled by a thread while it runs (a high-water
    // mark, so only the last 0.1 s can be missed): ru_maxrss would also count the parent's
    // RSS, which Linux carries into the child at exec. The main thread blocks until the child
    // exits (exact wall time), leaves it unreaped (WNOWAIT, so its pid cannot be reused while
    // the sampler may still read /proc), stops the sampler, then reaps it with wait4.
    let exited = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let exited = exited.clone();
        std::thread::spawn(move || {
            let mut hwm_kib = 0u64;
            while !exited.load(std::sync::atomic::Ordering::Relaxed) {
                hwm_kib = hwm_kib.max(vm_hwm_kib(&pid.to_string()).unwrap_or(0));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            hwm_kib
        })
    };
    // SAFETY: siginfo_t is plain data; waitid fills it for our own child.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let w = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
    let secs = t0.elapsed().as_secs_f64();
    exited.store(true, std::sync::atomic::Ordering::Relaxed);
    let hwm_kib = sampler.join().unwrap_or(0);
    ensure!(
        w == 0,
        "waiting for the method process failed: {}",
        std::io::Error::last_os_error()
    );
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    ensure!(
        r == pid,
        "waiting for the method process failed: {}",
        std::io::Error::last_os_error()
    );
    let peak_mib = if hwm_kib > 0 {
        hwm_kib as f64 / 1024.0
    } else {
        usage.ru_maxrss as f64 / 1024.0
    };
    std::fs::write(
        log,
        format!(
            "{prefix}{}\nwall_s {secs:.3}\npeak_rss_mib {peak_mib:.1}\nexit {status}\n",
            argv.join(" ")
        ),
    )?;
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "`xrai-bench {}` failed (see its messages above); finished stages are kept: continue with --resume",
        argv.first().map(String::as_str).unwrap_or("")
    );
    Ok((secs, peak_mib))
}
