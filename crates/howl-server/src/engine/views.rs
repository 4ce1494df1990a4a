//! What the API, the CLI and the metrics read from the engine: views of lobbies, workers and
//! sessions, and the live counters (issue 5: every owned thing is counted).

use super::{Engine, Viewer};
use crate::viewer::{StreamShape, ViewerKind, ViewerStats};
use crate::worker::Worker;
use howl_core::domain::{Permission, Producer, WorkerState};
use howl_core::{EndReason, SessionId};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A lobby as the API shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
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
    /// What joining clients may do: `control` or `view`.
    #[serde(default = "control")]
    #[schema(value_type = String)]
    pub viewer_permission: Permission,
    /// The client the lobby was created for (it controls by default).
    #[serde(default)]
    pub creator: Option<String>,
    /// Per-client settings (fingerprint → `control` or `view`).
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, String>)]
    pub client_permissions: BTreeMap<String, Permission>,
}

fn control() -> Permission {
    Permission::Control
}

/// A media worker as the API shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct WorkerView {
    /// Its process id on its node.
    pub pid: u32,
    /// The node it runs on (`local`, or a media node's name).
    pub node: String,
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
    /// Input events dropped because their viewer may only view.
    pub input_dropped: u64,
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
    /// Admission control: the limits, what they count now, and the refusals.
    pub admission: AdmissionCounters,
}

/// Admission control as `/api/v1/status` shows it (`engine.admission`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AdmissionCounters {
    /// `max_producers` (0: unlimited).
    pub max_producers: u32,
    /// `max_encoder_sessions` (0: unlimited).
    pub max_encoder_sessions: u32,
    /// Producers running now (private launches, lobbies, app shares).
    pub producers: u32,
    /// Encoder sessions held now (one per producer).
    pub encoder_sessions: u32,
    /// Requests refused since start, by path (`launch`, `lobby`, `player`; zero included).
    pub refused: std::collections::BTreeMap<&'static str, u64>,
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

/// A session as the API and tests see it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SessionView {
    #[schema(value_type = u64)]
    pub id: SessionId,
    pub client: String,
    /// The paired client's name from the certificate registry (filled in by the API), or a
    /// player's label.
    #[serde(default)]
    pub client_name: String,
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
    /// Bytes of video queued for it in the fan-out right now.
    #[serde(default)]
    pub video_queue_bytes: u64,
    /// What it may do now: `control` (its input reaches the desktop) or `view`.
    #[serde(default = "control")]
    #[schema(value_type = String)]
    pub permission: Permission,
    /// Whether an operator set this session's permission itself (else the lobby's rules).
    #[serde(default)]
    pub permission_set: bool,
    /// Input events dropped because it may only view.
    #[serde(default)]
    pub input_dropped: u64,
    /// Media payload bytes sent to it (video and audio): the web UI's bitrate graph.
    #[serde(default)]
    pub bytes_sent: u64,
    /// What is encrypted for a Moonlight session (flags only, never keys); `None` for RTSP
    /// players, which are served in the clear to token holders on the API's network.
    #[serde(default)]
    pub encryption: Option<crate::viewer::moonlight::EncryptionView>,
}

/// Adds one viewer's counters to the totals (and, for players, to the RTSP figures).
fn fold(c: &mut EngineCounters, v: &Viewer) {
    let st: &ViewerStats = &v.stats;
    let get = ViewerStats::get;
    c.frames_sent += get(&st.frames_sent);
    c.frames_dropped += get(&st.frames_dropped);
    for (reason, n) in [
        ("lagged", &st.frames_dropped_lagged),
        ("awaiting_keyframe", &st.frames_dropped_awaiting_keyframe),
        ("unpacketizable", &st.frames_dropped_unpacketizable),
    ] {
        *c.frames_dropped_by_reason.entry(reason).or_insert(0) += get(n);
    }
    c.max_video_queue_depth = c.max_video_queue_depth.max(get(&st.video_queue_depth));
    c.video_queue_bytes += get(&st.video_queue_bytes);
    c.bytes_sent += get(&st.bytes_sent);
    c.datagrams_sent += get(&st.datagrams_sent);
    c.datagrams_fault_dropped += get(&st.datagrams_fault_dropped);
    c.audio_packets_sent += get(&st.audio_packets_sent);
    c.input_events += get(&st.input_events);
    c.input_dropped += get(&st.input_dropped);
    c.control_errors += get(&st.control_errors);
    if let ViewerKind::RtspPlayer(_) = v.kind {
        c.rtsp.packets_sent += get(&st.datagrams_sent);
        c.rtsp.bytes_sent += get(&st.bytes_sent);
        c.rtsp.frames_dropped += get(&st.frames_dropped);
    }
}

