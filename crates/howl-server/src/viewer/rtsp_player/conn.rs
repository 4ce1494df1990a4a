//! One RTSP player connection: the task that drives howl-proto's sans-IO [`PlayerSession`],
//! joins the engine at DESCRIBE, and after PLAY sends the producer's [`Feed`] as RTP.

use super::udp::RouteGuard;
use super::{
    DESCRIBE_DEADLINE, PlayerContext, PlayerJoin, PlayerLink, PlayerRefusal, READ_CHUNK,
    RTCP_QUEUE_CAPACITY, SENDER_REPORT_INTERVAL, WRITE_DEADLINE, end_reason, principal_of,
    random_bytes, random_rtp,
};
use crate::viewer::ViewerStats;
use crate::viewer::feed::{Feed, FeedItem, Tracks, WorkerWatch};
use howl_core::{EndReason, SessionId};
use howl_media::protocol::{AudioPacket, Codec, VideoFrame};
use howl_proto::player::{
    self, Action, DescribeQuery, DescribeRefusal, Handled, InterleavedDecoder, OpusPayloader,
    ParameterSets, PlayerConfig, PlayerSession, SenderReport, StreamDescription, StreamTarget,
    Track, TrackSetup, Transport, VideoPayloader, describe,
};
use howl_proto::rtsp::{Incoming, Response};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The engine-side session of a connection, from DESCRIBE on.
struct Joined {
    session: SessionId,
    worker_rx: WorkerWatch,
    cancel: CancellationToken,
    stats: Arc<ViewerStats>,
    /// The producer's codec (one the payloaders take).
    codec: Codec,
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
    /// The producer's output: subscription, lag and keyframe handling.
    feed: Feed,
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
    Video(Arc<VideoFrame>),
    Audio(Arc<AudioPacket>),
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

async fn feed_opt(feed: Option<&mut Feed>) -> FeedItem {
    match feed {
        Some(f) => f.next().await,
        None => std::future::pending().await,
    }
}

async fn cancelled_opt(c: Option<&CancellationToken>) {
    match c {
        Some(c) => c.cancelled().await,
        None => std::future::pending().await,
    }
}

async fn changed_opt(w: Option<&mut WorkerWatch>) -> bool {
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

pub(super) async fn connection(
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
        conn.ctx.engine.end(j.session, reason).await;
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
                let feed = play.as_mut().map(|p| &mut p.feed);
                let cancel = joined.as_ref().map(|j| j.cancel.clone());
                // While playing, the feed follows the producer's worker.
                let worker_rx = joined
                    .as_mut()
                    .filter(|_| !playing)
                    .map(|j| &mut j.worker_rx);
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => Ev::Shutdown,
                    () = cancelled_opt(cancel.as_ref()) => Ev::Ended,
                    r = rd.read(buf) => Ev::Read(r),
                    Some(d) = async { match rtcp_rx.as_mut() { Some(r) => r.recv().await, None => std::future::pending().await } } => Ev::Rtcp(d),
                    ok = changed_opt(worker_rx) => if ok { Ev::WorkerChanged } else { Ev::Ended },
                    item = feed_opt(feed) => match item {
                        FeedItem::Video(f) => Ev::Video(f),
                        FeedItem::Audio(a) => Ev::Audio(a),
                        FeedItem::Worker(_) => Ev::WorkerChanged,
                        FeedItem::Closed => Ev::Ended,
                    },
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
                // Before PLAY nothing is subscribed; after, the feed has resubscribed.
                Ev::WorkerChanged => Ok(()),
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
        self.link
            .publish(super::deadline_of(self.session.next_deadline()));
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
            self.ctx.engine.end(old.session, EndReason::Replaced).await;
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
            .join(PlayerJoin {
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
                if !matches!(refusal, PlayerRefusal::AtCapacity(_)) {
                    tracing::info!(peer = %self.peer, path = %query.path.target, reason = %refusal, "RTSP player refused");
                }
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
            codec: joined.codec,
        });
        let codec = joined.codec;
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
                    p.feed.restart_at_keyframe();
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
                    let codec = j.codec;
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
        let tracks = Tracks {
            video: video.is_some(),
            audio: audio.is_some(),
        };
        let feed = Feed::new(j.worker_rx.clone(), tracks, j.stats.clone());
        self.play = Some(Play {
            video,
            audio,
            feed,
            paused: false,
            clock: None,
            reported: false,
            parameter_sets: ParameterSets::default(),
        });
        self.report.reset();
        Ok(())
    }

    async fn on_video(&mut self, frame: Arc<VideoFrame>) -> Result<(), Exit> {
        let (Some(p), Some(j)) = (&mut self.play, &self.joined) else {
            return Ok(());
        };
        let stats = &j.stats;
        let Some(v) = &mut p.video else {
            return Ok(());
        };
        if p.paused {
            return Ok(());
        }
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

    async fn on_audio(&mut self, packet: Arc<AudioPacket>) -> Result<(), Exit> {
        let (Some(p), Some(j)) = (&mut self.play, &self.joined) else {
            return Ok(());
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

/// Waits (bounded) for the producer's next keyframe and returns its parameter sets.
async fn first_parameter_sets(worker_rx: WorkerWatch, codec: Codec) -> Option<ParameterSets> {
    // Its own feed (and counters): what DESCRIBE looks at is not sent, so not counted.
    let mut feed = Feed::new(worker_rx, Tracks::VIDEO, Arc::default());
    let wait = async {
        loop {
            match feed.next().await {
                FeedItem::Video(f) if f.keyframe => {
                    let sets = ParameterSets::from_access_unit(codec, &f.data);
                    if sets.is_complete(codec) {
                        return Some(sets);
                    }
                }
                FeedItem::Closed => return None,
                _ => {}
            }
        }
    };
    tokio::time::timeout(DESCRIBE_DEADLINE, wait)
        .await
        .ok()
        .flatten()
}
