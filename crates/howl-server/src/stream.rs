//! The streaming engine: app instances, stream sessions, and the one path by which a session
//! ends.
//!
//! One actor task owns every instance and session. It is driven by commands (from NVHTTP, the
//! RTSP listener, the shared UDP ports, the ENet thread and worker supervisors) and by a timer
//! tick that checks every deadline; it never awaits anything else, so no client and no worker
//! can wedge it. Media does not pass through the actor: each session has sender tasks that
//! subscribe to the instance's worker output and write datagrams to the shared UDP sockets.
//!
//! Lifecycle: `/launch` creates an *instance* (the app, later its worker) and a *session* (one
//! client's stream of it, waiting for RTSP). ANNOUNCE starts the worker; PLAY starts the
//! senders; UDP pings tell the senders where to send; the ENet CONNECT binds the control
//! stream. A session ends through [`Engine::end_session`] only, with an [`EndReason`]. When a
//! client disconnects, its instance lingers (so `/resume` works) until `linger` passes;
//! `/cancel` ends it at once.

use crate::enet::{EnetCommand, EnetEvent, EnetSender, PeerId};
use crate::events::{Audience, Event};
use crate::media::{self, MediaKind, SenderSettings};
use crate::player::{PlayerJoin, PlayerJoined, PlayerLink, PlayerRefusal};
use crate::worker::{self, Worker, WorkerExit};
use howl_core::routing::Router;
use howl_core::{App, AppKind, EndReason, SessionId};
use howl_media::protocol::{Codec, Source, StreamParams};
use howl_proto::control::{
    ClientMessage, ControlCrypto, HostMessage, IvVariant, TerminationReason,
};
use howl_proto::input::InputEvent;
use howl_proto::rtsp::{
    Event as RtspEvent, MoonlightParams, MoonlightRtsp, PingPayload, StreamPorts,
};
use howl_proto::rtsp::{Request, Response, StatusCode};
use howl_proto::sdp::{CodecSupport, EncryptionFlags, HostOffer, StreamConfig, VideoCodec};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// Commands into the engine (every producer of work → engine). Full queue: the NVHTTP/RTSP
/// callers fail their request after their deadline; pings and ENet events are dropped (the
/// client repeats pings every 500 ms; ENet retransmits reliable data).
pub const ENGINE_COMMAND_CAPACITY: usize = 1024;
/// How long callers wait for the engine's reply.
pub const ENGINE_REPLY_DEADLINE: Duration = Duration::from_secs(5);
/// How long after the last producer stopped the engine returns freed heap to the OS: long
/// enough for the stopped workers' supervisors and senders to drop their buffers.
const HEAP_TRIM_DELAY: Duration = Duration::from_secs(2);
/// How often deadlines are checked.
const TICK: Duration = Duration::from_millis(250);

/// Tunables of the engine, from the configuration.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Address the per-launch RTSP listeners bind to.
    pub bind_address: IpAddr,
    /// First port of the per-launch RTSP range (0: any free port).
    pub rtsp_port: u16,
    /// Size of the RTSP port range: at most this many handshakes listen at once.
    pub rtsp_port_count: u16,
    pub ports: StreamPorts,
    pub worker_bin: PathBuf,
    pub runtime_dir: PathBuf,
    pub codecs: CodecSupport,
    pub fec_percentage: u8,
    /// Testing only: drop this fraction (0..1) of outgoing media datagrams at random.
    pub fault_drop_fraction: f64,
    /// How long an instance without a viewer is kept for `/resume`.
    pub linger: Duration,
    /// RTSP handshake deadline, counted from `/launch`.
    pub rtsp_deadline: Duration,
    /// After PLAY, how long the client has to connect its control stream.
    pub connect_deadline: Duration,
    /// With the control stream up, how long without any control message ends the session.
    pub control_silence: Duration,
    /// Where session, lobby and worker events go (operators' live view).
    pub events: crate::events::EventBus,
    /// How an `/app/` producer for RTSP players runs unless its first player asks otherwise.
    pub player_defaults: crate::player::PlayerDefaults,
}

/// Why `/launch` or `/resume` failed; the status code is what clients are told.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("unknown app id {0}")]
    UnknownApp(i32),
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    WrongMode(String),
    #[error("no running app to resume")]
    NothingToResume,
    #[error("the host cannot stream this app: {0}")]
    Unsupported(String),
    #[error("the streaming engine did not answer in time")]
    Unavailable,
}

impl LaunchError {
    pub fn status_code(&self) -> i64 {
        match self {
            LaunchError::UnknownApp(_) => 404,
            LaunchError::NotAllowed(_) => 403,
            LaunchError::WrongMode(_) => 400,
            LaunchError::NothingToResume => 503,
            LaunchError::Unsupported(_) => 503,
            LaunchError::Unavailable => 503,
        }
    }
}

/// What a launch needs to know about the request.
#[derive(Debug, Clone)]
pub struct LaunchInput {
    pub client: String,
    pub rikey: [u8; 16],
    pub rikeyid: i32,
    /// Address the HTTPS request arrived on (goes into `sessionUrl0`).
    pub local_ip: IpAddr,
    /// Address of the client (for logs).
    pub peer_ip: IpAddr,
    /// `mode` of the launch request (width, height, fps), when given.
    pub mode: Option<(u32, u32, u32)>,
}

/// What an operator asks for when creating a shared lobby.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LobbySpec {
    /// Shown to clients as the app title; unique among lobbies.
    pub name: String,
    /// Title of the app the lobby runs.
    pub app: String,
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
    #[serde(default = "default_fps")]
    pub fps: u32,
    #[serde(default = "default_bitrate")]
    pub bitrate_kbps: u32,
    /// `h264` (default), `hevc` or `av1`; viewers must ask for the same codec.
    #[serde(default)]
    pub codec: Option<String>,
    /// Fingerprints of the paired clients that may join; empty or absent = every paired client.
    #[serde(default)]
    pub clients: Vec<String>,
    /// Stop the lobby once its last viewer has left and `idle_timeout_secs` passed.
    #[serde(default)]
    pub stop_when_everyone_leaves: bool,
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: u64,
    /// The tenant creating the lobby (set by the API from the caller's token, never the body).
    #[serde(skip)]
    pub owner: Option<u64>,
}

fn default_width() -> u32 {
    1280
}
fn default_height() -> u32 {
    720
}
fn default_fps() -> u32 {
    60
}
fn default_bitrate() -> u32 {
    8000
}
fn default_idle() -> u64 {
    300
}

/// A lobby as the API shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct LobbyView {
    pub id: u64,
    pub name: String,
    /// The app id clients see in their app list.
    pub app_id: i32,
    pub app: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub codec: String,
    pub viewers: usize,
    pub worker_pid: Option<u32>,
    pub producer_frame_counter: u64,
    pub clients: Vec<String>,
    pub stop_when_everyone_leaves: bool,
    pub idle_timeout_secs: u64,
    /// The tenant that owns the lobby; `None`: the operator's.
    pub tenant: Option<u64>,
}

/// A media worker as the API shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct WorkerView {
    pub pid: u32,
    pub instance: u64,
    pub lobby_id: Option<u64>,
    pub app: String,
    /// `running`, or `stopping` while its instance lingers without viewers.
    pub state: &'static str,
    pub viewers: usize,
    /// How long ago its last heartbeat arrived.
    pub last_heartbeat_ms_ago: u64,
    pub heartbeats: u64,
    pub video_frames: u64,
    pub uptime_secs: u64,
    pub tenant: Option<u64>,
}

/// Live counts of what the engine owns (issue 5: every owned thing is counted).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EngineCounters {
    pub instances: usize,
    pub lobbies: usize,
    pub sessions: usize,
    pub workers: usize,
    pub workers_starting: usize,
    pub viewers: usize,
    pub frames_sent: u64,
    pub frames_dropped: u64,
    /// Dropped frames by reason: lagged, awaiting_keyframe, unpacketizable.
    pub frames_dropped_by_reason: std::collections::BTreeMap<&'static str, u64>,
    /// The deepest any viewer is behind its producer right now, in frames.
    pub max_video_queue_depth: u64,
    /// Bytes of video queued for all viewers right now (the sum of each viewer's
    /// `video_queue_bytes`).
    pub video_queue_bytes: u64,
    pub bytes_sent: u64,
    pub frames_unwatched: u64,
    pub datagrams_sent: u64,
    pub datagrams_fault_dropped: u64,
    pub audio_packets_sent: u64,
    pub input_events: u64,
    pub control_errors: u64,
    /// Sessions ended since start, by reason label.
    pub sessions_ended: std::collections::BTreeMap<String, u64>,
    /// How often the idle engine returned freed heap to the OS.
    pub heap_trims: u64,
    /// True once the heap was returned after the last producer stopped, until the next one
    /// stops (tests measure RSS at that point).
    pub heap_trimmed_since_idle: bool,
    /// RTSP egress players (also counted in `sessions`, `bytes_sent` and `sessions_ended`).
    pub rtsp: RtspCounters,
    /// URI sources (issue 9): inputs lost now, losses and recoveries since start.
    pub sources_down: usize,
    pub source_losses: u64,
    pub source_recoveries: u64,
}

/// Live figures of the RTSP egress (issue 9).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RtspCounters {
    /// Players connected now, by path (`/app/<name>` or `/lobby/<name>`).
    pub players_by_path: std::collections::BTreeMap<String, u64>,
    pub players: u64,
    /// RTP and RTCP packets sent to players since start.
    pub packets_sent: u64,
    /// RTP and RTCP bytes sent to players since start.
    pub bytes_sent: u64,
    /// Video frames dropped for players (lagging, waiting for a keyframe).
    pub frames_dropped: u64,
    /// Player sessions ended since start, by reason label.
    pub sessions_ended: std::collections::BTreeMap<String, u64>,
}

/// Why a lobby could not be created or stopped (the operator's mistakes, or a busy engine).
#[derive(Debug, thiserror::Error)]
pub enum LobbyError {
    #[error("{0}")]
    Invalid(String),
    #[error("a lobby named {0:?} exists already")]
    Exists(String),
    #[error("no lobby with id {0}")]
    NotFound(u64),
    #[error("the streaming engine did not answer in time")]
    Unavailable,
}

