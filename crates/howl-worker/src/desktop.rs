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
//!
//! **Isolation** (docs/configuration.md, `desktop_isolation`): every desktop gets a random
//! 128-bit X cookie (`MIT-MAGIC-COOKIE-1`, Xvfb `-auth`) and a random PulseAudio cookie
//! (`auth-anonymous=0`), so a client without them is refused on every socket of the display
//! (the filesystem one and the abstract one) and of the sound server. The worker keeps its own
//! copies in its private directory (0700) and reads them through `XAUTHORITY`/`PULSE_COOKIE`,
//! which `main` sets before any thread exists ([`worker_cookie_paths`]); the app gets copies in
//! its own directory. At the `uid` level the app also runs under a Unix uid of its own
//! (first of the range + display number: unique while the display lives, no allocation
//! shared between workers), and its directory and cookies belong to that uid alone, so
//! another desktop's app cannot read them. PulseAudio trusts every client of its own uid
//! without a cookie; at the `cookie` level the apps share the worker's uid, so there the sound
//! server (and each other's files) stays reachable to another desktop's app that looks for it.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
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
/// X authority file name (the worker's copy in its private directory, the app's in its own).
const XAUTH_FILE: &str = "Xauthority";
/// PulseAudio cookie file name (same two copies).
const PULSE_COOKIE_FILE: &str = "pulse-cookie";
/// Bytes of the X cookie: `MIT-MAGIC-COOKIE-1` is 128 bits.
const X_COOKIE_LEN: usize = 16;
/// Bytes of a PulseAudio cookie (`PA_NATIVE_COOKIE_LENGTH`).
const PULSE_COOKIE_LEN: usize = 256;
/// Prefix of an app's private directory under `/tmp` at the `uid` level (see [`Desktop::start`]).
const UID_DIR_PREFIX: &str = "howl-desktop-";

/// How far one desktop's apps are kept from another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Per-display X and sound cookies; every app runs as the worker's user.
    Cookie,
    /// The cookies, and every desktop's app under its own uid (= gid) from `first..=last`.
    Uid { first: u32, last: u32 },
}

impl Isolation {
    /// From the worker's `--desktop-isolation` and `--desktop-uid-range` arguments.
    pub fn parse(level: &str, range: &str) -> Result<Self, String> {
        match level {
            "cookie" => Ok(Isolation::Cookie),
            "uid" => {
                let (first, last) = parse_uid_range(range)?;
                Ok(Isolation::Uid { first, last })
            }
            other => Err(format!(
                "desktop isolation {other:?}: expected \"cookie\" or \"uid\""
            )),
        }
    }

    /// The level's name, as configured and logged.
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Cookie => "cookie",
            Isolation::Uid { .. } => "uid",
        }
    }
}

/// `"FIRST-LAST"`, both above 0 (never root) and FIRST <= LAST.
pub fn parse_uid_range(range: &str) -> Result<(u32, u32), String> {
    let bad = || format!("desktop uid range {range:?}: expected FIRST-LAST, e.g. 200000-265535");
    let (a, b) = range.split_once('-').ok_or_else(bad)?;
    let first: u32 = a.trim().parse().map_err(|_| bad())?;
    let last: u32 = b.trim().parse().map_err(|_| bad())?;
    if first == 0 || first > last || last == u32::MAX {
        return Err(bad());
    }
    Ok((first, last))
}

/// The worker's private directory under `parent_dir` (the server's runtime directory).
pub fn private_dir(parent_dir: &Path, pid: u32) -> PathBuf {
    parent_dir.join(format!("desktop-{pid}"))
}

/// Where the worker keeps its copies of the X authority file and the PulseAudio cookie, for
/// `XAUTHORITY` and `PULSE_COOKIE`: Xlib (ximagesrc), x11rb (XTest injection) and libpulse
/// (pulsesrc) read those variables when they connect.
pub fn worker_cookie_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(XAUTH_FILE), dir.join(PULSE_COOKIE_FILE))
}

/// The random secrets of one desktop. Never logged (no `Debug`).
struct Cookies {
    x: [u8; X_COOKIE_LEN],
    pulse: Vec<u8>,
    /// Not a secret: names the app's directory at the `uid` level.
    dir_tag: [u8; 8],
}

