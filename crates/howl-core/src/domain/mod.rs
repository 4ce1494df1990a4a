//! The session domain: producers, viewers and every lifecycle rule between them, as a sans-IO
//! state machine (STYLE practice 1).
//!
//! A **producer** is one app and its encoder (a media worker): a client's private launch, an
//! API lobby, or the shared producer of an app for RTSP players. A **viewer** is one consumer
//! of one producer: a Moonlight session or an RTSP player (see [`ViewerKind`]). Each producer
//! carries a [`StopPolicy`]; each viewer carries the one [`Deadline`] that ends it unless
//! something happens first, and ends exactly once with one typed [`EndReason`].
//!
//! # Driving it
//!
//! [`Domain`] reads no clock, opens no socket, spawns nothing and draws no random number. A
//! driver (the server's engine actor) owns one and is its only writer:
//!
//! 1. **Inputs.** Every `&mut self` method taking `now` is an input: a request
//!    ([`Domain::launch`], [`Domain::resume`], [`Domain::cancel`], [`Domain::player_join`],
//!    [`Domain::create_lobby`], [`Domain::stop_lobby`], [`Domain::end_viewer`] for an API stop
//!    or any end a driver sees, the permission settings [`Domain::set_viewer_permission`],
//!    [`Domain::set_lobby_permission`], [`Domain::set_lobby_client_permission`]), a protocol step of a viewer ([`Domain::rtsp_announced`],
//!    [`Domain::rtsp_played`], [`Domain::control_connected`], [`Domain::control_seen`],
//!    [`Domain::set_viewer_deadline`]), a worker report ([`Domain::worker_ready`],
//!    [`Domain::worker_failed`], [`Domain::worker_exited`]), [`Domain::shutdown`], or time
//!    passing ([`Domain::handle_timeout`]). Requests return their answer at once (an id, or a
//!    typed [`Refusal`]); everything else they cause is queued as actions.
//! 2. **Drain.** After each input, call [`Domain::poll_action`] until it returns `None` and
//!    execute each [`Action`] in order: start or stop a worker, end a viewer's connection with
//!    its reason, publish an event. Executing an action never calls back into the domain; what
//!    it leads to later (a worker ready, a connection closed) comes back as a new input.
//! 3. **Timer.** Arm a timer at [`Domain::next_deadline`] and call [`Domain::handle_timeout`]
//!    when it fires (or on a periodic tick: firing late is harmless, early does nothing), then
//!    drain again. After `handle_timeout(now)` nothing is left whose deadline is at or before
//!    `now`.
//!
//! Admission control ([`Admission`], in [`Settings`]) is decided inside the requests: one that
//! would start a producer past a limit returns [`Refusal::AtCapacity`] and queues nothing.
//!
//! Ids ([`ViewerId`], [`ProducerId`], [`WorkerId`]) come from counters inside, so a run is a
//! pure function of its inputs; the tests replay them with a virtual clock.
//!
//! ```
//! use howl_core::domain::*;
//! use howl_core::{App, AppKind, AppSource, EndReason};
//! use howl_proto::sdp::CodecSupport;
//! use std::time::{Duration, Instant};
//!
//! let secs = Duration::from_secs;
//! let mut domain = Domain::new(Settings {
//!     linger: secs(30),
//!     moonlight: MoonlightTimeouts { rtsp: secs(20), connect: secs(10), control_silence: secs(10) },
//!     codecs: CodecSupport { h264: true, hevc: false, av1: false, hdr: false, yuv444: false },
//!     player_defaults: PlayerDefaults::default(),
//!     admission: Admission::default(),
//! });
//! let app = App {
//!     id: 1,
//!     title: "Pattern".into(),
//!     kind: AppKind::TestPattern { tone_hz: 440 },
//!     source: AppSource::Builtin,
//!     owner: None,
//!     requires: Default::default(),
//! };
//! let t0 = Instant::now(); // the driver's clock; the domain never reads one
//! let client = "ab".repeat(32);
//! let launch = LaunchRequest { client: client.clone(), app_id: 1, app: Some(app), mode: None };
//! let viewer = domain.launch(t0, launch).unwrap();
//! // Drain after every input: here, what the viewer may do (its own app: control) and the
//! // SessionStarted event.
//! while let Some(action) = domain.poll_action() {
//!     assert!(matches!(action,
//!         Action::SetPermission { permission: Permission::Control, .. }
//!         | Action::Publish { event: DomainEvent::SessionStarted { .. }, .. }));
//! }
//! // The client never finishes its RTSP handshake: the timer fires at the deadline.
//! let due = domain.next_deadline().unwrap();
//! assert_eq!(due, t0 + secs(20));
//! domain.handle_timeout(due);
//! let actions: Vec<Action> = std::iter::from_fn(|| domain.poll_action()).collect();
//! assert!(actions.iter().any(|a| matches!(a,
//!     Action::EndViewer { viewer: v, reason: EndReason::RtspDeadline } if v.id == viewer)));
//! assert_eq!(domain.producers().count(), 0, "its private app stopped with it");
//! ```
//!
//! # Adding a viewer kind
//!
//! A browser viewer, a remote node: add one variant to [`ViewerKind`] with the state only that
//! kind has; say which codecs it can carry in [`ViewerKind::carries`] (a producer whose codec
//! it cannot carry is a typed refusal, never a substitution) and name it in
//! [`ViewerKind::name`]; give its deadlines in `Viewer::refresh_deadline` (or let its driver
//! publish them through [`Domain::set_viewer_deadline`], as RTSP players do); add a join input
//! like [`Domain::player_join`]. Producers, stop policies, end paths, events and the tick stay
//! as they are; the server side adds one driver module.

