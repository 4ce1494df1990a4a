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
#[derive(Debug, Clone, Copy)]
pub struct WhepSettings {
    /// How long a connected browser may send nothing before it ends (`webrtc_silence_secs`).
    pub silence: Duration,
    /// Whether text crosses between the page's clipboard and the desktop's (`clipboard`).
    pub clipboard: bool,
}

/// The WHEP service: offers in, answers and driver tasks out.
#[derive(Debug)]
pub struct Whep {
    engine: Arc<dyn BrowserEngine>,
    udp: Arc<WebRtcUdp>,
    settings: WhepSettings,
    shutdown: CancellationToken,
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
            shutdown,
        }
    }

    /// Answers a browser's offer to watch `lobby`: nothing is allocated unless it is accepted.
    pub async fn offer(
        &self,
        lobby: u64,
        principal: Principal,
        offer: &str,
    ) -> Result<Answer, WhepError> {
        let parsed =
            SdpOffer::from_sdp_string(offer).map_err(|e| WhepError::BadOffer(e.to_string()))?;
        let stream = self.engine.lobby_stream(lobby, principal.clone()).await?;
        if stream.codec != Codec::H264 {
            return Err(WhepError::NoCommonCodec(format!(
                "lobby {lobby} encodes {}; browsers are sent H.264 only",
                stream.codec.name()
            )));
        }
        let sps = first_sps(stream.worker.clone())
            .await
            .ok_or_else(|| WhepError::Unavailable("the lobby sent no keyframe in time".into()))?;
        // The driver's clock, read at its edge: the `Rtc` starts now.
        let now = Instant::now();
        let negotiated = negotiate(parsed, offer, &sps, self.udp.candidate(), now)?;
        let link = Arc::new(BrowserLink::default());
        link.publish(Some(Deadline {
            at: now + CONNECT_DEADLINE,
            reason: EndReason::NeverConnected,
        }));
        let label = format!("browser:{}", principal.label());
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

/// Answers `offer` for a producer whose keyframes carry `sps`: only that H.264 profile with
/// packetization mode 1, and Opus. Sans-IO: `now` is the `Rtc`'s start.
fn negotiate(
    parsed: SdpOffer,
    offer: &str,
    sps: &[u8],
    candidate: SocketAddr,
    now: Instant,
) -> Result<Negotiated, WhepError> {
    let plid = profile_level_id(sps)
        .ok_or_else(|| WhepError::Unavailable("the producer's SPS is truncated".into()))?;
    let ufrag = random_token(8);
    let mut config = RtcConfig::new()
        .set_ice_lite(true)
        .set_local_ice_credentials(IceCreds {
            ufrag: ufrag.clone(),
            pass: random_token(24),
        })
        .clear_codecs()
        .enable_opus(true, false);
    config
        .codec_config()
        .add_h264(PT_H264.into(), Some(PT_H264_RTX.into()), true, plid);
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
    let video = pt_of(&mut rtc, MediaKind::Video, RtcCodec::H264).ok_or_else(|| {
        WhepError::NoCommonCodec(format!(
            "the offer lists no video format this lobby encodes: H.264 with profile-level-id \
             {plid:06x} (or the same profile at another level) and packetization-mode 1; \
             offered H.264: {}",
            offered_h264(offer)
        ))
    })?;
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