impl Cookies {
    fn generate() -> std::io::Result<Self> {
        let mut rng = std::fs::File::open("/dev/urandom")?;
        let mut x = [0u8; X_COOKIE_LEN];
        rng.read_exact(&mut x)?;
        let mut pulse = vec![0u8; PULSE_COOKIE_LEN];
        rng.read_exact(&mut pulse)?;
        let mut dir_tag = [0u8; 8];
        rng.read_exact(&mut dir_tag)?;
        Ok(Cookies { x, pulse, dir_tag })
    }

    /// Writes both files into `dir`, readable by their owner only.
    fn write(&self, dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
        let (xauth, pulse) = worker_cookie_paths(dir);
        write_private(&xauth, &xauthority_entry(&self.x))?;
        write_private(&pulse, &self.pulse)?;
        Ok((xauth, pulse))
    }
}

/// One Xauthority entry (the format libXau reads: big-endian u16 family, then four
/// u16-length-prefixed strings: address, display number, auth name, auth data). Family
/// `FamilyWild` with an empty display number matches any display on any host name: the file is
/// written before Xvfb picks the number, and a container has a host name of its own. Xvfb
/// itself ignores address and number when it loads `-auth`.
fn xauthority_entry(cookie: &[u8; X_COOKIE_LEN]) -> Vec<u8> {
    const FAMILY_WILD: u16 = 0xffff;
    const NAME: &[u8] = b"MIT-MAGIC-COOKIE-1";
    let mut out = Vec::with_capacity(2 + 2 + 2 + 2 + NAME.len() + 2 + X_COOKIE_LEN);
    out.extend_from_slice(&FAMILY_WILD.to_be_bytes());
    for field in [&b""[..], &b""[..], NAME, &cookie[..]] {
        // Every field here is at most 18 bytes long.
        out.extend_from_slice(&(field.len() as u16).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// Creates `path` (which must not exist: no following a planted link) with mode 0600.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

/// Creates `path` with mode 0700 (fails if it exists).
fn make_private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().mode(0o700).create(path)
}

/// A running desktop. Dropping it stops everything it started.
#[derive(Debug)]
pub struct Desktop {
    dir: PathBuf,
    /// The app's private directory: its cookies, sound socket, `XDG_RUNTIME_DIR` (and `HOME` at
    /// the `uid` level). Inside `dir` at the `cookie` level; under `/tmp` at the `uid` level,
    /// because the app's uid cannot pass the server's state directory.
    app_dir: PathBuf,
    /// The app's uid (= gid) at the `uid` level.
    app_uid: Option<u32>,
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
        isolation: Isolation,
    ) -> Result<Self, WorkerError> {
        if let Isolation::Uid { .. } = isolation {
            howl_media::caps::uid_isolation_available().map_err(WorkerError::Unsupported)?;
        }
        let dir = private_dir(parent_dir, std::process::id());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(parent_dir)?;
        make_private_dir(&dir)?;
        let cookies = Cookies::generate()?;
        let (xauth, pulse_cookie) = cookies.write(&dir)?;
        let mut desktop = Desktop {
            app_dir: dir.join("app"),
            dir,
            app_uid: None,
            display: 0,
            xvfb: None,
            pulse: None,
            pulse_socket: None,
            app: None,
            container: None,
            app_exit_reported: false,
        };
        // On any error below, dropping `desktop` stops what was already started.
        let (xvfb, display) = start_xvfb(width, height, &xauth, marker)?;
        desktop.xvfb = Some(xvfb);
        desktop.display = display;
        if let Isolation::Uid { first, last } = isolation {
            let uid = first
                .checked_add(display)
                .filter(|u| *u <= last)
                .ok_or_else(|| {
                    WorkerError::Unsupported(format!(
                        "display :{display} has no uid in desktop_uid_range {first}-{last}"
                    ))
                })?;
            remove_stale_uid_dirs(uid);
            // A random name, so no other user can plant it in /tmp beforehand (creating it
            // fails if it exists).
            let tag: String = cookies.dir_tag.iter().map(|b| format!("{b:02x}")).collect();
            desktop.app_dir = std::env::temp_dir().join(format!("{UID_DIR_PREFIX}{uid}-{tag}"));
            desktop.app_uid = Some(uid);
        }
        make_private_dir(&desktop.app_dir)?;
        let (app_xauth, app_pulse_cookie) = cookies.write(&desktop.app_dir)?;
        match start_pulse(&desktop.dir, &desktop.app_dir, &pulse_cookie, marker) {
            Ok((child, socket)) => {
                desktop.pulse = Some(child);
                desktop.pulse_socket = Some(socket);
            }
            Err(why) => {
                tracing::warn!(reason = %why, "no sound server for this desktop; its audio is silent");
            }
        }
        if let Some(uid) = desktop.app_uid {
            // After the sound server made its socket there: from now on only the app's uid
            // (and root) can enter the directory.
            for p in [&app_xauth, &app_pulse_cookie, &desktop.app_dir]
                .into_iter()
                .chain(desktop.pulse_socket.as_ref())
            {
                std::os::unix::fs::chown(p, Some(uid), Some(uid)).map_err(|e| {
                    WorkerError::Unsupported(format!(
                        "cannot give {} to uid {uid}: {e}",
                        p.display()
                    ))
                })?;
            }
        }
        match &app.container {
            None => {
                desktop.app = Some(desktop.start_app(app, marker, &app_xauth, &app_pulse_cookie)?)
            }
            Some(spec) => {
                let body = crate::docker::create_body(
                    app,
                    spec,
                    desktop.display,
                    desktop.pulse_socket.as_deref(),
                    &app_xauth,
                    &app_pulse_cookie,
                    marker,
                );
                desktop.container = Some(crate::docker::Container::start(body)?);
            }
        }
        tracing::info!(
            display = desktop.display,
            command = %app.command,
            audio = desktop.pulse.is_some(),
            isolation = isolation.name(),
            app_uid = ?desktop.app_uid,
            "desktop started"
        );
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

    fn start_app(
        &self,
        app: &DesktopApp,
        marker: &str,
        xauth: &Path,
        pulse_cookie: &Path,
    ) -> Result<Child, WorkerError> {
        let mut cmd = Command::new(&app.command);
        cmd.args(&app.args)
            .env("DISPLAY", self.display_name())
            .env("XAUTHORITY", xauth)
            .env("PULSE_COOKIE", pulse_cookie)
            .env(PRODUCER_ENV, marker)
            .env("XDG_RUNTIME_DIR", &self.app_dir)
            // The app belongs on this display only, never on the operator's session.
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null());
        match self.pulse_server() {
            Some(s) => cmd.env("PULSE_SERVER", s),
            // No server: make sure the app does not find (or autospawn) another one.
            None => cmd.env("PULSE_SERVER", "unix:/nonexistent"),
        };
        if self.app_uid.is_some() {
            // The worker's home is not the app's (nor readable by it).
            cmd.env("HOME", &self.app_dir).current_dir(&self.app_dir);
        }
        cmd.envs(app.env.iter().map(|(k, v)| (k, v)));
        if let Some(d) = &app.working_dir {
            cmd.current_dir(d);
        }
        // Its own process group, so stopping it reaches everything it forked.
        cmd.process_group(0);
        if let Some(uid) = self.app_uid {
            // Before `die_with_worker`: changing credentials clears the parent-death signal.
            run_as(&mut cmd, uid);
        }
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
        let _ = std::fs::remove_dir_all(&self.app_dir);
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

/// Runs the child as `uid` (and gid `uid`) with no supplementary groups. Registered before
/// [`die_with_worker`]: `pre_exec` hooks run in order, and a credential change clears the
/// parent-death signal.
#[allow(unsafe_code)]
fn run_as(cmd: &mut Command, uid: u32) {
    // SAFETY: between fork and exec; setgroups, setgid and setuid are async-signal-safe and
    // take integers and a null pointer only.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(uid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Removes `/tmp/howl-desktop-<uid>-*` left by a worker that was killed: a new desktop with the
/// same uid must not find its predecessor's files.
fn remove_stale_uid_dirs(uid: u32) {
    let prefix = format!("{UID_DIR_PREFIX}{uid}-");
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_dir_all(e.path());
        }
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

fn start_xvfb(
    width: u32,
    height: u32,
    xauth: &Path,
    marker: &str,
) -> Result<(Child, u32), WorkerError> {
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
    // Only clients presenting this file's cookie get in, on every socket Xvfb listens on.
    .arg("-auth")
    .arg(xauth)
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

/// Starts PulseAudio with its state in `dir` and its socket in `socket_dir`, accepting only
/// clients that present the cookie in `cookie` (or run under its own uid: PulseAudio always
/// trusts those).
fn start_pulse(
    dir: &Path,
    socket_dir: &Path,
    cookie: &Path,
    marker: &str,
) -> Result<(Child, PathBuf), String> {
    let socket = socket_dir.join("pulse.sock");
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
        "--load=module-native-protocol-unix socket={} auth-anonymous=0 auth-cookie-enabled=1 auth-cookie={}",
        socket.display(),
        cookie.display()
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
            Isolation::Cookie,
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
    fn the_xauthority_entry_is_one_wild_cookie_for_any_display() {
        let cookie = [0xabu8; X_COOKIE_LEN];
        let e = xauthority_entry(&cookie);
        let mut want = vec![0xff, 0xff, 0, 0, 0, 0, 0, 18];
        want.extend_from_slice(b"MIT-MAGIC-COOKIE-1");
        want.extend_from_slice(&[0, 16]);
        want.extend_from_slice(&cookie);
        assert_eq!(e, want);
    }

    #[test]
    fn isolation_levels_and_uid_ranges_parse_or_say_why() {
        assert_eq!(
            Isolation::parse("cookie", "junk").unwrap(),
            Isolation::Cookie
        );
        assert_eq!(
            Isolation::parse("uid", "200000-265535").unwrap(),
            Isolation::Uid {
                first: 200_000,
                last: 265_535
            }
        );
        for bad in ["0-5", "9-3", "1", "a-b", "1-4294967295"] {
            assert!(Isolation::parse("uid", bad).unwrap_err().contains(bad));
        }
        assert!(
            Isolation::parse("none", "1-2")
                .unwrap_err()
                .contains("cookie")
        );
    }

    /// The X setup reply's first byte for a connection to `socket` presenting `cookie`
    /// (0 = failed, 1 = success).
    fn x_setup(socket: &str, cookie: Option<&[u8]>) -> u8 {
        use std::os::linux::net::SocketAddrExt;
        let addr = match socket.strip_prefix('@') {
            Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap(),
            None => std::os::unix::net::SocketAddr::from_pathname(socket).unwrap(),
        };
        let mut s = std::os::unix::net::UnixStream::connect_addr(&addr).unwrap();
        let (name, data): (&[u8], &[u8]) = match cookie {
            Some(c) => (b"MIT-MAGIC-COOKIE-1", c),
            None => (b"", b""),
        };
        let mut req = vec![b'l', 0, 11, 0, 0, 0];
        req.extend_from_slice(&(name.len() as u16).to_le_bytes());
        req.extend_from_slice(&(data.len() as u16).to_le_bytes());
        req.extend_from_slice(&[0, 0]);
        for f in [name, data] {
            req.extend_from_slice(f);
            req.resize(req.len().next_multiple_of(4), 0);
        }
        s.write_all(&req).unwrap();
        let mut first = [0u8; 1];
        s.read_exact(&mut first).unwrap();
        first[0]
    }

    #[test]
    fn the_display_refuses_clients_without_its_cookie_on_both_sockets() {
        if xvfb_missing() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("w.sock").display().to_string();
        let d = Desktop::start(
            320,
            240,
            &sh("exec sleep 1000"),
            dir.path(),
            &marker,
            Isolation::Cookie,
        )
        .unwrap();
        let xauth = std::fs::read(d.dir.join(XAUTH_FILE)).unwrap();
        let cookie = &xauth[xauth.len() - X_COOKIE_LEN..];
        let mut wrong = cookie.to_vec();
        wrong[0] ^= 1;
        for socket in [
            format!("/tmp/.X11-unix/X{}", d.display),
            format!("@/tmp/.X11-unix/X{}", d.display),
        ] {
            assert_eq!(x_setup(&socket, None), 0, "{socket} without a cookie");
            assert_eq!(
                x_setup(&socket, Some(&wrong)),
                0,
                "{socket} with a wrong one"
            );
            assert_eq!(
                x_setup(&socket, Some(cookie)),
                1,
                "{socket} with its cookie"
            );
        }
        // Every secret file is private to its owner.
        for f in [
            d.dir.join(XAUTH_FILE),
            d.dir.join(PULSE_COOKIE_FILE),
            d.app_dir.join(XAUTH_FILE),
        ] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&f).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", f.display());
        }
    }

    #[test]
    fn an_app_that_exits_is_reported_once() {
        if xvfb_missing() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("w.sock").display().to_string();
        let mut d = Desktop::start(
            320,
            240,
            &sh("exit 3"),
            dir.path(),
            &marker,
            Isolation::Cookie,
        )
        .unwrap();
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
        let err =
            Desktop::start(320, 240, &app, dir.path(), &marker, Isolation::Cookie).unwrap_err();
        assert!(err.to_string().contains("cannot start app"), "{err}");
        let deadline = Instant::now() + Duration::from_secs(3);
        while !marked(&marker).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(marked(&marker), Vec::<u32>::new());
    }
}
