//! howl-proto: the sans-IO GameStream protocol core.
//!
//! Every module here is a pure function of its inputs: bytes in, bytes and events out. Nothing
//! in this crate opens a socket, spawns a thread, reads a clock or draws randomness on its own.
//! Time arrives as an argument (`now`), randomness as caller-supplied bytes, so every protocol
//! step is reproducible in tests and fuzzers. `clippy.toml` in this crate bans `Instant::now`
//! and `SystemTime::now` to keep it that way.
//!
//! The drive-loop contract for the stateful pieces (pairing, RTSP): feed one input, then drain
//! every output it produced before feeding the next one.

pub mod audio;
mod base64;
pub mod codec;
pub mod control;
pub mod enet;
pub mod fec;
pub mod input;
pub mod nvhttp;
pub mod pairing;
pub mod player;
pub mod rtsp;
pub mod sdp;
pub mod video;
