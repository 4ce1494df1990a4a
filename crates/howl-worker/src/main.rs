//! `howl-worker`: one killable media process per producer.
//!
//! The server spawns `howl-worker --socket PATH` for each producer (lobby). The worker connects to
//! the unix stream socket the server listens on, says [`Message::Hello`] with the encoders it
//! found, waits for [`Message::Start`], runs a GStreamer pipeline (source → encoder → parser →
//! appsink) and streams encoded access units, Opus packets and heartbeats back, framed with
//! `howl_media::protocol`. It is the only crate that links GStreamer: a wedged or crashing
//! encoder costs this process, never the server (ARCHITECTURE.md, "Media plane").
//!
//! Threads (STYLE.md practice 13):
//! - **main** owns the pipeline: builds it, changes its state, feeds the test-pattern `appsrc`,
//!   polls the bus, sends heartbeats and executes commands. Every exit sets the pipeline to
//!   `Null` first, under a watchdog deadline.
//! - **reader** decodes frames from the socket and forwards commands to main over a bounded
//!   channel.
//! - **writer** encodes outgoing messages and writes them to the socket (with a write timeout).
//! - **clipboard** (desktops only) owns a second X connection: it reports what the desktop's
//!   apps copy and serves what viewers pasted (`clipboard.rs`).
//! - GStreamer streaming threads run the appsink callbacks, which only copy the sample into a
//!   message and `try_send` it (drop and count on overflow, never block).
//!
//! Other modes: `--probe` prints the usable encoders as JSON (the server calls it at start-up to
//! decide which codecs to advertise); `--decode-check FILE` (hidden, for tests) decodes an
//! elementary stream and prints the test-pattern counters it reads; `--reap-containers SCOPE`
//! (the server calls it at start-up and after a Docker app's worker died) removes the Docker
//! containers labelled with a producer marker in SCOPE and prints their ids as JSON.

mod clipboard;
mod decode_check;
mod desktop;
mod docker;
mod encoders;
mod error;
mod pipeline;
mod session;
mod source;
mod uinput;
mod xinject;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use howl_media::protocol::Codec;

/// Exit status for a normal `Stop`.
pub const EXIT_OK: u8 = 0;
/// Exit status for a fatal error (pipeline, protocol, parameters).
pub const EXIT_ERROR: u8 = 1;
/// Exit status when the server went away (socket closed or failed) without `Stop`.
pub const EXIT_SERVER_GONE: u8 = 2;
/// Exit status of `--decode-check` when no decoder is installed (tests treat it as "skip").
pub const EXIT_NO_DECODER: u8 = 77;

#[derive(Debug, Parser)]
#[command(
    name = "howl-worker",
    version,
    about = "howl media worker (spawned by the howl server)"
)]
struct Cli {
    /// Unix stream socket of the server to connect to.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["probe", "decode_check", "reap_containers"])]
    socket: Option<PathBuf>,
    /// Print the usable encoders as JSON and exit.
    #[arg(long)]
    probe: bool,
    /// Decode an elementary stream file and print the test-pattern counters as JSON (tests).
    #[arg(long, value_name = "FILE", hide = true)]
    decode_check: Option<PathBuf>,
    /// Remove the Docker containers whose `howl.producer` label is this marker or lies in this
    /// directory, print their ids as JSON and exit.
    #[arg(long, value_name = "MARKER_OR_DIR", conflicts_with_all = ["probe", "decode_check"])]
    reap_containers: Option<String>,
    /// Codec of the `--decode-check` file: h264, hevc or av1.
    #[arg(long, default_value = "h264", hide = true)]
    codec: String,
    /// How desktops are kept apart: `cookie` (X and sound cookies per desktop) or `uid` (also a
    /// Unix uid per desktop's app; needs root or CAP_SETUID, CAP_SETGID, CAP_CHOWN and
    /// CAP_DAC_OVERRIDE).
    #[arg(long, value_name = "LEVEL", default_value = "cookie")]
    desktop_isolation: String,
    /// The uids (and gids) of desktop apps at the `uid` level: the first + the display number.
    #[arg(long, value_name = "FIRST-LAST", default_value = "200000-265535")]
    desktop_uid_range: String,
}

