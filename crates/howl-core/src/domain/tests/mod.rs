//! Every lifecycle rule, with a virtual clock: each test feeds inputs as a driver would and
//! checks the actions that come out. One file per subject; the harness is here.

mod admission;
mod browsers;
mod ends;
mod lobbies;
mod moonlight;
mod nodes;
mod permissions;
mod players;
mod workers;

use super::*;
use crate::{AppKind, AppSource};
use std::time::Duration;

pub(super) const LINGER: Duration = Duration::from_secs(10);
pub(super) const RTSP: Duration = Duration::from_secs(5);
pub(super) const CONNECT: Duration = Duration::from_secs(4);
pub(super) const SILENCE: Duration = Duration::from_secs(3);

pub(super) fn settings() -> Settings {
    Settings {
        linger: LINGER,
        moonlight: MoonlightTimeouts {
            rtsp: RTSP,
            connect: CONNECT,
            control_silence: SILENCE,
        },
        codecs: CodecSupport {
            h264: true,
            hevc: true,
            av1: false,
            hdr: false,
            yuv444: false,
        },
        player_defaults: PlayerDefaults::default(),
        admission: Admission::default(),
    }
}

pub(super) fn app(id: i32, title: &str) -> App {
    App {
        id,
        title: title.into(),
        kind: AppKind::TestPattern { tone_hz: 440 },
        source: AppSource::Builtin,
        owner: None,
        requires: Default::default(),
    }
}

pub(super) fn stream(width: u32, height: u32, codec: Codec) -> AnnouncedStream {
    AnnouncedStream {
        width,
        height,
        fps: 60,
        bitrate_kbps: 8000,
        codec,
        audio_channels: 2,
        audio_packet_ms: 5,
        slices_per_frame: 1,
    }
}

pub(super) fn lobby_req(name: &str) -> LobbyRequest {
    LobbyRequest {
        name: name.into(),
        app_title: "Pattern".into(),
        app: Some(app(1, "Pattern")),
        width: 1280,
        height: 720,
        fps: 60,
        bitrate_kbps: 8000,
        codec: None,
        clients: vec![],
        stop_when_everyone_leaves: false,
        idle_timeout: Duration::from_secs(30),
        permissions: LobbyPermissions::default(),
        owner: None,
    }
}

pub(super) fn player(target: PlayerTarget) -> PlayerRequest {
    PlayerRequest {
        target,
        principal: Principal::Admin,
        label: "rtsp:admin@127.0.0.1:50000".into(),
        deadline: None,
    }
}

pub(super) fn app_target(a: &App, video: VideoRequest) -> PlayerTarget {
    PlayerTarget::App {
        name: a.title.clone(),
        app: Some(a.clone()),
        video,
    }
}

const FP_A: &str = "aa00000000000000000000000000000000000000000000000000000000000000";
const FP_B: &str = "bb00000000000000000000000000000000000000000000000000000000000000";

/// A driver that records every action and moves a virtual clock.
struct H {
    d: Domain,
    now: Instant,
    log: Vec<Action>,
}

impl H {
    fn new() -> Self {
        Self::with(settings())
    }

    fn with(s: Settings) -> Self {
        Self {
            d: Domain::new(s),
            // The virtual clock's origin; tests read the real clock only here.
            #[allow(clippy::disallowed_methods)]
            now: Instant::now(),
            log: Vec::new(),
        }
    }

    /// Drains the outbox into the log; returns what came out of the last input.
    fn drain(&mut self) -> Vec<Action> {
        let mut new = Vec::new();
        while let Some(a) = self.d.poll_action() {
            new.push(a);
        }
        self.log.extend(new.iter().cloned());
        new
    }

    /// Moves the clock and ticks, as a driver's timer does.
    fn wait(&mut self, d: Duration) -> Vec<Action> {
        self.now += d;
        self.d.handle_timeout(self.now);
        self.drain()
    }

    fn launch(&mut self, client: &str, a: &App) -> ViewerId {
        let v = self
            .d
            .launch(
                self.now,
                LaunchRequest {
                    client: client.into(),
                    app_id: a.id,
                    app: Some(a.clone()),
                    mode: None,
                },
            )
            .unwrap();
        self.drain();
        v
    }

    /// Launch, ANNOUNCE, worker ready, PLAY, control connected: a streaming session.
    fn stream(&mut self, client: &str, a: &App) -> (ViewerId, WorkerId) {
        let v = self.launch(client, a);
        self.d
            .rtsp_announced(self.now, v, stream(1280, 720, Codec::H264))
            .unwrap();
        let w = self.last_started().1;
        assert!(self.d.worker_ready(self.now, w));
        self.play(v);
        (v, w)
    }

    fn play(&mut self, v: ViewerId) {
        assert!(self.d.rtsp_played(self.now, v));
        assert!(self.d.control_connected(self.now, v));
        self.drain();
    }

    fn last_started(&mut self) -> (ProducerId, WorkerId, StreamParams) {
        self.drain();
        self.log
            .iter()
            .rev()
            .find_map(|a| match a {
                Action::StartWorker {
                    producer,
                    worker,
                    params,
                    ..
                } => Some((*producer, *worker, params.clone())),
                _ => None,
            })
            .expect("a worker was started")
    }

    /// Every reason `v` was ended with (the driver must see exactly one).
    fn ends(&self, v: ViewerId) -> Vec<EndReason> {
        self.log
            .iter()
            .filter_map(|a| match a {
                Action::EndViewer { viewer, reason } if viewer.id == v => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }

    fn ended(&self, v: ViewerId) -> Option<EndReason> {
        let ends = self.ends(v);
        assert!(ends.len() <= 1, "{v} ended twice: {ends:?}");
        ends.into_iter().next()
    }

    fn stopped(&self, p: ProducerId) -> Option<EndReason> {
        self.log.iter().find_map(|a| match a {
            Action::ProducerStopped { producer, reason } if *producer == p => Some(reason.clone()),
            _ => None,
        })
    }

    fn worker_stopped(&self, w: WorkerId) -> bool {
        self.log
            .iter()
            .any(|a| matches!(a, Action::StopWorker { worker } if *worker == w))
    }

    fn producer_of(&self, v: ViewerId) -> ProducerId {
        self.d.viewer(v).unwrap().producer
    }

    fn events(&self) -> Vec<&DomainEvent> {
        self.log
            .iter()
            .filter_map(|a| match a {
                Action::Publish { event, .. } => Some(event),
                _ => None,
            })
            .collect()
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn join(h: &mut H, client: &str, lobby: ProducerId) -> Result<ViewerId, Refusal> {
    let app_id = h.d.producer(lobby).unwrap().listed_id();
    let r = h.d.launch(
        h.now,
        LaunchRequest {
            client: client.into(),
            app_id,
            app: None,
            mode: Some((1280, 720, 60)),
        },
    );
    h.drain();
    r
}

fn lobby(h: &mut H, req: LobbyRequest) -> (ProducerId, WorkerId) {
    let id = h.d.create_lobby(h.now, req).unwrap();
    let (p, w, _) = h.last_started();
    assert_eq!(p, id, "a lobby's producer starts at once");
    assert!(h.d.worker_ready(h.now, w));
    h.drain();
    (id, w)
}

impl H {
    fn ends_total(&self) -> u64 {
        self.log
            .iter()
            .filter(|a| matches!(a, Action::EndViewer { .. }))
            .count() as u64
    }
}
