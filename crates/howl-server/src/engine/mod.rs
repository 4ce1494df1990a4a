//! The streaming engine: producers (app instances and lobbies), the viewers watching them, and
//! the one path by which a viewer ends.
//!
//! One actor task owns every producer and viewer. It is driven by commands (from NVHTTP, the
//! RTSP listeners, the shared UDP ports, ENet connects, RTSP players and worker supervisors)
//! and by a timer tick that checks every deadline; it never awaits anything else, so no client
//! and no worker can wedge it. Each command is a closure run on the engine with the actor's
//! `now` ([`EngineHandle::ask`]/[`EngineHandle::tell`]): a new command is one handle method
//! and one engine method, with no message enum to keep in step. Media and input do not pass
//! through the actor: viewers follow their producer through a `viewer::feed::Feed`, and a
//! Moonlight viewer's control stream is decrypted by its own link on the ENet router task.
//!
//! Every lifecycle rule (who may join what, replace, linger and resume, stop policies, every
//! deadline, the one end path) lives in howl-core's sans-IO [`Domain`]. The engine is its
//! driver: it feeds the domain inputs with the actor's `now` (requests, protocol steps, worker
//! reports, the tick), then drains its actions after every job ([`Engine::drain`]): start or
//! stop a worker, ask for a keyframe, release a viewer's input, end a viewer's connection,
//! publish an event. The engine keeps only what the domain must not hold: sockets, tasks,
//! worker handles, the Moonlight handshakes and keys, counters.
//!
//! Files: [`launch`] (Moonlight launch/resume/cancel and the RTSP handshake glue), [`lobby`]
//! (the lobby API), [`players`] (RTSP players joining), [`producer`] (executing worker actions,
//! worker reports), [`end`] (executing a viewer's end, the tick), [`views`] (what the API and
//! metrics read).

mod browsers;
mod end;
mod launch;
mod lobby;
mod players;
mod producer;
mod views;

pub use launch::{LaunchError, LaunchInput};
pub use lobby::{LobbyError, LobbySpec};
pub use views::{EngineCounters, LobbyView, SessionView, WorkerView};

use crate::data::enet::{EnetEvent, EnetSender, PeerId};
use crate::domain::events::Audience;
use crate::viewer::browser::{BrowserEngine, BrowserJoin, BrowserJoined, LobbyStream, WhepError};
use crate::viewer::moonlight::{self, ControlLink, MediaKind};
use crate::viewer::rtsp_player::{PlayerEngine, PlayerJoin, PlayerJoined, PlayerRefusal};
use crate::viewer::{ViewerKind, ViewerStats};
use crate::worker::Worker;
use futures_util::future::BoxFuture;
use howl_core::domain::{Action, AdmissionPath, Domain, Permission, ProducerId, Refusal, WorkerId};
use howl_core::routing::Router;
use howl_core::{App, EndReason, SessionId};
use howl_proto::rtsp::{Request, Response, StreamPorts};
use howl_proto::sdp::CodecSupport;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// Commands into the engine (every producer of work → engine). Full queue: the NVHTTP/RTSP
/// callers fail their request after their deadline; pings are dropped (the client repeats
/// them every 500 ms).
pub const ENGINE_COMMAND_CAPACITY: usize = 1024;
/// How long callers wait for the engine's reply.
pub const ENGINE_REPLY_DEADLINE: Duration = Duration::from_secs(5);
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
    /// Small frames get extra parity up to their share of the bitrate.
    pub fec_small_frames: bool,
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
    pub events: crate::domain::events::EventBus,
    /// What each launch is asked to encrypt, by the client's network class.
    pub encryption: howl_core::encryption::EncryptionPolicy,
    /// How an `/app/` producer for RTSP players runs unless its first player asks otherwise.
    pub player_defaults: crate::viewer::rtsp_player::PlayerDefaults,
    /// How many producers may run at once (`max_producers`, `max_encoder_sessions`).
    pub admission: howl_core::domain::Admission,
    /// Media nodes (workers placed on a node other than `local` start there).
    pub nodes: Arc<crate::node::Nodes>,
    /// Whether the built-in local node takes producers (`local_node`).
    pub local_node: bool,
    /// How a producer's node is chosen (`placement`).
    pub placement: howl_core::domain::Placement,
}