mod admission;
mod browsers;
mod lobbies;
mod moonlight;
mod nodes;
mod permissions;
mod players;
mod producer;
#[cfg(test)]
mod proptests;
mod refusal;
mod requests;
#[cfg(test)]
mod tests;
mod viewer;
mod workers;

pub use admission::{Admission, AdmissionPath, Limit};
pub use nodes::{LOCAL_NODE, NodeSlot, NodeTraits, Placement};
pub use permissions::{LobbyPermissions, Permission, permission_of};
pub use producer::{Lobby, Producer, ProducerKind, StopPolicy, WorkerState, source_of};
pub use refusal::{Fault, Refusal};
pub use requests::{
    BrowserRequest, LaunchRequest, LobbyRequest, PlayerRequest, PlayerTarget, WorkerEnd,
};
pub use viewer::{
    AnnouncedStream, BrowserViewer, Deadline, MIN_MOONLIGHT_BITRATE_KBPS, MoonlightPhase,
    MoonlightTimeouts, MoonlightViewer, Principal, RtspPlayer, Viewer, ViewerKind, codec_of,
};

use crate::{App, EndReason, SessionId};
use howl_media::protocol::StreamParams;
pub use howl_proto::player::VideoRequest;
pub use howl_proto::sdp::CodecSupport;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

/// The codec a producer encodes. The worker protocol's type is the domain's, so there is no
/// mapping to get wrong between what the domain decides and what the worker is told.
pub use howl_media::protocol::Codec;

/// A viewer's id: the session id the API, events and logs show.
pub type ViewerId = SessionId;

/// A producer's id; for a lobby it is also the lobby id the API shows. Drawn from the same
/// counter as viewer ids, so the two never collide in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProducerId(pub u64);

/// One start of a media worker. A producer that restarts its worker (a resume in another mode)
/// gets a new id, so reports about the old one are recognised as stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(pub u64);

impl fmt::Display for ProducerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "w{}", self.0)
    }
}

/// Longest lobby name, in bytes.
pub const MAX_LOBBY_NAME: usize = 128;
/// Shortest lobby idle timeout: zero would stop a lobby in the tick after it empties.
pub const MIN_LOBBY_IDLE: Duration = Duration::from_secs(1);

/// Tunables, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How long a private producer whose client went away is kept for `/resume`, and how long
    /// an app share outlives its last player.
    pub linger: Duration,
    pub moonlight: MoonlightTimeouts,
    /// What the host can encode (H.264 always).
    pub codecs: CodecSupport,
    /// How an app share runs unless its first player's URL says otherwise.
    pub player_defaults: PlayerDefaults,
    /// How many producers may run at once (admission control; unlimited by default).
    pub admission: Admission,
}

