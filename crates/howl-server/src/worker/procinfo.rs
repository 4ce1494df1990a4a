//! Process figures from /proc: resident memory and CPU time (the workers view), open file
//! descriptors and threads (the server's own, in `/metrics`).

/// (RSS in kB, user+system CPU seconds) of `pid`, `None` where /proc does not say (the
/// process is gone, or this is not Linux).
pub fn sample(pid: u32) -> (Option<u64>, Option<f64>) {
    (rss_kb(pid), cpu_seconds(pid))
}

/// [`sample`] for a worker on `node`: a media node's pid means nothing in this machine's
/// `/proc` (it could name an unrelated process), so only local workers are sampled.
pub fn sample_on(node: &str, pid: u32) -> (Option<u64>, Option<f64>) {
    if node == howl_core::domain::LOCAL_NODE {
        sample(pid)
    } else {
        (None, None)
    }
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Open file descriptors of `pid` (entries of /proc/<pid>/fd; the server's own user can
/// read its own and its workers').
pub fn open_fds(pid: u32) -> Option<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(dir.filter(|e| e.is_ok()).count() as u64)
}

/// Threads of `pid` (the `Threads:` line of /proc/<pid>/status).
pub fn threads(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Clock ticks per second of /proc/<pid>/stat times. Linux fixes USER_HZ at 100 for
/// userspace on every architecture it runs on.
const USER_HZ: f64 = 100.0;

fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat).map(|t| t as f64 / USER_HZ)
}

/// utime + stime from a /proc/<pid>/stat line. The command name (field 2) may contain spaces
/// and parentheses, so fields are counted from the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ")" come field 3 (state) onwards; utime is field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 1 0 1 1 1";
        assert_eq!(parse_cpu_ticks(line), Some(300));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        assert_eq!(parse_cpu_ticks("1 (x) S 1"), None);
    }

    #[test]
    fn this_process_has_figures() {
        let (rss, cpu) = sample(std::process::id());
        assert!(rss.is_some_and(|r| r > 0));
        assert!(cpu.is_some());
    }

    #[test]
    fn fds_and_threads_follow_what_this_process_opens() {
        let me = std::process::id();
        let fds = open_fds(me).unwrap();
        let files: Vec<_> = (0..5)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        assert!(open_fds(me).unwrap() >= fds + 5);
        drop(files);
        let threads = threads(me).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        assert!(super::threads(me).unwrap() > threads - 1);
        assert!(super::threads(me).unwrap() >= 2);
        drop(tx);
        let _ = t.join();
    }
}