/// One command: a closure the actor runs on the engine with its current time.
type Job = Box<dyn FnOnce(&mut Engine, Instant) + Send>;

/// Handle to the engine.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle").finish_non_exhaustive()
    }
}

impl EngineHandle {
    /// Runs `f` on the engine and returns its result; `None` when the engine is gone or did
    /// not answer within [`ENGINE_REPLY_DEADLINE`] (queueing included).
    async fn ask<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Engine, Instant) -> T + Send + 'static,
    ) -> Option<T> {
        self.ask_within(ENGINE_REPLY_DEADLINE, f).await
    }

    /// [`Self::ask`] with its own deadline (the health probe's is shorter).
    async fn ask_within<T: Send + 'static>(
        &self,
        deadline: Duration,
        f: impl FnOnce(&mut Engine, Instant) -> T + Send + 'static,
    ) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move |engine, now| {
            let _ = reply.send(f(engine, now));
        });
        let fut = async {
            self.tx.send(job).await.ok()?;
            rx.await.ok()
        };
        tokio::time::timeout(deadline, fut).await.ok().flatten()
    }

    /// Queues `f` without an answer, waiting (bounded) for room: for news that must not be
    /// lost (an end, a worker's fate).
    async fn tell(&self, f: impl FnOnce(&mut Engine, Instant) + Send + 'static) {
        let _ = tokio::time::timeout(ENGINE_REPLY_DEADLINE, self.tx.send(Box::new(f))).await;
    }

    /// Queues `f` only if there is room now: for news that repeats (pings).
    fn try_tell(&self, f: impl FnOnce(&mut Engine, Instant) + Send + 'static) {
        let _ = self.tx.try_send(Box::new(f));
    }

    /// The health probe: whether the actor runs a job within `deadline` (queueing included).
    pub async fn probe(&self, deadline: Duration) -> bool {
        self.ask_within(deadline, |_, _| ()).await.is_some()
    }

    /// FAULT INJECTION (`fault_wedge_api`, tests only): the actor's thread blocks for
    /// `duration`, as a wedged engine would, so the health probe and the watchdog can be
    /// tested. `block_in_place` lets the runtime's other tasks (the API answering 503, the
    /// watchdog withholding its ping) go on elsewhere. False when the queue is full.
    pub fn wedge(&self, duration: Duration) -> bool {
        self.tx
            .try_send(Box::new(move |_, _| {
                tokio::task::block_in_place(|| std::thread::sleep(duration));
            }))
            .is_ok()
    }

    /// Launches `app_id`: a lobby with that id is joined; otherwise `app` (from the catalogue)
    /// is started privately for the client.
    pub async fn launch(
        &self,
        app_id: i32,
        app: Option<App>,
        input: LaunchInput,
    ) -> Result<String, LaunchError> {
        self.ask(move |e, now| e.launch(app_id, app, input, now))
            .await
            .unwrap_or(Err(LaunchError::Unavailable))
    }

    pub async fn resume(&self, input: LaunchInput) -> Result<String, LaunchError> {
        self.ask(move |e, now| e.resume(input, now))
            .await
            .unwrap_or(Err(LaunchError::Unavailable))
    }

    /// Ends the client's session and app. True when something was running.
    pub async fn cancel(&self, client: &str) -> bool {
        let client = client.to_owned();
        self.ask(move |e, now| e.cancel(&client, now))
            .await
            .unwrap_or(false)
    }

    pub async fn current_game(&self, client: &str) -> i32 {
        let client = client.to_owned();
        self.ask(move |e, _| e.domain.current_game(&client))
            .await
            .unwrap_or(0)
    }

    pub async fn create_lobby(
        &self,
        spec: LobbySpec,
        app: Option<App>,
    ) -> Result<LobbyView, LobbyError> {
        self.ask(move |e, now| e.create_lobby(spec, app, now))
            .await
            .unwrap_or(Err(LobbyError::Unavailable))
    }

    pub async fn lobbies(&self) -> Vec<LobbyView> {
        self.ask(|e, _| e.lobby_views()).await.unwrap_or_default()
    }

    /// Replaces the list of clients allowed to join (empty: every paired client).
    pub async fn set_lobby_clients(
        &self,
        id: u64,
        clients: Vec<String>,
    ) -> Result<LobbyView, LobbyError> {
        self.ask(move |e, _| e.set_lobby_clients(id, clients))
            .await
            .unwrap_or(Err(LobbyError::Unavailable))
    }

    pub async fn stop_lobby(&self, id: u64) -> Result<(), LobbyError> {
        self.ask(move |e, now| e.stop_lobby(id, now))
            .await
            .unwrap_or(Err(LobbyError::Unavailable))
    }

    /// Lobbies `client` may join, as (app id, title) for its app list.
    pub async fn lobby_apps(&self, client: &str) -> Vec<(i32, String)> {
        let client = client.to_owned();
        self.ask(move |e, _| e.domain.lobby_apps(&client))
            .await
            .unwrap_or_default()
    }

    pub async fn workers(&self) -> Option<Vec<WorkerView>> {
        self.ask(|e, now| e.worker_views(now)).await
    }

    /// Sets (or with `None` clears) one session's own permission; returns the permission it
    /// has now. `None` when the engine did not answer.
    pub async fn set_session_permission(
        &self,
        id: u64,
        permission: Option<Permission>,
    ) -> Option<Result<Permission, Refusal>> {
        self.ask(move |e, _| e.domain.set_viewer_permission(SessionId(id), permission))
            .await
    }

    /// Sets what clients joining a lobby get.
    pub async fn set_lobby_permission(
        &self,
        id: u64,
        joiners: Permission,
    ) -> Result<LobbyView, LobbyError> {
        self.ask(move |e, _| e.set_lobby_permission(id, joiners))
            .await
            .unwrap_or(Err(LobbyError::Unavailable))
    }

    /// Sets (or with `None` clears) one client's permission in a lobby.
    pub async fn set_lobby_client_permission(
        &self,
        id: u64,
        client: String,
        permission: Option<Permission>,
    ) -> Result<LobbyView, LobbyError> {
        self.ask(move |e, _| e.set_lobby_client_permission(id, &client, permission))
            .await
            .unwrap_or(Err(LobbyError::Unavailable))
    }

    /// Ends one viewer (reason: API stop). False when there was none.
    pub async fn stop_session(&self, id: u64) -> bool {
        self.ask(move |e, now| e.domain.end_viewer(now, SessionId(id), EndReason::ApiStop))
            .await
            .unwrap_or(false)
    }

    /// A media node joined: placement may use it.
    async fn node_joined(
        &self,
        name: &str,
        epoch: u64,
        limits: howl_core::domain::Admission,
        traits: howl_core::domain::NodeTraits,
    ) {
        let name = name.to_owned();
        self.tell(move |e, now| {
            e.domain.node_joined(now, &name, epoch, limits, traits);
            e.drain(now);
        })
        .await;
    }

    /// A media node was lost: its producers end with `node_lost`. How many ended.
    async fn node_lost(&self, name: &str, epoch: u64, detail: &str) -> Option<usize> {
        let (name, detail) = (name.to_owned(), detail.to_owned());
        self.ask(move |e, now| {
            let n = e.domain.node_lost(now, &name, epoch, &detail);
            e.drain(now);
            n
        })
        .await
    }

    /// Stops placing producers on a node. `Some(false)`: no such node.
    async fn drain_node(&self, name: &str) -> Option<bool> {
        let name = name.to_owned();
        self.ask(move |e, _| e.domain.drain_node(&name)).await
    }

    /// Every node placement knows, with its producers in use.
    pub async fn node_use(&self) -> Option<Vec<(String, u32, howl_core::domain::NodeSlot)>> {
        self.ask(|e, _| {
            e.domain
                .nodes()
                .map(|(n, s)| (n.to_owned(), e.domain.producers_on(n), s.clone()))
                .collect()
        })
        .await
    }

    pub async fn counters(&self) -> Option<EngineCounters> {
        self.ask(|e, _| e.counters()).await
    }

    pub async fn sessions(&self) -> Vec<SessionView> {
        self.ask(|e, now| e.views(now)).await.unwrap_or_default()
    }

    pub async fn rtsp(&self, session: SessionId, request: Request) -> Option<Response> {
        self.ask(move |e, now| e.rtsp(session, request, now)).await
    }

    /// Non-blocking: a ping that does not fit is dropped (the next comes in 500 ms).
    pub fn ping(&self, kind: MediaKind, datagram: &[u8], src: SocketAddr) {
        let datagram = datagram.to_vec();
        self.try_tell(move |e, _| e.ping(kind, &datagram, src));
    }

    /// Ends every viewer (clients are told) and stops every worker; bounded by the caller.
    pub async fn shutdown(&self) {
        let _ = self.ask(|e, now| e.domain.shutdown(now)).await;
    }
}