/// How an `/app/` producer for players runs unless its first player's URL says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayerDefaults {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
}

impl Default for PlayerDefaults {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            fps: 30,
            bitrate_kbps: 4000,
        }
    }
}

/// What the driver must do. Execute in order; none of them calls back into the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Spawn a worker for `producer` with `params`; report [`Domain::worker_ready`] or
    /// [`Domain::worker_failed`] with `worker`. Until ready, the producer's viewers see no
    /// worker (a restart replaces the old one, which a [`Action::StopWorker`] before this ends).
    StartWorker {
        producer: ProducerId,
        worker: WorkerId,
        params: StreamParams,
        /// The node it runs on ([`LOCAL_NODE`] or a media node's name).
        node: String,
    },
    /// Stop this worker (it may still be starting: stop it once it is ready). Idempotent: a
    /// worker stopped while starting is named again when its late ready report arrives.
    StopWorker { worker: WorkerId },
    /// Ask the worker for a keyframe.
    RequestKeyframe { worker: WorkerId },
    /// Release whatever input `viewer` still holds on the worker's desktop (keys, buttons).
    ReleaseInput { worker: WorkerId, viewer: ViewerId },
    /// From the viewer's next input packet on, inject its input (`Control`) or drop and count
    /// it (`View`). Issued once when a viewer is added and on every change.
    SetPermission {
        viewer: ViewerId,
        permission: Permission,
    },
    /// Close the viewer's connection with this reason (a Moonlight client is told when
    /// [`EndReason::client_listens`]). The viewer is already gone from the domain.
    EndViewer { viewer: Viewer, reason: EndReason },
    /// The producer is gone: drop whatever the driver kept for it.
    ProducerStopped {
        producer: ProducerId,
        reason: EndReason,
    },
    /// Tell operators (`owner`: the tenant that may also see it; `None`: admin only).
    Publish {
        owner: Option<u64>,
        event: DomainEvent,
    },
}

/// What operators are told (the server's event bus adds worker pids where it knows them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    SessionStarted {
        id: ViewerId,
        client: String,
        app: String,
        lobby_id: Option<u64>,
    },
    SessionEnded {
        id: ViewerId,
        client: String,
        app: String,
        lobby_id: Option<u64>,
        reason: EndReason,
    },
    /// An operator changed what a viewer may do (its effective permission changed).
    PermissionChanged {
        id: ViewerId,
        client: String,
        lobby_id: Option<u64>,
        permission: Permission,
    },
    LobbyCreated {
        id: ProducerId,
        name: String,
        app: String,
    },
    LobbyStopped {
        id: ProducerId,
        name: String,
        reason: EndReason,
    },
    WorkerStarted {
        worker: WorkerId,
        app: String,
        lobby_id: Option<u64>,
    },
    /// A worker died or never started; its producer stops right after.
    WorkerDied {
        worker: WorkerId,
        app: String,
        lobby_id: Option<u64>,
        reason: String,
    },
}

/// The producer details an ended viewer's event needs (its producer may be gone already).
struct EndContext {
    app: String,
    lobby_id: Option<u64>,
    owner: Option<u64>,
}

impl EndContext {
    fn of(p: &Producer) -> Self {
        Self {
            app: p.app.title.clone(),
            lobby_id: p.lobby_id(),
            owner: p.owner(),
        }
    }
}

/// The session domain; see the module doc for how to drive it.
#[derive(Debug)]
pub struct Domain {
    settings: Settings,
    producers: BTreeMap<ProducerId, Producer>,
    viewers: BTreeMap<ViewerId, Viewer>,
    /// Producer and viewer ids (one sequence, as the API always showed them).
    next_id: u64,
    next_worker: u64,
    outbox: VecDeque<Action>,
    /// Viewers ended since start, by [`EndReason::label`].
    ended: BTreeMap<&'static str, u64>,
    /// Set by [`Domain::shutdown`]: nothing new starts after it.
    shutting_down: bool,
    /// Requests refused by admission control since start, by path.
    refused: BTreeMap<AdmissionPath, u64>,
    /// The nodes producers are placed on, by name (the built-in [`LOCAL_NODE`] first).
    nodes: BTreeMap<String, NodeSlot>,
    placement: Placement,
}

