//! Browser viewers over WebRTC: WHEP signalling on the management API, media on one shared
//! UDP port, driven by the sans-IO `str0m` crate with howl's own time and sockets.
//!
//! A browser POSTs an SDP offer for a lobby ([`Whep::offer`]). Before anything is allocated
//! the offer is parsed, the lobby is looked up (tenants see their own), and the producer's
//! next keyframe gives the H.264 profile it really encodes (`profile-level-id` = the SPS's
//! first three bytes). The answer is honest: str0m negotiates only that profile with
//! packetization mode 1 (level may differ) and Opus; an offer that lists neither is refused
//! with the reason, and nothing joins. Only then does the engine add the viewer to the
//! domain, and one task ([`conn`]) drives its `Rtc`: it follows the producer through a
//! [`Feed`](crate::viewer::feed::Feed) (bounded fan-out, drop to the next keyframe on lag),
//! writes the already-encoded access units and Opus packets (no re-encode), turns PLI/FIR
//! into the producer's forced keyframe, and publishes its deadline ([`BrowserLink`]) for the
//! engine to enforce: connect within [`CONNECT_DEADLINE`], then hear from the browser (ICE
//! consent checks, RTCP) at least every `webrtc_silence_secs`. ICE disconnect, a closed DTLS
//! association, `DELETE` of the resource, API stop, a dead worker and shutdown all end it
//! through the engine's one end path with a typed reason.
//!
//! All browsers share one UDP port (ICE-lite, host candidate): [`udp`] demultiplexes by the
//! ufrag in ICE checks and then by source address ([`demux`]).
//!
//! Offers are admitted against a cap ([`WhepSettings::max_pending_offers`]): from its POST
//! until its ICE + DTLS association connects (or it ends), an offer holds a [`PendingOffer`];
//! past the cap the POST is refused at once ([`WhepError::Busy`]) before anything is built,
//! so a flood of offers that never connect cannot pile up `Rtc`s for their 15 s each.
//!
//! AV1: a lobby whose producer encodes AV1 is sent AV1 (str0m packetizes the OBUs, RFC-style
//! aggregation headers) to a browser whose offer lists AV1; H.264 as above otherwise. A
//! browser behind a NAT reaches the ICE-lite host candidate through the STUN/TURN servers the
//! operator configures ([`IceServer`], `webrtc_ice_servers`): the page gets them from the API
//! before it builds its `RTCPeerConnection`, other WHEP players from the answer's `Link`
//! headers. The server needs no candidates from the browser: it learns the browser's address
//! (reflexive or relayed) from the connectivity checks the browser sends.

mod conn;
pub mod demux;
pub mod input;
mod udp;

pub use udp::WebRtcUdp;

use crate::domain::auth::Principal;
use crate::viewer::ViewerStats;
use crate::viewer::feed::{Feed, FeedItem, Tracks, WorkerWatch};
use crate::worker;
use futures_util::future::BoxFuture;
use howl_core::domain::Deadline;
use howl_core::{EndReason, SessionId};
use howl_media::protocol::Codec;
use howl_proto::player::ParameterSets;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use str0m::change::SdpOffer;
use str0m::format::Codec as RtcCodec;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::rtp::Extension;
use str0m::{Candidate, IceCreds, Rtc, RtcConfig};
use tokio_util::sync::CancellationToken;

/// From the answer to a connected ICE + DTLS association. A browser that never connects (a
/// page closed mid-signalling, an unreachable candidate) ends with `never_connected`.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(15);
/// Datagrams from the shared port to one viewer's task. Overflow: dropped (ICE, DTLS and
/// RTCP retransmit; a browser sends little besides them).
pub const DATAGRAM_QUEUE_CAPACITY: usize = 256;
/// How long an offer waits for the producer's next keyframe (its SPS names the profile to
/// negotiate): a worker's start-up deadline plus a few frames.
pub const FIRST_KEYFRAME_DEADLINE: Duration =
    Duration::from_secs(worker::START_DEADLINE.as_secs() + 5);

/// Default of `webrtc_max_pending_offers`: offers answered (or being answered) whose browser
/// has not connected yet. Each holds an `Rtc` (DTLS keys, ICE agent) and a feed for up to
/// [`CONNECT_DEADLINE`]; real pages connect within a second, so this many at once means a
/// flood, not an audience.
pub const DEFAULT_MAX_PENDING_OFFERS: usize = 32;
/// What a refused (busy) POST tells the browser to wait before it tries again
/// (`Retry-After`): about the time a real page takes to connect and free its place.
pub const BUSY_RETRY_AFTER: Duration = Duration::from_secs(2);

