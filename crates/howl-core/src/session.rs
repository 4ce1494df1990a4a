//! Stream sessions as the domain sees them: identity, and the one typed reason every session
//! ends with (seed 002: sessions that never ended because nothing owned their end).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A session's handle: unique for the lifetime of the server process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// Why a session ended. Every way out goes through one place that records one of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum EndReason {
    /// The client asked to quit the app (`/cancel`).
    ClientQuit,
    /// The same client started a newer stream of the same app (resume, rejoin).
    Replaced,
    /// The client closed its control connection (ENet disconnect).
    ClientDisconnected,
    /// ENet stopped hearing from the client.
    ControlTimeout,
    /// The client's periodic control pings stopped while ENet stayed up.
    ControlPingSilence,
    /// The RTSP handshake did not finish in time.
    RtspDeadline,
    /// `/launch` succeeded but the client never connected its streams.
    NeverConnected,
    /// Nobody watched for longer than the idle timeout.
    IdleTimeout,
    /// An operator stopped it through the API.
    ApiStop,
    /// The media worker died or stopped answering.
    WorkerDied { detail: String },
    /// The desktop's app ended by itself.
    AppExited { detail: String },
    /// The server is shutting down.
    Shutdown,
    /// The client sent something the protocol does not allow.
    ClientMisbehaved { detail: String },
    /// Something inside howl failed.
    Internal { detail: String },
    /// An RTSP player sent TEARDOWN.
    PlayerTeardown,
    /// An RTSP player sent no keep-alive (RTSP request or RTCP report) within the session
    /// timeout.
    KeepAliveTimeout,
    /// An RTSP player set up its tracks but never sent PLAY within the play timeout.
    NeverPlayed,
    /// A browser left: it deleted its WHEP resource or closed its peer connection.
    BrowserLeft,
    /// A browser vanished without leaving: ICE consent lapsed, or nothing arrived from it
    /// within its deadline (a killed tab, a lost network).
    BrowserGone,
    /// The media node running its producer was lost (disconnected, or silent past its
    /// heartbeat deadline).
    NodeLost { node: String, detail: String },
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndReason::ClientQuit => f.write_str("client quit the app"),
            EndReason::Replaced => f.write_str("replaced by a newer stream of the same client"),
            EndReason::ClientDisconnected => f.write_str("client disconnected"),
            EndReason::ControlTimeout => f.write_str("control connection timed out"),
            EndReason::ControlPingSilence => f.write_str("client stopped sending control pings"),
            EndReason::RtspDeadline => f.write_str("RTSP handshake deadline passed"),
            EndReason::NeverConnected => f.write_str("launched but never connected"),
            EndReason::IdleTimeout => f.write_str("idle timeout"),
            EndReason::ApiStop => f.write_str("stopped through the API"),
            EndReason::WorkerDied { detail } => write!(f, "media worker died: {detail}"),
            EndReason::AppExited { detail } => write!(f, "app exited ({detail})"),
            EndReason::Shutdown => f.write_str("server shutdown"),
            EndReason::ClientMisbehaved { detail } => write!(f, "client misbehaved: {detail}"),
            EndReason::Internal { detail } => write!(f, "internal error: {detail}"),
            EndReason::PlayerTeardown => f.write_str("player sent TEARDOWN"),
            EndReason::KeepAliveTimeout => f.write_str("player stopped sending keep-alives"),
            EndReason::NeverPlayed => f.write_str("player set up but never played"),
            EndReason::BrowserLeft => f.write_str("browser left"),
            EndReason::BrowserGone => f.write_str("browser stopped answering"),
            EndReason::NodeLost { node, detail } => write!(f, "media node {node} lost: {detail}"),
        }
    }
}

impl EndReason {
    /// A stable short label, for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            EndReason::ClientQuit => "client_quit",
            EndReason::Replaced => "replaced",
            EndReason::ClientDisconnected => "client_disconnected",
            EndReason::ControlTimeout => "control_timeout",
            EndReason::ControlPingSilence => "control_ping_silence",
            EndReason::RtspDeadline => "rtsp_deadline",
            EndReason::NeverConnected => "never_connected",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::ApiStop => "api_stop",
            EndReason::WorkerDied { .. } => "worker_died",
            EndReason::AppExited { .. } => "app_exited",
            EndReason::Shutdown => "shutdown",
            EndReason::ClientMisbehaved { .. } => "client_misbehaved",
            EndReason::Internal { .. } => "internal",
            EndReason::PlayerTeardown => "teardown",
            EndReason::KeepAliveTimeout => "keepalive_timeout",
            EndReason::NeverPlayed => "never_played",
            EndReason::BrowserLeft => "browser_left",
            EndReason::BrowserGone => "browser_gone",
            EndReason::NodeLost { .. } => "node_lost",
        }
    }

    /// Whether the client should be told (it still listens); false when it already left.
    /// A client that quits with `/cancel` may still have its stream open (a second device
    /// quitting the app, or a client that cancels before disconnecting): it is told.
    pub fn client_listens(&self) -> bool {
        !matches!(
            self,
            EndReason::ClientDisconnected | EndReason::ControlTimeout | EndReason::BrowserGone
        )
    }
}
