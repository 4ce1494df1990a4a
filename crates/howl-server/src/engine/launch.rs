//! Moonlight viewers joining: `/launch`, `/resume`, `/cancel`, and the glue between a
//! launch's RTSP handshake and its producer (ANNOUNCE starts or checks the producer, PLAY
//! starts the senders), the UDP pings and the ENet connects.

use super::producer::{Role, check_streamable, source_of};
use super::{Engine, Viewer, random_bytes};
use crate::enet::{EnetCommand, PeerId};
use crate::viewer::moonlight::{self, ControlLink, MediaKind, Moonlight, MoonlightDeadlines};
use crate::viewer::{ViewerKind, ViewerStats};
use howl_core::{App, EndReason, SessionId};
use howl_proto::rtsp::{
    Event as RtspEvent, MoonlightParams, MoonlightRtsp, PingPayload, Request, Response, StatusCode,
};
use howl_proto::sdp::{EncryptionFlags, HostOffer, StreamConfig};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

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
    pub(super) fn session_url(local_ip: IpAddr, port: u16) -> String {
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

    pub(super) fn launch(
        &mut self,
        app_id: i32,
        app: Option<App>,
        input: LaunchInput,
        now: Instant,
    ) -> Result<String, LaunchError> {
        if let Some(lobby) = self
            .instances
            .values()
            .find(|i| i.lobby().is_some_and(|l| l.app_id == app_id))
            .map(|i| i.id)
        {
            return self.join_lobby(lobby, input, now);
        }
        let Some(app) = app else {
            return Err(LaunchError::UnknownApp(app_id));
        };
        check_streamable(&app).map_err(LaunchError::Unsupported)?;
        // A client runs one app of its own at a time; launching again replaces it.
        if let Some(old) = self.instance_of(&input.client) {
            self.stop_instance(old, EndReason::ClientQuit, now);
        }
        let title = app.title.clone();
        let id = self.add_instance(
            Role::Private {
                client: input.client.clone(),
            },
            app,
        );
        tracing::info!(client = %crate::core_task::short(&input.client), peer = %input.peer_ip, app = %title, instance = id, "launch");
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
        let Some(lobby) = inst.lobby() else {
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
                self.viewers.get(s).is_some_and(|v| {
                    matches!(v.kind, ViewerKind::Moonlight(_)) && v.client == input.client
                })
            })
            .copied()
            .collect();
        for sid in old {
            self.end_viewer(sid, EndReason::Replaced, now);
        }
        tracing::info!(client = %crate::core_task::short(&input.client), lobby = id, "join lobby");
        self.new_session(id, input, now)
    }

    pub(super) fn resume(
        &mut self,
        input: LaunchInput,
        now: Instant,
    ) -> Result<String, LaunchError> {
        let Some(inst) = self.instance_of(&input.client) else {
            return Err(LaunchError::NothingToResume);
        };
        tracing::info!(client = %crate::core_task::short(&input.client), instance = inst, "resume");
        self.new_session(inst, input, now)
    }

    /// Attaches a new Moonlight viewer to `instance`: its connect tokens, its RTSP handshake
    /// and its own RTSP port; returns the `sessionUrl0` for the client.
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
            .filter(|i| i.private_client().is_some())
            .map(|i| i.viewers.iter().copied().collect())
            .unwrap_or_default();
        for sid in old {
            self.end_viewer(sid, EndReason::Replaced, now);
        }
        let sid = SessionId(self.next_id());
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
        let listener = MoonlightRtsp::new(params, now)
            .map_err(|e| LaunchError::Unsupported(e.to_string()))
            .and_then(|rtsp| Ok((rtsp, self.bind_rtsp()?)));
        let (rtsp, listener) = match listener {
            Ok(x) => x,
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
        if let Some(engine) = self.handle() {
            tokio::spawn(crate::rtsp::serve_session(
                listener,
                engine,
                sid,
                cancel.clone(),
            ));
        }
        let deadlines = MoonlightDeadlines {
            connect: self.settings.connect_deadline,
            control_silence: self.settings.control_silence,
        };
        self.attach_viewer(Viewer {
            id: sid,
            instance,
            client: input.client.clone(),
            cancel,
            stats: Arc::new(ViewerStats::default()),
            started_at: now,
            kind: ViewerKind::Moonlight(Box::new(Moonlight::new(
                input.rikey,
                input.rikeyid,
                rtsp,
                deadlines,
            ))),
        });
        Ok(Self::session_url(input.local_ip, rtsp_port))
    }

    /// `/cancel`: stops the client's own app; in a lobby it only ends the client's stream
    /// (the lobby belongs to its operator).
    pub(super) fn cancel(&mut self, client: &str, now: Instant) -> bool {
        let lobby_sessions: Vec<SessionId> = self
            .viewers
            .values()
            .filter(|v| {
                matches!(v.kind, ViewerKind::Moonlight(_))
                    && v.client == client
                    && self
                        .instances
                        .get(&v.instance)
                        .is_some_and(|i| i.lobby().is_some())
            })
            .map(|v| v.id)
            .collect();
        let mut found = !lobby_sessions.is_empty();
        for sid in lobby_sessions {
            self.end_viewer(sid, EndReason::ClientQuit, now);
        }
        if let Some(inst) = self.instance_of(client) {
            self.stop_instance(inst, EndReason::ClientQuit, now);
            found = true;
        }
        found
    }

    /// The app the client watches (a lobby's id while it views one), else its own running
    /// app: what makes clients `/resume` instead of `/launch`.
    pub(super) fn current_game(&self, client: &str) -> i32 {
        let watching = self
            .viewers
            .values()
            .find(|v| matches!(v.kind, ViewerKind::Moonlight(_)) && v.client == client)
            .and_then(|v| self.instances.get(&v.instance))
            .map(|i| i.listed_id());
        let own = self
            .instance_of(client)
            .and_then(|i| self.instances.get(&i))
            .map(|i| i.app.id);
        watching.or(own).unwrap_or(0)
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
                    if let Err(why) = self.announced(sid, &cfg) {
                        tracing::info!(session = %sid, reason = %why, "ANNOUNCE refused");
                        resp = refusal.clone().with_header("X-Howl-Error", why.clone());
                        if let Some(m) = self.moonlight(sid) {
                            m.rtsp.abort();
                        }
                        self.end_viewer(sid, EndReason::ClientMisbehaved { detail: why }, now);
                    }
                }
                RtspEvent::Play => self.play(sid, now),
                RtspEvent::Rejected { method, error } => {
                    tracing::info!(session = %sid, method = ?method, error = %error, "RTSP request refused");
                }
                RtspEvent::TimedOut => {
                    self.end_viewer(sid, EndReason::RtspDeadline, now);
                }
            }
        }
        resp
    }

    /// ANNOUNCE accepted: start the private producer in the negotiated mode, or check that a
    /// lobby viewer asked for what the lobby's producer makes.
    fn announced(&mut self, sid: SessionId, cfg: &StreamConfig) -> Result<(), String> {
        let Some(inst_id) = self.viewers.get(&sid).map(|v| v.instance) else {
            return Ok(());
        };
        let Some(inst) = self.instances.get(&inst_id) else {
            return Ok(());
        };
        let params = moonlight::stream_params(cfg, source_of(&inst.app));
        if let Some(lobby) = inst.lobby() {
            // Encode once: every viewer gets the producer's stream, so it must fit them all.
            if let Some(p) = &inst.params
                && ((p.width, p.height) != (cfg.width, cfg.height) || p.codec != params.codec)
            {
                return Err(format!(
                    "lobby {:?} streams {} {}x{}; the client asked for {} {}x{}",
                    lobby.name,
                    p.codec.name(),
                    p.width,
                    p.height,
                    params.codec.name(),
                    cfg.width,
                    cfg.height
                ));
            }
            return Ok(());
        }
        if inst.worker.is_some() && inst.params.as_ref() == Some(&params) {
            return Ok(()); // resume with the same mode: keep the running producer
        }
        self.start_worker(inst_id, params);
        Ok(())
    }

    /// PLAY: the viewer's senders start (they wait for the client's pings).
    fn play(&mut self, sid: SessionId, now: Instant) {
        let Some(v) = self.viewers.get_mut(&sid) else {
            return;
        };
        let Some(inst) = self.instances.get(&v.instance) else {
            return;
        };
        let ViewerKind::Moonlight(m) = &mut v.kind else {
            return;
        };
        tracing::info!(session = %sid, "PLAY");
        m.play(
            now,
            self.settings.fec_percentage,
            self.settings.fault_drop_fraction,
            [&self.video_sock, &self.audio_sock],
            &inst.worker_watch(),
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
        let v = self.viewers.get_mut(&sid)?;
        let worker_rx = self.instances.get(&v.instance)?.worker_watch();
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
                self.by_peer.insert(peer, sid);
                tracing::info!(session = %sid, %addr, "control stream connected");
                Some(link)
            }
            Err(reason) => {
                self.end_viewer(sid, reason, now);
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
        self.end_viewer(sid, EndReason::ClientDisconnected, now);
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