impl Engine {
    /// A viewer's counters join the totals of those that ended.
    pub(super) fn retire(&mut self, v: &Viewer, reason: &EndReason) {
        fold(&mut self.retired, v);
        let label = reason.label().to_owned();
        if let ViewerKind::RtspPlayer(_) = v.kind {
            *self
                .retired
                .rtsp
                .sessions_ended
                .entry(label.clone())
                .or_insert(0) += 1;
        }
        *self.retired.sessions_ended.entry(label).or_insert(0) += 1;
    }

    pub(super) fn counters(&self) -> EngineCounters {
        let producers = || self.domain.producers();
        let mut c = EngineCounters {
            instances: producers().count(),
            lobbies: producers().filter(|p| p.lobby().is_some()).count(),
            sessions: self.domain.viewers().count(),
            workers: producers()
                .filter(|p| matches!(p.worker, WorkerState::Ready(_)))
                .count(),
            workers_starting: producers()
                .filter(|p| matches!(p.worker, WorkerState::Starting(_)))
                .count(),
            viewers: producers().map(|p| p.viewers.len()).sum(),
            heap_trims: self.heap_trims.load(Ordering::Relaxed),
            sources_down: self
                .workers
                .values()
                .filter(|w| w.stats.source.borrow().down.is_some())
                .count(),
            source_losses: self.source_losses.load(Ordering::Relaxed),
            source_recoveries: self.source_recoveries.load(Ordering::Relaxed),
            admission: self.admission_counters(),
            // Cleared whenever a trim is scheduled, set when it is done.
            heap_trimmed_since_idle: producers().next().is_none()
                && self.trimmed_idle.load(Ordering::Relaxed),
            // Cumulative counters start from the viewers that ended; live ones add below.
            ..self.retired.clone()
        };
        for v in self.viewers.values() {
            fold(&mut c, v);
            if let ViewerKind::RtspPlayer(p) = &v.kind {
                c.rtsp.players += 1;
                *c.rtsp.players_by_path.entry(p.path.clone()).or_insert(0) += 1;
            }
        }
        for w in self.workers.values() {
            c.frames_unwatched += w.stats.video_unwatched.load(Ordering::Relaxed);
        }
        c
    }

    fn admission_counters(&self) -> AdmissionCounters {
        let limits = self.domain.settings().admission;
        AdmissionCounters {
            max_producers: limits.max_producers.unwrap_or(0),
            max_encoder_sessions: limits.max_encoder_sessions.unwrap_or(0),
            producers: self.domain.producers_in_use(),
            encoder_sessions: self.domain.encoder_sessions_in_use(),
            refused: self
                .domain
                .admission_refused()
                .map(|(path, n)| (path.name(), n))
                .collect(),
        }
    }

    /// A producer's running worker.
    fn worker_of(&self, p: &Producer) -> Option<&Arc<Worker>> {
        match p.worker {
            WorkerState::Ready(w) => self.workers.get(&w),
            _ => None,
        }
    }

    /// What a viewer streams: what its client negotiated (Moonlight), or its producer's mode.
    fn shape(v: &Viewer, producer: Option<&Producer>) -> StreamShape {
        match &v.kind {
            ViewerKind::Moonlight(m) => m
                .stream_config()
                .map(|c| StreamShape {
                    width: c.width,
                    height: c.height,
                    fps: c.fps,
                    codec: c.codec.name().to_owned(),
                    bitrate_kbps: c.bitrate.maximum_kbps,
                })
                .unwrap_or_default(),
            ViewerKind::RtspPlayer(_) | ViewerKind::Browser(_) => {
                let params = producer.and_then(|i| i.params.as_ref());
                let codec = match &v.kind {
                    ViewerKind::RtspPlayer(p) => Some(p.codec),
                    _ => params.map(|c| c.codec),
                };
                StreamShape {
                    width: params.map(|c| c.width).unwrap_or(0),
                    height: params.map(|c| c.height).unwrap_or(0),
                    fps: params.map(|c| c.fps).unwrap_or(0),
                    codec: codec.map(|c| c.name()).unwrap_or("").to_owned(),
                    bitrate_kbps: params.map(|c| c.bitrate_kbps).unwrap_or(0),
                }
            }
        }
    }

