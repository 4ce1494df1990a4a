//! The data plane's transports that are not tied to one viewer: the ENet control host on the
//! shared UDP control port ([`enet`]). Packetization and the per-viewer video and audio
//! senders belong to the viewers.

pub mod enet;
