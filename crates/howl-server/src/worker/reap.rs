//! Reaping: killing what a worker left behind. A worker's desktop processes (Xvfb, the sound
//! server, the app and its children) carry a `HOWL_PRODUCER=<worker socket>` marker in their
//! environment; a killed worker's are found by it, and at start-up so are a crashed previous
//! run's workers and their desktops (by their socket under this state directory's `run/`).

use std::path::Path;

pub use howl_media::PRODUCER_ENV;

/// Kills every process whose environment holds `HOWL_PRODUCER=<marker>` (or, with `prefix`,
/// a value starting with `marker`). Returns the PIDs killed.
pub fn reap_marked(marker: &Path, prefix: bool) -> Vec<u32> {
    let mut needle = format!("{PRODUCER_ENV}=").into_bytes();
    needle.extend_from_slice(marker.as_os_str().as_encoded_bytes());
    if prefix {
        // A directory: `/x/run` must not match markers under `/x/run2`.
        needle.push(b'/');
    }
    kill_where("environ", |environ| {
        environ.split(|b| *b == 0).any(|var| {
            if prefix {
                var.starts_with(&needle)
            } else {
                var == needle.as_slice()
            }
        })
    })
}

/// SIGKILLs every other process whose `/proc/<pid>/<file>` satisfies `is_ours`; returns the
/// PIDs killed. Processes that vanish or cannot be read are skipped.
fn kill_where(file: &str, is_ours: impl Fn(&[u8]) -> bool) -> Vec<u32> {
    let me = std::process::id();
    let mut killed = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return killed;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(content) = std::fs::read(format!("/proc/{pid}/{file}")) else {
            continue;
        };
        if is_ours(&content) && kill_pid(pid) {
            killed.push(pid);
        }
    }
    killed
}

fn kill_pid(pid: u32) -> bool {
    let Ok(p) = i32::try_from(pid) else {
        return false;
    };
    // SIGKILL to a process we identified as ours by its marker; no memory involved.
    #[allow(unsafe_code)]
    // SAFETY: kill(2) takes two integers.
    let rc = unsafe { libc::kill(p, libc::SIGKILL) };
    rc == 0
}

/// Removes the private directory a killed worker's desktop left (`desktop-<pid>` next to its
/// socket); a worker that stopped normally removed it itself.
pub(super) fn remove_desktop_dir(marker: &Path, pid: u32) {
    if let Some(dir) = marker.parent() {
        let _ = std::fs::remove_dir_all(dir.join(format!("desktop-{pid}")));
    }
}

/// Finds `howl-worker` processes left by an earlier server on this state directory (their
/// `--socket` lies in `runtime_dir`) and SIGKILLs them. Workers normally die with their server
/// (`PR_SET_PDEATHSIG`); this start-up sweep is the second line for anything that escaped.
/// Returns the PIDs it killed. Desktop processes (Xvfb, sound server, apps and their children)
/// of those workers are found by their `HOWL_PRODUCER` marker and killed too, and their
/// private directories removed.
pub fn reap_orphans(runtime_dir: &Path) -> Vec<u32> {
    let mut killed = reap_worker_processes(runtime_dir);
    killed.extend(reap_marked(runtime_dir, true));
    if let Ok(entries) = std::fs::read_dir(runtime_dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("desktop-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    killed
}

fn reap_worker_processes(runtime_dir: &Path) -> Vec<u32> {
    // Ours by construction: a worker of this state directory whose server is gone.
    kill_where("cmdline", |cmdline| is_orphan_worker(cmdline, runtime_dir))
}

/// Whether a NUL-separated command line is `howl-worker --socket <runtime_dir>/...`.
fn is_orphan_worker(cmdline: &[u8], runtime_dir: &Path) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let Some(argv0) = args.first() else {
        return false;
    };
    if !argv0.ends_with(b"howl-worker") {
        return false;
    }
    let dir = runtime_dir.as_os_str().as_encoded_bytes();
    args.windows(2)
        .any(|w| w[0] == b"--socket" && w[1].starts_with(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn marked_processes_are_reaped_by_exact_marker_or_directory() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let marker = run.join("worker-1-1.sock");
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .env(PRODUCER_ENV, &marker)
            .spawn()
            .unwrap();
        // Until the exec completed, /proc shows the parent's environment.
        let needle = format!("{PRODUCER_ENV}={}", marker.display());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !std::fs::read(format!("/proc/{}/environ", child.id()))
            .unwrap_or_default()
            .split(|b| *b == 0)
            .any(|v| v == needle.as_bytes())
        {
            assert!(
                Instant::now() < deadline,
                "child never showed its environment"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Neither a sibling directory's prefix nor another worker's marker matches.
        let sibling = dir.path().join("ru");
        assert!(reap_marked(&sibling, true).is_empty());
        assert!(reap_marked(&run.join("worker-1-2.sock"), false).is_empty());
        assert!(child.try_wait().unwrap().is_none());
        let reaped = reap_marked(&run, true);
        let _ = child.kill();
        assert_eq!(reaped, vec![child.id()]);
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
    }

    #[test]
    fn only_workers_of_this_state_dir_are_orphans() {
        let dir = Path::new("/var/lib/howl/run");
        assert!(is_orphan_worker(
            b"/usr/bin/howl-worker\0--socket\0/var/lib/howl/run/worker-1-1.sock\0",
            dir
        ));
        assert!(!is_orphan_worker(
            b"/usr/bin/howl-worker\0--socket\0/other/run/worker-1-1.sock\0",
            dir
        ));
        assert!(!is_orphan_worker(b"/usr/bin/howl-worker\0--probe\0", dir));
        assert!(!is_orphan_worker(
            b"/bin/sleep\0--socket\0/var/lib/howl/run/x\0",
            dir
        ));
        assert!(!is_orphan_worker(b"", dir));
    }
}
