//! howl-io: the few pieces of I/O that both ends of a GameStream connection need, in one place.
//!
//! howl-proto is sans-IO (no sockets, no clock, randomness as input), so what touches the
//! operating system lives here instead, shared by the server and the Rust client rather than
//! written twice:
//!
//! - [`PollingSocket`]: rusty_enet's socket over a std UDP socket that waits a bounded time
//!   for a datagram, so an ENet service thread neither spins nor sleeps blindly;
//! - [`generate_identity`]: an RSA-2048 key and a self-signed certificate from the system RNG,
//!   the shape GameStream hosts and clients both present.
//!
//! No async runtime: the ENet host runs on a plain thread on both sides.

mod identity;
mod socket;

pub use identity::{IdentityError, IdentityPem, generate_identity};
pub use socket::PollingSocket;