impl Domain {
    pub fn new(settings: Settings) -> Self {
        let local = NodeSlot {
            limits: settings.admission,
            traits: NodeTraits::default(),
            draining: false,
            epoch: 0,
        };
        Self {
            nodes: BTreeMap::from([(LOCAL_NODE.to_owned(), local)]),
            placement: Placement::default(),
            settings,
            producers: BTreeMap::new(),
            viewers: BTreeMap::new(),
            next_id: 1,
            next_worker: 1,
            outbox: VecDeque::new(),
            ended: BTreeMap::new(),
            shutting_down: false,
            refused: BTreeMap::new(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    // ----- outputs -----

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.outbox.pop_front()
    }

    /// When [`Domain::handle_timeout`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let viewers = self
            .viewers
            .values()
            .filter_map(|v| Some(v.deadline.as_ref()?.at));
        let producers = self.producers.values().filter_map(|p| p.stop_at);
        viewers.chain(producers).min()
    }

    // ----- queries -----

    pub fn producer(&self, id: ProducerId) -> Option<&Producer> {
        self.producers.get(&id)
    }

    /// Every producer, by id.
    pub fn producers(&self) -> impl Iterator<Item = &Producer> {
        self.producers.values()
    }

    pub fn viewer(&self, id: ViewerId) -> Option<&Viewer> {
        self.viewers.get(&id)
    }

    /// Every viewer, by id.
    pub fn viewers(&self) -> impl Iterator<Item = &Viewer> {
        self.viewers.values()
    }

    /// Viewers ended since start, by [`EndReason::label`].
    pub fn ended_counts(&self) -> &BTreeMap<&'static str, u64> {
        &self.ended
    }

    /// The client's own (private) producer.
    pub fn private_of(&self, client: &str) -> Option<ProducerId> {
        self.producers
            .values()
            .find(|p| p.private_client() == Some(client))
            .map(|p| p.id)
    }

    /// The lobby named `name`.
    pub fn lobby_named(&self, name: &str) -> Option<&Producer> {
        self.producers
            .values()
            .find(|p| p.lobby().is_some_and(|l| l.name == name))
    }

    /// `currentgame` of a client's server info: the app it watches (a lobby's id while it views
    /// one), else its own running app, else 0. What makes clients `/resume` instead of
    /// `/launch`.
    pub fn current_game(&self, client: &str) -> i32 {
        let watching = self
            .viewers
            .values()
            .filter(|v| matches!(v.kind, ViewerKind::Moonlight(_)))
            .find(|v| v.principal.client() == Some(client))
            .and_then(|v| self.producers.get(&v.producer))
            .map(Producer::listed_id);
        let own = self
            .private_of(client)
            .and_then(|p| self.producers.get(&p))
            .map(|p| p.app.id);
        watching.or(own).unwrap_or(0)
    }

    /// Lobbies `client` may join, as (app id, name) for its app list.
    pub fn lobby_apps(&self, client: &str) -> Vec<(i32, String)> {
        self.producers
            .values()
            .filter_map(Producer::lobby)
            .filter(|l| l.admits(client))
            .map(|l| (l.app_id, l.name.clone()))
            .collect()
    }

    // ----- inputs: any viewer -----

    /// Ends a viewer with `reason`: an API stop ([`EndReason::ApiStop`]), or an end its driver
    /// saw (TEARDOWN, ENet disconnect, a protocol violation, an internal error). False when
    /// there was no such viewer (it ended already).
    pub fn end_viewer(&mut self, now: Instant, viewer: ViewerId, reason: EndReason) -> bool {
        self.end_viewer_inner(now, viewer, reason)
    }

    // ----- inputs: the server -----

