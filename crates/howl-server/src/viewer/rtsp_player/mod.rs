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

mod conn;
mod udp;

pub use udp::PlayerUdp;

use crate::domain::CoreHandle;
use crate::domain::auth::{Principal, TenantIndex};
use crate::viewer::ViewerStats;
use crate::viewer::feed::WorkerWatch;
use crate::worker;
use futures_util::future::BoxFuture;
use howl_core::domain::Deadline;
use howl_core::{App, EndReason, SessionId};
use howl_media::protocol::{Codec, StreamParams};
use howl_proto::player::{self, DescribeQuery, DescribeRefusal, RtpParams, StreamTarget};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
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
pub use howl_core::domain::PlayerDefaults;

/// The player deadline a connection publishes for the engine to enforce.
pub type PlayerLink = crate::viewer::PublishedDeadline;

/// The engine's deadline for the player protocol's next one (`PlayerSession::next_deadline`).
fn deadline_of(next: Option<(Instant, player::EndReason)>) -> Option<Deadline> {
    next.map(|(at, reason)| Deadline {
        at,
        reason: end_reason(reason),
    })
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
    pub worker: WorkerWatch,
    /// Fired by the engine's end path.
    pub cancel: CancellationToken,
    pub stats: Arc<ViewerStats>,
    pub params: StreamParams,
    /// The producer's codec, one the payloaders take (see [`rtp_codec`]).
    pub codec: Codec,
    pub title: String,
}

/// The codec players get for a producer's codec, or why they cannot watch it: there is no RTP
/// payload format players understand for every codec (RFC 9628 for AV1 is too new for them),
/// and a silent substitution would send bytes no decoder expects. The domain refuses such a
/// join first (`ViewerKind::carries`); this is the driver's own check of what its payloaders
/// take.
pub fn rtp_codec(codec: Codec) -> Result<Codec, PlayerRefusal> {
    match codec {
        Codec::H264 | Codec::Hevc => Ok(codec),
        Codec::Av1 => Err(PlayerRefusal::Unavailable(format!(
            "{} streams cannot be sent to RTSP players",
            codec.name()
        ))),
    }
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
    /// Admission control refused a new app share (answered 503 like `Unavailable`; the
    /// engine logged it already).
    #[error("{0}")]
    AtCapacity(String),
}

impl PlayerRefusal {
    fn describe_refusal(&self) -> DescribeRefusal {
        match self {
            Self::NotFound => DescribeRefusal::NotFound,
            Self::BadRequest(_) => DescribeRefusal::BadRequest,
            Self::Unavailable(_) | Self::AtCapacity(_) => DescribeRefusal::Unavailable,
        }
    }
}

/// Timeouts of player sessions, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct PlayerTimeouts {
    pub session: Duration,
    pub play: Duration,
}

/// What a player connection asks of the streaming engine. A trait, so that viewer drivers do
/// not depend on the engine module (the engine depends on them).
pub trait PlayerEngine: Send + Sync + std::fmt::Debug {
    /// Adds the player to the producer its path names (starting an `/app/` producer if none
    /// runs); from then on the engine owns its lifetime.
    fn join(&self, join: PlayerJoin) -> BoxFuture<'_, Result<PlayerJoined, PlayerRefusal>>;
    /// Ends the player through the engine's one end path.
    fn end(&self, session: SessionId, reason: EndReason) -> BoxFuture<'_, ()>;
}

/// The engine's half of an RTSP player: the connection task (conn.rs) does the media and the
/// protocol; the engine owns its lifetime (deadlines, the end path).
#[derive(Debug)]
pub struct PlayerViewer {
    /// The URL path it watches, for the per-path counters.
    pub path: String,
    pub link: Arc<PlayerLink>,
    pub codec: Codec,
}

/// What every connection needs.
#[derive(Debug, Clone)]
pub struct PlayerContext {
    pub engine: Arc<dyn PlayerEngine>,
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
            conn::connection(stream, peer, ctx, stop).await;
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
    match crate::domain::auth::authenticate(password, admin_token, tenants)? {
        p @ Principal::Tenant { .. } => Some(p),
        Principal::Admin => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use howl_proto::player::{Handled, PlayerConfig, PlayerSession};
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
    fn the_engine_reads_the_published_deadline_with_its_reason() {
        let t0 = origin();
        let link = PlayerLink::default();
        assert_eq!(link.deadline(), None);
        let at = t0 + Duration::from_secs(5);
        link.publish(deadline_of(Some((at, player::EndReason::NeverPlayed))));
        assert_eq!(
            link.deadline(),
            Some(Deadline {
                at,
                reason: EndReason::NeverPlayed
            })
        );
        link.publish(deadline_of(Some((t0, player::EndReason::KeepAliveTimeout))));
        assert_eq!(
            link.deadline().map(|d| d.reason),
            Some(EndReason::KeepAliveTimeout)
        );
        link.publish(deadline_of(None));
        assert_eq!(link.deadline(), None);
    }

    #[test]
    fn players_get_the_codecs_they_can_take_and_a_refusal_naming_the_others() {
        assert_eq!(rtp_codec(Codec::H264), Ok(Codec::H264));
        assert_eq!(rtp_codec(Codec::Hevc), Ok(Codec::Hevc));
        match rtp_codec(Codec::Av1) {
            Err(PlayerRefusal::Unavailable(why)) => assert!(why.contains("av1"), "{why}"),
            other => panic!("AV1 must be refused, got {other:?}"),
        }
    }
}