/// A STUN or TURN server that browsers use to reach the host candidate from behind a NAT
/// (`webrtc_ice_servers`; the shape of WebRTC's `RTCIceServer`). The credential is given to
/// the pages and WHEP players of token holders, never written to a log (`Debug` hides it).
#[derive(Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    /// `stun:`, `stuns:`, `turn:` or `turns:` URLs of one server.
    pub urls: Vec<String>,
    /// The TURN user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The TURN password (long-term credential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl std::fmt::Debug for IceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field("credential", &self.credential.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl IceServer {
    /// Checks what a browser would refuse (`RTCPeerConnection` throws on a bad server, and the
    /// page could not connect at all): a known scheme, and TURN with its user and password.
    pub fn validate(&self) -> Result<(), String> {
        if self.urls.is_empty() {
            return Err("an ICE server needs at least one URL".into());
        }
        for url in &self.urls {
            let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
            let rest = url.split_once(':').map_or("", |(_, r)| r);
            match scheme.as_deref() {
                Some("stun" | "stuns") if !rest.is_empty() => {}
                Some("turn" | "turns") if !rest.is_empty() => {
                    if self.username.is_none() || self.credential.is_none() {
                        return Err(format!(
                            "ICE server {url}: a TURN server needs username and credential"
                        ));
                    }
                }
                _ => {
                    return Err(format!(
                        "ICE server {url:?}: expected a stun:, stuns:, turn: or turns: URL"
                    ));
                }
            }
            if url
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '>')
            {
                return Err(format!(
                    "ICE server {url:?}: the URL has spaces or controls"
                ));
            }
        }
        Ok(())
    }
}

/// Counters of the WHEP service, read by `/api/v1/status` and `/metrics`.
#[derive(Debug, Default)]
pub struct WhepCounters {
    /// Offers between their POST and a connected association (or their end).
    pending: AtomicUsize,
    /// POSTs refused at once because [`WhepSettings::max_pending_offers`] offers were pending.
    refused_busy: AtomicU64,
}

/// What [`WhepCounters`] read now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WhepSample {
    pub pending_offers: u64,
    pub max_pending_offers: u64,
    pub offers_refused_busy: u64,
}

/// One offer's place under the cap, from its POST until its browser connects or it ends.
#[derive(Debug)]
pub struct PendingOffer {
    counters: Arc<WhepCounters>,
}

