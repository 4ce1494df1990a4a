//! Moonlight viewers joining: `/launch`, `/resume`, `/cancel`, and the glue between a
//! launch's RTSP handshake and its producer (ANNOUNCE starts or checks the producer, PLAY
//! starts the senders), the UDP pings and the ENet connects.

use super::{Engine, Viewer, random_bytes};
use crate::data::enet::{EnetCommand, PeerId};
use crate::viewer::moonlight::{ControlLink, MediaKind, Moonlight};
use crate::viewer::{ViewerKind, ViewerStats};
use howl_core::domain::{AdmissionPath, AnnouncedStream, Fault, LaunchRequest, Refusal};
use howl_core::encryption::{EncryptionDecision, EncryptionRefusal};
use howl_core::{App, EndReason, SessionId};
use howl_proto::rtsp::{
    Event as RtspEvent, MoonlightParams, MoonlightRtsp, PingPayload, Request, Response, RtspCipher,
    StatusCode,
};
use howl_proto::sdp::{EncryptionFlags, HostOffer};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Why `/launch` or `/resume` failed; the status code is what clients are told.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A lifecycle rule said no (unknown app, not a member, wrong mode, nothing to resume,
    /// admission control).
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// The encryption policy for the client's network refuses this client.
    #[error("{0}")]
    Encryption(#[from] EncryptionRefusal),
    /// The host could not set the stream up (no RTSP port, no session tokens).
    #[error("the host cannot stream this app: {0}")]
    Unsupported(String),
    #[error("the streaming engine did not answer in time")]
    Unavailable,
}

impl LaunchError {
    /// Refused by admission control (logged by the engine already).
    pub fn at_capacity(&self) -> bool {
        matches!(self, LaunchError::Refused(r) if r.is_capacity())
    }

    pub fn status_code(&self) -> i64 {
        match self {
            LaunchError::Refused(r) => match r.fault() {
                Fault::BadRequest => 400,
                Fault::Forbidden => 403,
                Fault::NotFound => 404,
                Fault::Conflict => 409,
                Fault::Unavailable => 503,
            },
            LaunchError::Encryption(_) => 403,
            LaunchError::Unsupported(_) | LaunchError::Unavailable => 503,
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
    /// Address of the client: its network class picks the encryption policy.
    pub peer_ip: IpAddr,
    /// `corever` of the request (>= 1: the client can encrypt its RTSP handshake).
    pub corever: Option<i32>,
    /// `mode` of the launch request (width, height, fps), when given.
    pub mode: Option<(u32, u32, u32)>,
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

impl Engine {
    pub(super) fn session_url(local_ip: IpAddr, port: u16, encrypted: bool) -> String {
        let scheme = if encrypted { "rtspenc" } else { "rtsp" };
        match local_ip {
            IpAddr::V4(v4) => format!("{scheme}://{v4}:{port}"),
            IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{port}"),
        }
    }

    /// The encryption policy's answer for this request, before anything starts: a refused
    /// client leaves nothing behind.
    fn encryption_for(&self, input: &LaunchInput) -> Result<EncryptionDecision, LaunchError> {
        self.settings
            .encryption
            .decide(input.peer_ip, input.corever)
            .map_err(|e| {
                tracing::info!(client = %crate::domain::short(&input.client),
                    peer = %input.peer_ip, corever = ?input.corever, reason = %e,
                    "launch refused by the encryption policy");
                LaunchError::from(e)
            })
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

    pub(super) fn launch(
        &mut self,
        app_id: i32,
        app: Option<App>,
        input: LaunchInput,
        now: Instant,
    ) -> Result<String, LaunchError> {
        let encryption = self.encryption_for(&input)?;
        let id = self
            .domain
            .launch(
                now,
                LaunchRequest {
                    client: input.client.clone(),
                    app_id,
                    app,
                    mode: input.mode,
                },
            )
            .inspect_err(|r| {
                let who = crate::domain::short(&input.client).to_string();
                super::log_refusal(AdmissionPath::Launch, &who, r);
            })?;
        tracing::info!(client = %crate::domain::short(&input.client), peer = %input.peer_ip,
            app_id, session = %id, "launch");
        self.open_moonlight(id, input, encryption, now)
    }

    pub(super) fn resume(
        &mut self,
        input: LaunchInput,
        now: Instant,
    ) -> Result<String, LaunchError> {
        let encryption = self.encryption_for(&input)?;
        let id = self.domain.resume(now, &input.client)?;
        tracing::info!(client = %crate::domain::short(&input.client), session = %id, "resume");
        self.open_moonlight(id, input, encryption, now)
    }

    /// `/cancel`: stops the client's own app; in a lobby it only ends the client's stream.
    pub(super) fn cancel(&mut self, client: &str, now: Instant) -> bool {
        self.domain.cancel(now, client)
    }

    /// The driver's half of a new Moonlight viewer: its connect tokens, its RTSP handshake and
    /// its own RTSP port; returns the `sessionUrl0` for the client. If any of it fails, the
    /// viewer the domain just added ends the one way.
    fn open_moonlight(
        &mut self,
        sid: SessionId,
        input: LaunchInput,
        encryption: EncryptionDecision,
        now: Instant,
    ) -> Result<String, LaunchError> {
        match self.moonlight_io(sid, &input, encryption, now) {
            Ok(url) => Ok(url),
            Err(e) => {
                self.router.unregister(&sid);
                self.domain.end_viewer(
                    now,
                    sid,
                    EndReason::Internal {
                        detail: e.to_string(),
                    },
                );
                Err(e)
            }
        }
    }

    fn moonlight_io(
        &mut self,
        sid: SessionId,
        input: &LaunchInput,
        encryption: EncryptionDecision,
        now: Instant,
    ) -> Result<String, LaunchError> {
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
            encryption_requested: encryption.requested,
            ref_pic_invalidation: false,
            surround: surround_offer(),
        };
        let params = MoonlightParams {
            offer,
            ports: self.settings.ports,
            ping_payload: ping,
            connect_data: connect,
            session_id: format!("{:016X}", u64::from_be_bytes(random_bytes::<8>())),
            encryption_required: encryption.required,
            handshake_timeout: self.settings.rtsp_deadline,
        };
        let rtsp =
            MoonlightRtsp::new(params, now).map_err(|e| LaunchError::Unsupported(e.to_string()))?;
        let cipher = if encryption.rtsp_encrypted {
            Some(
                RtspCipher::new(&input.rikey)
                    .map_err(|e| LaunchError::Unsupported(e.to_string()))?,
            )
        } else {
            None
        };
        let listener = self.bind_rtsp()?;
        let rtsp_port = listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or(self.settings.rtsp_port);
        let cancel = CancellationToken::new();
        if let Some(engine) = self.handle() {
            tokio::spawn(crate::viewer::moonlight::rtsp::serve_session(
                listener,
                engine,
                sid,
                cipher,
                cancel.clone(),
            ));
        }
        self.viewers.insert(
            sid,
            Viewer {
                cancel,
                stats: Arc::new(ViewerStats::default()),
                kind: ViewerKind::Moonlight(Box::new(Moonlight::new(
                    input.rikey,
                    input.rikeyid,
                    rtsp,
                    encryption,
                ))),
            },
        );
        tracing::info!(session = %sid, network = encryption.class.name(),
            encryption_policy = encryption.mode.name(),
            requested = encryption.requested.0, required = encryption.required.0,
            rtsp_encrypted = encryption.rtsp_encrypted, "encryption policy");
        Ok(Self::session_url(
            input.local_ip,
            rtsp_port,
            encryption.rtsp_encrypted,
        ))
    }

    /// The Moonlight half of viewer `sid`.
    fn moonlight(&mut self, sid: SessionId) -> Option<&mut Moonlight> {
        match &mut self.viewers.get_mut(&sid)?.kind {
            ViewerKind::Moonlight(m) => Some(m),
            _ => None,
        }
    }

    /// One request of a launch's RTSP handshake.
    pub(super) fn rtsp(&mut self, sid: SessionId, request: Request, now: Instant) -> Response {
        let refusal = Response::for_request(&request, StatusCode::BAD_REQUEST);
        let Some(m) = self.moonlight(sid) else {
            return Response::for_request(&request, StatusCode::SESSION_NOT_FOUND);
        };
        let (mut resp, events) = m.handshake(request, now);
        for ev in events {
            match ev {
                RtspEvent::Announced(cfg) => {
                    // A refusal also ends the viewer in the domain (ClientMisbehaved).
                    if let Err(why) =
                        self.domain
                            .rtsp_announced(now, sid, AnnouncedStream::from(&cfg))
                    {
                        let why = why.to_string();
                        tracing::info!(session = %sid, reason = %why, "ANNOUNCE refused");
                        resp = refusal.clone().with_header("X-Howl-Error", why);
                        if let Some(m) = self.moonlight(sid) {
                            m.rtsp.abort();
                        }
                    }
                }
                RtspEvent::Play => self.play(sid, now),
                RtspEvent::Rejected { method, error } => {
                    tracing::info!(session = %sid, method = ?method, error = %error, "RTSP request refused");
                }
                RtspEvent::TimedOut => {
                    self.domain.end_viewer(now, sid, EndReason::RtspDeadline);
                }
            }
        }
        resp
    }

    /// PLAY: the viewer's senders start (they wait for the client's pings).
    fn play(&mut self, sid: SessionId, now: Instant) {
        if !self.domain.rtsp_played(now, sid) {
            return;
        }
        let Some(producer) = self.domain.viewer(sid).map(|v| v.producer) else {
            return;
        };
        let worker_rx = self.producer_watch(producer);
        let Some(v) = self.viewers.get_mut(&sid) else {
            return;
        };
        let ViewerKind::Moonlight(m) = &mut v.kind else {
            return;
        };
        tracing::info!(session = %sid, "PLAY");
        m.play(
            (self.settings.fec_percentage, self.settings.fec_small_frames),
            self.settings.fault_drop_fraction,
            [&self.video_sock, &self.audio_sock],
            &worker_rx,
            &v.cancel,
            &v.stats,
        );
    }

    /// A ping on a shared media port tells the viewer it names where to send.
    pub(super) fn ping(&mut self, kind: MediaKind, datagram: &[u8], src: SocketAddr) {
        let Some(sid) = self.router.route_ping(datagram).copied() else {
            return;
        };
        if let Some(m) = self.moonlight(sid) {
            m.learn_address(kind, src);
        }
    }

    /// An ENet CONNECT: its token names the viewer, whose control link the ENet router then
    /// drives. `None`: nobody has that token, and the peer is refused.
    pub(super) fn enet_connected(
        &mut self,
        peer: PeerId,
        addr: SocketAddr,
        data: u32,
        now: Instant,
    ) -> Option<Arc<ControlLink>> {
        let Some(sid) = self.router.route_connect(data).copied() else {
            tracing::info!(%addr, "ENet connect with an unknown token; refusing");
            self.enet
                .send(EnetCommand::DisconnectLater { peer, data: 0 });
            return None;
        };
        let producer = self.domain.viewer(sid)?.producer;
        let worker_rx = self.producer_watch(producer);
        let v = self.viewers.get_mut(&sid)?;
        let ViewerKind::Moonlight(m) = &mut v.kind else {
            return None;
        };
        let link = m.connect(
            sid.0,
            peer,
            self.enet.clone(),
            worker_rx,
            v.cancel.clone(),
            v.stats.clone(),
            now,
        );
        match link {
            Ok(link) => {
                self.domain.control_connected(now, sid);
                self.by_peer.insert(peer, sid);
                tracing::info!(session = %sid, %addr, "control stream connected");
                Some(link)
            }
            Err(reason) => {
                self.domain.end_viewer(now, sid, reason);
                None
            }
        }
    }

    /// The ENet peer disconnected or timed out.
    pub(super) fn enet_disconnected(&mut self, peer: PeerId, now: Instant) {
        let Some(sid) = self.by_peer.remove(&peer) else {
            return;
        };
        if let Some(m) = self.moonlight(sid) {
            m.disconnected();
        }
        self.domain
            .end_viewer(now, sid, EndReason::ClientDisconnected);
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