    /// Ends every viewer (clients are told) and stops every producer, with
    /// [`EndReason::Shutdown`]; refuses anything new from then on.
    pub fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        let ids: Vec<ProducerId> = self.producers.keys().copied().collect();
        for id in ids {
            self.stop_producer(id, EndReason::Shutdown);
        }
        let left: Vec<ViewerId> = self.viewers.keys().copied().collect();
        for v in left {
            self.end_viewer_inner(now, v, EndReason::Shutdown);
        }
    }

    /// Time passed: ends every viewer whose deadline is at or before `now` (with the
    /// deadline's reason), then stops every producer whose stop time passed
    /// ([`EndReason::IdleTimeout`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<(ViewerId, EndReason)> = self
            .viewers
            .values()
            .filter_map(|v| {
                let d = v.deadline.as_ref()?;
                (d.at <= now).then(|| (v.id, d.reason.clone()))
            })
            .collect();
        for (v, reason) in due {
            self.end_viewer_inner(now, v, reason);
        }
        // After the viewers: one that just ended may have started a zero-length linger.
        let idle: Vec<ProducerId> = self
            .producers
            .values()
            .filter(|p| p.viewers.is_empty() && p.stop_at.is_some_and(|t| t <= now))
            .map(|p| p.id)
            .collect();
        for id in idle {
            self.stop_producer(id, EndReason::IdleTimeout);
        }
    }

    // ----- the one end path -----

    /// Ends a viewer and applies its producer's stop policy.
    fn end_viewer_inner(&mut self, now: Instant, id: ViewerId, reason: EndReason) -> bool {
        let Some(viewer) = self.viewers.remove(&id) else {
            return false;
        };
        let pid = viewer.producer;
        let Some(p) = self.producers.get_mut(&pid) else {
            // Unreachable while the invariants hold; end it all the same.
            let ctx = EndContext {
                app: String::new(),
                lobby_id: None,
                owner: None,
            };
            self.retire(viewer, reason, &ctx);
            return true;
        };
        p.viewers.remove(&id);
        let ctx = EndContext::of(p);
        let release = match p.worker {
            // No stuck keys: whatever this viewer held on the desktop is released.
            WorkerState::Ready(worker) => Some(Action::ReleaseInput { worker, viewer: id }),
            _ => None,
        };
        let empty = p.viewers.is_empty();
        let stop = match p.policy {
            StopPolicy::UntilStopped => false,
            StopPolicy::WhenEmpty { after } => {
                if empty {
                    p.stop_at = Some(now + after);
                }
                false
            }
            StopPolicy::WithClient { linger } => match reason {
                // The client went away without quitting: keep the app for /resume. A newer
                // stream of the same client replaces this one and keeps the app too (it
                // attaches in the same input; should it not, the linger still ends it).
                EndReason::ClientDisconnected
                | EndReason::ControlTimeout
                | EndReason::ControlPingSilence
                | EndReason::Replaced => {
                    if empty {
                        p.stop_at = Some(now + linger);
                    }
                    false
                }
                _ => true,
            },
        };
        self.retire(viewer, reason.clone(), &ctx);
        if let Some(a) = release {
            self.outbox.push_back(a);
        }
        if stop {
            self.stop_producer(pid, reason);
        }
        true
    }

    /// The viewer's end, told to the driver and to operators; counted once.
    fn retire(&mut self, viewer: Viewer, reason: EndReason, ctx: &EndContext) {
        *self.ended.entry(reason.label()).or_insert(0) += 1;
        self.publish(
            ctx.owner,
            DomainEvent::SessionEnded {
                id: viewer.id,
                client: viewer.label.clone(),
                app: ctx.app.clone(),
                lobby_id: ctx.lobby_id,
                reason: reason.clone(),
            },
        );
        self.outbox.push_back(Action::EndViewer { viewer, reason });
    }

    /// Stops a producer: its viewers end with `reason` first, then its worker stops.
    fn stop_producer(&mut self, id: ProducerId, reason: EndReason) {
        // Removed first, so the viewers ended below apply no stop policy to it.
        let Some(p) = self.producers.remove(&id) else {
            return;
        };
        let ctx = EndContext::of(&p);
        for v in &p.viewers {
            if let Some(viewer) = self.viewers.remove(v) {
                self.retire(viewer, reason.clone(), &ctx);
            }
        }
        if let Some(worker) = p.worker.id() {
            self.outbox.push_back(Action::StopWorker { worker });
        }
        self.outbox.push_back(Action::ProducerStopped {
            producer: id,
            reason: reason.clone(),
        });
        if let Some(l) = p.lobby() {
            self.publish(
                l.owner,
                DomainEvent::LobbyStopped {
                    id,
                    name: l.name.clone(),
                    reason,
                },
            );
        }
    }

    // ----- helpers -----

    /// A new viewer of `producer` (which must exist), its deadline derived and attached: the
    /// one way every kind joins, so no kind's join can forget a step.
    fn add_viewer(
        &mut self,
        now: Instant,
        producer: ProducerId,
        kind: ViewerKind,
        principal: Principal,
        label: String,
    ) -> ViewerId {
        let id = self.viewer_id();
        let mut viewer = Viewer {
            id,
            producer,
            kind,
            principal,
            label,
            started_at: now,
            deadline: None,
            // Set by `attach`, from the producer's rule.
            permission: Permission::View,
            permission_override: None,
        };
        viewer.refresh_deadline(&self.settings.moonlight);
        self.attach(viewer);
        id
    }

    /// Adds a viewer to its producer (which must exist), tells the driver what it may do, and
    /// tells operators.
    fn attach(&mut self, mut viewer: Viewer) {
        let Some(p) = self.producers.get_mut(&viewer.producer) else {
            return;
        };
        viewer.permission = permission_of(p, &viewer);
        self.outbox.push_back(Action::SetPermission {
            viewer: viewer.id,
            permission: viewer.permission,
        });
        p.viewers.insert(viewer.id);
        p.stop_at = None;
        let (owner, event) = (
            p.owner(),
            DomainEvent::SessionStarted {
                id: viewer.id,
                client: viewer.label.clone(),
                app: p.app.title.clone(),
                lobby_id: p.lobby_id(),
            },
        );
        self.viewers.insert(viewer.id, viewer);
        self.publish(owner, event);
    }

    fn publish(&mut self, owner: Option<u64>, event: DomainEvent) {
        self.outbox.push_back(Action::Publish { owner, event });
    }

    fn producer_id(&mut self) -> ProducerId {
        let id = ProducerId(self.next_id);
        self.next_id += 1;
        id
    }

    fn viewer_id(&mut self) -> ViewerId {
        let id = SessionId(self.next_id);
        self.next_id += 1;
        id
    }

    fn refuse_when_shutting_down(&self) -> Result<(), Refusal> {
        if self.shutting_down {
            Err(Refusal::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Whether the host can encode `codec` (H.264 always).
    fn host_encodes(&self, codec: Codec) -> Result<(), Refusal> {
        let ok = match codec {
            Codec::H264 => true,
            Codec::Hevc => self.settings.codecs.hevc,
            Codec::Av1 => self.settings.codecs.av1,
        };
        if ok {
            Ok(())
        } else {
            Err(self.codec_unavailable(codec.name()))
        }
    }

    fn codec_unavailable(&self, asked: &str) -> Refusal {
        let c = &self.settings.codecs;
        let available = [("h264", true), ("hevc", c.hevc), ("av1", c.av1)]
            .iter()
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ");
        Refusal::CodecUnavailable {
            asked: asked.to_owned(),
            available,
        }
    }
}

/// When a producer with `policy` and no viewer stops, counted from `now`.
fn idle_deadline(policy: StopPolicy, now: Instant) -> Option<Instant> {
    match policy {
        StopPolicy::WhenEmpty { after } => Some(now + after),
        StopPolicy::WithClient { linger } => Some(now + linger),
        StopPolicy::UntilStopped => None,
    }
}

/// Whether this build can stream `app` at all. Every app kind does today (the worker reports
/// what it cannot start); a kind added without worker support is refused here.
fn streamable(app: &App) -> Result<(), Refusal> {
    use crate::AppKind;
    match app.kind {
        AppKind::TestPattern { .. }
        | AppKind::Process { .. }
        | AppKind::Docker { .. }
        | AppKind::Source { .. } => Ok(()),
    }
}

fn check_carries(kind: &ViewerKind, codec: Codec) -> Result<(), Refusal> {
    if kind.carries(codec) {
        Ok(())
    } else {
        Err(Refusal::CodecNotCarried {
            codec,
            kind: kind.name(),
        })
    }
}