impl Drop for PendingOffer {
    fn drop(&mut self) {
        self.counters.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The deadline a browser's driver publishes for the engine to enforce.
pub type BrowserLink = crate::viewer::PublishedDeadline;

/// The engine's half of a browser viewer: its driver task does the media; the engine owns
/// its lifetime through the published deadline.
#[derive(Debug)]
pub struct BrowserViewer {
    pub link: Arc<BrowserLink>,
    pub lobby: u64,
}

/// What a browser watches: the lobby's current worker and codec.
#[derive(Debug)]
pub struct LobbyStream {
    pub worker: WorkerWatch,
    pub codec: Codec,
}

/// A browser asking to join, after its offer was accepted.
#[derive(Debug)]
pub struct BrowserJoin {
    pub lobby: u64,
    pub principal: Principal,
    pub label: String,
    pub link: Arc<BrowserLink>,
}

/// A browser attached to a lobby.
#[derive(Debug)]
pub struct BrowserJoined {
    pub session: SessionId,
    /// Fired by the engine's end path.
    pub cancel: CancellationToken,
    pub stats: Arc<ViewerStats>,
}

/// Why an offer was refused, sorted by who is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhepError {
    /// The offer is not SDP str0m can parse, or asks for something WebRTC does not allow.
    #[error("malformed SDP offer: {0}")]
    BadOffer(String),
    /// The offer lists no codec the producer encodes.
    #[error("{0}")]
    NoCommonCodec(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    /// The lobby cannot serve browsers now (no keyframe, not started, shutting down).
    #[error("{0}")]
    Unavailable(String),
    /// Too many offers wait for their browsers to connect; try again after
    /// [`BUSY_RETRY_AFTER`].
    #[error("{0}")]
    Busy(String),
}

/// What the WHEP service asks of the streaming engine (a trait, so that viewer drivers do
/// not depend on the engine module).
pub trait BrowserEngine: Send + Sync + std::fmt::Debug {
    /// The lobby's stream, if `principal` may watch it and browsers can carry its codec.
    fn lobby_stream(
        &self,
        lobby: u64,
        principal: Principal,
    ) -> BoxFuture<'_, Result<LobbyStream, WhepError>>;
    /// Adds the browser to the lobby; from then on the engine owns its lifetime.
    fn join(&self, join: BrowserJoin) -> BoxFuture<'_, Result<BrowserJoined, WhepError>>;
    /// Ends the viewer through the engine's one end path; false when `session` is not a
    /// browser watching `lobby` (it ended already, or it is something else).
    fn end(&self, lobby: u64, session: SessionId, reason: EndReason) -> BoxFuture<'_, bool>;
}

/// Settings of browser viewers, from the configuration.
#[derive(Debug, Clone)]
pub struct WhepSettings {
    /// How long a connected browser may send nothing before it ends (`webrtc_silence_secs`).
    pub silence: Duration,
    /// The most offers pending at once (`webrtc_max_pending_offers`).
    pub max_pending_offers: usize,
    /// STUN/TURN servers for browsers behind a NAT (`webrtc_ice_servers`).
    pub ice_servers: Vec<IceServer>,
    /// Origins whose pages may call the WHEP endpoints (`webrtc_cors_origins`); empty: only
    /// pages of the API's own origin.
    pub cors_origins: Vec<String>,
    /// Whether text crosses between the page's clipboard and the desktop's (`clipboard`).
    pub clipboard: bool,
}

impl Default for WhepSettings {
    fn default() -> Self {
        Self {
            silence: Duration::from_secs(10),
            max_pending_offers: DEFAULT_MAX_PENDING_OFFERS,
            ice_servers: Vec::new(),
            cors_origins: Vec::new(),
            clipboard: true,
        }
    }
}

/// The WHEP service: offers in, answers and driver tasks out.
#[derive(Debug)]
pub struct Whep {
    engine: Arc<dyn BrowserEngine>,
    udp: Arc<WebRtcUdp>,
    settings: WhepSettings,
    counters: Arc<WhepCounters>,
    shutdown: CancellationToken,
}

/// What kind of browser viewer an offer makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ViewerKind {
    /// A page that watches (and may drive) the lobby: video, audio, input.
    #[default]
    Watch,
    /// A thumbnail in the operator UI: video only (no audio sent; an offer with data channels,
    /// the only way input arrives, is refused), labelled `preview:` so lists can tell it apart.
    Preview,
}

/// An offer that parsed and holds a place under the pending cap.
#[derive(Debug)]
pub struct AdmittedOffer {
    parsed: SdpOffer,
    text: String,
    pending: PendingOffer,
}

/// An accepted offer: the session, and the answer to send back.
#[derive(Debug)]
pub struct Answer {
    pub session: SessionId,
    pub sdp: String,
}

impl Whep {
    pub fn new(
        engine: Arc<dyn BrowserEngine>,
        udp: Arc<WebRtcUdp>,
        settings: WhepSettings,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            engine,
            udp,
            settings,
            counters: Arc::default(),
            shutdown,
        }
    }

    pub fn settings(&self) -> &WhepSettings {
        &self.settings
    }

    pub fn sample(&self) -> WhepSample {
        WhepSample {
            pending_offers: self.counters.pending.load(Ordering::Acquire) as u64,
            max_pending_offers: self.settings.max_pending_offers as u64,
            offers_refused_busy: self.counters.refused_busy.load(Ordering::Relaxed),
        }
    }

