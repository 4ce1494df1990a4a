//! Why a request was refused, sorted by who is at fault.

use super::{Codec, Limit, MAX_LOBBY_NAME, ProducerId, ViewerId};
use howl_media::protocol::ParamsError;

/// Who is at fault for a refusal, and so how an edge reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request is malformed or asks for something out of range (HTTP 400).
    BadRequest,
    /// The caller may not do this (403).
    Forbidden,
    /// What it names does not exist, or is hidden from this caller (404).
    NotFound,
    /// It clashes with something that exists (409).
    Conflict,
    /// The host cannot do it, now or with this build (503).
    Unavailable,
}

/// Why a request was refused. Nothing changed in the domain when one is returned, except for
/// [`Domain::rtsp_announced`](super::Domain::rtsp_announced), whose refusal also ends the viewer (see there).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("unknown app id {0}")]
    UnknownApp(i32),
    #[error("no app titled {0:?}")]
    NoSuchApp(String),
    /// No such app or lobby for a player (or one this principal may not see).
    #[error("no such stream")]
    NoSuchStream,
    #[error("no lobby with id {}", .0.0)]
    NoLobby(ProducerId),
    #[error("no session {0}")]
    NoViewer(ViewerId),
    #[error("this client may not join lobby {0:?}")]
    NotAllowed(String),
    #[error(
        "lobby {name:?} streams {width}x{height} at {fps} fps; set the client to that resolution to join"
    )]
    WrongMode {
        name: String,
        width: u32,
        height: u32,
        fps: u32,
    },
    #[error(
        "lobby {name:?} streams {} {}x{}; the client asked for {} {}x{}",
        .producer.0.name(), .producer.1, .producer.2, .asked.0.name(), .asked.1, .asked.2
    )]
    ModeMismatch {
        name: String,
        producer: (Codec, u32, u32),
        asked: (Codec, u32, u32),
    },
    #[error("no running app to resume")]
    NothingToResume,
    #[error("the host cannot stream this app: {0}")]
    NotStreamable(String),
    #[error("{0}")]
    BadParams(#[from] ParamsError),
    #[error("codec {asked:?} is not available ({available})")]
    CodecUnavailable { asked: String, available: String },
    #[error("{} streams cannot be sent to {kind}", .codec.name())]
    CodecNotCarried { codec: Codec, kind: &'static str },
    #[error("a lobby named {0:?} exists already")]
    LobbyExists(String),
    #[error("name must be 1 to {MAX_LOBBY_NAME} characters")]
    BadLobbyName,
    #[error("client {0:?} is not a 64-hex-digit certificate fingerprint")]
    BadFingerprint(String),
    #[error("{0} send no input: they can only view")]
    NoInput(&'static str),
    #[error("the producer has not started")]
    NotStarted,
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Admission control: one more producer would exceed a configured limit (nothing was
    /// started; joining a running stream is still possible).
    #[error(
        "the host is at capacity: all {max} {} are in use ({} = {max}); try again when a stream ends",
        .limit.counts(), .limit.key()
    )]
    AtCapacity { limit: Limit, max: u32 },
    /// Placement: several nodes, none with a free producer slot and encoder session.
    #[error(
        "every media node is at capacity ({nodes} nodes, no free producer slot or encoder session); try again when a stream ends"
    )]
    NodesFull { nodes: u32 },
    /// Placement: no node takes producers (none connected, or all draining).
    #[error("no media node can take a new stream (none connected, or all draining)")]
    NoNode,
    /// Placement: the app requires labels or a GPU that no ready node offers (`unmet`: what
    /// the ready nodes lack, `label gpu=nvidia or a GPU`).
    #[error("no media node offers what this app requires (missing {unmet})")]
    Unsatisfied { unmet: String },
}

impl Refusal {
    /// Whether admission control refused it (no node had room): the edges answer these
    /// like a full host (503, API 409) and count them.
    pub fn is_capacity(&self) -> bool {
        matches!(
            self,
            Refusal::AtCapacity { .. }
                | Refusal::NodesFull { .. }
                | Refusal::NoNode
                | Refusal::Unsatisfied { .. }
        )
    }

    pub fn fault(&self) -> Fault {
        match self {
            Refusal::UnknownApp(_)
            | Refusal::NoSuchStream
            | Refusal::NoLobby(_)
            | Refusal::NoViewer(_) => Fault::NotFound,
            Refusal::NotAllowed(_) => Fault::Forbidden,
            Refusal::NoSuchApp(_)
            | Refusal::WrongMode { .. }
            | Refusal::ModeMismatch { .. }
            | Refusal::BadParams(_)
            | Refusal::CodecUnavailable { .. }
            | Refusal::BadLobbyName
            | Refusal::BadFingerprint(_)
            | Refusal::NoInput(_) => Fault::BadRequest,
            Refusal::LobbyExists(_) => Fault::Conflict,
            Refusal::NothingToResume
            | Refusal::NotStreamable(_)
            | Refusal::CodecNotCarried { .. }
            | Refusal::NotStarted
            | Refusal::ShuttingDown
            | Refusal::AtCapacity { .. }
            | Refusal::NodesFull { .. }
            | Refusal::NoNode
            | Refusal::Unsatisfied { .. } => Fault::Unavailable,
        }
    }
}