/// A session as the API and tests see it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SessionView {
    #[schema(value_type = u64)]
    pub id: SessionId,
    pub client: String,
    pub app: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub codec: String,
    pub worker_pid: Option<u32>,
    /// The producer's latest test-pattern frame counter (freshness checks).
    pub producer_frame_counter: u64,
    pub frames_sent: u64,
    pub frames_dropped: u64,
    /// Bytes of video queued for it in the fan-out right now.
    pub video_queue_bytes: u64,
    pub input_events: u64,
    /// The lobby it watches; `None` for a private stream.
    pub lobby_id: Option<u64>,
    /// The encoder bitrate the client asked for.
    pub bitrate_kbps: u32,
    /// ENet's smoothed round-trip time to the client; `None` before the control stream.
    pub rtt_ms: Option<u32>,
    pub uptime_secs: u64,
    /// The tenant owning the lobby it watches.
    pub tenant: Option<u64>,
}

enum Cmd {
    CreateLobby {
        spec: LobbySpec,
        app: Option<App>,
        reply: oneshot::Sender<Result<LobbyView, LobbyError>>,
    },
    Lobbies {
        reply: oneshot::Sender<Vec<LobbyView>>,
    },
    StopLobby {
        id: u64,
        reply: oneshot::Sender<Result<(), LobbyError>>,
    },
    SetLobbyClients {
        id: u64,
        clients: Vec<String>,
        reply: oneshot::Sender<Result<LobbyView, LobbyError>>,
    },
    Workers {
        reply: oneshot::Sender<Vec<WorkerView>>,
    },
    LobbyApps {
        client: String,
        reply: oneshot::Sender<Vec<(i32, String)>>,
    },
    StopSession {
        id: u64,
        reply: oneshot::Sender<bool>,
    },
    Launch {
        app_id: i32,
        app: Option<App>,
        input: LaunchInput,
        reply: oneshot::Sender<Result<String, LaunchError>>,
    },
    Resume {
        input: LaunchInput,
        reply: oneshot::Sender<Result<String, LaunchError>>,
    },
    Cancel {
        client: String,
        reply: oneshot::Sender<bool>,
    },
    CurrentGame {
        client: String,
        reply: oneshot::Sender<i32>,
    },
    Sessions {
        reply: oneshot::Sender<Vec<SessionView>>,
    },
    Counters {
        reply: oneshot::Sender<EngineCounters>,
    },
    Rtsp {
        session: SessionId,
        request: Request,
        reply: oneshot::Sender<Response>,
    },
    Ping {
        kind: MediaKind,
        datagram: Vec<u8>,
        src: SocketAddr,
    },
    Enet(EnetEvent),
    WorkerReady {
        instance: u64,
        result: Result<Arc<Worker>, String>,
    },
    WorkerExited {
        instance: u64,
        exit: WorkerExit,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    PlayerJoin {
        join: Box<PlayerJoin>,
        reply: oneshot::Sender<Result<PlayerJoined, PlayerRefusal>>,
    },
    PlayerEnd {
        session: SessionId,
        reason: EndReason,
    },
}

/// Adds one session's counters to the engine totals.
fn add_session_stats(c: &mut EngineCounters, st: &SessionStats) {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    c.frames_sent += get(&st.frames_sent);
    c.frames_dropped += get(&st.frames_dropped);
    for (reason, v) in [
        ("lagged", &st.frames_dropped_lagged),
        ("awaiting_keyframe", &st.frames_dropped_awaiting_keyframe),
        ("unpacketizable", &st.frames_dropped_unpacketizable),
    ] {
        *c.frames_dropped_by_reason.entry(reason).or_insert(0) += get(v);
    }
    c.max_video_queue_depth = c.max_video_queue_depth.max(get(&st.video_queue_depth));
    c.video_queue_bytes += get(&st.video_queue_bytes);
    c.bytes_sent += get(&st.bytes_sent);
    c.datagrams_sent += get(&st.datagrams_sent);
    c.datagrams_fault_dropped += get(&st.datagrams_fault_dropped);
    c.audio_packets_sent += get(&st.audio_packets_sent);
    c.input_events += get(&st.input_events);
    c.control_errors += get(&st.control_errors);
}

/// Adds one player's counters to the RTSP totals.
fn add_player_stats(c: &mut RtspCounters, st: &SessionStats) {
    c.packets_sent += st.datagrams_sent.load(Ordering::Relaxed);
    c.bytes_sent += st.bytes_sent.load(Ordering::Relaxed);
    c.frames_dropped += st.frames_dropped.load(Ordering::Relaxed);
}

/// Every app kind of this build streams (the worker reports what it cannot start).
fn check_streamable(app: &App) -> Result<(), LaunchError> {
    match app.kind {
        AppKind::TestPattern { .. }
        | AppKind::Process { .. }
        | AppKind::Docker { .. }
        | AppKind::Source { .. } => Ok(()),
    }
}

fn source_of(app: &App) -> Source {
    match &app.kind {
        AppKind::TestPattern { tone_hz } => Source::TestPattern { tone_hz: *tone_hz },
        AppKind::Process {
            command,
            args,
            env,
            working_dir,
        } => Source::Desktop(howl_media::protocol::DesktopApp {
            command: command.clone(),
            args: args.clone(),
            env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            working_dir: working_dir.clone(),
            container: None,
        }),
        AppKind::Docker {
            image,
            command,
            env,
            mounts,
            network,
        } => Source::Desktop(howl_media::protocol::DesktopApp {
            command: command.first().cloned().unwrap_or_default(),
            args: command.iter().skip(1).cloned().collect(),
            env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            working_dir: None,
            container: Some(howl_media::protocol::ContainerSpec {
                image: image.clone(),
                mounts: mounts.clone(),
                network: network.clone(),
            }),
        }),
        AppKind::Source { uri } => Source::Uri { uri: uri.clone() },
    }
}

/// Turns a URI source's reports into events and counters, until its worker ends. Each change
/// the watch shows is one event; losses and recoveries coalesced between two looks (a source
/// flapping faster than this task runs) still reach the counters.
async fn watch_source(
    mut status: watch::Receiver<crate::worker::SourceStatus>,
    mut exit: watch::Receiver<WorkerExit>,
    events: crate::events::EventBus,
    audience: Audience,
    app: String,
    lobby_id: Option<u64>,
    [losses, recoveries]: [Arc<AtomicU64>; 2],
) {
    let mut seen = crate::worker::SourceStatus::default();
    loop {
        tokio::select! {
            r = status.changed() => if r.is_err() { return },
            r = exit.changed() => {
                if r.is_err() || *exit.borrow() != WorkerExit::Running {
                    return;
                }
                continue;
            }
        }
        let now = status.borrow_and_update().clone();
        losses.fetch_add(now.losses.saturating_sub(seen.losses), Ordering::Relaxed);
        recoveries.fetch_add(
            now.recoveries.saturating_sub(seen.recoveries),
            Ordering::Relaxed,
        );
        match (&seen.down, &now.down) {
            (_, Some(reason)) if now.losses > seen.losses => events.publish(
                audience,
                Event::SourceLost {
                    app: app.clone(),
                    lobby_id,
                    reason: reason.clone(),
                },
            ),
            (_, None) if now.recoveries > seen.recoveries => events.publish(
                audience,
                Event::SourceRestored {
                    app: app.clone(),
                    lobby_id,
                },
            ),
            _ => {}
        }
        seen = now;
    }
}

/// The audio layouts offered in DESCRIBE: exactly what the worker's Opus encoder produces
/// (`OpusConfig::for_channels`), so the client's decoder is set up for the real stream.
/// Surround is offered in normal quality only; the worker encodes no high-quality layout.
fn surround_offer() -> Vec<howl_proto::sdp::SurroundOffer> {
    use howl_media::protocol::OpusConfig;
    use howl_proto::sdp::{OpusMultistream, SurroundOffer};
    let mut offers = vec![SurroundOffer::stereo()];
    for channels in [6u8, 8] {
        let layout = OpusConfig::for_channels(channels).and_then(|c| {
            OpusMultistream::new(channels, c.streams, c.coupled_streams, &c.mapping).ok()
        });
        match layout {
            Some(normal) => offers.push(SurroundOffer {
                normal,
                high_quality: None,
            }),
            None => tracing::warn!(channels, "no Opus layout for this channel count"),
        }
    }
    offers
}

/// Handle to the engine.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    tx: mpsc::Sender<Cmd>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Payloads carry keys; never print them.
        f.write_str("Cmd")
    }
}