    /// A place under the pending-offer cap, or the refusal (counted) when none is free.
    pub fn admit(&self) -> Result<PendingOffer, WhepError> {
        let max = self.settings.max_pending_offers;
        match self
            .counters
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            }) {
            Ok(_) => Ok(PendingOffer {
                counters: self.counters.clone(),
            }),
            Err(n) => {
                self.counters.refused_busy.fetch_add(1, Ordering::Relaxed);
                Err(WhepError::Busy(format!(
                    "{n} browser offers are waiting to connect (webrtc_max_pending_offers = \
                     {max}); try again in {} s",
                    BUSY_RETRY_AFTER.as_secs()
                )))
            }
        }
    }

    /// Answers a browser's offer to watch `lobby`: nothing is allocated unless it is accepted.
    pub async fn offer(
        &self,
        lobby: u64,
        principal: Principal,
        offer: &str,
        kind: ViewerKind,
    ) -> Result<Answer, WhepError> {
        let admitted = self.admit_offer(offer)?;
        self.answer(lobby, principal, admitted, kind).await
    }

    /// The checks that need no lobby: the offer parses, and a place under the pending cap is
    /// free. `/play` makes them before it starts an app, so a malformed or refused offer
    /// starts nothing.
    pub fn admit_offer(&self, offer: &str) -> Result<AdmittedOffer, WhepError> {
        let parsed =
            SdpOffer::from_sdp_string(offer).map_err(|e| WhepError::BadOffer(e.to_string()))?;
        // What str0m's parser lets through but no viewer can use (checked again, fully, by
        // the negotiation; here so that `/play` starts nothing for it).
        if !offer.lines().any(|l| l.starts_with("m=video ")) {
            return Err(WhepError::BadOffer(
                "the offer has no video section (m=video): a WHEP viewer receives video".into(),
            ));
        }
        let pending = self.admit()?;
        Ok(AdmittedOffer {
            parsed,
            text: offer.to_owned(),
            pending,
        })
    }

    /// Answers an admitted offer for `lobby`: nothing more is allocated unless it is accepted.
    pub async fn answer(
        &self,
        lobby: u64,
        principal: Principal,
        admitted: AdmittedOffer,
        kind: ViewerKind,
    ) -> Result<Answer, WhepError> {
        let AdmittedOffer {
            parsed,
            text,
            pending,
        } = admitted;
        let offer = text.as_str();
        // A preview has no input: an offer with data channels is not one.
        if kind == ViewerKind::Preview && offer.lines().any(|l| l.starts_with("m=application ")) {
            return Err(WhepError::BadOffer(
                "a preview receives video only: its offer opens no data channel".into(),
            ));
        }
        let stream = self.engine.lobby_stream(lobby, principal.clone()).await?;
        let video = match stream.codec {
            Codec::H264 => {
                let sps = first_sps(stream.worker.clone()).await.ok_or_else(|| {
                    WhepError::Unavailable("the lobby sent no keyframe in time".into())
                })?;
                VideoFormat::H264 { sps }
            }
            Codec::Av1 => VideoFormat::Av1,
            other => {
                return Err(WhepError::NoCommonCodec(format!(
                    "lobby {lobby} encodes {}; browsers are sent H.264 or AV1",
                    other.name()
                )));
            }
        };
        // The driver's clock, read at its edge: the `Rtc` starts now.
        let now = Instant::now();
        let mut negotiated = negotiate(parsed, offer, &video, self.udp.candidate(), now)?;
        if kind == ViewerKind::Preview {
            negotiated.audio = None;
        }
        let link = Arc::new(BrowserLink::default());
        link.publish(Some(Deadline {
            at: now + CONNECT_DEADLINE,
            reason: EndReason::NeverConnected,
        }));
        let label = match kind {
            ViewerKind::Watch => format!("browser:{}", principal.label()),
            ViewerKind::Preview => format!("preview:{}", principal.label()),
        };
        let joined = self
            .engine
            .join(BrowserJoin {
                lobby,
                principal,
                label,
                link: link.clone(),
            })
            .await?;
        let (route, datagrams) = self.udp.register(&negotiated.ufrag);
        let answer = Answer {
            session: joined.session,
            sdp: negotiated.answer.clone(),
        };
        let driver = conn::Driver {
            session: joined.session.0,
            rtc: negotiated.rtc,
            video: negotiated.video,
            audio: negotiated.audio,
            feed: Feed::new(stream.worker, Tracks::BOTH, joined.stats.clone()),
            stats: joined.stats,
            link,
            silence: self.settings.silence,
            udp: self.udp.clone(),
            datagrams,
            _route: route,
            pending: Some(pending),
            clipboard: self.settings.clipboard,
            page: conn::PageSide::default(),
        };
        let engine = self.engine.clone();
        let (cancel, shutdown, session) = (joined.cancel, self.shutdown.clone(), joined.session);
        // Ends when the engine ends the viewer (cancel), at shutdown, or by itself.
        tokio::spawn(async move {
            if let Some(reason) = driver.run(&cancel, &shutdown).await {
                engine.end(lobby, session, reason).await;
            }
        });
        Ok(answer)
    }

    /// `DELETE` of the WHEP resource: the browser leaves.
    pub async fn delete(&self, lobby: u64, session: SessionId) -> bool {
        self.engine
            .end(lobby, session, EndReason::BrowserLeft)
            .await
    }
}

