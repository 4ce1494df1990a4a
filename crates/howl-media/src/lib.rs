//! howl-media: the sans-IO half of howl's media plane.
//!
//! The media plane runs in killable `howl-worker` processes (see `docs/ARCHITECTURE.md`): the
//! worker links GStreamer and the encoders, the server links none of it. This crate is what both
//! sides share, and it is deliberately small and pure so that the server can depend on it without
//! pulling in any C library:
//!
//! - [`protocol`]: the versioned message schema and length-prefixed framing spoken over the unix
//!   stream socket between the server and one worker. Both sides encode and decode every
//!   message, so a test server and a test worker are built from the same code.
//! - [`node`]: the framed control messages between the control plane and a media node
//!   (`howl node`): join, heartbeats, worker start and kill; the worker protocol itself
//!   crosses machines unchanged, one connection per worker.
//! - [`testpattern`]: the cheap moving test picture with a machine-readable frame counter, and
//!   the reader that recovers the counter from decoded frames (freshness tests).
//! - [`annexb`]: small Annex-B helpers (NAL unit iteration, SEI stripping) used to check and
//!   shape encoder output.
//! - [`xinput`]: Moonlight keyboard and mouse input translated to X11 terms (keysyms, buttons,
//!   scaled motion) with per-client held-key tracking, for the worker's XTest injection.
//!
//! Nothing here opens a socket, spawns a thread or reads a clock; `clippy.toml` in this crate bans
//! `Instant::now`, `SystemTime::now` and `thread::spawn`. Time arrives as fields (`pts_us`).

pub mod annexb;
pub mod caps;
pub mod gamepad;
pub mod node;
pub mod protocol;
pub mod testpattern;
pub mod xinput;

/// The environment variable every process a worker starts for its desktop carries, set to the
/// worker's socket path: the marker by which the server finds and kills what a dead worker
/// left behind (the worker sets it, the server's reaper reads `/proc/<pid>/environ` for it).
pub const PRODUCER_ENV: &str = "HOWL_PRODUCER";