impl EngineHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        let fut = async {
            self.tx.send(make(reply)).await.ok()?;
            rx.await.ok()
        };
        tokio::time::timeout(ENGINE_REPLY_DEADLINE, fut)
            .await
            .ok()
            .flatten()
    }

    /// Launches `app_id`: a lobby with that id is joined; otherwise `app` (from the catalogue)
    /// is started privately for the client.
    pub async fn launch(
        &self,
        app_id: i32,
        app: Option<App>,
        input: LaunchInput,
    ) -> Result<String, LaunchError> {
        self.ask(|reply| Cmd::Launch {
            app_id,
            app,
            input,
            reply,
        })
        .await
        .unwrap_or(Err(LaunchError::Unavailable))
    }

    pub async fn create_lobby(
        &self,
        spec: LobbySpec,
        app: Option<App>,
    ) -> Result<LobbyView, LobbyError> {
        self.ask(|reply| Cmd::CreateLobby { spec, app, reply })
            .await
            .unwrap_or(Err(LobbyError::Unavailable))
    }

    pub async fn lobbies(&self) -> Vec<LobbyView> {
        self.ask(|reply| Cmd::Lobbies { reply })
            .await
            .unwrap_or_default()
    }

    /// Replaces the list of clients allowed to join (empty: every paired client).
    pub async fn set_lobby_clients(
        &self,
        id: u64,
        clients: Vec<String>,
    ) -> Result<LobbyView, LobbyError> {
        self.ask(|reply| Cmd::SetLobbyClients { id, clients, reply })
            .await
            .unwrap_or(Err(LobbyError::Unavailable))
    }

    pub async fn workers(&self) -> Option<Vec<WorkerView>> {
        self.ask(|reply| Cmd::Workers { reply }).await
    }

    pub async fn stop_lobby(&self, id: u64) -> Result<(), LobbyError> {
        self.ask(|reply| Cmd::StopLobby { id, reply })
            .await
            .unwrap_or(Err(LobbyError::Unavailable))
    }

    /// Lobbies `client` may join, as (app id, title) for its app list.
    pub async fn lobby_apps(&self, client: &str) -> Vec<(i32, String)> {
        let client = client.to_owned();
        self.ask(|reply| Cmd::LobbyApps { client, reply })
            .await
            .unwrap_or_default()
    }

    /// Ends one session (reason: API stop). False when there was none.
    pub async fn stop_session(&self, id: u64) -> bool {
        self.ask(|reply| Cmd::StopSession { id, reply })
            .await
            .unwrap_or(false)
    }

    pub async fn resume(&self, input: LaunchInput) -> Result<String, LaunchError> {
        self.ask(|reply| Cmd::Resume { input, reply })
            .await
            .unwrap_or(Err(LaunchError::Unavailable))
    }

    /// Ends the client's session and app. True when something was running.
    pub async fn cancel(&self, client: &str) -> bool {
        let client = client.to_owned();
        self.ask(|reply| Cmd::Cancel { client, reply })
            .await
            .unwrap_or(false)
    }

    pub async fn current_game(&self, client: &str) -> i32 {
        let client = client.to_owned();
        self.ask(|reply| Cmd::CurrentGame { client, reply })
            .await
            .unwrap_or(0)
    }

    pub async fn counters(&self) -> Option<EngineCounters> {
        self.ask(|reply| Cmd::Counters { reply }).await
    }

    pub async fn sessions(&self) -> Vec<SessionView> {
        self.ask(|reply| Cmd::Sessions { reply })
            .await
            .unwrap_or_default()
    }

    pub async fn rtsp(&self, session: SessionId, request: Request) -> Option<Response> {
        self.ask(|reply| Cmd::Rtsp {
            session,
            request,
            reply,
        })
        .await
    }

    /// Non-blocking: a ping that does not fit is dropped (the next comes in 500 ms).
    pub fn ping(&self, kind: MediaKind, datagram: &[u8], src: SocketAddr) {
        let _ = self.tx.try_send(Cmd::Ping {
            kind,
            datagram: datagram.to_vec(),
            src,
        });
    }

    pub async fn enet(&self, ev: EnetEvent) {
        let _ = self.tx.send(Cmd::Enet(ev)).await;
    }

    /// Adds an RTSP player to the producer its path names (starting an `/app/` producer if
    /// none runs); the player is a fan-out viewer like a Moonlight session.
    pub async fn player_join(&self, join: PlayerJoin) -> Result<PlayerJoined, PlayerRefusal> {
        let join = Box::new(join);
        self.ask(|reply| Cmd::PlayerJoin { join, reply })
            .await
            .unwrap_or(Err(PlayerRefusal::Unavailable(
                "the streaming engine did not answer in time".into(),
            )))
    }

    /// Ends a player's session through the engine's one end path. Waits for queue room
    /// (bounded): an end must not be lost, or the viewer would be counted until its deadline.
    pub async fn player_end(&self, session: SessionId, reason: EndReason) {
        let _ = tokio::time::timeout(
            ENGINE_REPLY_DEADLINE,
            self.tx.send(Cmd::PlayerEnd { session, reason }),
        )
        .await;
    }

    /// Ends every session (clients are told) and stops every worker; bounded by the caller.
    pub async fn shutdown(&self) {
        let _ = self.ask(|reply| Cmd::Shutdown { reply }).await;
    }
}

/// Live counters of one session, shared with its sender tasks.
#[derive(Debug, Default)]
pub struct SessionStats {
    pub frames_sent: AtomicU64,
    pub frames_dropped: AtomicU64,
    /// Frames skipped because this viewer fell behind the producer's fan-out.
    pub frames_dropped_lagged: AtomicU64,
    /// Deltas skipped while waiting for a keyframe (after joining or lagging).
    pub frames_dropped_awaiting_keyframe: AtomicU64,
    /// Frames too large for the packetizer.
    pub frames_dropped_unpacketizable: AtomicU64,
    /// Frames this viewer is behind the producer (gauge).
    pub video_queue_depth: AtomicU64,
    /// Bytes of those frames (gauge; see `worker::VideoBytes`).
    pub video_queue_bytes: AtomicU64,
    pub datagrams_sent: AtomicU64,
    /// Video and audio payload bytes sent to this client.
    pub bytes_sent: AtomicU64,
    pub datagrams_fault_dropped: AtomicU64,
    pub audio_packets_sent: AtomicU64,
    pub input_events: AtomicU64,
    pub control_messages: AtomicU64,
    pub control_errors: AtomicU64,
    /// Latest ENet round-trip time in ms; 0 until the first report.
    pub rtt_ms: AtomicU64,
}

/// A shared producer created through the API.
struct Lobby {
    name: String,
    /// The id clients launch to join.
    app_id: i32,
    clients: Vec<String>,
    stop_when_everyone_leaves: bool,
    idle_timeout: Duration,
    owner: Option<u64>,
}

struct Instance {
    id: u64,
    /// The client that launched a private instance; empty for a lobby.
    client: String,
    lobby: Option<Lobby>,
    app: App,
    worker: Option<Arc<Worker>>,
    /// Published to sender tasks: they (re)subscribe when it changes.
    worker_tx: watch::Sender<Option<Arc<Worker>>>,
    starting: bool,
    params: Option<StreamParams>,
    /// Sessions watching this producer (at most one for a private instance).
    viewers: std::collections::BTreeSet<SessionId>,
    linger_until: Option<Instant>,
    /// The shared producer of an app for RTSP players (`/app/<name>`): it lingers, then
    /// stops, once its last player left.
    for_players: bool,
}

impl Instance {
    /// The tenant owning this producer (only lobbies have owners).
    fn owner(&self) -> Option<u64> {
        self.lobby.as_ref().and_then(|l| l.owner)
    }

    /// The lobby id the API shows, `None` for a private instance.
    fn lobby_id(&self) -> Option<u64> {
        self.lobby.as_ref().map(|_| self.id)
    }

    /// The id clients see for this producer: the lobby's entry, or the app's.
    fn listed_id(&self) -> i32 {
        self.lobby.as_ref().map(|l| l.app_id).unwrap_or(self.app.id)
    }
}

struct Session {
    id: SessionId,
    instance: u64,
    client: String,
    rikey: [u8; 16],
    rikeyid: i32,
    rtsp: MoonlightRtsp,
    played_at: Option<Instant>,
    enet_peer: Option<PeerId>,
    crypto: Option<ControlCrypto>,
    last_control: Option<Instant>,
    video_addr: watch::Sender<Option<SocketAddr>>,
    audio_addr: watch::Sender<Option<SocketAddr>>,
    cancel: CancellationToken,
    stats: Arc<SessionStats>,
    started_at: Instant,
}

/// An RTSP player: a fan-out viewer whose connection task (player.rs) does the media and the
/// protocol; the engine owns its lifetime (deadlines, the end path).
struct Player {
    id: SessionId,
    instance: u64,
    /// Who and from where, for logs and the API (`rtsp:admin@127.0.0.1:50000`).
    label: String,
    /// The URL path it watches, for the per-path counters.
    path: String,
    link: Arc<PlayerLink>,
    cancel: CancellationToken,
    stats: Arc<SessionStats>,
    started_at: Instant,
    codec: Codec,
}

struct Engine {
    settings: EngineSettings,
    players: HashMap<SessionId, Player>,
    /// Totals of the players that ended (live ones are added at read time).
    rtsp_retired: RtspCounters,
    self_tx: mpsc::WeakSender<Cmd>,
    enet: EnetSender,
    video_sock: Arc<UdpSocket>,
    audio_sock: Arc<UdpSocket>,
    next_id: u64,
    instances: HashMap<u64, Instance>,
    sessions: HashMap<SessionId, Session>,
    by_peer: HashMap<PeerId, SessionId>,
    router: Router<SessionId>,
    ended: HashMap<&'static str, u64>,
    /// Cumulative counters of sessions that ended (gauges and counts of live things stay 0).
    retired: EngineCounters,
    /// When to return freed heap to the OS, set when the engine became idle.
    trim_due: Option<Instant>,
    heap_trims: Arc<AtomicU64>,
    /// Losses and recoveries of URI sources, counted by each source's watcher task.
    source_losses: Arc<AtomicU64>,
    source_recoveries: Arc<AtomicU64>,
    trimmed_idle: Arc<std::sync::atomic::AtomicBool>,
}

/// Starts the engine and the UDP receive tasks for the shared media ports.
pub fn spawn(
    settings: EngineSettings,
    enet: EnetSender,
    mut enet_events: mpsc::Receiver<EnetEvent>,
    video_sock: Arc<UdpSocket>,
    audio_sock: Arc<UdpSocket>,
    shutdown: CancellationToken,
) -> (EngineHandle, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel(ENGINE_COMMAND_CAPACITY);
    let handle = EngineHandle { tx: tx.clone() };
    for (kind, sock) in [
        (MediaKind::Video, video_sock.clone()),
        (MediaKind::Audio, audio_sock.clone()),
    ] {
        let h = handle.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            loop {
                tokio::select! {
                    r = sock.recv_from(&mut buf) => match r {
                        Ok((n, src)) => h.ping(kind, &buf[..n], src),
                        // ICMP errors from earlier sends surface here; they are not fatal.
                        Err(_) => continue,
                    },
                    () = stop.cancelled() => break,
                }
            }
        });
    }
    {
        let h = handle.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    ev = enet_events.recv() => match ev {
                        Some(ev) => h.enet(ev).await,
                        None => break,
                    },
                    () = stop.cancelled() => break,
                }
            }
        });
    }
    let mut engine = Engine {
        settings,
        players: HashMap::new(),
        rtsp_retired: RtspCounters::default(),
        self_tx: tx.downgrade(),
        enet,
        video_sock,
        audio_sock,
        next_id: 1,
        instances: HashMap::new(),
        sessions: HashMap::new(),
        by_peer: HashMap::new(),
        router: Router::default(),
        ended: HashMap::new(),
        retired: EngineCounters::default(),
        trim_due: None,
        heap_trims: Arc::default(),
        source_losses: Arc::default(),
        source_recoveries: Arc::default(),
        trimmed_idle: Arc::default(),
    };
    drop(tx);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => engine.handle(cmd, Instant::now()),
                    None => break,
                },
                _ = tick.tick() => engine.tick(Instant::now()),
                () = shutdown.cancelled() => break,
            }
        }
        engine.end_everything(EndReason::Shutdown);
    });
    (handle, task)
}

