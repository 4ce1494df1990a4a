//! A producer's virtual desktop: a private Xvfb display, a private PulseAudio null sink, and
//! the app running inside both.
//!
//! Everything started here belongs to this worker and dies with it on every exit path:
//!
//! - **Normal stop** ([`Desktop`]'s `Drop`): the app's process group gets SIGTERM, then SIGKILL
//!   after [`APP_STOP_GRACE`]; then the sound server and the X server, then the private
//!   directory. Every wait has a deadline.
//! - **Worker killed** (SIGKILL, crash): each child was started with `PR_SET_PDEATHSIG` =
//!   SIGKILL, so the kernel kills it when the worker's main thread dies.
//! - **Grandchildren** (an app that forks, a shell script) do not inherit the death signal. They
//!   do inherit the environment, and every process started here carries
//!   [`PRODUCER_ENV`]; the server kills whatever still carries its worker's marker after the
//!   worker is gone, and at start-up whatever carries any marker of its runtime directory.
//!
//! Display numbers come from Xvfb itself (`-displayfd`): it takes the first free one and tells
//! us, so two producers starting at once never race for a number.

use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use howl_media::protocol::DesktopApp;

use crate::error::WorkerError;

pub use howl_media::PRODUCER_ENV;

/// How long Xvfb may take to report its display number.
pub const XVFB_START_DEADLINE: Duration = Duration::from_secs(10);
/// How long PulseAudio may take to create its socket before the desktop goes silent.
pub const PULSE_START_DEADLINE: Duration = Duration::from_secs(5);
/// After SIGTERM, how long the app's process group gets before SIGKILL. Short, because the
/// server allows the whole worker only `STOP_GRACE` after `Stop`.
pub const APP_STOP_GRACE: Duration = Duration::from_millis(400);
/// After SIGTERM, how long the sound and X servers get before SIGKILL.
pub const SERVER_STOP_GRACE: Duration = Duration::from_millis(200);
/// Name of the null sink whose monitor the worker encodes.
pub const SINK_NAME: &str = "howl";

/// A running desktop. Dropping it stops everything it started.
#[derive(Debug)]
pub struct Desktop {
    dir: PathBuf,
    display: u32,
    xvfb: Option<Child>,
    pulse: Option<Child>,
    pulse_socket: Option<PathBuf>,
    app: Option<Child>,
    /// A docker app's container, instead of `app`.
    container: Option<crate::docker::Container>,
    app_exit_reported: bool,
}

