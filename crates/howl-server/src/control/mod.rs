//! The control plane: everything that answers a request and turns it into a command for the
//! core actor ([`crate::domain`]) or the streaming engine, with a deadline. Nothing here calls
//! into media code or waits on a worker.
//!
//! - [`nvhttp`]: the GameStream HTTP/HTTPS requests (server info, pairing, launch, resume,
//!   cancel) over [`listener`] and [`tls`], advertised by [`mdns`];
//! - [`api`]: the management REST API (and its unix socket), [`metrics`] and the [`webui`].

pub mod api;
pub mod health;
pub mod listener;
pub mod mdns;
pub mod metrics;
pub mod nvhttp;
pub mod tls;
pub mod webui;