/// Who sees events about something owned by `owner`.
fn audience(owner: Option<u64>) -> Audience {
    owner.map_or(Audience::AdminOnly, Audience::Tenant)
}

/// Lower-cased fingerprints, or why one is not a fingerprint.
fn check_fingerprints(list: &[String]) -> Result<Vec<String>, LobbyError> {
    list.iter()
        .map(|fp| {
            howl_core::clients::normalize_fingerprint(fp).ok_or_else(|| {
                LobbyError::Invalid(format!(
                    "client {fp:?} is not a 64-hex-digit certificate fingerprint"
                ))
            })
        })
        .collect()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    use aws_lc_rs::rand::SecureRandom;
    let mut b = [0u8; N];
    // The system RNG does not fail on Linux; an all-zero token would still be unique enough
    // for routing because registration refuses clashes.
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut b);
    b
}

impl Engine {
    fn handle(&mut self, cmd: Cmd, now: Instant) {
        match cmd {
            Cmd::Launch {
                app_id,
                app,
                input,
                reply,
            } => {
                let _ = reply.send(self.launch(app_id, app, input, now));
            }
            Cmd::CreateLobby { spec, app, reply } => {
                let _ = reply.send(self.create_lobby(spec, app));
            }
            Cmd::Lobbies { reply } => {
                let _ = reply.send(self.lobby_views());
            }
            Cmd::StopLobby { id, reply } => {
                let r = match self.instances.get(&id) {
                    Some(i) if i.lobby.is_some() => {
                        self.stop_instance(id, EndReason::ApiStop);
                        Ok(())
                    }
                    _ => Err(LobbyError::NotFound(id)),
                };
                let _ = reply.send(r);
            }
            Cmd::SetLobbyClients { id, clients, reply } => {
                let _ = reply.send(self.set_lobby_clients(id, clients));
            }
            Cmd::Workers { reply } => {
                let _ = reply.send(self.worker_views(now));
            }
            Cmd::LobbyApps { client, reply } => {
                let apps = self
                    .instances
                    .values()
                    .filter_map(|i| i.lobby.as_ref())
                    .filter(|l| l.clients.is_empty() || l.clients.contains(&client))
                    .map(|l| (l.app_id, l.name.clone()))
                    .collect();
                let _ = reply.send(apps);
            }
            Cmd::StopSession { id, reply } => {
                let sid = SessionId(id);
                let found = self.sessions.contains_key(&sid) || self.players.contains_key(&sid);
                if found {
                    self.end_session(sid, EndReason::ApiStop, now);
                }
                let _ = reply.send(found);
            }
            Cmd::Resume { input, reply } => {
                let _ = reply.send(self.resume(input, now));
            }
            Cmd::Cancel { client, reply } => {
                let found = self.cancel(&client);
                let _ = reply.send(found);
            }
            Cmd::CurrentGame { client, reply } => {
                // The app the client watches (a lobby's id while it views one), else its own
                // running app: what makes clients /resume instead of /launch.
                let watching = self
                    .sessions
                    .values()
                    .find(|s| s.client == client)
                    .and_then(|s| self.instances.get(&s.instance))
                    .map(Instance::listed_id);
                let own = self
                    .instance_of(&client)
                    .and_then(|i| self.instances.get(&i))
                    .map(|i| i.app.id);
                let _ = reply.send(watching.or(own).unwrap_or(0));
            }
            Cmd::Sessions { reply } => {
                let _ = reply.send(self.views(now));
            }
            Cmd::Counters { reply } => {
                let _ = reply.send(self.counters());
            }
            Cmd::Rtsp {
                session,
                request,
                reply,
            } => {
                let _ = reply.send(self.rtsp(session, request, now));
            }
            Cmd::Ping {
                kind,
                datagram,
                src,
            } => self.ping(kind, &datagram, src),
            Cmd::Enet(ev) => self.enet_event(ev, now),
            Cmd::WorkerReady { instance, result } => self.worker_ready(instance, result),
            Cmd::WorkerExited { instance, exit } => self.worker_exited(instance, exit),
            Cmd::Shutdown { reply } => {
                self.end_everything(EndReason::Shutdown);
                let _ = reply.send(());
            }
            Cmd::PlayerJoin { join, reply } => {
                let _ = reply.send(self.player_join(*join, now));
            }
            Cmd::PlayerEnd { session, reason } => {
                if self.players.contains_key(&session) {
                    self.end_session(session, reason, now);
                }
            }
        }
    }

    fn session_url(local_ip: IpAddr, port: u16) -> String {
        match local_ip {
            IpAddr::V4(v4) => format!("rtsp://{v4}:{port}"),
            IpAddr::V6(v6) => format!("rtsp://[{v6}]:{port}"),
        }
    }

    /// Binds this launch's own RTSP listener. Each launch gets its own port because the first
    /// RTSP requests carry nothing that tells two clients on one address apart (no session id
    /// until SETUP answers); the port in `sessionUrl0` does.
    fn bind_rtsp(&self) -> Result<tokio::net::TcpListener, LaunchError> {
        let base = self.settings.rtsp_port;
        let ports: Vec<u16> = if base == 0 {
            vec![0]
        } else {
            (0..self.settings.rtsp_port_count.max(1))
                .filter_map(|i| base.checked_add(i))
                .collect()
        };
        for port in ports {
            let Ok(l) =
                std::net::TcpListener::bind(SocketAddr::new(self.settings.bind_address, port))
            else {
                continue;
            };
            if l.set_nonblocking(true).is_err() {
                continue;
            }
            if let Ok(l) = tokio::net::TcpListener::from_std(l) {
                return Ok(l);
            }
        }
        Err(LaunchError::Unsupported(format!(
            "no free RTSP port in {base}..{}",
            u32::from(base) + u32::from(self.settings.rtsp_port_count)
        )))
    }

    fn launch(
        &mut self,
        app_id: i32,
        app: Option<App>,
        input: LaunchInput,
        now: Instant,
    ) -> Result<String, LaunchError> {
        if let Some(lobby) = self
            .instances
            .values()
            .find(|i| i.lobby.as_ref().is_some_and(|l| l.app_id == app_id))
            .map(|i| i.id)
        {
            return self.join_lobby(lobby, input, now);
        }
        let Some(app) = app else {
            return Err(LaunchError::UnknownApp(app_id));
        };
        check_streamable(&app)?;
        // A client runs one app of its own at a time; launching again replaces it.
        if let Some(old) = self.instance_of(&input.client) {
            self.stop_instance(old, EndReason::ClientQuit);
        }
        let id = self.next_id;
        self.next_id += 1;
        let (worker_tx, _) = watch::channel(None);
        tracing::info!(client = %crate::core_task::short(&input.client), peer = %input.peer_ip, app = %app.title, instance = id, "launch");
        self.instances.insert(
            id,
            Instance {
                id,
                client: input.client.clone(),
                lobby: None,
                app,
                worker: None,
                worker_tx,
                starting: false,
                params: None,
                viewers: Default::default(),
                linger_until: None,
                for_players: false,
            },
        );
        self.new_session(id, input, now)
    }

    fn join_lobby(
        &mut self,
        id: u64,
        input: LaunchInput,
        now: Instant,
    ) -> Result<String, LaunchError> {
        let Some(inst) = self.instances.get(&id) else {
            return Err(LaunchError::UnknownApp(0));
        };
        let Some(lobby) = &inst.lobby else {
            return Err(LaunchError::UnknownApp(0));
        };
        if !lobby.clients.is_empty() && !lobby.clients.contains(&input.client) {
            return Err(LaunchError::NotAllowed(format!(
                "this client may not join lobby {:?}",
                lobby.name
            )));
        }
        if let (Some(p), Some((w, h, _fps))) = (&inst.params, input.mode)
            && (p.width, p.height) != (w, h)
        {
            return Err(LaunchError::WrongMode(format!(
                "lobby {:?} streams {}x{} at {} fps; set the client to that resolution to join",
                lobby.name, p.width, p.height, p.fps
            )));
        }
        // One stream per client and lobby: a rejoin replaces the old stream.
        let old: Vec<SessionId> = inst
            .viewers
            .iter()
            .filter(|s| {
                self.sessions
                    .get(s)
                    .is_some_and(|s| s.client == input.client)
            })
            .copied()
            .collect();
        for sid in old {
            self.end_session(sid, EndReason::Replaced, now);
        }
        tracing::info!(client = %crate::core_task::short(&input.client), lobby = id, "join lobby");
        self.new_session(id, input, now)
    }

    fn create_lobby(&mut self, spec: LobbySpec, app: Option<App>) -> Result<LobbyView, LobbyError> {
        let name = spec.name.trim().to_owned();
        if name.is_empty() || name.len() > 128 {
            return Err(LobbyError::Invalid(
                "name must be 1 to 128 characters".into(),
            ));
        }
        let Some(app) = app else {
            return Err(LobbyError::Invalid(format!("no app titled {:?}", spec.app)));
        };
        check_streamable(&app).map_err(|e| LobbyError::Invalid(e.to_string()))?;
        if self
            .instances
            .values()
            .any(|i| i.lobby.as_ref().is_some_and(|l| l.name == name))
        {
            return Err(LobbyError::Exists(name));
        }
        let codec = match spec.codec.as_deref().unwrap_or("h264") {
            "h264" => Codec::H264,
            "hevc" if self.settings.codecs.hevc => Codec::Hevc,
            "av1" if self.settings.codecs.av1 => Codec::Av1,
            other => {
                return Err(LobbyError::Invalid(format!(
                    "codec {other:?} is not available (h264{}{})",
                    if self.settings.codecs.hevc {
                        ", hevc"
                    } else {
                        ""
                    },
                    if self.settings.codecs.av1 {
                        ", av1"
                    } else {
                        ""
                    }
                )));
            }
        };
        let clients = check_fingerprints(&spec.clients)?;
        let params = StreamParams {
            width: spec.width,
            height: spec.height,
            fps: spec.fps,
            bitrate_kbps: spec.bitrate_kbps,
            codec,
            audio_channels: 2,
            audio_packet_ms: 5,
            source: source_of(&app),
            slices_per_frame: 1,
        };
        params
            .validate()
            .map_err(|e| LobbyError::Invalid(e.to_string()))?;
        let id = self.next_id;
        self.next_id += 1;
        let (worker_tx, _) = watch::channel(None);
        let lobby = Lobby {
            app_id: howl_core::apps::app_id_for_title(&format!("lobby\u{0}{name}")),
            name,
            clients,
            stop_when_everyone_leaves: spec.stop_when_everyone_leaves,
            idle_timeout: Duration::from_secs(spec.idle_timeout_secs.max(1)),
            owner: spec.owner,
        };
        tracing::info!(lobby = id, name = %lobby.name, app = %app.title, "lobby created");
        self.settings.events.publish(
            audience(lobby.owner),
            Event::LobbyCreated {
                id,
                name: lobby.name.clone(),
                app: app.title.clone(),
            },
        );
        self.instances.insert(
            id,
            Instance {
                id,
                client: String::new(),
                lobby: Some(lobby),
                app,
                worker: None,
                worker_tx,
                starting: false,
                params: None,
                viewers: Default::default(),
                linger_until: None,
                for_players: false,
            },
        );
        // The producer starts now and outlives its viewers.
        self.start_worker(id, params);
        self.lobby_views()
            .into_iter()
            .find(|l| l.id == id)
            .ok_or(LobbyError::NotFound(id))
    }