fn main() -> ExitCode {
    // First thing: a worker must never outlive the server that spawned it.
    set_parent_death_signal();
    let cli = Cli::parse();
    if let Some(socket) = &cli.socket {
        point_at_cookies(socket);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOWL_WORKER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    // Before GStreamer: reaping needs only the Docker socket.
    if let Some(scope) = cli.reap_containers {
        return match docker::reap(&scope) {
            Ok(ids) => {
                println!("{}", serde_json::json!({ "removed": ids }));
                ExitCode::from(EXIT_OK)
            }
            Err(e) => {
                eprintln!("howl-worker: {e}");
                ExitCode::from(EXIT_ERROR)
            }
        };
    }
    if let Err(e) = gstreamer::init() {
        tracing::error!(error = %e, "GStreamer init failed");
        return ExitCode::from(EXIT_ERROR);
    }

    if cli.probe {
        let list = encoders::probe();
        let json = encoders::probe_json(&list);
        println!("{json}");
        return ExitCode::from(EXIT_OK);
    }
    if let Some(file) = cli.decode_check {
        let Some(codec) = Codec::from_name(&cli.codec) else {
            eprintln!("unknown codec {:?}", cli.codec);
            return ExitCode::from(EXIT_ERROR);
        };
        return ExitCode::from(decode_check::run(&file, codec));
    }
    let Some(socket) = cli.socket else {
        eprintln!("howl-worker: one of --socket PATH or --probe is required");
        return ExitCode::from(EXIT_ERROR);
    };
    let isolation = match desktop::Isolation::parse(&cli.desktop_isolation, &cli.desktop_uid_range)
    {
        Ok(i) => i,
        Err(e) => {
            eprintln!("howl-worker: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    // The main thread owns the pipeline; a panic in it must still end in a defined exit code
    // (the pipeline guard inside has already set the pipeline to Null while unwinding).
    match std::panic::catch_unwind(|| session::run(&socket, isolation)) {
        Ok(code) => ExitCode::from(code),
        Err(_) => {
            tracing::error!("worker main thread panicked");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Points `XAUTHORITY` and `PULSE_COOKIE` at the cookies a desktop of this worker will write
/// (desktop.rs): Xlib inside ximagesrc and libpulse inside pulsesrc read only the environment,
/// and the environment can be changed soundly only while a single thread exists.
#[allow(unsafe_code)]
fn point_at_cookies(socket: &std::path::Path) {
    let parent = socket.parent().unwrap_or(std::path::Path::new("/tmp"));
    let dir = desktop::private_dir(parent, std::process::id());
    let (xauth, pulse) = desktop::worker_cookie_paths(&dir);
    // SAFETY: called first thing in `main`, before tracing, GStreamer or any other code could
    // start a thread that reads the environment.
    unsafe {
        std::env::set_var("XAUTHORITY", xauth);
        std::env::set_var("PULSE_COOKIE", pulse);
    }
}

/// Asks the kernel to SIGKILL this process when its parent (the server) dies, so a crashed or
/// killed server never leaves encoders running. If the parent died before this call, the socket
/// closes and the session exits on its own.
#[allow(unsafe_code)]
fn set_parent_death_signal() {
    // SAFETY: prctl(PR_SET_PDEATHSIG, sig) takes two integer arguments and touches no memory of
    // ours; the variadic tail is passed as unsigned longs as the kernel ABI expects.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc != 0 {
        eprintln!(
            "howl-worker: prctl(PR_SET_PDEATHSIG) failed: {}",
            std::io::Error::last_os_error()
        );
    }
}
