//! One error type for the whole client, sorted by who is at fault (STYLE practice 6).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use howl_proto::audio::AudioError;
use howl_proto::control::ControlError;
use howl_proto::nvhttp::{Fault, NvHttpError};
use howl_proto::pairing::{IdentityError, PairingError};
use howl_proto::video::VideoError;

/// What went wrong, from the client's point of view.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A network wait passed its deadline.
    #[error("{what} with {peer} did not finish within {after:?}")]
    Timeout {
        what: &'static str,
        peer: SocketAddr,
        after: Duration,
    },
    /// A socket operation failed (connect refused, reset, bind failure...).
    #[error("{what} with {peer}: {source}")]
    Io {
        what: &'static str,
        peer: SocketAddr,
        source: std::io::Error,
    },
    /// TLS setup or handshake failed; with a pinned certificate this usually means the host
    /// changed its identity and the client must pair again.
    #[error("TLS with {peer}: {source}")]
    Tls {
        peer: SocketAddr,
        source: std::io::Error,
    },
    /// The host answered something that is not a usable HTTP response.
    #[error("bad HTTP response from {peer}: {reason}")]
    Http { peer: SocketAddr, reason: String },
    /// An NVHTTP XML reply could not be decoded, or carried an XML status other than 200.
    #[error("NVHTTP {endpoint} at {peer}: {source}")]
    NvHttp {
        endpoint: &'static str,
        peer: SocketAddr,
        source: NvHttpError,
    },
    /// Pairing failed (wrong PIN, bad signature, host busy...).
    #[error("pairing with {peer} failed: {source}")]
    Pairing {
        peer: SocketAddr,
        source: PairingError,
    },
    /// The host has no pinned certificate here: run `pair` first.
    #[error("not paired with host {unique_id} at {peer}: pair first")]
    NotPaired { peer: SocketAddr, unique_id: String },
    /// No app of that name or id.
    #[error("host has no app {0:?}")]
    NoSuchApp(String),
    /// The `sessionUrl0` of a launch reply is unusable.
    #[error("launch reply has an unusable sessionUrl0 {0:?}")]
    BadSessionUrl(String),
    /// The RTSP handshake failed.
    #[error("RTSP {step} with {peer}: {source}")]
    Rtsp {
        step: &'static str,
        peer: SocketAddr,
        source: howl_proto::rtsp::ClientError,
    },
    /// The ENet control stream could not be set up or failed.
    #[error("control stream with {peer}: {reason}")]
    Control { peer: SocketAddr, reason: String },
    /// Sealing a control message failed.
    #[error("control message: {0}")]
    ControlCrypto(#[from] ControlError),
    /// The video receiver could not be configured.
    #[error("video receiver: {0}")]
    Video(#[from] VideoError),
    /// The audio receiver could not be configured.
    #[error("audio receiver: {0}")]
    Audio(#[from] AudioError),
    /// The session's command queue is full (the control thread is not keeping up).
    #[error("control command queue is full; command dropped")]
    ControlBusy,
    /// The session has already ended.
    #[error("session has ended")]
    SessionEnded,
    /// The management API refused a request.
    #[error("howl API at {peer} answered {status}: {body}")]
    Api {
        peer: SocketAddr,
        status: u16,
        body: String,
    },
    /// The client's own files (config dir, certificate, key) are unusable.
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    /// The stored identity does not load.
    #[error("client identity in {path}: {source}")]
    Identity {
        path: PathBuf,
        source: IdentityError,
    },
    /// Key generation, the RNG or another local crypto step failed.
    #[error("local crypto failure: {0}")]
    Crypto(String),
}

impl ClientError {
    /// Who is at fault; see [`Fault`]. Network trouble counts as the peer's.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Timeout { .. } | Self::Io { .. } | Self::Tls { .. } | Self::Control { .. } => {
                Fault::PeerMisbehaved
            }
            Self::Http { .. } | Self::BadSessionUrl(_) => Fault::MalformedInput,
            Self::NvHttp { source, .. } => source.fault(),
            Self::Pairing { source, .. } => source.fault(),
            Self::Rtsp { source, .. } => source.fault(),
            Self::Api { .. } => Fault::PeerMisbehaved,
            Self::NotPaired { .. }
            | Self::NoSuchApp(_)
            | Self::ControlBusy
            | Self::SessionEnded => Fault::LocalMisuse,
            Self::ControlCrypto(e) => e.fault(),
            Self::Video(_)
            | Self::Audio(_)
            | Self::Config { .. }
            | Self::Identity { .. }
            | Self::Crypto(_) => Fault::Internal,
        }
    }
}