    fn lobby_views(&self) -> Vec<LobbyView> {
        let mut v: Vec<LobbyView> = self
            .instances
            .values()
            .filter_map(|i| {
                let l = i.lobby.as_ref()?;
                Some(LobbyView {
                    id: i.id,
                    name: l.name.clone(),
                    app_id: l.app_id,
                    app: i.app.title.clone(),
                    width: i.params.as_ref().map(|p| p.width).unwrap_or(0),
                    height: i.params.as_ref().map(|p| p.height).unwrap_or(0),
                    fps: i.params.as_ref().map(|p| p.fps).unwrap_or(0),
                    codec: i
                        .params
                        .as_ref()
                        .map(|p| p.codec.name().to_owned())
                        .unwrap_or_default(),
                    viewers: i.viewers.len(),
                    worker_pid: i.worker.as_ref().map(|w| w.pid),
                    producer_frame_counter: i
                        .worker
                        .as_ref()
                        .map(|w| w.stats.last_frame_counter.load(Ordering::Relaxed))
                        .unwrap_or(0),
                    clients: l.clients.clone(),
                    stop_when_everyone_leaves: l.stop_when_everyone_leaves,
                    idle_timeout_secs: l.idle_timeout.as_secs(),
                    tenant: l.owner,
                })
            })
            .collect();
        v.sort_by_key(|l| l.id);
        v
    }

    fn set_lobby_clients(
        &mut self,
        id: u64,
        clients: Vec<String>,
    ) -> Result<LobbyView, LobbyError> {
        let clients = check_fingerprints(&clients)?;
        let Some(l) = self.instances.get_mut(&id).and_then(|i| i.lobby.as_mut()) else {
            return Err(LobbyError::NotFound(id));
        };
        l.clients = clients;
        tracing::info!(
            lobby = id,
            allowed = l.clients.len(),
            "lobby membership changed"
        );
        self.lobby_views()
            .into_iter()
            .find(|l| l.id == id)
            .ok_or(LobbyError::NotFound(id))
    }

    fn worker_views(&self, now: Instant) -> Vec<WorkerView> {
        let mut v: Vec<WorkerView> = self
            .instances
            .values()
            .filter_map(|i| {
                let w = i.worker.as_ref()?;
                let last = Duration::from_millis(w.stats.last_heartbeat_ms.load(Ordering::Relaxed));
                let age = now.saturating_duration_since(w.started_at + last);
                Some(WorkerView {
                    pid: w.pid,
                    instance: i.id,
                    lobby_id: i.lobby_id(),
                    app: i.app.title.clone(),
                    state: if i.linger_until.is_some() {
                        "lingering"
                    } else {
                        "running"
                    },
                    viewers: i.viewers.len(),
                    last_heartbeat_ms_ago: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                    heartbeats: w.stats.heartbeats.load(Ordering::Relaxed),
                    video_frames: w.stats.video_frames.load(Ordering::Relaxed),
                    uptime_secs: now.saturating_duration_since(w.started_at).as_secs(),
                    tenant: i.owner(),
                })
            })
            .collect();
        v.sort_by_key(|w| w.instance);
        v
    }

    fn resume(&mut self, input: LaunchInput, now: Instant) -> Result<String, LaunchError> {
        let Some(inst) = self.instance_of(&input.client) else {
            return Err(LaunchError::NothingToResume);
        };
        tracing::info!(client = %crate::core_task::short(&input.client), instance = inst, "resume");
        self.new_session(inst, input, now)
    }

    /// The client's own (private) instance.
    fn instance_of(&self, client: &str) -> Option<u64> {
        self.instances
            .values()
            .find(|i| i.lobby.is_none() && i.client == client)
            .map(|i| i.id)
    }

    fn new_session(
        &mut self,
        instance: u64,
        input: LaunchInput,
        now: Instant,
    ) -> Result<String, LaunchError> {
        // A private instance has one stream: a second launch/resume replaces the first.
        let old: Vec<SessionId> = self
            .instances
            .get(&instance)
            .filter(|i| i.lobby.is_none())
            .map(|i| i.viewers.iter().copied().collect())
            .unwrap_or_default();
        for sid in old {
            self.end_session(sid, EndReason::Replaced, now);
        }
        let sid = SessionId(self.next_id);
        self.next_id += 1;
        let mut ping = PingPayload::from_random(random_bytes::<8>());
        let mut connect = u32::from_be_bytes(random_bytes::<4>());
        let mut tries = 0;
        while !self.router.register(*ping.as_bytes(), connect, sid) {
            tries += 1;
            if tries > 8 {
                return Err(LaunchError::Unsupported(
                    "cannot allocate session tokens".into(),
                ));
            }
            ping = PingPayload::from_random(random_bytes::<8>());
            connect = u32::from_be_bytes(random_bytes::<4>());
        }
        let offer = HostOffer {
            codecs: self.settings.codecs,
            feature_flags: 0,
            encryption_supported: EncryptionFlags::ALL,
            encryption_requested: EncryptionFlags::NONE,
            ref_pic_invalidation: false,
            surround: surround_offer(),
        };
        let params = MoonlightParams {
            offer,
            ports: self.settings.ports,
            ping_payload: ping,
            connect_data: connect,
            session_id: format!("{:016X}", u64::from_be_bytes(random_bytes::<8>())),
            encryption_required: EncryptionFlags::NONE,
            handshake_timeout: self.settings.rtsp_deadline,
        };
        let rtsp = match MoonlightRtsp::new(params, now) {
            Ok(r) => r,
            Err(e) => {
                self.router.unregister(&sid);
                return Err(LaunchError::Unsupported(e.to_string()));
            }
        };
        let listener = match self.bind_rtsp() {
            Ok(l) => l,
            Err(e) => {
                self.router.unregister(&sid);
                return Err(e);
            }
        };
        let rtsp_port = listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or(self.settings.rtsp_port);
        let cancel = CancellationToken::new();
        if let Some(tx) = self.self_tx.upgrade() {
            tokio::spawn(crate::rtsp::serve_session(
                listener,
                EngineHandle { tx },
                sid,
                cancel.clone(),
            ));
        }
        let (video_addr, _) = watch::channel(None);
        let (audio_addr, _) = watch::channel(None);
        self.sessions.insert(
            sid,
            Session {
                id: sid,
                instance,
                client: input.client.clone(),
                rikey: input.rikey,
                rikeyid: input.rikeyid,
                rtsp,
                played_at: None,
                enet_peer: None,
                crypto: None,
                last_control: None,
                video_addr,
                audio_addr,
                cancel,
                stats: Arc::new(SessionStats::default()),
                started_at: now,
            },
        );
        if let Some(inst) = self.instances.get_mut(&instance) {
            inst.viewers.insert(sid);
            inst.linger_until = None;
            self.settings.events.publish(
                audience(inst.owner()),
                Event::SessionStarted {
                    id: sid.0,
                    client: input.client.clone(),
                    app: inst.app.title.clone(),
                    lobby_id: inst.lobby_id(),
                },
            );
        }
        Ok(Self::session_url(input.local_ip, rtsp_port))
    }

    /// `/cancel`: stops the client's own app; in a lobby it only ends the client's stream
    /// (the lobby belongs to its operator).
    fn cancel(&mut self, client: &str) -> bool {
        let now = Instant::now();
        let lobby_sessions: Vec<SessionId> = self
            .sessions
            .values()
            .filter(|s| {
                s.client == client
                    && self
                        .instances
                        .get(&s.instance)
                        .is_some_and(|i| i.lobby.is_some())
            })
            .map(|s| s.id)
            .collect();
        let mut found = !lobby_sessions.is_empty();
        for sid in lobby_sessions {
            self.end_session(sid, EndReason::ClientQuit, now);
        }
        if let Some(inst) = self.instance_of(client) {
            self.stop_instance(inst, EndReason::ClientQuit);
            found = true;
        }
        found
    }

    fn counters(&self) -> EngineCounters {
        let mut c = EngineCounters {
            instances: self.instances.len(),
            lobbies: self
                .instances
                .values()
                .filter(|i| i.lobby.is_some())
                .count(),
            sessions: self.sessions.len() + self.players.len(),
            workers: self
                .instances
                .values()
                .filter(|i| i.worker.is_some())
                .count(),
            workers_starting: self.instances.values().filter(|i| i.starting).count(),
            viewers: self.instances.values().map(|i| i.viewers.len()).sum(),
            sessions_ended: self
                .ended
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            heap_trims: self.heap_trims.load(Ordering::Relaxed),
            sources_down: self
                .instances
                .values()
                .filter_map(|i| i.worker.as_ref())
                .filter(|w| w.stats.source.borrow().down.is_some())
                .count(),
            source_losses: self.source_losses.load(Ordering::Relaxed),
            source_recoveries: self.source_recoveries.load(Ordering::Relaxed),
            // Cleared whenever a trim is scheduled, set when it is done.
            heap_trimmed_since_idle: self.instances.is_empty()
                && self.trimmed_idle.load(Ordering::Relaxed),
            // Cumulative counters start from the sessions that ended; live ones add below.
            ..self.retired.clone()
        };
        for s in self.sessions.values() {
            add_session_stats(&mut c, &s.stats);
        }
        c.rtsp = self.rtsp_retired.clone();
        c.rtsp.players = self.players.len() as u64;
        for p in self.players.values() {
            add_session_stats(&mut c, &p.stats);
            add_player_stats(&mut c.rtsp, &p.stats);
            *c.rtsp.players_by_path.entry(p.path.clone()).or_insert(0) += 1;
        }
        for w in self.instances.values().filter_map(|i| i.worker.as_ref()) {
            c.frames_unwatched += w.stats.video_unwatched.load(Ordering::Relaxed);
        }
        c
    }

