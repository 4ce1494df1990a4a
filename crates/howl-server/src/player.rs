//! RTSP egress to standard players (VLC, ffmpeg, GStreamer `rtspsrc`, OBS) on its own port
//! (default `127.0.0.1:8554`).
//!
//! One task per TCP connection drives howl-proto's sans-IO [`PlayerSession`]: it reads
//! requests and interleaved RTCP, answers them, and — once the player PLAYs — packetizes the
//! producer's fan-out (RFC 6184 / RFC 7798 video, RFC 7587 Opus) onto the connection
//! (interleaved) or the shared UDP ports, with RTCP sender reports for lip sync.
//!
//! A DESCRIBE authenticates the player (Basic or Digest, the password is an API token) and
//! joins it to a producer through the streaming engine, which from then on owns the player's
//! lifetime: the connection publishes the deadline its protocol state computes
//! ([`PlayerLink`]), the engine's tick enforces it, and every end — TEARDOWN, a closed
//! connection, a deadline, an API stop, shutdown, a dead worker — goes through the engine's one
//! end path with a typed reason, which cancels the connection.
//!
//! Media never waits on a slow player: the fan-out is a bounded broadcast; a player that falls
//! behind (or whose TCP window is full) loses frames up to the next keyframe, alone.

use crate::auth::{Principal, TenantIndex};
use crate::core_task::CoreHandle;
use crate::stream::{EngineHandle, SessionStats};
use crate::worker::{self, Worker};
use howl_core::{App, EndReason, SessionId};
use howl_media::protocol::{AudioPacket, Codec, StreamParams, VideoFrame};
use howl_proto::player::{
    self, Action, DescribeQuery, DescribeRefusal, Handled, InterleavedDecoder, OpusPayloader,
    ParameterSets, PlayerConfig, PlayerSession, RtpParams, SenderReport, StreamDescription,
    StreamTarget, Track, TrackSetup, Transport, UdpPorts, VideoPayloader, describe,
};
use howl_proto::rtsp::{Incoming, Response};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Most concurrent player connections; more wait in the kernel's backlog. Sized for the
/// 200-player leak test with room to spare; each connection is one task and a few KiB.
pub const MAX_PLAYER_CONNECTIONS: usize = 1024;
/// RTCP datagrams from the shared UDP ports to one connection task. Overflow: dropped (an
/// RTCP report only refreshes the keep-alive, and the next one comes within seconds).
pub const RTCP_QUEUE_CAPACITY: usize = 8;
/// A player must take one response or one frame's packets within this time; one that stops
/// reading altogether is ended (a slow one loses frames first, see the module doc).
pub const WRITE_DEADLINE: Duration = Duration::from_secs(5);
/// How long a DESCRIBE waits for the producer's first keyframe (its parameter sets go into the
/// SDP): a worker's start-up deadline plus a few frames.
pub const DESCRIBE_DEADLINE: Duration = Duration::from_secs(worker::START_DEADLINE.as_secs() + 5);
/// How often sender reports go out per track (RFC 3550 suggests about 5 s; players lip-sync
/// only after the first, so a shorter interval syncs sooner at negligible cost).
pub const SENDER_REPORT_INTERVAL: Duration = Duration::from_secs(2);
/// Bytes read from the connection at a time.
const READ_CHUNK: usize = 16 * 1024;

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

/// The player deadline a connection publishes for the engine to enforce.
#[derive(Debug, Default)]
pub struct PlayerLink {
    deadline: Mutex<Option<(Instant, player::EndReason)>>,
}

impl PlayerLink {
    fn publish(&self, next: Option<(Instant, player::EndReason)>) {
        // A poisoned lock only means another thread panicked mid-store of a Copy value.
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = next;
    }

    /// The reason to end the player if its deadline passed at `now`.
    pub fn expired(&self, now: Instant) -> Option<EndReason> {
        let d = *self.deadline.lock().unwrap_or_else(|e| e.into_inner());
        match d {
            Some((at, reason)) if now >= at => Some(end_reason(reason)),
            _ => None,
        }
    }
}

/// The engine's reason for a protocol-level end.
fn end_reason(r: player::EndReason) -> EndReason {
    match r {
        player::EndReason::Teardown => EndReason::PlayerTeardown,
        player::EndReason::KeepAliveTimeout => EndReason::KeepAliveTimeout,
        player::EndReason::NeverPlayed => EndReason::NeverPlayed,
    }
}

/// A player asking to watch: what the engine needs to attach it to a producer.
#[derive(Debug)]
pub struct PlayerJoin {
    pub target: StreamTarget,
    pub principal: Principal,
    pub peer: SocketAddr,
    /// The catalogue's app of an `/app/` path, if one has that title.
    pub app: Option<App>,
    pub link: Arc<PlayerLink>,
}