impl PlayerEngine for EngineHandle {
    fn join(&self, join: PlayerJoin) -> BoxFuture<'_, Result<PlayerJoined, PlayerRefusal>> {
        Box::pin(async move {
            self.ask(move |e, now| e.player_join(join, now))
                .await
                .unwrap_or(Err(PlayerRefusal::Unavailable(
                    "the streaming engine did not answer in time".into(),
                )))
        })
    }

    fn end(&self, session: SessionId, reason: EndReason) -> BoxFuture<'_, ()> {
        // Waits for queue room (bounded): an end must not be lost, or the viewer would be
        // counted until its deadline.
        Box::pin(self.tell(move |e, now| {
            e.domain.end_viewer(now, session, reason);
        }))
    }
}

impl BrowserEngine for EngineHandle {
    fn lobby_stream(
        &self,
        lobby: u64,
        principal: crate::domain::auth::Principal,
    ) -> BoxFuture<'_, Result<LobbyStream, WhepError>> {
        Box::pin(async move {
            self.ask(move |e, _| e.browser_stream(lobby, &principal))
                .await
                .unwrap_or_else(|| Err(WhepError::Unavailable(ENGINE_BUSY.into())))
        })
    }

    fn join(&self, join: BrowserJoin) -> BoxFuture<'_, Result<BrowserJoined, WhepError>> {
        Box::pin(async move {
            self.ask(move |e, now| e.browser_join(join, now))
                .await
                .unwrap_or_else(|| Err(WhepError::Unavailable(ENGINE_BUSY.into())))
        })
    }

    fn end(&self, lobby: u64, session: SessionId, reason: EndReason) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            self.ask(move |e, now| e.browser_end(lobby, session, reason, now))
                .await
                .unwrap_or(false)
        })
    }
}