impl Desktop {
    /// Starts Xvfb at `width`×`height`, PulseAudio (if installed) and the app.
    ///
    /// `parent_dir` gets a private directory for sockets and the servers' state; `marker` is
    /// the value of [`PRODUCER_ENV`] for every process started.
    pub fn start(
        width: u32,
        height: u32,
        app: &DesktopApp,
        parent_dir: &Path,
        marker: &str,
    ) -> Result<Self, WorkerError> {
        let dir = parent_dir.join(format!("desktop-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut desktop = Desktop {
            dir,
            display: 0,
            xvfb: None,
            pulse: None,
            pulse_socket: None,
            app: None,
            container: None,
            app_exit_reported: false,
        };
        // On any error below, dropping `desktop` stops what was already started.
        let (xvfb, display) = start_xvfb(width, height, marker)?;
        desktop.xvfb = Some(xvfb);
        desktop.display = display;
        match start_pulse(&desktop.dir, marker) {
            Ok((child, socket)) => {
                desktop.pulse = Some(child);
                desktop.pulse_socket = Some(socket);
            }
            Err(why) => {
                tracing::warn!(reason = %why, "no sound server for this desktop; its audio is silent");
            }
        }
        match &app.container {
            None => desktop.app = Some(desktop.start_app(app, marker)?),
            Some(spec) => {
                let body = crate::docker::create_body(
                    app,
                    spec,
                    desktop.display,
                    desktop.pulse_socket.as_deref(),
                    marker,
                );
                desktop.container = Some(crate::docker::Container::start(body)?);
            }
        }
        tracing::info!(display = desktop.display, command = %app.command, audio = desktop.pulse.is_some(), "desktop started");
        Ok(desktop)
    }

    /// The X display name, `:N`.
    pub fn display_name(&self) -> String {
        format!(":{}", self.display)
    }

    /// PulseAudio server string for clients (`unix:/path`), `None` when the desktop is silent.
    pub fn pulse_server(&self) -> Option<String> {
        self.pulse_socket
            .as_ref()
            .map(|p| format!("unix:{}", p.display()))
    }

    fn start_app(&self, app: &DesktopApp, marker: &str) -> Result<Child, WorkerError> {
        let mut cmd = Command::new(&app.command);
        cmd.args(&app.args)
            .env("DISPLAY", self.display_name())
            .env(PRODUCER_ENV, marker)
            .env("XDG_RUNTIME_DIR", &self.dir)
            // The app belongs on this display only, never on the operator's session.
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null());
        match self.pulse_server() {
            Some(s) => cmd.env("PULSE_SERVER", s),
            // No server: make sure the app does not find (or autospawn) another one.
            None => cmd.env("PULSE_SERVER", "unix:/nonexistent"),
        };
        cmd.envs(app.env.iter().map(|(k, v)| (k, v)));
        if let Some(d) = &app.working_dir {
            cmd.current_dir(d);
        }
        // Its own process group, so stopping it reaches everything it forked.
        cmd.process_group(0);
        die_with_worker(&mut cmd);
        cmd.spawn().map_err(|e| {
            WorkerError::Unsupported(format!("cannot start app {:?}: {e}", app.command))
        })
    }