    fn views(&self, now: Instant) -> Vec<SessionView> {
        let mut v: Vec<SessionView> = self
            .sessions
            .values()
            .map(|s| {
                let inst = self.instances.get(&s.instance);
                let cfg = s.rtsp.stream_config();
                SessionView {
                    id: s.id,
                    client: s.client.clone(),
                    app: inst.map(|i| i.app.title.clone()).unwrap_or_default(),
                    width: cfg.map(|c| c.width).unwrap_or(0),
                    height: cfg.map(|c| c.height).unwrap_or(0),
                    fps: cfg.map(|c| c.fps).unwrap_or(0),
                    codec: cfg
                        .map(|c| format!("{:?}", c.codec).to_lowercase())
                        .unwrap_or_default(),
                    worker_pid: inst.and_then(|i| i.worker.as_ref()).map(|w| w.pid),
                    producer_frame_counter: inst
                        .and_then(|i| i.worker.as_ref())
                        .map(|w| w.stats.last_frame_counter.load(Ordering::Relaxed))
                        .unwrap_or(0),
                    frames_sent: s.stats.frames_sent.load(Ordering::Relaxed),
                    frames_dropped: s.stats.frames_dropped.load(Ordering::Relaxed),
                    video_queue_bytes: s.stats.video_queue_bytes.load(Ordering::Relaxed),
                    input_events: s.stats.input_events.load(Ordering::Relaxed),
                    lobby_id: inst.and_then(Instance::lobby_id),
                    bitrate_kbps: cfg.map(|c| c.bitrate.maximum_kbps).unwrap_or(0),
                    rtt_ms: match s.stats.rtt_ms.load(Ordering::Relaxed) {
                        0 => None,
                        v => Some(u32::try_from(v).unwrap_or(u32::MAX)),
                    },
                    uptime_secs: now.saturating_duration_since(s.started_at).as_secs(),
                    tenant: inst.and_then(Instance::owner),
                }
            })
            .collect();
        for p in self.players.values() {
            let inst = self.instances.get(&p.instance);
            let params = inst.and_then(|i| i.params.as_ref());
            v.push(SessionView {
                id: p.id,
                client: p.label.clone(),
                app: inst.map(|i| i.app.title.clone()).unwrap_or_default(),
                width: params.map(|c| c.width).unwrap_or(0),
                height: params.map(|c| c.height).unwrap_or(0),
                fps: params.map(|c| c.fps).unwrap_or(0),
                codec: p.codec.name().to_owned(),
                worker_pid: inst.and_then(|i| i.worker.as_ref()).map(|w| w.pid),
                producer_frame_counter: inst
                    .and_then(|i| i.worker.as_ref())
                    .map(|w| w.stats.last_frame_counter.load(Ordering::Relaxed))
                    .unwrap_or(0),
                frames_sent: p.stats.frames_sent.load(Ordering::Relaxed),
                frames_dropped: p.stats.frames_dropped.load(Ordering::Relaxed),
                video_queue_bytes: p.stats.video_queue_bytes.load(Ordering::Relaxed),
                input_events: 0,
                lobby_id: inst.and_then(Instance::lobby_id),
                bitrate_kbps: params.map(|c| c.bitrate_kbps).unwrap_or(0),
                rtt_ms: None,
                uptime_secs: now.saturating_duration_since(p.started_at).as_secs(),
                tenant: inst.and_then(Instance::owner),
            });
        }
        v.sort_by_key(|s| s.id);
        v
    }