/// A player attached to a producer.
#[derive(Debug)]
pub struct PlayerJoined {
    pub session: SessionId,
    pub worker: watch::Receiver<Option<Arc<Worker>>>,
    /// Fired by the engine's end path.
    pub cancel: CancellationToken,
    pub stats: Arc<SessionStats>,
    pub params: StreamParams,
    pub title: String,
}

/// Why the engine refused a player.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlayerRefusal {
    /// No such app or lobby (or one this principal may not see).
    #[error("no such stream")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unavailable(String),
}

impl PlayerRefusal {
    fn describe_refusal(&self) -> DescribeRefusal {
        match self {
            Self::NotFound => DescribeRefusal::NotFound,
            Self::BadRequest(_) => DescribeRefusal::BadRequest,
            Self::Unavailable(_) => DescribeRefusal::Unavailable,
        }
    }
}

/// Timeouts of player sessions, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct PlayerTimeouts {
    pub session: Duration,
    pub play: Duration,
}

/// The shared UDP sockets of the egress: one RTP/RTCP pair per track for every player, and
/// the routes of incoming RTCP (by the player's address) to its connection.
#[derive(Debug)]
pub struct PlayerUdp {
    video: [Arc<UdpSocket>; 2],
    audio: [Arc<UdpSocket>; 2],
    video_ports: UdpPorts,
    audio_ports: UdpPorts,
    routes: Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>,
}

impl PlayerUdp {
    /// Binds two port pairs on `ip` (RTP even, RTCP the next, as RFC 3550 recommends; any
    /// two free ports if no pair is found quickly).
    pub async fn bind(ip: IpAddr) -> std::io::Result<Arc<Self>> {
        let (vr, vc) = bind_pair(ip).await?;
        let (ar, ac) = bind_pair(ip).await?;
        let port = |s: &UdpSocket| s.local_addr().map(|a| a.port());
        Ok(Arc::new(Self {
            video_ports: UdpPorts {
                rtp: port(&vr)?,
                rtcp: port(&vc)?,
            },
            audio_ports: UdpPorts {
                rtp: port(&ar)?,
                rtcp: port(&ac)?,
            },
            video: [Arc::new(vr), Arc::new(vc)],
            audio: [Arc::new(ar), Arc::new(ac)],
            routes: Mutex::new(HashMap::new()),
        }))
    }

    fn socket(&self, track: Track, rtcp: bool) -> &Arc<UdpSocket> {
        let pair = match track {
            Track::Video => &self.video,
            Track::Audio => &self.audio,
        };
        &pair[usize::from(rtcp)]
    }

    fn route(&self, from: SocketAddr, data: &[u8]) {
        let tx = self
            .routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&from)
            .cloned();
        if let Some(tx) = tx {
            let _ = tx.try_send(data.to_vec());
        }
    }

    /// Receives on every socket until `stop`: RTCP goes to its player's connection; anything
    /// on the RTP ports (players' NAT punch packets) is read and dropped.
    pub fn spawn_receivers(self: &Arc<Self>, stop: CancellationToken) {
        for track in Track::ALL {
            for rtcp in [false, true] {
                let udp = self.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let sock = udp.socket(track, rtcp).clone();
                    let mut buf = vec![0u8; 2048];
                    loop {
                        tokio::select! {
                            r = sock.recv_from(&mut buf) => match r {
                                Ok((n, from)) if rtcp => udp.route(from, &buf[..n]),
                                Ok(_) => {}
                                // ICMP port-unreachable from earlier sends lands here.
                                Err(_) => continue,
                            },
                            () = stop.cancelled() => break,
                        }
                    }
                });
            }
        }
    }
}

async fn bind_pair(ip: IpAddr) -> std::io::Result<(UdpSocket, UdpSocket)> {
    for _ in 0..16 {
        let a = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let p = a.local_addr()?.port();
        if p % 2 != 0 || p == u16::MAX {
            continue;
        }
        if let Ok(b) = UdpSocket::bind(SocketAddr::new(ip, p + 1)).await {
            return Ok((a, b));
        }
    }
    let a = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
    let b = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
    Ok((a, b))
}

/// Removes a player's RTCP route when its connection ends.
struct RouteGuard {
    udp: Arc<PlayerUdp>,
    addrs: Vec<SocketAddr>,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        let mut routes = self.udp.routes.lock().unwrap_or_else(|e| e.into_inner());
        for a in &self.addrs {
            routes.remove(a);
        }
    }
}

/// What every connection needs.
#[derive(Debug, Clone)]
pub struct PlayerContext {
    pub engine: EngineHandle,
    pub core: CoreHandle,
    pub admin_token: Arc<str>,
    pub timeouts: PlayerTimeouts,
    /// Challenge with Digest as well as Basic (`rtsp_egress_digest`).
    pub offer_digest: bool,
    pub udp: Option<Arc<PlayerUdp>>,
}