    pub(super) fn views(&self, now: Instant) -> Vec<SessionView> {
        let mut out: Vec<SessionView> = self
            .domain
            .viewers()
            .filter_map(|d| {
                let v = self.viewers.get(&d.id)?;
                let p = self.domain.producer(d.producer);
                let shape = Self::shape(v, p);
                let worker = p.and_then(|p| self.worker_of(p));
                Some(SessionView {
                    id: d.id,
                    client: d.label.clone(),
                    client_name: match d.kind {
                        howl_core::domain::ViewerKind::RtspPlayer(_)
                        | howl_core::domain::ViewerKind::Browser(_) => d.label.clone(),
                        _ => String::new(),
                    },
                    app: p.map(|p| p.app.title.clone()).unwrap_or_default(),
                    width: shape.width,
                    height: shape.height,
                    fps: shape.fps,
                    codec: shape.codec,
                    worker_pid: worker.map(|w| w.pid),
                    producer_frame_counter: worker
                        .map(|w| w.stats.last_frame_counter.load(Ordering::Relaxed))
                        .unwrap_or(0),
                    frames_sent: v.stats.frames_sent.load(Ordering::Relaxed),
                    frames_dropped: v.stats.frames_dropped.load(Ordering::Relaxed),
                    input_events: v.stats.input_events.load(Ordering::Relaxed),
                    lobby_id: p.and_then(Producer::lobby_id),
                    bitrate_kbps: shape.bitrate_kbps,
                    rtt_ms: match v.stats.rtt_ms.load(Ordering::Relaxed) {
                        0 => None,
                        ms => Some(u32::try_from(ms).unwrap_or(u32::MAX)),
                    },
                    uptime_secs: now.saturating_duration_since(d.started_at).as_secs(),
                    tenant: p.and_then(Producer::owner),
                    video_queue_bytes: v.stats.video_queue_bytes.load(Ordering::Relaxed),
                    permission: d.permission,
                    permission_set: d.permission_override.is_some(),
                    input_dropped: v.stats.input_dropped.load(Ordering::Relaxed),
                    bytes_sent: v.stats.bytes_sent.load(Ordering::Relaxed),
                    encryption: match &v.kind {
                        ViewerKind::Moonlight(m) => Some(m.encryption_view()),
                        _ => None,
                    },
                })
            })
            .collect();
        out.sort_by_key(|s| s.id);
        out
    }

    pub(super) fn lobby_views(&self) -> Vec<LobbyView> {
        let mut v: Vec<LobbyView> = self
            .domain
            .producers()
            .filter_map(|p| {
                let l = p.lobby()?;
                let worker = self.worker_of(p);
                Some(LobbyView {
                    id: p.id.0,
                    name: l.name.clone(),
                    app_id: l.app_id,
                    app: p.app.title.clone(),
                    width: p.params.as_ref().map(|p| p.width).unwrap_or(0),
                    height: p.params.as_ref().map(|p| p.height).unwrap_or(0),
                    fps: p.params.as_ref().map(|p| p.fps).unwrap_or(0),
                    codec: p
                        .params
                        .as_ref()
                        .map(|p| p.codec.name().to_owned())
                        .unwrap_or_default(),
                    viewers: p.viewers.len(),
                    worker_pid: worker.map(|w| w.pid),
                    producer_frame_counter: worker
                        .map(|w| w.stats.last_frame_counter.load(Ordering::Relaxed))
                        .unwrap_or(0),
                    clients: l.clients.clone(),
                    stop_when_everyone_leaves: p.stops_when_empty(),
                    idle_timeout_secs: l.idle_timeout.as_secs(),
                    tenant: l.owner,
                    viewer_permission: l.permissions.joiners,
                    creator: l.permissions.creator.clone(),
                    client_permissions: l.permissions.clients.clone(),
                })
            })
            .collect();
        v.sort_by_key(|l| l.id);
        v
    }

    pub(super) fn worker_views(&self, now: Instant) -> Vec<WorkerView> {
        let mut v: Vec<WorkerView> = self
            .domain
            .producers()
            .filter_map(|p| {
                let w = self.worker_of(p)?;
                let last = Duration::from_millis(w.stats.last_heartbeat_ms.load(Ordering::Relaxed));
                let age = now.saturating_duration_since(w.started_at + last);
                Some(WorkerView {
                    pid: w.pid,
                    node: w.node.clone(),
                    instance: p.id.0,
                    lobby_id: p.lobby_id(),
                    app: p.app.title.clone(),
                    state: if p.lingering() {
                        "lingering"
                    } else {
                        "running"
                    },
                    viewers: p.viewers.len(),
                    last_heartbeat_ms_ago: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                    heartbeats: w.stats.heartbeats.load(Ordering::Relaxed),
                    video_frames: w.stats.video_frames.load(Ordering::Relaxed),
                    uptime_secs: now.saturating_duration_since(w.started_at).as_secs(),
                    tenant: p.owner(),
                })
            })
            .collect();
        v.sort_by_key(|w| w.instance);
        v
    }
}