    fn rtsp(&mut self, sid: SessionId, request: Request, now: Instant) -> Response {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return Response::for_request(&request, StatusCode::SESSION_NOT_FOUND);
        };
        let refusal = Response::for_request(&request, StatusCode::BAD_REQUEST);
        let mut resp = s.rtsp.handle(request, now);
        let mut events = Vec::new();
        while let Some(ev) = s.rtsp.poll_event() {
            events.push(ev);
        }
        for ev in events {
            match ev {
                RtspEvent::Announced(cfg) => {
                    if let Err(why) = self.announced(sid, cfg) {
                        tracing::info!(session = %sid, reason = %why, "ANNOUNCE refused");
                        resp = refusal.clone().with_header("X-Howl-Error", why.clone());
                        if let Some(s) = self.sessions.get_mut(&sid) {
                            s.rtsp.abort();
                        }
                        self.end_session(sid, EndReason::ClientMisbehaved { detail: why }, now);
                    }
                }
                RtspEvent::Play => self.play(sid, now),
                RtspEvent::Rejected { method, error } => {
                    tracing::info!(session = %sid, method = ?method, error = %error, "RTSP request refused");
                }
                RtspEvent::TimedOut => self.end_session(sid, EndReason::RtspDeadline, now),
            }
        }
        resp
    }

    /// ANNOUNCE accepted: start the private producer in the negotiated mode, or check that a
    /// lobby viewer asked for what the lobby's producer makes.
    fn announced(&mut self, sid: SessionId, cfg: StreamConfig) -> Result<(), String> {
        let Some(s) = self.sessions.get(&sid) else {
            return Ok(());
        };
        let inst_id = s.instance;
        let Some(inst) = self.instances.get_mut(&inst_id) else {
            return Ok(());
        };
        let codec = match cfg.codec {
            VideoCodec::H264 => Codec::H264,
            VideoCodec::Hevc => Codec::Hevc,
            VideoCodec::Av1 => Codec::Av1,
        };
        if let Some(lobby) = &inst.lobby {
            // Encode once: every viewer gets the producer's stream, so it must fit them all.
            if let Some(p) = &inst.params
                && ((p.width, p.height) != (cfg.width, cfg.height) || p.codec != codec)
            {
                return Err(format!(
                    "lobby {:?} streams {} {}x{}; the client asked for {} {}x{}",
                    lobby.name,
                    p.codec.name(),
                    p.width,
                    p.height,
                    codec.name(),
                    cfg.width,
                    cfg.height
                ));
            }
            return Ok(());
        }
        let params = StreamParams {
            width: cfg.width,
            height: cfg.height,
            fps: cfg.fps,
            bitrate_kbps: cfg.bitrate.configured_kbps.max(500),
            codec,
            audio_channels: cfg.audio.channels,
            audio_packet_ms: u8::try_from(cfg.audio.packet_duration_ms).unwrap_or(5),
            source: source_of(&inst.app),
            slices_per_frame: u8::try_from(cfg.slices_per_frame.clamp(1, 4)).unwrap_or(1),
        };
        if inst.worker.is_some() && inst.params.as_ref() == Some(&params) {
            return Ok(()); // resume with the same mode: keep the running producer
        }
        self.start_worker(inst_id, params);
        Ok(())
    }

    /// (Re)starts the instance's worker with `params`; the result arrives as `WorkerReady`.
    fn start_worker(&mut self, inst_id: u64, params: StreamParams) {
        let Some(inst) = self.instances.get_mut(&inst_id) else {
            return;
        };
        if let Some(w) = inst.worker.take() {
            w.stop();
        }
        inst.params = Some(params.clone());
        inst.starting = true;
        // send_replace: stored even while no sender task subscribes yet.
        inst.worker_tx.send_replace(None);
        let bin = self.settings.worker_bin.clone();
        let dir = self.settings.runtime_dir.clone();
        let tx = self.self_tx.clone();
        tokio::spawn(async move {
            let result = worker::spawn(&bin, &dir, params)
                .await
                .map(Arc::new)
                .map_err(|e| e.to_string());
            if let Some(tx) = tx.upgrade() {
                let _ = tx
                    .send(Cmd::WorkerReady {
                        instance: inst_id,
                        result,
                    })
                    .await;
            }
        });
    }

    fn worker_ready(&mut self, instance: u64, result: Result<Arc<Worker>, String>) {
        let Some(inst) = self.instances.get_mut(&instance) else {
            // The instance ended while its worker started: dropping the handle stops it.
            return;
        };
        inst.starting = false;
        match result {
            Ok(w) => {
                let mut exit = w.exit();
                let tx = self.self_tx.clone();
                tokio::spawn(async move {
                    let outcome = loop {
                        if exit.changed().await.is_err() {
                            break WorkerExit::Died("supervisor gone".into());
                        }
                        let v = exit.borrow().clone();
                        if v != WorkerExit::Running {
                            break v;
                        }
                    };
                    if let Some(tx) = tx.upgrade() {
                        let _ = tx
                            .send(Cmd::WorkerExited {
                                instance,
                                exit: outcome,
                            })
                            .await;
                    }
                });
                if matches!(inst.app.kind, AppKind::Source { .. }) {
                    tokio::spawn(watch_source(
                        w.source_status(),
                        w.exit(),
                        self.settings.events.clone(),
                        audience(inst.owner()),
                        inst.app.title.clone(),
                        inst.lobby_id(),
                        [self.source_losses.clone(), self.source_recoveries.clone()],
                    ));
                }
                self.settings.events.publish(
                    audience(inst.owner()),
                    Event::WorkerStarted {
                        pid: w.pid,
                        app: inst.app.title.clone(),
                        lobby_id: inst.lobby_id(),
                    },
                );
                inst.worker = Some(w.clone());
                inst.worker_tx.send_replace(Some(w));
            }
            Err(e) => {
                tracing::error!(instance, error = %e, "media worker failed to start");
                self.worker_died(instance, format!("failed to start: {e}"), e);
            }
        }
    }

    fn worker_exited(&mut self, instance: u64, exit: WorkerExit) {
        match exit {
            WorkerExit::Died(detail) => self.worker_died(instance, detail.clone(), detail),
            WorkerExit::AppExited(detail) => {
                self.stop_instance(instance, EndReason::AppExited { detail });
            }
            WorkerExit::Running | WorkerExit::Stopped => {}
        }
    }

    /// A worker died or never started: operators are told why, then its instance stops.
    fn worker_died(&mut self, instance: u64, reason: String, detail: String) {
        let Some(inst) = self.instances.get(&instance) else {
            return;
        };
        self.settings.events.publish(
            audience(inst.owner()),
            Event::WorkerDied {
                pid: inst.worker.as_ref().map(|w| w.pid),
                app: inst.app.title.clone(),
                lobby_id: inst.lobby_id(),
                reason,
            },
        );
        self.stop_instance(instance, EndReason::WorkerDied { detail });
    }

    fn play(&mut self, sid: SessionId, now: Instant) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        s.played_at = Some(now);
        let Some(cfg) = s.rtsp.stream_config().cloned() else {
            return;
        };
        let Some(inst) = self.instances.get(&s.instance) else {
            return;
        };
        let enc = cfg.ss_encryption_enabled;
        let settings = SenderSettings {
            packet_size: cfg.packet_size as usize,
            fec_percentage: self.settings.fec_percentage,
            min_required_fec_packets: cfg.min_required_fec_packets,
            video_key: enc.contains(EncryptionFlags::VIDEO).then_some(s.rikey),
            audio_key: (enc.contains(EncryptionFlags::AUDIO) || cfg.nv_feature_flags & 0x20 != 0)
                .then_some(s.rikey),
            rikeyid: s.rikeyid,
            audio_packet_ms: cfg.audio.packet_duration_ms,
            fault_drop_fraction: self.settings.fault_drop_fraction,
        };
        tracing::info!(session = %sid, width = cfg.width, height = cfg.height, fps = cfg.fps,
            codec = ?cfg.codec, video_encrypted = settings.video_key.is_some(),
            audio_encrypted = settings.audio_key.is_some(), "stream negotiated");
        media::spawn_video_sender(
            settings.clone(),
            self.video_sock.clone(),
            s.video_addr.subscribe(),
            inst.worker_tx.subscribe(),
            s.cancel.clone(),
            s.stats.clone(),
        );
        media::spawn_audio_sender(
            settings,
            self.audio_sock.clone(),
            s.audio_addr.subscribe(),
            inst.worker_tx.subscribe(),
            s.cancel.clone(),
            s.stats.clone(),
        );
    }

    fn ping(&mut self, kind: MediaKind, datagram: &[u8], src: SocketAddr) {
        let Some(sid) = self.router.route_ping(datagram).copied() else {
            return;
        };
        let Some(s) = self.sessions.get(&sid) else {
            return;
        };
        let slot = match kind {
            MediaKind::Video => &s.video_addr,
            MediaKind::Audio => &s.audio_addr,
        };
        if *slot.borrow() != Some(src) {
            tracing::debug!(session = %sid, ?kind, %src, "media destination learned from ping");
            // send_replace: audio pings start at SETUP, before the sender subscribes at PLAY.
            slot.send_replace(Some(src));
        }
    }

    fn enet_event(&mut self, ev: EnetEvent, now: Instant) {
        match ev {
            EnetEvent::Connected { peer, addr, data } => {
                let Some(sid) = self.router.route_connect(data).copied() else {
                    tracing::info!(%addr, "ENet connect with an unknown token; refusing");
                    self.enet
                        .send(EnetCommand::DisconnectLater { peer, data: 0 });
                    return;
                };
                let Some(s) = self.sessions.get_mut(&sid) else {
                    return;
                };
                match ControlCrypto::new(
                    s.rikey,
                    IvVariant::from_advertised(EncryptionFlags::ALL.0),
                ) {
                    Ok(c) => s.crypto = Some(c),
                    Err(e) => {
                        self.end_session(
                            sid,
                            EndReason::Internal {
                                detail: e.to_string(),
                            },
                            now,
                        );
                        return;
                    }
                }
                s.enet_peer = Some(peer);
                s.last_control = Some(now);
                self.by_peer.insert(peer, sid);
                self.enet.send(EnetCommand::SetTimeout {
                    peer,
                    limit: 2,
                    min_ms: 10_000,
                    max_ms: 10_000,
                });
                tracing::info!(session = %sid, %addr, "control stream connected");
            }
            EnetEvent::Received {
                peer,
                channel,
                data,
            } => {
                let Some(&sid) = self.by_peer.get(&peer) else {
                    return;
                };
                let Some(s) = self.sessions.get_mut(&sid) else {
                    return;
                };
                let Some(crypto) = s.crypto.as_ref() else {
                    return;
                };
                s.last_control = Some(now);
                match crypto.open(&data) {
                    Ok(msg) => {
                        s.stats.control_messages.fetch_add(1, Ordering::Relaxed);
                        self.control_message(sid, msg);
                    }
                    Err(e) => {
                        s.stats.control_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(session = %sid, channel, error = %e, "undecryptable control message");
                    }
                }
            }
            EnetEvent::Rtt { peer, rtt_ms } => {
                if let Some(s) = self
                    .by_peer
                    .get(&peer)
                    .and_then(|sid| self.sessions.get(sid))
                {
                    // Stored +1 so that 0 keeps meaning "no report yet".
                    s.stats
                        .rtt_ms
                        .store(u64::from(rtt_ms).max(1), Ordering::Relaxed);
                }
            }
            EnetEvent::Disconnected { peer, .. } => {
                if let Some(sid) = self.by_peer.remove(&peer) {
                    if let Some(s) = self.sessions.get_mut(&sid) {
                        s.enet_peer = None;
                    }
                    self.end_session(sid, EndReason::ClientDisconnected, now);
                }
            }
        }
    }

    fn control_message(&mut self, sid: SessionId, msg: ClientMessage) {
        let Some(s) = self.sessions.get(&sid) else {
            return;
        };
        let worker = self
            .instances
            .get(&s.instance)
            .and_then(|i| i.worker.clone());
        match msg {
            ClientMessage::RequestIdr | ClientMessage::InvalidateReferenceFrames { .. } => {
                // A keyframe answers both; we do not advertise reference invalidation.
                if let Some(w) = worker {
                    w.request_keyframe();
                }
            }
            ClientMessage::Input(bytes) => {
                s.stats.input_events.fetch_add(1, Ordering::Relaxed);
                match InputEvent::decode(&bytes) {
                    Ok(ev) => {
                        tracing::trace!(session = %sid, event = ?ev, "input");
                        // Each viewer injects as itself: the worker keeps held keys per viewer.
                        if let (Some(w), Some(x)) = (worker, crate::desktop_input::to_desktop(&ev))
                        {
                            w.input(sid.0, x);
                        }
                    }
                    Err(e) => tracing::debug!(session = %sid, error = %e, "bad input packet"),
                }
            }
            _ => {}
        }
    }

    fn tick(&mut self, now: Instant) {
        if !self.instances.is_empty() {
            self.trim_due = None;
        } else if self.trim_due.is_some_and(|t| now >= t) {
            self.trim_due = None;
            // RSS returns to its baseline between bursts (seed 002) instead of staying at the
            // high-water mark in glibc's per-thread arenas.
            let trims = self.heap_trims.clone();
            let done = self.trimmed_idle.clone();
            tokio::task::spawn_blocking(move || {
                crate::heap::release_freed();
                trims.fetch_add(1, Ordering::Relaxed);
                done.store(true, Ordering::Relaxed);
            });
        }
        let mut to_end = Vec::new();
        for s in self.sessions.values_mut() {
            s.rtsp.handle_timeout(now);
            while let Some(ev) = s.rtsp.poll_event() {
                if ev == RtspEvent::TimedOut {
                    to_end.push((s.id, EndReason::RtspDeadline));
                }
            }
            match (s.played_at, s.enet_peer, s.last_control) {
                (Some(p), None, _) if now.duration_since(p) > self.settings.connect_deadline => {
                    to_end.push((s.id, EndReason::NeverConnected));
                }
                (_, Some(_), Some(last))
                    if now.duration_since(last) > self.settings.control_silence =>
                {
                    to_end.push((s.id, EndReason::ControlPingSilence));
                }
                _ => {}
            }
        }
        // Player deadlines: the connection's protocol state computes them, the engine enforces
        // them, so a wedged or vanished connection task cannot keep a viewer alive.
        for p in self.players.values() {
            if let Some(reason) = p.link.expired(now) {
                to_end.push((p.id, reason));
            }
        }
        for (sid, reason) in to_end {
            self.end_session(sid, reason, now);
        }
        let lingering: Vec<u64> = self
            .instances
            .values()
            .filter(|i| i.viewers.is_empty() && i.linger_until.is_some_and(|t| now >= t))
            .map(|i| i.id)
            .collect();
        for id in lingering {
            self.stop_instance(id, EndReason::IdleTimeout);
        }
    }

    /// The one way a session ends.
    fn end_session(&mut self, sid: SessionId, reason: EndReason, now: Instant) {
        if let Some(p) = self.players.remove(&sid) {
            self.end_player(p, reason, now);
            return;
        }
        let Some(mut s) = self.sessions.remove(&sid) else {
            return;
        };
        s.cancel.cancel();
        self.router.unregister(&sid);
        if let Some(peer) = s.enet_peer.take() {
            self.by_peer.remove(&peer);
            if reason.client_listens() {
                let code = match &reason {
                    EndReason::ClientQuit
                    | EndReason::Replaced
                    | EndReason::ApiStop
                    | EndReason::Shutdown
                    | EndReason::AppExited { .. }
                    | EndReason::IdleTimeout => TerminationReason::Graceful,
                    // E_FAIL: the client shows an error with this code.
                    _ => TerminationReason::Other(0x8000_4005),
                };
                if let Some(c) = s.crypto.as_mut()
                    && let Ok(bytes) = c.seal(&HostMessage::Termination(code))
                {
                    self.enet.send(EnetCommand::Send {
                        peer,
                        channel: howl_proto::control::HOST_SEND_CHANNEL,
                        data: bytes,
                    });
                }
            }
            self.enet
                .send(EnetCommand::DisconnectLater { peer, data: 0 });
        }
        *self.ended.entry(reason.label()).or_insert(0) += 1;
        s.stats.video_queue_depth.store(0, Ordering::Relaxed);
        s.stats.video_queue_bytes.store(0, Ordering::Relaxed);
        add_session_stats(&mut self.retired, &s.stats);
        tracing::info!(session = %sid, client = %crate::core_task::short(&s.client), reason = %reason,
            frames_sent = s.stats.frames_sent.load(Ordering::Relaxed), "session ended");
        {
            let inst = self.instances.get(&s.instance);
            self.settings.events.publish(
                audience(inst.and_then(Instance::owner)),
                Event::SessionEnded {
                    id: sid.0,
                    client: s.client.clone(),
                    app: inst.map(|i| i.app.title.clone()).unwrap_or_default(),
                    lobby_id: inst.and_then(Instance::lobby_id),
                    reason: reason.to_string(),
                },
            );
        }
        self.leave_instance(sid, s.instance, reason, now);
    }

    /// A player's part of the end path: its connection closes (the task sees `cancel`).
    fn end_player(&mut self, p: Player, reason: EndReason, now: Instant) {
        p.cancel.cancel();
        *self.ended.entry(reason.label()).or_insert(0) += 1;
        *self
            .rtsp_retired
            .sessions_ended
            .entry(reason.label().to_owned())
            .or_insert(0) += 1;
        p.stats.video_queue_depth.store(0, Ordering::Relaxed);
        p.stats.video_queue_bytes.store(0, Ordering::Relaxed);
        add_session_stats(&mut self.retired, &p.stats);
        add_player_stats(&mut self.rtsp_retired, &p.stats);
        tracing::info!(session = %p.id, player = %p.label, path = %p.path, reason = %reason,
            frames_sent = p.stats.frames_sent.load(Ordering::Relaxed), "player session ended");
        {
            let inst = self.instances.get(&p.instance);
            self.settings.events.publish(
                audience(inst.and_then(Instance::owner)),
                Event::SessionEnded {
                    id: p.id.0,
                    client: p.label.clone(),
                    app: inst.map(|i| i.app.title.clone()).unwrap_or_default(),
                    lobby_id: inst.and_then(Instance::lobby_id),
                    reason: reason.to_string(),
                },
            );
        }
        self.leave_instance(p.id, p.instance, reason, now);
    }

    /// Removes a viewer from its producer and applies the producer's stop policy.
    fn leave_instance(&mut self, sid: SessionId, instance: u64, reason: EndReason, now: Instant) {
        let Some(inst) = self.instances.get_mut(&instance) else {
            return;
        };
        inst.viewers.remove(&sid);
        // No stuck keys: whatever this viewer held on the desktop is released.
        if let Some(w) = &inst.worker {
            w.release_input(sid.0);
        }
        let empty = inst.viewers.is_empty();
        if inst.for_players {
            // Players come and go (a probe, a reconnect): keep the producer a while.
            if empty {
                inst.linger_until = Some(now + self.settings.linger);
            }
            return;
        }
        match &inst.lobby {
            // Producers outlive viewers: a lobby only stops by policy, after its idle timeout.
            Some(l) => {
                if empty && l.stop_when_everyone_leaves {
                    inst.linger_until = Some(now + l.idle_timeout);
                }
            }
            None => match reason {
                // The client went away without quitting: keep the app for /resume.
                EndReason::ClientDisconnected
                | EndReason::ControlTimeout
                | EndReason::ControlPingSilence => {
                    inst.linger_until = Some(now + self.settings.linger);
                }
                // A newer stream of the same client took over; the app keeps running.
                EndReason::Replaced => {}
                _ => {
                    let id = inst.id;
                    self.stop_instance(id, reason);
                }
            },
        }
    }

    /// Ends every viewer's session and stops the worker.
    fn stop_instance(&mut self, instance: u64, reason: EndReason) {
        let now = Instant::now();
        // Removed first, so the sessions ended below find no instance to act on.
        let Some(inst) = self.instances.remove(&instance) else {
            return;
        };
        for sid in &inst.viewers {
            self.end_session(*sid, reason.clone(), now);
        }
        if let Some(w) = &inst.worker {
            w.stop();
        }
        inst.worker_tx.send_replace(None);
        tracing::info!(instance, app = %inst.app.title, reason = %reason, "app stopped");
        if self.instances.is_empty() {
            // Idle now. Once the worker supervisors and sender tasks have let go of their
            // buffers, hand the freed heap back to the OS (see `tick`).
            self.trim_due = Some(now + HEAP_TRIM_DELAY);
            self.trimmed_idle.store(false, Ordering::Relaxed);
        }
        if let Some(l) = &inst.lobby {
            self.settings.events.publish(
                audience(l.owner),
                Event::LobbyStopped {
                    id: instance,
                    name: l.name.clone(),
                    reason: reason.to_string(),
                },
            );
        }
    }

    /// Attaches an RTSP player to the producer its path names, starting an `/app/` producer
    /// if none runs.
    fn player_join(
        &mut self,
        join: PlayerJoin,
        now: Instant,
    ) -> Result<PlayerJoined, PlayerRefusal> {
        use howl_proto::player::StreamTarget;
        let PlayerJoin {
            target,
            principal,
            peer,
            app,
            link,
        } = join;
        let (inst_id, path) = match &target {
            StreamTarget::Lobby { name } => {
                // A tenant sees only its own lobbies: others are "not found", as in the API.
                let id = self
                    .instances
                    .values()
                    .find(|i| {
                        i.lobby.as_ref().is_some_and(|l| l.name == *name)
                            && principal.may_access(i.owner())
                    })
                    .map(|i| i.id)
                    .ok_or(PlayerRefusal::NotFound)?;
                (id, format!("/lobby/{name}"))
            }
            StreamTarget::App { name, video } => {
                let app = app
                    .filter(|a| principal.may_access(a.owner))
                    .ok_or(PlayerRefusal::NotFound)?;
                check_streamable(&app).map_err(|e| PlayerRefusal::Unavailable(e.to_string()))?;
                // Encode once: every player of the app shares one producer; the first
                // player's URL chose its mode.
                let running = self
                    .instances
                    .values()
                    .find(|i| i.for_players && i.app.id == app.id)
                    .map(|i| i.id);
                let id = match running {
                    Some(id) => id,
                    None => self.start_player_app(app, *video)?,
                };
                (id, format!("/app/{name}"))
            }
        };
        let Some(inst) = self.instances.get_mut(&inst_id) else {
            return Err(PlayerRefusal::NotFound);
        };
        let Some(params) = inst.params.clone() else {
            return Err(PlayerRefusal::Unavailable(
                "the producer has not started".into(),
            ));
        };
        if !matches!(params.codec, Codec::H264 | Codec::Hevc) {
            return Err(PlayerRefusal::Unavailable(format!(
                "{} streams cannot be sent to RTSP players",
                params.codec.name()
            )));
        }
        let sid = SessionId(self.next_id);
        self.next_id += 1;
        let cancel = CancellationToken::new();
        let stats = Arc::new(SessionStats::default());
        inst.viewers.insert(sid);
        inst.linger_until = None;
        let label = format!("rtsp:{}@{peer}", principal.label());
        self.settings.events.publish(
            audience(inst.owner()),
            Event::SessionStarted {
                id: sid.0,
                client: label.clone(),
                app: inst.app.title.clone(),
                lobby_id: inst.lobby_id(),
            },
        );
        let joined = PlayerJoined {
            session: sid,
            worker: inst.worker_tx.subscribe(),
            cancel: cancel.clone(),
            stats: stats.clone(),
            params: params.clone(),
            title: inst.app.title.clone(),
        };
        self.players.insert(
            sid,
            Player {
                id: sid,
                instance: inst_id,
                label,
                path,
                link,
                cancel,
                stats,
                started_at: now,
                codec: params.codec,
            },
        );
        Ok(joined)
    }

    /// Starts the shared producer of `app` for RTSP players.
    fn start_player_app(
        &mut self,
        app: App,
        video: howl_proto::player::VideoRequest,
    ) -> Result<u64, PlayerRefusal> {
        let d = self.settings.player_defaults;
        let params = StreamParams {
            width: video.width.unwrap_or(d.width),
            height: video.height.unwrap_or(d.height),
            fps: video.fps.unwrap_or(d.fps),
            bitrate_kbps: video.bitrate_kbps.unwrap_or(d.bitrate_kbps),
            codec: Codec::H264,
            audio_channels: 2,
            // Players take any Opus frame size; 10 ms halves the packet rate of 5 ms.
            audio_packet_ms: 10,
            source: source_of(&app),
            slices_per_frame: 1,
        };
        params
            .validate()
            .map_err(|e| PlayerRefusal::BadRequest(e.to_string()))?;
        let id = self.next_id;
        self.next_id += 1;
        let (worker_tx, _) = watch::channel(None);
        tracing::info!(app = %app.title, instance = id, width = params.width, height = params.height,
            fps = params.fps, "starting an app for RTSP players");
        self.instances.insert(
            id,
            Instance {
                id,
                client: String::new(),
                lobby: None,
                app,
                worker: None,
                worker_tx,
                starting: false,
                params: None,
                viewers: Default::default(),
                linger_until: None,
                for_players: true,
            },
        );
        self.start_worker(id, params);
        Ok(id)
    }

    fn end_everything(&mut self, reason: EndReason) {
        let ids: Vec<u64> = self.instances.keys().copied().collect();
        for id in ids {
            self.stop_instance(id, reason.clone());
        }
        let sids: Vec<SessionId> = self
            .sessions
            .keys()
            .chain(self.players.keys())
            .copied()
            .collect();
        for sid in sids {
            self.end_session(sid, reason.clone(), Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_offers_the_workers_surround_layouts() {
        let offers = surround_offer();
        let channels: Vec<u8> = offers.iter().map(|o| o.normal.channels()).collect();
        assert_eq!(channels, vec![2, 6, 8]);
        for o in &offers[1..] {
            let c = howl_media::protocol::OpusConfig::for_channels(o.normal.channels()).unwrap();
            assert_eq!(o.normal.streams(), c.streams);
            assert_eq!(o.normal.coupled_streams(), c.coupled_streams);
            assert_eq!(o.normal.mapping(), c.mapping.as_slice());
        }
    }
}
