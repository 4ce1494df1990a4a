//! What drivers hand to the domain's request inputs, and a worker supervisor's report.

use super::{Deadline, LobbyPermissions, Principal, ProducerId};
use crate::App;
use howl_proto::player::VideoRequest;
use std::time::Duration;

/// A Moonlight client's `/launch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchRequest {
    /// The client's certificate fingerprint.
    pub client: String,
    pub app_id: i32,
    /// The catalogue's app with that id, if any (a lobby's id is not in the catalogue).
    pub app: Option<App>,
    /// `mode` of the request (width, height, fps), when given.
    pub mode: Option<(u32, u32, u32)>,
}

/// An operator's new lobby.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LobbyRequest {
    pub name: String,
    /// The title the operator asked for, and the catalogue's app with it, if any.
    pub app_title: String,
    pub app: Option<App>,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    /// `h264` (default), `hevc` or `av1`.
    pub codec: Option<String>,
    /// Fingerprints of the clients that may join; empty: every paired client.
    pub clients: Vec<String>,
    pub stop_when_everyone_leaves: bool,
    pub idle_timeout: Duration,
    /// Who may drive its desktop (fingerprints are checked and lower-cased on creation).
    pub permissions: LobbyPermissions,
    /// The tenant creating it (from the caller's token, never the body).
    pub owner: Option<u64>,
}

/// The stream an RTSP player's URL names.
// One short-lived value per player request: the size of the `App` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlayerTarget {
    /// `/lobby/<name>`.
    Lobby { name: String },
    /// `/app/<name>`, with the catalogue's app of that title, if any, and the mode its URL
    /// asks for (used only by the player that starts the app share).
    App {
        name: String,
        app: Option<App>,
        video: VideoRequest,
    },
}

/// An RTSP player asking to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayerRequest {
    pub target: PlayerTarget,
    pub principal: Principal,
    /// How logs and the API name it (`rtsp:admin@127.0.0.1:50000`).
    pub label: String,
    /// The deadline its connection's protocol state has now, if any.
    pub deadline: Option<Deadline>,
}

/// A browser asking to watch a lobby (WHEP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserRequest {
    /// The lobby's id (its producer's).
    pub lobby: ProducerId,
    pub principal: Principal,
    /// How logs and the API name it (`browser:admin@127.0.0.1:50000`).
    pub label: String,
    /// The deadline its driver has now (to connect).
    pub deadline: Option<Deadline>,
}

/// How a worker ended, as its supervisor reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerEnd {
    /// Stopped on request.
    Stopped,
    /// Died or was killed; the text says why.
    Died(String),
    /// The desktop's app ended by itself.
    AppExited(String),
    /// The node it ran on was lost (disconnected or silent past its deadline).
    NodeLost { node: String, detail: String },
}