/// What a caller is told when the engine did not answer within its deadline.
const ENGINE_BUSY: &str = "the streaming engine did not answer in time";

impl moonlight::rtsp::RtspEngine for EngineHandle {
    async fn rtsp(&self, session: SessionId, request: Request) -> Option<Response> {
        EngineHandle::rtsp(self, session, request).await
    }
}

impl moonlight::control::ControlEngine for EngineHandle {
    async fn connected(
        &self,
        peer: PeerId,
        addr: SocketAddr,
        data: u32,
    ) -> Option<Arc<ControlLink>> {
        self.ask(move |e, now| e.enet_connected(peer, addr, data, now))
            .await
            .flatten()
    }

    async fn disconnected(&self, peer: PeerId) {
        self.tell(move |e, now| e.enet_disconnected(peer, now))
            .await;
    }
}

/// The driver's half of a viewer (the domain holds its lifecycle): its tasks, its counters,
/// and its kind's protocol state.
#[derive(Debug)]
struct Viewer {
    /// Fired when the viewer ends: the driver's tasks stop.
    cancel: CancellationToken,
    stats: Arc<ViewerStats>,
    kind: ViewerKind,
}

struct Engine {
    settings: EngineSettings,
    domain: Domain,
    self_tx: mpsc::WeakSender<Job>,
    enet: EnetSender,
    video_sock: Arc<UdpSocket>,
    audio_sock: Arc<UdpSocket>,
    /// Each producer's current worker, as its viewers' feeds follow it. Dropped when the
    /// producer stops, which closes every feed.
    producers: HashMap<ProducerId, watch::Sender<Option<Arc<Worker>>>>,
    /// Running workers (started and not yet stopped or exited).
    workers: HashMap<WorkerId, Arc<Worker>>,
    viewers: HashMap<SessionId, Viewer>,
    /// Connected Moonlight control streams, for ENet disconnects.
    by_peer: HashMap<PeerId, SessionId>,
    router: Router<SessionId>,
    /// Cumulative counters of viewers that ended (gauges and counts of live things stay 0).
    retired: EngineCounters,
    /// When to return freed heap to the OS, set when the engine became idle.
    trim_due: Option<Instant>,
    heap_trims: Arc<AtomicU64>,
    /// Losses and recoveries of URI sources, counted by each source's watcher task.
    source_losses: Arc<AtomicU64>,
    source_recoveries: Arc<AtomicU64>,
    trimmed_idle: Arc<AtomicBool>,
}