    /// `Some(how)` once, the first time this is called after the app ended by itself.
    pub fn poll_app_exit(&mut self) -> Option<String> {
        if self.app_exit_reported {
            return None;
        }
        let detail = match (self.app.as_mut(), self.container.as_ref()) {
            (Some(app), _) => app.try_wait().ok().flatten()?.to_string(),
            (None, Some(c)) => c.poll_exit()?,
            (None, None) => return None,
        };
        self.app_exit_reported = true;
        Some(detail)
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        if let Some(app) = self.app.take() {
            stop_group(app, APP_STOP_GRACE);
        }
        // The container before the servers it is connected to (bounded by its own deadline).
        drop(self.container.take());
        if let Some(p) = self.pulse.take() {
            stop_child(p, SERVER_STOP_GRACE);
        }
        if let Some(x) = self.xvfb.take() {
            let killed = stop_child(x, SERVER_STOP_GRACE);
            if killed {
                // A SIGKILLed X server leaves its socket and lock file behind.
                let _ = std::fs::remove_file(format!("/tmp/.X11-unix/X{}", self.display));
                let _ = std::fs::remove_file(format!("/tmp/.X{}-lock", self.display));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        tracing::info!(display = self.display, "desktop stopped");
    }
}

/// Makes the child die with this process (see the module doc), from the thread that spawns it:
/// the kernel sends the signal when that *thread* exits, and the worker only spawns from its
/// main thread, which lives as long as the process.
#[allow(unsafe_code)]
fn die_with_worker(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (prctl, getppid, _exit) on integers; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The worker died between fork and prctl: the signal will never come.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Hands `fd` to the child as file descriptor 3 (for `-displayfd 3`).
#[allow(unsafe_code)]
fn pass_fd_as_3(cmd: &mut Command, fd: RawFd) {
    // SAFETY: between fork and exec; dup2 and fcntl are async-signal-safe and act on
    // descriptors only.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                // dup2 onto itself would keep close-on-exec; clear it instead.
                if libc::fcntl(3, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn start_xvfb(width: u32, height: u32, marker: &str) -> Result<(Child, u32), WorkerError> {
    let (mut reader, writer) = std::io::pipe()?;
    let mut cmd = Command::new("Xvfb");
    cmd.args([
        "-displayfd",
        "3",
        "-nolisten",
        "tcp",
        "-noreset",
        "-screen",
        "0",
    ])
    .arg(format!("{width}x{height}x24"))
    .env(PRODUCER_ENV, marker)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    die_with_worker(&mut cmd);
    pass_fd_as_3(&mut cmd, writer.as_raw_fd());
    let mut child = cmd.spawn().map_err(|e| {
        WorkerError::Unsupported(format!("cannot start Xvfb (is it installed?): {e}"))
    })?;
    // Our copy of the write end must go, or the read below never sees EOF if Xvfb dies.
    drop(writer);
    drop(cmd);
    match read_line_until(&mut reader, Instant::now() + XVFB_START_DEADLINE) {
        Ok(line) => match line.trim().parse::<u32>() {
            Ok(n) => Ok((child, n)),
            Err(_) => {
                stop_child(child, SERVER_STOP_GRACE);
                Err(WorkerError::Pipeline(format!(
                    "Xvfb reported display {line:?}"
                )))
            }
        },
        Err(why) => {
            let status = child.try_wait().ok().flatten();
            stop_child(child, SERVER_STOP_GRACE);
            Err(WorkerError::Pipeline(format!(
                "Xvfb did not start: {why} (status {status:?})"
            )))
        }
    }
}

/// Reads one newline-terminated line (at most 64 bytes) from a pipe, giving up at `deadline`.
fn read_line_until(reader: &mut std::io::PipeReader, deadline: Instant) -> Result<String, String> {
    let mut line = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timed out".into());
        }
        if !poll_readable(reader.as_raw_fd(), left) {
            continue;
        }
        let mut b = [0u8; 64];
        match reader.read(&mut b) {
            Ok(0) => return Err("closed its display pipe".into()),
            Ok(n) => {
                line.extend_from_slice(&b[..n]);
                if let Some(end) = line.iter().position(|&c| c == b'\n') {
                    return Ok(String::from_utf8_lossy(&line[..end]).into_owned());
                }
                if line.len() > 64 {
                    return Err("sent garbage".into());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[allow(unsafe_code)]
fn poll_readable(fd: RawFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd for the duration of the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    rc > 0
}

fn start_pulse(dir: &Path, marker: &str) -> Result<(Child, PathBuf), String> {
    let socket = dir.join("pulse.sock");
    let mut cmd = Command::new("pulseaudio");
    cmd.args([
        "--daemonize=no",
        "--use-pid-file=no",
        "--exit-idle-time=-1",
        "--disallow-exit",
        "--log-level=error",
        "-n",
        "-F",
        "/dev/null",
    ])
    .arg(format!(
        "--load=module-native-protocol-unix socket={} auth-anonymous=1",
        socket.display()
    ))
    .arg(format!(
        "--load=module-null-sink sink_name={SINK_NAME} rate=48000 channels=2"
    ))
    .env(PRODUCER_ENV, marker)
    // Private state: never the operator's sound server or its cookie.
    .env("HOME", dir)
    .env("XDG_RUNTIME_DIR", dir)
    .env("XDG_CONFIG_HOME", dir.join("config"))
    .env("PULSE_RUNTIME_PATH", dir.join("pulse-runtime"))
    .env("PULSE_STATE_PATH", dir.join("pulse-state"))
    .env_remove("DISPLAY")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    die_with_worker(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start pulseaudio: {e}"))?;
    let deadline = Instant::now() + PULSE_START_DEADLINE;
    loop {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return Ok((child, socket));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("pulseaudio exited: {status}"));
        }
        if Instant::now() >= deadline {
            stop_child(child, SERVER_STOP_GRACE);
            return Err(format!(
                "pulseaudio made no socket within {PULSE_START_DEADLINE:?}"
            ));
        }
        // Polling for the socket file: PulseAudio has no readiness notification we can await.
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[allow(unsafe_code)]
fn signal(pid: i32, sig: libc::c_int) -> bool {
    // SAFETY: kill(2) on a pid or (negative) process group id we started; no memory involved.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// SIGTERM, wait up to `grace`, SIGKILL; returns whether SIGKILL was needed.
fn stop_child(mut child: Child, grace: Duration) -> bool {
    let Ok(pid) = i32::try_from(child.id()) else {
        return false;
    };
    if child.try_wait().ok().flatten().is_some() {
        return false;
    }
    signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    true
}

/// Stops the process group led by `child`: SIGTERM to the group, wait up to `grace` for the
/// whole group to be gone, SIGKILL to the group.
fn stop_group(mut child: Child, grace: Duration) {
    let Ok(pgid) = i32::try_from(child.id()) else {
        return;
    };
    signal(-pgid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    loop {
        let _ = child.try_wait();
        // kill(-pgid, 0) fails once no process of the group is left.
        if !signal(-pgid, 0) {
            break;
        }
        if Instant::now() >= deadline {
            signal(-pgid, libc::SIGKILL);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn xvfb_missing() -> bool {
        let missing = Command::new("Xvfb")
            .arg("-help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err();
        if missing {
            eprintln!("SKIPPED: Xvfb is not installed; desktops cannot start here");
        }
        missing
    }

    /// PIDs of live (non-zombie) processes whose environment carries `marker`.
    fn marked(marker: &str) -> Vec<u32> {
        let needle = format!("{PRODUCER_ENV}={marker}").into_bytes();
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat
                .rsplit(')')
                .next()
                .is_some_and(|s| s.trim_start().starts_with('Z'))
            {
                continue;
            }
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            if env.split(|b| *b == 0).any(|v| v == needle.as_slice()) {
                out.push(pid);
            }
        }
        out
    }

    fn sh(script: &str) -> DesktopApp {
        DesktopApp {
            command: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![],
            working_dir: None,
            container: None,
        }
    }

    #[test]
    fn dropping_a_desktop_stops_the_app_its_children_and_the_servers() {
        if xvfb_missing() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("worker.sock").display().to_string();
        // The app forks a child that ignores SIGTERM: only the group SIGKILL ends it.
        let d = Desktop::start(
            640,
            480,
            &sh("trap '' TERM; sleep 1000 & exec sleep 1000"),
            dir.path(),
            &marker,
        )
        .unwrap();
        let display = d.display;
        assert!(Path::new(&format!("/tmp/.X11-unix/X{display}")).exists());
        let deadline = Instant::now() + Duration::from_secs(5);
        // Xvfb, the app and its child (plus pulseaudio where installed).
        while marked(&marker).len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(marked(&marker).len() >= 3, "{:?}", marked(&marker));
        drop(d);
        let deadline = Instant::now() + Duration::from_secs(3);
        while !marked(&marker).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(marked(&marker), Vec::<u32>::new());
        assert!(
            !dir.path()
                .join(format!("desktop-{}", std::process::id()))
                .exists()
        );
        assert!(!Path::new(&format!("/tmp/.X11-unix/X{display}")).exists());
    }

    #[test]
    fn an_app_that_exits_is_reported_once() {
        if xvfb_missing() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("w.sock").display().to_string();
        let mut d = Desktop::start(320, 240, &sh("exit 3"), dir.path(), &marker).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let detail = loop {
            if let Some(d) = d.poll_app_exit() {
                break d;
            }
            assert!(Instant::now() < deadline, "app exit not seen");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(detail.contains('3'), "{detail}");
        assert_eq!(d.poll_app_exit(), None);
    }

    #[test]
    fn a_missing_app_is_an_error_and_leaves_nothing() {
        if xvfb_missing() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("w.sock").display().to_string();
        let app = DesktopApp {
            command: "/nonexistent/howl-app".into(),
            args: vec![],
            env: vec![],
            working_dir: None,
            container: None,
        };
        let err = Desktop::start(320, 240, &app, dir.path(), &marker).unwrap_err();
        assert!(err.to_string().contains("cannot start app"), "{err}");
        let deadline = Instant::now() + Duration::from_secs(3);
        while !marked(&marker).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(marked(&marker), Vec::<u32>::new());
    }
}