/// Waits (bounded) for the producer's next keyframe and returns its SPS.
async fn first_sps(worker: WorkerWatch) -> Option<Vec<u8>> {
    // Its own feed and counters: what the offer looks at is not sent, so not counted.
    let mut feed = Feed::new(worker, Tracks::VIDEO, Arc::default());
    let wait = async {
        loop {
            match feed.next().await {
                FeedItem::Video(f) if f.keyframe => {
                    if let Some(sps) = ParameterSets::from_access_unit(Codec::H264, &f.data).sps {
                        return Some(sps);
                    }
                }
                FeedItem::Closed => return None,
                _ => {}
            }
        }
    };
    tokio::time::timeout(FIRST_KEYFRAME_DEADLINE, wait)
        .await
        .ok()
        .flatten()
}

/// The `profile-level-id` an SPS declares (profile_idc, constraint flags, level_idc), or
/// `None` for a NAL unit too short to be an SPS.
pub fn profile_level_id(sps: &[u8]) -> Option<u32> {
    let b = sps.get(1..4)?;
    Some(u32::from_be_bytes([0, b[0], b[1], b[2]]))
}

/// The H.264 formats an offer lists, as `pt profile-level-id packetization-mode` words, for a
/// refusal's reason.
fn offered_h264(offer: &str) -> String {
    let pts: Vec<&str> = offer
        .lines()
        .filter_map(|l| l.strip_prefix("a=rtpmap:"))
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, codec)| codec.to_ascii_uppercase().starts_with("H264/"))
        .map(|(pt, _)| pt)
        .collect();
    let mut out = Vec::new();
    for pt in pts {
        let fmtp = offer
            .lines()
            .filter_map(|l| l.strip_prefix("a=fmtp:"))
            .find_map(|l| l.strip_prefix(pt)?.strip_prefix(' '))
            .unwrap_or("");
        let param = |k: &str| {
            fmtp.split(';')
                .filter_map(|kv| kv.trim().split_once('='))
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.to_owned())
        };
        out.push(format!(
            "{} (profile-level-id {}, packetization-mode {})",
            pt,
            param("profile-level-id").unwrap_or_else(|| "absent".into()),
            param("packetization-mode").unwrap_or_else(|| "0".into())
        ));
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join(", ")
    }
}

/// The video codecs an offer lists (their `rtpmap` names, retransmission and FEC formats
/// left out), for a refusal's reason.
fn offered_video_codecs(offer: &str) -> String {
    let mut in_video = false;
    let mut out: Vec<String> = Vec::new();
    for line in offer.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            in_video = m.starts_with("video");
        } else if let (true, Some(map)) = (in_video, line.strip_prefix("a=rtpmap:")) {
            let name = map
                .split_once(' ')
                .and_then(|(_, c)| c.split('/').next())
                .unwrap_or("")
                .to_ascii_uppercase();
            let helper = matches!(name.as_str(), "RTX" | "RED" | "ULPFEC" | "FLEXFEC-03" | "");
            if !helper && !out.contains(&name) {
                out.push(name);
            }
        }
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join(", ")
    }
}

/// An accepted offer's `Rtc`, with what the driver writes to.
struct Negotiated {
    rtc: Rtc,
    answer: String,
    ufrag: String,
    video: (Mid, Pt),
    audio: Option<(Mid, Pt)>,
}

/// Payload types of the answer (str0m adopts the offer's where they differ).
const PT_H264: u8 = 102;
const PT_H264_RTX: u8 = 103;

/// What the producer encodes, as far as negotiation needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum VideoFormat {
    /// H.264; its keyframes carry this SPS (its profile is the one to answer).
    H264 {
        sps: Vec<u8>,
    },
    Av1,
}

