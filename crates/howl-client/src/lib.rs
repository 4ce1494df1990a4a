//! howl-client: a Moonlight-compatible GameStream client in Rust, built on howl-proto's
//! sans-IO pieces. It is howl's end-to-end test client and load/soak tool; the real Moonlight
//! (moonlight-common-c) remains the compatibility proof.
//!
//! ```no_run
//! # async fn demo() -> Result<(), howl_client::ClientError> {
//! use howl_client::{Client, LaunchOptions};
//! let addr = "127.0.0.1:47989".parse().unwrap();
//! let client = Client::new(std::path::Path::new("/tmp/howl-client"))?;
//! client.pair(addr, "1234").await?;             // operator enters 1234 on the host meanwhile
//! let app_id = client.find_app(addr, "Test Pattern").await?;
//! let session = client.launch(addr, &LaunchOptions { app_id, ..Default::default() }).await?;
//! tokio::time::sleep(std::time::Duration::from_secs(5)).await;
//! let stats = session.stop().await;
//! println!("{} frames, {} lost", stats.frames_received, stats.frames_lost);
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! | Module | Role |
//! |---|---|
//! | [`client`] | [`Client`]: identity + NVHTTP (serverinfo, pair, applist, launch, cancel) |
//! | [`session`] | [`Session`]: RTSP handshake, ENet control, UDP video/audio, stats |
//! | [`identity`] | config directory: RSA-2048 cert/key, `uniqueid`, pinned host certs |
//! | [`http`] | minimal HTTP/1.1 over TCP/TLS (pinned host cert, client cert) |
//! | [`rtsp`], [`control`], [`media`] | the I/O around `howl_proto::{rtsp, control, video}` |
//! | [`api`] | howl's management API (submitting the pairing PIN) |
//!
//! # Concurrency and limits
//!
//! Every network wait has a deadline (named constants in each module). The ENet control
//! stream runs on its own thread (rusty_enet is synchronous), video and audio on tokio tasks;
//! all queues between them are bounded with named capacities
//! ([`control::CONTROL_COMMAND_CAPACITY`], [`session::FRAME_QUEUE_CAPACITY`]) and drop
//! rather than grow. No decoding: frames are counted and their indices reported.

pub mod api;
pub mod client;
pub mod control;
pub mod error;
pub mod http;
pub mod identity;
pub mod media;
pub mod rtsp;
pub mod session;
pub mod stats;

pub use client::{Client, HostInfo};
pub use error::ClientError;
pub use session::{LaunchOptions, Session};
pub use stats::{EndReason, StatsSnapshot};