/// Accepts players until `shutdown`, then waits for their connections to close (each closes
/// as soon as the engine ended its session, or at once if it had none).
pub async fn serve(listener: TcpListener, ctx: PlayerContext, shutdown: CancellationToken) {
    let ctx = Arc::new(ctx);
    let permits = Arc::new(Semaphore::new(MAX_PLAYER_CONNECTIONS));
    let tracker = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of fds, most likely: back off instead of spinning.
                    tracing::warn!(error = %e, "RTSP player accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let stop = shutdown.clone();
        tracker.spawn(async move {
            let _permit = permit;
            connection(stream, peer, ctx, stop).await;
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

fn random_bytes<const N: usize>() -> [u8; N] {
    use aws_lc_rs::rand::SecureRandom;
    let mut b = [0u8; N];
    // The system RNG does not fail on Linux; ids only need to be unpredictable, and the
    // nonce and session id are per connection.
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut b);
    b
}

fn random_rtp() -> RtpParams {
    let b = random_bytes::<10>();
    RtpParams {
        ssrc: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        initial_sequence: u16::from_be_bytes([b[4], b[5]]),
        initial_timestamp: u32::from_be_bytes([b[6], b[7], b[8], b[9]]),
    }
}

/// The principal whose token the player's credentials prove. Digest needs the plaintext
/// secret, so only the admin token works with it; tenant tokens (stored as digests) need
/// Basic.
fn principal_of(q: &DescribeQuery, admin_token: &str, tenants: &TenantIndex) -> Option<Principal> {
    if let Some(p) = q.authorize([(Principal::Admin, admin_token)]) {
        return Some(p);
    }
    let password = q.credentials.as_ref()?.as_ref().ok()?.basic_password()?;
    match crate::auth::authenticate(password, admin_token, tenants)? {
        p @ Principal::Tenant { .. } => Some(p),
        Principal::Admin => None,
    }
}

/// The engine-side session of a connection, from DESCRIBE on.
struct Joined {
    session: SessionId,
    worker_rx: watch::Receiver<Option<Arc<Worker>>>,
    cancel: CancellationToken,
    stats: Arc<SessionStats>,
    params: StreamParams,
}

/// One track being sent.
struct Sending<P> {
    payloader: P,
    setup: TrackSetup,
}

/// What is being sent after PLAY.
struct Play {
    video: Option<Sending<VideoPayloader>>,
    audio: Option<Sending<OpusPayloader>>,
    video_rx: Option<broadcast::Receiver<Arc<VideoFrame>>>,
    audio_rx: Option<broadcast::Receiver<Arc<AudioPacket>>>,
    worker: Option<Arc<Worker>>,
    need_keyframe: bool,
    paused: bool,
    /// A presentation time and when it was sent: maps the wallclock to the media clock for
    /// sender reports.
    clock: Option<(Duration, Instant)>,
    /// Whether the first sender report went out (sent right after the first frame).
    reported: bool,
    parameter_sets: ParameterSets,
}

enum Ev {
    Read(std::io::Result<usize>),
    Rtcp(Vec<u8>),
    Ended,
    Shutdown,
    Deadline,
    Video(Result<Arc<VideoFrame>, broadcast::error::RecvError>),
    Audio(Result<Arc<AudioPacket>, broadcast::error::RecvError>),
    WorkerChanged,
    Report,
}

/// How a connection ends, from its side.
enum Exit {
    /// The engine ended the session (it already knows why), or there was none.
    Quiet,
    /// Tell the engine.
    End(EndReason),
}

struct Conn {
    ctx: Arc<PlayerContext>,
    peer: SocketAddr,
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    buf: Vec<u8>,
    decoder: InterleavedDecoder,
    session: PlayerSession,
    link: Arc<PlayerLink>,
    joined: Option<Joined>,
    play: Option<Play>,
    rtcp_rx: Option<mpsc::Receiver<Vec<u8>>>,
    rtcp_tx: mpsc::Sender<Vec<u8>>,
    route: Option<RouteGuard>,
    report: tokio::time::Interval,
    out: Vec<u8>,
}

async fn recv_opt<T: Clone>(
    rx: Option<&mut broadcast::Receiver<T>>,
) -> Result<T, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn cancelled_opt(c: Option<&CancellationToken>) {
    match c {
        Some(c) => c.cancelled().await,
        None => std::future::pending().await,
    }
}

async fn changed_opt(w: Option<&mut watch::Receiver<Option<Arc<Worker>>>>) -> bool {
    match w {
        Some(w) => w.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<PlayerContext>,
    shutdown: CancellationToken,
) {
    let now = Instant::now();
    let mut config = PlayerConfig::new(
        hex::encode(random_bytes::<8>()),
        hex::encode(random_bytes::<16>()),
        random_rtp(),
        random_rtp(),
    );
    config.session_timeout = ctx.timeouts.session;
    config.play_timeout = ctx.timeouts.play;
    config.offer_digest = ctx.offer_digest;
    if let Some(udp) = &ctx.udp {
        config.video_udp = Some(udp.video_ports);
        config.audio_udp = Some(udp.audio_ports);
    }
    let session = match PlayerSession::new(config, now) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "bad RTSP player settings");
            return;
        }
    };
    let (rd, wr) = stream.into_split();
    let (rtcp_tx, rtcp_rx) = mpsc::channel(RTCP_QUEUE_CAPACITY);
    let mut report = tokio::time::interval(SENDER_REPORT_INTERVAL);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn = Conn {
        ctx,
        peer,
        rd,
        wr,
        buf: vec![0; READ_CHUNK],
        decoder: InterleavedDecoder::new(),
        session,
        link: Arc::default(),
        joined: None,
        play: None,
        rtcp_rx: Some(rtcp_rx),
        rtcp_tx,
        route: None,
        report,
        out: Vec::new(),
    };
    tracing::debug!(%peer, "RTSP player connected");
    let exit = conn.run(&shutdown).await;
    if let (Exit::End(reason), Some(j)) = (exit, &conn.joined) {
        conn.ctx.engine.player_end(j.session, reason).await;
    }
    // Dropping the halves closes the connection; the route guard unregisters RTCP.
    tracing::debug!(%peer, "RTSP player connection closed");
}

impl Conn {
    async fn run(&mut self, shutdown: &CancellationToken) -> Exit {
        loop {
            let ev = {
                let Conn {
                    rd,
                    buf,
                    rtcp_rx,
                    joined,
                    play,
                    session,
                    report,
                    ..
                } = self;
                // Before the engine knows the player the connection keeps its own deadline;
                // after, the engine enforces the published one.
                let local_deadline = if joined.is_none() {
                    session.deadline()
                } else {
                    None
                };
                let playing = play.is_some();
                let (video_rx, audio_rx) = match play.as_mut() {
                    Some(p) => (p.video_rx.as_mut(), p.audio_rx.as_mut()),
                    None => (None, None),
                };
                let cancel = joined.as_ref().map(|j| j.cancel.clone());
                let worker_rx = joined.as_mut().map(|j| &mut j.worker_rx);
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => Ev::Shutdown,
                    () = cancelled_opt(cancel.as_ref()) => Ev::Ended,
                    r = rd.read(buf) => Ev::Read(r),
                    Some(d) = async { match rtcp_rx.as_mut() { Some(r) => r.recv().await, None => std::future::pending().await } } => Ev::Rtcp(d),
                    ok = changed_opt(worker_rx) => if ok { Ev::WorkerChanged } else { Ev::Ended },
                    r = recv_opt(video_rx) => Ev::Video(r),
                    r = recv_opt(audio_rx) => Ev::Audio(r),
                    _ = report.tick(), if playing => Ev::Report,
                    () = sleep_opt(local_deadline) => Ev::Deadline,
                }
            };
            let now = Instant::now();
            let step = match ev {
                Ev::Shutdown => return Exit::End(EndReason::Shutdown),
                Ev::Ended => return Exit::Quiet,
                Ev::Deadline => match self.session.poll_timeout(now) {
                    Some(_) => return Exit::Quiet,
                    None => Ok(()),
                },
                Ev::Read(Ok(0)) | Ev::Read(Err(_)) => {
                    return Exit::End(EndReason::ClientDisconnected);
                }
                Ev::Read(Ok(n)) => {
                    let bytes = self.buf[..n].to_vec();
                    self.decoder.feed(&bytes);
                    self.drain_requests(shutdown).await
                }
                Ev::Rtcp(d) => {
                    self.session.on_rtcp(&d, now);
                    self.publish();
                    Ok(())
                }
                Ev::WorkerChanged => {
                    self.worker_changed();
                    Ok(())
                }
                Ev::Video(r) => self.on_video(r).await,
                Ev::Audio(r) => self.on_audio(r).await,
                Ev::Report => self.send_reports().await,
            };
            if let Err(exit) = step {
                return exit;
            }
        }
    }

    /// Publishes the protocol's next deadline for the engine.
    fn publish(&self) {
        self.link.publish(self.session.next_deadline());
    }

    async fn write_out(&mut self) -> Result<(), Exit> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = tokio::time::timeout(WRITE_DEADLINE, self.wr.write_all(&self.out)).await;
        self.out.clear();
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Exit::End(EndReason::ClientDisconnected)),
            Err(_) => Err(Exit::End(EndReason::ClientMisbehaved {
                detail: format!("took no data for {WRITE_DEADLINE:?}"),
            })),
        }
    }

    async fn respond(&mut self, resp: Response) -> Result<(), Exit> {
        resp.write_to(&mut self.out);
        self.write_out().await
    }

    async fn drain_requests(&mut self, shutdown: &CancellationToken) -> Result<(), Exit> {
        loop {
            let item = match self.decoder.next() {
                Ok(Some(i)) => i,
                Ok(None) => return Ok(()),
                Err(e) => {
                    tracing::debug!(peer = %self.peer, error = %e, "malformed RTSP request from a player");
                    let _ = self.respond(Response::for_parse_error(&e, &[])).await;
                    return Err(Exit::End(EndReason::ClientMisbehaved {
                        detail: format!("malformed RTSP: {e}"),
                    }));
                }
            };
            let now = Instant::now();
            match item {
                Incoming::Interleaved { channel, data } => {
                    self.session.on_interleaved(channel, &data, now);
                    self.publish();
                }
                Incoming::Request(req) => {
                    let method = req.method.clone();
                    let handled = self.session.handle(req, now);
                    self.publish();
                    match handled {
                        Handled::Reply { response, actions } => {
                            tracing::debug!(peer = %self.peer, ?method, status = response.status.0, "RTSP player request");
                            self.respond(response).await?;
                            for a in actions {
                                self.act(a).await?;
                            }
                        }
                        Handled::Describe(query) => {
                            let resp = self.describe(query, shutdown).await?;
                            tracing::debug!(peer = %self.peer, status = resp.status.0, "RTSP player DESCRIBE");
                            self.publish();
                            self.respond(resp).await?;
                        }
                    }
                }
            }
        }
    }

    /// Authenticates, joins the producer and waits for its parameter sets.
    async fn describe(
        &mut self,
        query: Box<DescribeQuery>,
        shutdown: &CancellationToken,
    ) -> Result<Response, Exit> {
        let tenants = self.ctx.core.tenant_index();
        let Some(principal) = principal_of(&query, &self.ctx.admin_token, &tenants) else {
            // The credentials themselves are never logged; only whether some were sent.
            // Players ask without credentials first, so only a failed attempt is news.
            if query.credentials.is_some() {
                tracing::info!(peer = %self.peer, path = %query.path.target,
                    "RTSP player sent wrong credentials");
            } else {
                tracing::debug!(peer = %self.peer, path = %query.path.target,
                    "RTSP player asked without credentials; challenged");
            }
            return Ok(self
                .session
                .complete_describe(query, Err(DescribeRefusal::Unauthorized)));
        };
        // A second DESCRIBE on the connection starts over (players do not, but it is legal).
        if let Some(old) = self.joined.take() {
            self.play = None;
            self.ctx
                .engine
                .player_end(old.session, EndReason::Replaced)
                .await;
        }
        let app = match &query.path.target {
            StreamTarget::App { name, .. } => match self.ctx.core.apps().await {
                Ok(catalog) => catalog.by_title(name).cloned(),
                Err(_) => None,
            },
            StreamTarget::Lobby { .. } => None,
        };
        let joined = self
            .ctx
            .engine
            .player_join(PlayerJoin {
                target: query.path.target.clone(),
                principal: principal.clone(),
                peer: self.peer,
                app,
                link: self.link.clone(),
            })
            .await;
        let joined = match joined {
            Ok(j) => j,
            Err(refusal) => {
                tracing::info!(peer = %self.peer, path = %query.path.target, reason = %refusal, "RTSP player refused");
                return Ok(self
                    .session
                    .complete_describe(query, Err(refusal.describe_refusal())));
            }
        };
        tracing::info!(peer = %self.peer, session = %joined.session, who = %principal.label(),
            path = %query.path.target, "RTSP player joined");
        self.joined = Some(Joined {
            session: joined.session,
            worker_rx: joined.worker.clone(),
            cancel: joined.cancel.clone(),
            stats: joined.stats.clone(),
            params: joined.params.clone(),
        });
        let codec = match joined.params.codec {
            Codec::Hevc => player::VideoCodec::Hevc,
            _ => player::VideoCodec::H264,
        };
        let sets = tokio::select! {
            s = first_parameter_sets(joined.worker.clone(), codec) => s,
            () = joined.cancel.cancelled() => None,
            () = shutdown.cancelled() => return Err(Exit::End(EndReason::Shutdown)),
        };
        let Some(sets) = sets else {
            let resp = self
                .session
                .complete_describe(query, Err(DescribeRefusal::Unavailable));
            let _ = self.respond(resp).await;
            // Ended by the engine already (worker died, stopped), or its producer is silent.
            return Err(Exit::End(EndReason::Internal {
                detail: "the producer sent no keyframe in time".into(),
            }));
        };
        let description = StreamDescription {
            session_name: joined.title.clone(),
            video: Some(describe::VideoTrack {
                codec,
                parameter_sets: sets,
                framerate: Some(joined.params.fps),
            }),
            audio: (joined.params.audio_channels == 2).then_some(describe::AudioTrack {
                channels: describe::OpusChannels::Stereo,
            }),
        };
        Ok(self.session.complete_describe(query, Ok(description)))
    }

    async fn act(&mut self, action: Action) -> Result<(), Exit> {
        match action {
            Action::StartPlaying { tracks } => self.start_playing(tracks),
            Action::Pause => {
                if let Some(p) = &mut self.play {
                    p.paused = true;
                }
                Ok(())
            }
            Action::Resume => {
                if let Some(p) = &mut self.play {
                    p.paused = false;
                    p.need_keyframe = true;
                    if let Some(w) = &p.worker {
                        w.request_keyframe();
                    }
                }
                Ok(())
            }
            Action::End(reason) => Err(Exit::End(end_reason(reason))),
        }
    }

    fn start_playing(&mut self, tracks: Vec<TrackSetup>) -> Result<(), Exit> {
        let Some(j) = &self.joined else {
            return Err(Exit::End(EndReason::Internal {
                detail: "PLAY without a producer".into(),
            }));
        };
        let internal = |e: howl_proto::player::RtpConfigError| {
            Exit::End(EndReason::Internal {
                detail: e.to_string(),
            })
        };
        let mut video = None;
        let mut audio = None;
        let mut udp_routes = Vec::new();
        for t in tracks {
            match t.track {
                Track::Video => {
                    let codec = match j.params.codec {
                        Codec::Hevc => player::VideoCodec::Hevc,
                        _ => player::VideoCodec::H264,
                    };
                    let mut p =
                        VideoPayloader::new(codec, t.payload_type, t.rtp, player::DEFAULT_MTU)
                            .map_err(internal)?;
                    if let Some(d) = self.session.description().and_then(|d| d.video.as_ref()) {
                        p.set_parameter_sets(d.parameter_sets.clone());
                    }
                    video = Some(Sending {
                        payloader: p,
                        setup: t,
                    });
                }
                Track::Audio => {
                    let p = OpusPayloader::new(t.payload_type, t.rtp, player::DEFAULT_MTU)
                        .map_err(internal)?;
                    audio = Some(Sending {
                        payloader: p,
                        setup: t,
                    });
                }
            }
            if let Transport::Udp { client_rtcp, .. } = t.transport {
                udp_routes.push(SocketAddr::new(self.peer.ip(), client_rtcp));
            }
        }
        if let (Some(udp), false) = (&self.ctx.udp, udp_routes.is_empty()) {
            let mut routes = udp.routes.lock().unwrap_or_else(|e| e.into_inner());
            for a in &udp_routes {
                routes.insert(*a, self.rtcp_tx.clone());
            }
            drop(routes);
            self.route = Some(RouteGuard {
                udp: udp.clone(),
                addrs: udp_routes,
            });
        }
        let worker = j.worker_rx.borrow().clone();
        let mut play = Play {
            video,
            audio,
            video_rx: None,
            audio_rx: None,
            worker: None,
            need_keyframe: true,
            paused: false,
            clock: None,
            reported: false,
            parameter_sets: ParameterSets::default(),
        };
        subscribe(&mut play, worker);
        self.play = Some(play);
        self.report.reset();
        Ok(())
    }

    fn worker_changed(&mut self) {
        let Some(j) = &mut self.joined else {
            return;
        };
        let worker = j.worker_rx.borrow_and_update().clone();
        if let Some(p) = &mut self.play {
            subscribe(p, worker);
        }
    }

    async fn on_video(
        &mut self,
        r: Result<Arc<VideoFrame>, broadcast::error::RecvError>,
    ) -> Result<(), Exit> {
        let (Some(p), Some(j)) = (&mut self.play, &self.joined) else {
            return Ok(());
        };
        let stats = &j.stats;
        let frame = match r {
            Ok(f) => f,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                stats.frames_dropped.fetch_add(n, Ordering::Relaxed);
                stats.frames_dropped_lagged.fetch_add(n, Ordering::Relaxed);
                p.need_keyframe = true;
                if let Some(w) = &p.worker {
                    w.request_keyframe();
                }
                return Ok(());
            }
            Err(broadcast::error::RecvError::Closed) => {
                // The worker is gone; wait for the engine to publish another (or end us).
                p.video_rx = None;
                p.audio_rx = None;
                return Ok(());
            }
        };
        if let Some(rx) = &p.video_rx {
            stats
                .video_queue_depth
                .store(rx.len() as u64, Ordering::Relaxed);
        }
        if let Some(w) = &p.worker {
            stats.video_queue_bytes.store(
                w.stats.video_bytes.queued_after(frame.seq),
                Ordering::Relaxed,
            );
        }
        let Some(v) = &mut p.video else {
            return Ok(());
        };
        if p.paused {
            return Ok(());
        }
        if p.need_keyframe && !frame.keyframe {
            stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
            stats
                .frames_dropped_awaiting_keyframe
                .fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        p.need_keyframe = false;
        let pts = Duration::from_micros(frame.pts_us);
        p.clock = Some((pts, Instant::now()));
        let packets = v.payloader.packetize(&frame.data, pts);
        if p.parameter_sets != *v.payloader.parameter_sets() {
            p.parameter_sets = v.payloader.parameter_sets().clone();
        }
        let transport = v.setup.transport;
        stats.frames_sent.fetch_add(1, Ordering::Relaxed);
        let first = !p.reported;
        p.reported = true;
        self.send(Track::Video, transport, false, &packets).await?;
        if first {
            self.send_reports().await?;
        }
        Ok(())
    }

    async fn on_audio(
        &mut self,
        r: Result<Arc<AudioPacket>, broadcast::error::RecvError>,
    ) -> Result<(), Exit> {
        let (Some(p), Some(j)) = (&mut self.play, &self.joined) else {
            return Ok(());
        };
        let packet = match r {
            Ok(a) => a,
            // Audio has no keyframes: a lagging player skips ahead, its decoder conceals.
            Err(broadcast::error::RecvError::Lagged(_)) => return Ok(()),
            Err(broadcast::error::RecvError::Closed) => {
                p.audio_rx = None;
                return Ok(());
            }
        };
        // Audio starts with the video's first keyframe, so both clocks anchor together.
        if p.paused || (p.video.is_some() && !p.reported) {
            return Ok(());
        }
        let Some(a) = &mut p.audio else {
            return Ok(());
        };
        let pts = Duration::from_micros(packet.pts_us);
        let Some(pkt) = a.payloader.packetize(&packet.data, pts) else {
            return Ok(());
        };
        let transport = a.setup.transport;
        j.stats.audio_packets_sent.fetch_add(1, Ordering::Relaxed);
        self.send(Track::Audio, transport, false, &[pkt]).await
    }

    /// Sends packets of one track on its transport and counts them.
    async fn send(
        &mut self,
        track: Track,
        transport: Transport,
        rtcp: bool,
        packets: &[Vec<u8>],
    ) -> Result<(), Exit> {
        let Some(j) = &self.joined else {
            return Ok(());
        };
        let stats = j.stats.clone();
        let bytes: usize = packets.iter().map(Vec::len).sum();
        match transport {
            Transport::Interleaved {
                rtp_channel,
                rtcp_channel,
            } => {
                let channel = if rtcp { rtcp_channel } else { rtp_channel };
                for p in packets {
                    // Payloaders keep packets under the MTU, far below 64 KiB.
                    if player::interleaved::write_frame(channel, p, &mut self.out).is_err() {
                        continue;
                    }
                }
                self.write_out().await?;
            }
            Transport::Udp {
                client_rtp,
                client_rtcp,
                ..
            } => {
                let Some(udp) = &self.ctx.udp else {
                    return Ok(());
                };
                let sock = udp.socket(track, rtcp);
                let to =
                    SocketAddr::new(self.peer.ip(), if rtcp { client_rtcp } else { client_rtp });
                for p in packets {
                    // A full socket buffer or an ICMP error costs this packet only.
                    let _ = sock.send_to(p, to).await;
                }
            }
        }
        stats
            .datagrams_sent
            .fetch_add(packets.len() as u64, Ordering::Relaxed);
        stats.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(())
    }

    /// One sender report per track, all from one reading of the clocks.
    async fn send_reports(&mut self) -> Result<(), Exit> {
        let Some(p) = &self.play else {
            return Ok(());
        };
        let Some((pts, at)) = p.clock else {
            return Ok(());
        };
        let now = Instant::now();
        let media_now = pts + now.saturating_duration_since(at);
        #[allow(clippy::disallowed_methods)] // the wallclock is what an SR reports
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let ntp = player::NtpTime::from_unix(wall);
        let cname = format!("howl@{}", self.peer.ip());
        let mut reports = Vec::new();
        if let Some(v) = &p.video
            && let Some(ts) = v.payloader.timestamp_at(media_now)
        {
            let sr = SenderReport {
                ssrc: v.setup.rtp.ssrc,
                ntp,
                rtp_timestamp: ts,
                stats: v.payloader.stats(),
            };
            reports.push((Track::Video, v.setup.transport, sr.to_compound(&cname)));
        }
        if let Some(a) = &p.audio
            && let Some(ts) = a.payloader.timestamp_at(media_now)
        {
            let sr = SenderReport {
                ssrc: a.setup.rtp.ssrc,
                ntp,
                rtp_timestamp: ts,
                stats: a.payloader.stats(),
            };
            reports.push((Track::Audio, a.setup.transport, sr.to_compound(&cname)));
        }
        for (track, transport, pkt) in reports {
            self.send(track, transport, true, &[pkt]).await?;
        }
        Ok(())
    }
}