/// Answers `offer` for a producer of `video`: for H.264 only the SPS's profile with
/// packetization mode 1, for AV1 AV1; and Opus. Sans-IO: `now` is the `Rtc`'s start.
fn negotiate(
    parsed: SdpOffer,
    offer: &str,
    video: &VideoFormat,
    candidate: SocketAddr,
    now: Instant,
) -> Result<Negotiated, WhepError> {
    let plid = match video {
        VideoFormat::H264 { sps } => Some(
            profile_level_id(sps)
                .ok_or_else(|| WhepError::Unavailable("the producer's SPS is truncated".into()))?,
        ),
        VideoFormat::Av1 => None,
    };
    let ufrag = random_token(8);
    let mut config = RtcConfig::new()
        .set_ice_lite(true)
        .set_local_ice_credentials(IceCreds {
            ufrag: ufrag.clone(),
            pass: random_token(24),
        })
        .clear_codecs()
        .enable_opus(true, false);
    match plid {
        Some(plid) => {
            config
                .codec_config()
                .add_h264(PT_H264.into(), Some(PT_H264_RTX.into()), true, plid);
        }
        // str0m's AV1 format: profile 0 (main), which every AV1 encoder howl drives writes.
        None => config.codec_config().enable_av1(true),
    }
    // The playout-delay extension (sent as 0 with every frame): browsers present each frame
    // as soon as it is decoded instead of buffering for smoothness.
    config.extension_map().set(12, Extension::PlayoutDelay);
    let mut rtc = config.build(now);
    let cand = Candidate::host(candidate, "udp")
        .map_err(|e| WhepError::Unavailable(format!("bad WebRTC candidate {candidate}: {e}")))?;
    rtc.add_local_candidate(cand);
    let answer = rtc
        .sdp_api()
        .accept_offer(parsed)
        .map_err(|e| WhepError::BadOffer(e.to_string()))?;
    let answer = answer.to_sdp_string();
    // str0m reports its media as events once the connection runs; the answer already names
    // them (one `m=` section each, with its `a=mid`).
    let medias = answer_media(&answer);
    let pt_of = |rtc: &mut Rtc, kind: MediaKind, codec: RtcCodec| {
        medias
            .iter()
            .filter(|(_, k)| *k == kind)
            .find_map(|(mid, _)| {
                let w = rtc.writer(*mid)?;
                let pt = w
                    .payload_params()
                    .find(|p| p.spec().codec == codec)
                    .map(|p| p.pt())?;
                Some((*mid, pt))
            })
    };
    let video = match plid {
        Some(plid) => pt_of(&mut rtc, MediaKind::Video, RtcCodec::H264).ok_or_else(|| {
            WhepError::NoCommonCodec(format!(
                "the offer lists no video format this lobby encodes: H.264 with \
                 profile-level-id {plid:06x} (or the same profile at another level) and \
                 packetization-mode 1; offered H.264: {}",
                offered_h264(offer)
            ))
        })?,
        None => pt_of(&mut rtc, MediaKind::Video, RtcCodec::Av1).ok_or_else(|| {
            WhepError::NoCommonCodec(format!(
                "the offer lists no video format this lobby encodes: AV1 (this lobby's \
                 producer encodes AV1, and browsers are sent what it encodes); offered video \
                 codecs: {}",
                offered_video_codecs(offer)
            ))
        })?,
    };
    let audio = pt_of(&mut rtc, MediaKind::Audio, RtcCodec::Opus);
    Ok(Negotiated {
        rtc,
        answer,
        ufrag,
        video,
        audio,
    })
}

/// The media sections of an answer: their kind and mid.
fn answer_media(answer: &str) -> Vec<(Mid, MediaKind)> {
    let mut out = Vec::new();
    let mut kind = None;
    for line in answer.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            kind = match m.split(' ').next() {
                Some("video") => Some(MediaKind::Video),
                Some("audio") => Some(MediaKind::Audio),
                _ => None,
            };
        } else if let (Some(k), Some(mid)) = (kind, line.strip_prefix("a=mid:")) {
            out.push((Mid::from(mid.trim()), k));
        }
    }
    out
}

/// A random token of ICE characters (RFC 8445: ALPHA / DIGIT / "+" / "/").
fn random_token(len: usize) -> String {
    use aws_lc_rs::rand::SecureRandom;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut b = vec![0u8; len];
    // The system RNG does not fail on Linux; the ufrag only needs to be unguessable.
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut b);
    b.iter()
        .map(|x| char::from(ALPHABET[usize::from(*x) % ALPHABET.len()]))
        .collect()
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_input;