impl Engine {
    fn handle(&self) -> Option<EngineHandle> {
        self.self_tx.upgrade().map(|tx| EngineHandle { tx })
    }

    /// The watch a producer's viewers follow its worker through.
    fn producer_watch(&mut self, producer: ProducerId) -> crate::viewer::feed::WorkerWatch {
        self.producers
            .entry(producer)
            .or_insert_with(|| watch::channel(None).0)
            .subscribe()
    }

    /// Executes the domain's actions, in order, until none is left. Run after every job and
    /// tick (the domain's "mutate, then drain" rule); executing one never calls the domain.
    fn drain(&mut self, now: Instant) {
        while let Some(action) = self.domain.poll_action() {
            match action {
                Action::StartWorker {
                    producer,
                    worker,
                    params,
                    node,
                } => self.start_worker(producer, worker, params, node),
                Action::StopWorker { worker } => {
                    if let Some(w) = self.workers.remove(&worker) {
                        w.stop();
                    }
                }
                Action::RequestKeyframe { worker } => {
                    if let Some(w) = self.workers.get(&worker) {
                        w.request_keyframe();
                    }
                }
                Action::ReleaseInput { worker, viewer } => {
                    if let Some(w) = self.workers.get(&worker) {
                        w.release_input(viewer.0);
                    }
                }
                Action::SetPermission { viewer, permission } => {
                    if let Some(v) = self.viewers.get(&viewer) {
                        let allowed = permission.allows_input();
                        v.stats.input_allowed.store(allowed, Ordering::Relaxed);
                        tracing::info!(session = %viewer, %permission, "viewer permission");
                    }
                }
                Action::EndViewer { viewer, reason } => self.viewer_ended(&viewer, &reason),
                Action::ProducerStopped { producer, reason } => {
                    self.producer_stopped(producer, &reason, now);
                }
                Action::Publish { owner, event } => self.publish(owner, event),
            }
        }
    }
}