/// (Re)subscribes to a worker's fan-out; a joiner starts at a fresh keyframe.
fn subscribe(play: &mut Play, worker: Option<Arc<Worker>>) {
    match &worker {
        Some(w) => {
            play.video_rx = play.video.as_ref().map(|_| w.subscribe_video());
            play.audio_rx = play.audio.as_ref().map(|_| w.subscribe_audio());
            play.need_keyframe = true;
            w.request_keyframe();
        }
        None => {
            play.video_rx = None;
            play.audio_rx = None;
        }
    }
    play.worker = worker;
}

/// Waits (bounded) for the producer's next keyframe and returns its parameter sets.
async fn first_parameter_sets(
    mut worker_rx: watch::Receiver<Option<Arc<Worker>>>,
    codec: player::VideoCodec,
) -> Option<ParameterSets> {
    let wait = async {
        loop {
            let w = worker_rx.borrow_and_update().clone();
            if let Some(w) = w {
                let mut frames = w.subscribe_video();
                w.request_keyframe();
                loop {
                    match frames.recv().await {
                        Ok(f) if f.keyframe => {
                            let sets = ParameterSets::from_access_unit(codec, &f.data);
                            if sets.is_complete(codec) {
                                return Some(sets);
                            }
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => w.request_keyframe(),
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                }
            }
            worker_rx.changed().await.ok()?;
        }
    };
    tokio::time::timeout(DESCRIBE_DEADLINE, wait)
        .await
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use howl_proto::rtsp::{Method, Request};

    #[allow(clippy::disallowed_methods)]
    fn origin() -> Instant {
        Instant::now()
    }

    fn query(auth: Option<&str>) -> Box<DescribeQuery> {
        let t0 = origin();
        let mut s = PlayerSession::new(
            PlayerConfig::new("Sess10nId0", "nonce", random_rtp(), random_rtp()),
            t0,
        )
        .unwrap();
        let mut req = Request::new(Method::Describe, "rtsp://h/app/x").with_header("CSeq", "1");
        if let Some(a) = auth {
            req = req.with_header("Authorization", a);
        }
        match s.handle(req, t0) {
            Handled::Describe(q) => q,
            other => panic!("{other:?}"),
        }
    }

    /// `Basic` credentials for user `u` (base64 spelled out: the encoder is howl-proto's own).
    fn basic(password: &str) -> String {
        let b64 = match password {
            "admin-token" => "dTphZG1pbi10b2tlbg==",
            "tenant-token" => "dTp0ZW5hbnQtdG9rZW4=",
            "wrong" => "dTp3cm9uZw==",
            _ => "dTo=",
        };
        format!("Basic {b64}")
    }

    #[test]
    fn admin_and_tenant_tokens_resolve_to_their_principals() {
        let mut tenants = TenantIndex::new();
        tenants.insert(
            howl_core::tenants::token_digest("tenant-token"),
            (3, "team".into()),
        );
        let p = |auth: Option<&str>| principal_of(&query(auth), "admin-token", &tenants);
        assert_eq!(p(Some(&basic("admin-token"))), Some(Principal::Admin));
        assert_eq!(
            p(Some(&basic("tenant-token"))),
            Some(Principal::Tenant {
                id: 3,
                name: "team".into()
            })
        );
        assert_eq!(p(Some(&basic("wrong"))), None);
        assert_eq!(p(Some(&basic(""))), None);
        assert_eq!(p(Some("Bearer admin-token")), None);
        assert_eq!(p(None), None);
    }

    #[test]
    fn the_engine_sees_a_published_deadline_pass_with_its_reason() {
        let t0 = origin();
        let link = PlayerLink::default();
        assert_eq!(link.expired(t0 + Duration::from_secs(999)), None);
        link.publish(Some((
            t0 + Duration::from_secs(5),
            player::EndReason::NeverPlayed,
        )));
        assert_eq!(link.expired(t0), None);
        assert_eq!(
            link.expired(t0 + Duration::from_secs(5)),
            Some(EndReason::NeverPlayed)
        );
        link.publish(Some((t0, player::EndReason::KeepAliveTimeout)));
        assert_eq!(link.expired(t0), Some(EndReason::KeepAliveTimeout));
        link.publish(None);
        assert_eq!(link.expired(t0 + Duration::from_secs(999)), None);
    }
}