/// Placement learns of media nodes through the engine (the node registry's callbacks).
impl crate::node::NodePlacement for EngineHandle {
    fn joined(
        &self,
        name: String,
        epoch: u64,
        limits: howl_core::domain::Admission,
        traits: howl_core::domain::NodeTraits,
    ) -> crate::node::BoxFuture<'_, ()> {
        Box::pin(async move { self.node_joined(&name, epoch, limits, traits).await })
    }

    fn lost(
        &self,
        name: String,
        epoch: u64,
        reason: String,
    ) -> crate::node::BoxFuture<'_, Option<usize>> {
        Box::pin(async move { self.node_lost(&name, epoch, &reason).await })
    }

    fn drain(&self, name: String) -> crate::node::BoxFuture<'_, Option<bool>> {
        Box::pin(async move { self.drain_node(&name).await })
    }
}

/// Starts the engine, the UDP receive tasks for the shared media ports and the ENet router.
pub fn spawn(
    settings: EngineSettings,
    enet: EnetSender,
    enet_events: mpsc::Receiver<EnetEvent>,
    video_sock: Arc<UdpSocket>,
    audio_sock: Arc<UdpSocket>,
    shutdown: CancellationToken,
) -> (EngineHandle, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Job>(ENGINE_COMMAND_CAPACITY);
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
    tokio::spawn(moonlight::route_control(
        enet_events,
        handle.clone(),
        shutdown.clone(),
    ));
    let domain = Domain::new(howl_core::domain::Settings {
        linger: settings.linger,
        moonlight: howl_core::domain::MoonlightTimeouts {
            rtsp: settings.rtsp_deadline,
            connect: settings.connect_deadline,
            control_silence: settings.control_silence,
        },
        codecs: settings.codecs,
        player_defaults: settings.player_defaults,
        admission: settings.admission,
    });
    let mut domain = domain;
    domain.set_placement(settings.placement);
    // What an app's `requires_gpu` is matched against on this machine.
    domain.set_local_traits(howl_core::domain::NodeTraits {
        labels: Default::default(),
        gpus: crate::node::agent::count_gpus(),
    });
    if !settings.local_node {
        // Before anything runs: only media nodes take producers.
        domain.node_lost(Instant::now(), crate::node::LOCAL, 0, "local_node = false");
    }
    let mut engine = Engine {
        settings,
        domain,
        self_tx: tx.downgrade(),
        enet,
        video_sock,
        audio_sock,
        producers: HashMap::new(),
        workers: HashMap::new(),
        viewers: HashMap::new(),
        by_peer: HashMap::new(),
        router: Router::default(),
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
        // The actor's clock: read here only, passed to everything it runs.
        loop {
            tokio::select! {
                job = rx.recv() => match job {
                    Some(job) => {
                        let now = Instant::now();
                        job(&mut engine, now);
                        engine.drain(now);
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    engine.tick(now);
                    engine.drain(now);
                }
                () = shutdown.cancelled() => break,
            }
        }
        let now = Instant::now();
        engine.domain.shutdown(now);
        engine.drain(now);
    });
    (handle, task)
}

/// Who sees events about something owned by `owner`.
fn audience(owner: Option<u64>) -> Audience {
    owner.map_or(Audience::AdminOnly, Audience::Tenant)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    use aws_lc_rs::rand::SecureRandom;
    let mut b = [0u8; N];
    // The system RNG does not fail on Linux; an all-zero token would still be unique enough
    // for routing because registration refuses clashes.
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut b);
    b
}

/// Logs an admission refusal once, here where the engine sees it with its context; the edges
/// answer it (NVHTTP's launch error, RTSP 503, API 409) without logging it again, and the
/// domain counts it (`howl_admission_refused_total`).
fn log_refusal(path: AdmissionPath, who: &str, refusal: &Refusal) {
    if let Refusal::AtCapacity { limit, max } = refusal {
        tracing::warn!(path = path.name(), who, limit = limit.key(), max, reason = %refusal,
            "admission refused: no new producer");
    } else if refusal.is_capacity() {
        tracing::warn!(path = path.name(), who, reason = %refusal,
            "admission refused: no new producer");
    }
}
