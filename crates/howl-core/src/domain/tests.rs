//! Every lifecycle rule, with a virtual clock: each test feeds inputs as a driver would and
//! checks the actions that come out.

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
    }
}

pub(super) fn app(id: i32, title: &str) -> App {
    App {
        id,
        title: title.into(),
        kind: AppKind::TestPattern { tone_hz: 440 },
        source: AppSource::Builtin,
        owner: None,
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

// ----- private launches: the worker follows ANNOUNCE -----

#[test]
fn a_launch_starts_its_worker_at_announce_in_the_negotiated_mode() {
    let mut h = H::new();
    let a = app(7, "Pattern");
    let v = h.launch(FP_A, &a);
    assert_eq!(
        h.d.viewer(v).unwrap().moonlight().unwrap().phase(),
        MoonlightPhase::Handshake
    );
    assert!(
        !h.log
            .iter()
            .any(|a| matches!(a, Action::StartWorker { .. })),
        "no worker before the client says what it decodes"
    );
    h.d.rtsp_announced(h.now, v, stream(1920, 1080, Codec::Hevc))
        .unwrap();
    let (p, w, params) = h.last_started();
    assert_eq!(p, h.producer_of(v));
    assert_eq!(
        (params.width, params.height, params.codec),
        (1920, 1080, Codec::Hevc)
    );
    assert_eq!(params.source, source_of(&a));
    assert_eq!(h.d.producer(p).unwrap().worker, WorkerState::Starting(w));
    assert!(h.d.worker_ready(h.now, w));
    assert_eq!(h.d.producer(p).unwrap().worker, WorkerState::Ready(w));
    h.drain();
    assert!(
        h.events()
            .iter()
            .any(|e| matches!(e, DomainEvent::WorkerStarted { worker, .. } if *worker == w))
    );
}

#[test]
fn the_rtsp_deadline_ends_a_stalled_handshake_and_its_private_app() {
    let mut h = H::new();
    let v = h.launch(FP_A, &app(7, "Pattern"));
    let p = h.producer_of(v);
    assert_eq!(h.d.next_deadline(), Some(h.now + RTSP));
    // An ANNOUNCE does not extend it: the deadline runs to PLAY.
    h.d.rtsp_announced(h.now, v, stream(1280, 720, Codec::H264))
        .unwrap();
    let w = h.last_started().1;
    h.wait(RTSP - Duration::from_millis(1));
    assert_eq!(h.ended(v), None);
    h.wait(Duration::from_millis(1));
    assert_eq!(h.ended(v), Some(EndReason::RtspDeadline));
    assert_eq!(h.stopped(p), Some(EndReason::RtspDeadline));
    assert!(h.worker_stopped(w));
    assert!(h.d.producer(p).is_none() && h.d.viewer(v).is_none());
}

#[test]
fn a_client_that_plays_but_never_connects_is_ended() {
    let mut h = H::new();
    let v = h.launch(FP_A, &app(7, "Pattern"));
    h.d.rtsp_announced(h.now, v, stream(1280, 720, Codec::H264))
        .unwrap();
    h.wait(secs(2));
    assert!(h.d.rtsp_played(h.now, v));
    assert_eq!(h.d.next_deadline(), Some(h.now + CONNECT));
    h.wait(CONNECT - Duration::from_millis(1));
    assert_eq!(h.ended(v), None);
    h.wait(Duration::from_millis(1));
    assert_eq!(h.ended(v), Some(EndReason::NeverConnected));
}

#[test]
fn control_silence_ends_the_session_and_the_app_lingers_for_resume() {
    let mut h = H::new();
    let a = app(7, "Pattern");
    let (v, w) = h.stream(FP_A, &a);
    let p = h.producer_of(v);
    // Control messages keep it alive.
    for _ in 0..5 {
        h.wait(SILENCE - Duration::from_millis(1));
        assert!(h.d.control_seen(h.now, v));
    }
    assert_eq!(h.ended(v), None);
    h.wait(SILENCE);
    assert_eq!(h.ended(v), Some(EndReason::ControlPingSilence));
    let prod = h.d.producer(p).unwrap();
    assert_eq!(prod.stop_at, Some(h.now + LINGER));
    assert_eq!(prod.worker, WorkerState::Ready(w), "the app keeps running");
    assert_eq!(h.d.current_game(FP_A), a.id, "so the client resumes");
    // /resume in the same mode keeps the running worker.
    h.wait(LINGER - secs(1));
    let v2 = h.d.resume(h.now, FP_A).unwrap();
    h.drain();
    assert_eq!(h.producer_of(v2), p);
    assert_eq!(h.d.producer(p).unwrap().stop_at, None);
    h.d.rtsp_announced(h.now, v2, stream(1280, 720, Codec::H264))
        .unwrap();
    assert!(
        !h.drain()
            .iter()
            .any(|a| matches!(a, Action::StartWorker { .. })),
        "same mode: no restart"
    );
    assert!(!h.worker_stopped(w));
}

#[test]
fn a_lingering_app_stops_when_the_linger_passes() {
    for reason in [
        EndReason::ClientDisconnected,
        EndReason::ControlTimeout,
        EndReason::ControlPingSilence,
    ] {
        let mut h = H::new();
        let (v, w) = h.stream(FP_A, &app(7, "Pattern"));
        let p = h.producer_of(v);
        assert!(h.d.end_viewer(h.now, v, reason.clone()));
        h.drain();
        assert_eq!(h.ended(v), Some(reason));
        assert_eq!(h.d.next_deadline(), Some(h.now + LINGER));
        h.wait(LINGER - Duration::from_millis(1));
        assert!(h.d.producer(p).is_some());
        h.wait(Duration::from_millis(1));
        assert_eq!(h.stopped(p), Some(EndReason::IdleTimeout));
        assert!(h.worker_stopped(w));
        assert_eq!(h.d.current_game(FP_A), 0);
        assert_eq!(h.d.resume(h.now, FP_A), Err(Refusal::NothingToResume));
    }
}

#[test]
fn resume_in_another_mode_restarts_the_worker_and_stale_reports_are_ignored() {
    let mut h = H::new();
    let (v, w1) = h.stream(FP_A, &app(7, "Pattern"));
    let p = h.producer_of(v);
    h.d.end_viewer(h.now, v, EndReason::ClientDisconnected);
    let v2 = h.d.resume(h.now, FP_A).unwrap();
    h.d.rtsp_announced(h.now, v2, stream(1920, 1080, Codec::H264))
        .unwrap();
    let (_, w2, params) = h.last_started();
    assert_ne!(w1, w2);
    assert_eq!((params.width, params.height), (1920, 1080));
    assert!(h.worker_stopped(w1), "the old mode's worker stops");
    // The old worker's exit report is stale: the producer carries on.
    h.d.worker_exited(h.now, w1, WorkerEnd::Stopped);
    h.d.worker_exited(h.now, w1, WorkerEnd::Died("late".into()));
    h.drain();
    assert!(h.d.producer(p).is_some());
    assert_eq!(h.ended(v2), None);
    // A ready report for a worker nobody wants any more is answered with a stop.
    let n = h.log.len();
    assert!(!h.d.worker_ready(h.now, w1));
    h.drain();
    assert_eq!(h.log[n..], [Action::StopWorker { worker: w1 }]);
    assert!(h.d.worker_ready(h.now, w2));
}

#[test]
fn a_second_stream_of_the_same_client_replaces_the_first_and_keeps_the_app() {
    let mut h = H::new();
    let (v1, w) = h.stream(FP_A, &app(7, "Pattern"));
    let p = h.producer_of(v1);
    // The same client resumes from another device while the first stream is up.
    let v2 = h.d.resume(h.now, FP_A).unwrap();
    h.drain();
    assert_eq!(h.ended(v1), Some(EndReason::Replaced));
    assert_eq!(h.producer_of(v2), p);
    let prod = h.d.producer(p).unwrap();
    assert_eq!(prod.viewers.iter().copied().collect::<Vec<_>>(), vec![v2]);
    assert_eq!(prod.stop_at, None, "no linger while the new stream watches");
    assert!(!h.worker_stopped(w));
    // The replaced viewer's held input is released.
    assert!(h.log.contains(&Action::ReleaseInput {
        worker: w,
        viewer: v1
    }));
}

#[test]
fn launching_again_stops_the_clients_previous_app() {
    let mut h = H::new();
    let (v1, w1) = h.stream(FP_A, &app(7, "Pattern"));
    let p1 = h.producer_of(v1);
    let v2 = h.launch(FP_A, &app(8, "Other"));
    assert_eq!(h.ended(v1), Some(EndReason::ClientQuit));
    assert_eq!(h.stopped(p1), Some(EndReason::ClientQuit));
    assert!(h.worker_stopped(w1));
    assert_ne!(h.producer_of(v2), p1);
    assert_eq!(h.d.current_game(FP_A), 8);
    // Another client's app is untouched.
    let (v3, _) = h.stream(FP_B, &app(7, "Pattern"));
    h.launch(FP_A, &app(7, "Pattern"));
    assert_eq!(h.ended(v3), None);
}

#[test]
fn quitting_api_stop_and_protocol_errors_stop_a_private_app_at_once() {
    for reason in [
        EndReason::ApiStop,
        EndReason::ClientMisbehaved {
            detail: "bad".into(),
        },
        EndReason::Internal {
            detail: "oops".into(),
        },
    ] {
        let mut h = H::new();
        let (v, w) = h.stream(FP_A, &app(7, "Pattern"));
        let p = h.producer_of(v);
        assert!(h.d.end_viewer(h.now, v, reason.clone()));
        h.drain();
        assert_eq!(h.ended(v), Some(reason.clone()));
        assert_eq!(h.stopped(p), Some(reason));
        assert!(h.worker_stopped(w));
        assert!(!h.d.end_viewer(h.now, v, EndReason::ApiStop), "ends once");
    }
    let mut h = H::new();
    h.stream(FP_A, &app(7, "Pattern"));
    assert!(h.d.cancel(h.now, FP_A));
    h.drain();
    assert_eq!(h.d.producers().count(), 0);
    assert!(!h.d.cancel(h.now, FP_A), "nothing left to cancel");
}

#[test]
fn an_unknown_app_is_refused_and_changes_nothing() {
    let mut h = H::new();
    let r = h.d.launch(
        h.now,
        LaunchRequest {
            client: FP_A.into(),
            app_id: 99,
            app: None,
            mode: None,
        },
    );
    assert_eq!(r, Err(Refusal::UnknownApp(99)));
    assert_eq!(r.unwrap_err().fault(), Fault::NotFound);
    assert!(h.drain().is_empty());
}

// ----- lobbies -----

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

#[test]
fn a_lobby_outlives_its_viewers_and_a_rejoin_replaces_the_old_stream() {
    let mut h = H::new();
    let (l, w) = lobby(&mut h, lobby_req("Shared"));
    let a = join(&mut h, FP_A, l).unwrap();
    let b = join(&mut h, FP_B, l).unwrap();
    assert_eq!(h.d.current_game(FP_A), h.d.producer(l).unwrap().listed_id());
    let a2 = join(&mut h, FP_A, l).unwrap();
    assert_eq!(h.ended(a), Some(EndReason::Replaced));
    assert_eq!(h.ended(b), None, "another client's stream is untouched");
    for v in [a2, b] {
        h.d.end_viewer(h.now, v, EndReason::ClientDisconnected);
    }
    h.wait(secs(3600));
    let p = h.d.producer(l).unwrap();
    assert!(p.viewers.is_empty() && p.stop_at.is_none());
    assert_eq!(p.worker, WorkerState::Ready(w), "never restarted");
    assert_eq!(h.d.next_deadline(), None);
}

#[test]
fn cancel_in_a_lobby_ends_only_the_clients_stream() {
    let mut h = H::new();
    let (l, w) = lobby(&mut h, lobby_req("Shared"));
    let a = join(&mut h, FP_A, l).unwrap();
    let b = join(&mut h, FP_B, l).unwrap();
    assert!(h.d.cancel(h.now, FP_A));
    h.drain();
    assert_eq!(h.ended(a), Some(EndReason::ClientQuit));
    assert_eq!(h.ended(b), None);
    assert!(!h.worker_stopped(w));
}

#[test]
fn a_lobby_that_stops_when_everyone_leaves_waits_its_idle_timeout() {
    let idle = secs(30);
    let mut h = H::new();
    let (l, w) = lobby(
        &mut h,
        LobbyRequest {
            stop_when_everyone_leaves: true,
            idle_timeout: idle,
            ..lobby_req("Shared")
        },
    );
    let a = join(&mut h, FP_A, l).unwrap();
    let b = join(&mut h, FP_B, l).unwrap();
    h.d.end_viewer(h.now, a, EndReason::ClientDisconnected);
    assert_eq!(h.d.producer(l).unwrap().stop_at, None, "one still watches");
    h.d.end_viewer(h.now, b, EndReason::ClientQuit);
    assert_eq!(h.d.producer(l).unwrap().stop_at, Some(h.now + idle));
    // Someone comes back within the timeout: it keeps running.
    h.wait(idle - secs(1));
    let c = join(&mut h, FP_A, l).unwrap();
    h.wait(secs(3600));
    assert!(h.d.producer(l).is_some());
    h.d.end_viewer(h.now, c, EndReason::ApiStop);
    h.wait(idle);
    assert_eq!(h.stopped(l), Some(EndReason::IdleTimeout));
    assert!(h.worker_stopped(w));
    assert!(h.events().iter().any(|e| matches!(e,
        DomainEvent::LobbyStopped { id, reason: EndReason::IdleTimeout, .. } if *id == l)));
}

#[test]
fn an_unwatched_lobby_that_stops_when_empty_counts_idle_from_creation() {
    let mut h = H::new();
    let (l, _) = lobby(
        &mut h,
        LobbyRequest {
            stop_when_everyone_leaves: true,
            idle_timeout: secs(30),
            ..lobby_req("Shared")
        },
    );
    h.wait(secs(30));
    assert_eq!(h.stopped(l), Some(EndReason::IdleTimeout));
}

#[test]
fn stopping_a_lobby_ends_its_viewers_and_its_worker() {
    let mut h = H::new();
    let (l, w) = lobby(
        &mut h,
        LobbyRequest {
            owner: Some(5),
            ..lobby_req("Shared")
        },
    );
    let a = join(&mut h, FP_A, l).unwrap();
    let pl =
        h.d.player_join(
            h.now,
            player(PlayerTarget::Lobby {
                name: "Shared".into(),
            }),
        )
        .unwrap();
    h.drain();
    h.d.stop_lobby(h.now, l).unwrap();
    h.drain();
    assert_eq!(h.ended(a), Some(EndReason::ApiStop));
    assert_eq!(h.ended(pl), Some(EndReason::ApiStop));
    assert!(h.worker_stopped(w));
    // Its viewers' end events reach the lobby's tenant too.
    let owners: Vec<Option<u64>> = h
        .log
        .iter()
        .filter_map(|a| match a {
            Action::Publish {
                owner,
                event: DomainEvent::SessionEnded { .. } | DomainEvent::LobbyStopped { .. },
            } => Some(*owner),
            _ => None,
        })
        .collect();
    assert_eq!(owners, vec![Some(5); 3]);
    assert_eq!(h.d.stop_lobby(h.now, l), Err(Refusal::NoLobby(l)));
    // A private producer is no lobby.
    let v = h.launch(FP_A, &app(7, "Pattern"));
    let p = h.producer_of(v);
    assert_eq!(h.d.stop_lobby(h.now, p), Err(Refusal::NoLobby(p)));
}

#[test]
fn an_api_stop_of_a_lobby_viewer_ends_only_that_viewer() {
    let mut h = H::new();
    let (l, w) = lobby(&mut h, lobby_req("Shared"));
    let a = join(&mut h, FP_A, l).unwrap();
    assert!(h.d.end_viewer(h.now, a, EndReason::ApiStop));
    h.drain();
    assert_eq!(h.ended(a), Some(EndReason::ApiStop));
    assert!(h.d.producer(l).is_some() && !h.worker_stopped(w));
}

#[test]
fn lobby_membership_decides_who_sees_and_joins_it() {
    let mut h = H::new();
    let (l, _) = lobby(
        &mut h,
        LobbyRequest {
            clients: vec![FP_A.to_uppercase()],
            ..lobby_req("Members")
        },
    );
    let listed = h.d.producer(l).unwrap().listed_id();
    assert_eq!(h.d.lobby_apps(FP_A), vec![(listed, "Members".to_owned())]);
    assert!(h.d.lobby_apps(FP_B).is_empty());
    assert!(join(&mut h, FP_A, l).is_ok(), "fingerprints are normalised");
    let r = join(&mut h, FP_B, l);
    assert_eq!(r, Err(Refusal::NotAllowed("Members".into())));
    assert_eq!(r.unwrap_err().fault(), Fault::Forbidden);
    h.d.set_lobby_clients(l, &[]).unwrap();
    assert!(join(&mut h, FP_B, l).is_ok(), "empty list: every client");
    assert!(matches!(
        h.d.set_lobby_clients(l, &["zz".into()]),
        Err(Refusal::BadFingerprint(_))
    ));
    assert_eq!(
        h.d.set_lobby_clients(ProducerId(999), &[]),
        Err(Refusal::NoLobby(ProducerId(999)))
    );
}

#[test]
fn lobby_requests_are_validated_with_clear_refusals() {
    let mut h = H::new();
    type Check = fn(&Refusal) -> bool;
    let cases: Vec<(LobbyRequest, Check)> = vec![
        (
            LobbyRequest {
                name: "  ".into(),
                ..lobby_req("x")
            },
            |r| *r == Refusal::BadLobbyName,
        ),
        (
            LobbyRequest {
                name: "n".repeat(MAX_LOBBY_NAME + 1),
                ..lobby_req("x")
            },
            |r| *r == Refusal::BadLobbyName,
        ),
        (
            LobbyRequest {
                app: None,
                app_title: "Nope".into(),
                ..lobby_req("x")
            },
            |r| r.to_string().contains("Nope") && r.fault() == Fault::BadRequest,
        ),
        (
            LobbyRequest {
                width: 7,
                ..lobby_req("x")
            },
            |r| matches!(r, Refusal::BadParams(_)) && r.to_string().contains("width"),
        ),
        (
            LobbyRequest {
                height: 9000,
                ..lobby_req("x")
            },
            |r| r.to_string().contains("height"),
        ),
        (
            LobbyRequest {
                codec: Some("av1".into()),
                ..lobby_req("x")
            },
            |r| {
                *r == Refusal::CodecUnavailable {
                    asked: "av1".into(),
                    available: "h264, hevc".into(),
                }
            },
        ),
        (
            LobbyRequest {
                codec: Some("vp8".into()),
                ..lobby_req("x")
            },
            |r| matches!(r, Refusal::CodecUnavailable { .. }),
        ),
        (
            LobbyRequest {
                clients: vec!["zz".into()],
                ..lobby_req("x")
            },
            |r| matches!(r, Refusal::BadFingerprint(_)),
        ),
    ];
    for (req, ok) in cases {
        let r = h.d.create_lobby(h.now, req.clone()).unwrap_err();
        assert!(ok(&r), "{req:?}: {r:?}");
        assert!(h.drain().is_empty(), "a refusal changes nothing");
    }
    lobby(&mut h, lobby_req("dup"));
    let r = h.d.create_lobby(h.now, lobby_req(" dup ")).unwrap_err();
    assert_eq!(r, Refusal::LobbyExists("dup".into()));
    assert_eq!(r.fault(), Fault::Conflict);
}

#[test]
fn a_lobby_viewer_must_ask_for_the_lobbys_resolution_and_codec() {
    let mut h = H::new();
    let (l, w) = lobby(&mut h, lobby_req("Shared"));
    // At launch, when the client says its mode.
    let r = h.d.launch(
        h.now,
        LaunchRequest {
            client: FP_A.into(),
            app_id: h.d.producer(l).unwrap().listed_id(),
            app: None,
            mode: Some((1920, 1080, 60)),
        },
    );
    let e = r.unwrap_err();
    assert!(e.to_string().contains("1280x720"), "{e}");
    assert_eq!(e.fault(), Fault::BadRequest);
    // At ANNOUNCE: refused, and the viewer ends as misbehaving (the driver answers 400).
    for asked in [
        stream(1920, 1080, Codec::H264),
        stream(1280, 720, Codec::Hevc),
    ] {
        let v = join(&mut h, FP_A, l).unwrap();
        let e = h.d.rtsp_announced(h.now, v, asked).unwrap_err();
        assert!(matches!(e, Refusal::ModeMismatch { .. }), "{e}");
        h.drain();
        assert_eq!(
            h.ended(v),
            Some(EndReason::ClientMisbehaved {
                detail: e.to_string()
            })
        );
    }
    let v = join(&mut h, FP_A, l).unwrap();
    h.d.rtsp_announced(h.now, v, stream(1280, 720, Codec::H264))
        .unwrap();
    assert!(
        !h.drain()
            .iter()
            .any(|a| matches!(a, Action::StartWorker { .. })),
        "joining never restarts the producer"
    );
    assert!(!h.worker_stopped(w));
}

// ----- resolution and codec refusals for private launches -----

#[test]
fn an_announce_out_of_range_or_in_a_codec_the_host_lacks_is_refused() {
    let mut h = H::new();
    for (asked, field) in [
        (stream(7, 720, Codec::H264), "width"),
        (stream(1280, 20000, Codec::H264), "height"),
        (
            AnnouncedStream {
                audio_channels: 3,
                ..stream(1280, 720, Codec::H264)
            },
            "audio_channels",
        ),
    ] {
        let v = h.launch(FP_A, &app(7, "Pattern"));
        let p = h.producer_of(v);
        let e = h.d.rtsp_announced(h.now, v, asked).unwrap_err();
        assert!(e.to_string().contains(field), "{e}");
        h.drain();
        assert!(matches!(
            h.ended(v),
            Some(EndReason::ClientMisbehaved { .. })
        ));
        assert!(h.d.producer(p).is_none(), "the private app stops with it");
    }
    let v = h.launch(FP_A, &app(7, "Pattern"));
    let e =
        h.d.rtsp_announced(h.now, v, stream(1280, 720, Codec::Av1))
            .unwrap_err();
    assert!(matches!(e, Refusal::CodecUnavailable { .. }), "{e}");
    assert!(
        !h.log
            .iter()
            .any(|a| matches!(a, Action::StartWorker { .. }))
    );
    // With AV1 on the host, the same ANNOUNCE starts an AV1 worker.
    let mut h = H::with(Settings {
        codecs: CodecSupport {
            av1: true,
            ..settings().codecs
        },
        ..settings()
    });
    let v = h.launch(FP_A, &app(7, "Pattern"));
    h.d.rtsp_announced(h.now, v, stream(1280, 720, Codec::Av1))
        .unwrap();
    assert_eq!(h.last_started().2.codec, Codec::Av1);
}

// ----- workers -----

#[test]
fn a_dying_worker_ends_every_viewer_of_its_producer() {
    let mut h = H::new();
    let (l, w) = lobby(&mut h, lobby_req("Shared"));
    let a = join(&mut h, FP_A, l).unwrap();
    let b = join(&mut h, FP_B, l).unwrap();
    h.d.worker_exited(h.now, w, WorkerEnd::Died("killed".into()));
    h.drain();
    let died = EndReason::WorkerDied {
        detail: "killed".into(),
    };
    assert_eq!(h.ended(a), Some(died.clone()));
    assert_eq!(h.ended(b), Some(died.clone()));
    assert_eq!(h.stopped(l), Some(died));
    assert!(!h.worker_stopped(w), "a dead worker needs no stop");
    assert!(h.events().iter().any(|e| matches!(e,
        DomainEvent::WorkerDied { reason, .. } if reason == "killed")));
}

#[test]
fn an_app_that_exits_ends_its_producer_with_app_exited() {
    let mut h = H::new();
    let (v, w) = h.stream(FP_A, &app(7, "Pattern"));
    let p = h.producer_of(v);
    h.d.worker_exited(h.now, w, WorkerEnd::AppExited("status 0".into()));
    h.drain();
    let r = EndReason::AppExited {
        detail: "status 0".into(),
    };
    assert_eq!(h.ended(v), Some(r.clone()));
    assert_eq!(h.stopped(p), Some(r));
}

#[test]
fn a_worker_that_fails_to_start_or_stops_unasked_ends_its_producer() {
    let mut h = H::new();
    let id = h.d.create_lobby(h.now, lobby_req("Shared")).unwrap();
    let w = h.last_started().1;
    let a = join(&mut h, FP_A, id).unwrap();
    h.d.worker_failed(h.now, w, "no encoder".into());
    h.drain();
    assert_eq!(
        h.ended(a),
        Some(EndReason::WorkerDied {
            detail: "no encoder".into()
        })
    );
    assert!(h.events().iter().any(|e| matches!(e,
        DomainEvent::WorkerDied { reason, .. } if reason == "failed to start: no encoder")));
    let mut h = H::new();
    let (v, w) = h.stream(FP_A, &app(7, "Pattern"));
    h.d.worker_exited(h.now, w, WorkerEnd::Stopped);
    h.drain();
    assert!(matches!(h.ended(v), Some(EndReason::WorkerDied { .. })));
}

#[test]
fn keyframe_requests_reach_a_ready_worker_only() {
    let mut h = H::new();
    let v = h.launch(FP_A, &app(7, "Pattern"));
    h.d.keyframe_wanted(v);
    assert!(h.drain().is_empty());
    h.d.rtsp_announced(h.now, v, stream(1280, 720, Codec::H264))
        .unwrap();
    let w = h.last_started().1;
    h.d.worker_ready(h.now, w);
    h.drain();
    h.d.keyframe_wanted(v);
    assert_eq!(h.drain(), vec![Action::RequestKeyframe { worker: w }]);
}

// ----- RTSP players -----

#[test]
fn players_of_an_app_share_one_producer_in_the_first_players_mode() {
    let mut h = H::new();
    let a = app(3, "Cam");
    let video = VideoRequest {
        width: Some(640),
        height: Some(360),
        fps: None,
        bitrate_kbps: None,
    };
    let p1 =
        h.d.player_join(h.now, player(app_target(&a, video)))
            .unwrap();
    let (prod, w, params) = h.last_started();
    assert_eq!(
        (params.width, params.height, params.fps, params.codec),
        (640, 360, 30, Codec::H264)
    );
    assert_eq!(params.audio_packet_ms, 10);
    let p2 =
        h.d.player_join(h.now, player(app_target(&a, VideoRequest::default())))
            .unwrap();
    h.drain();
    assert_eq!(h.producer_of(p1), prod);
    assert_eq!(h.producer_of(p2), prod, "one producer per app");
    assert_eq!(
        h.log
            .iter()
            .filter(|a| matches!(a, Action::StartWorker { .. }))
            .count(),
        1
    );
    match &h.d.viewer(p2).unwrap().kind {
        ViewerKind::RtspPlayer(p) => assert_eq!(p.path, "/app/Cam"),
        k => panic!("{k:?}"),
    }
    // The last player leaves: it lingers, a returning player finds it, then it stops.
    h.d.end_viewer(h.now, p1, EndReason::PlayerTeardown);
    h.d.end_viewer(h.now, p2, EndReason::PlayerTeardown);
    h.drain();
    assert_eq!(h.d.producer(prod).unwrap().stop_at, Some(h.now + LINGER));
    h.wait(LINGER - secs(1));
    let p3 =
        h.d.player_join(h.now, player(app_target(&a, VideoRequest::default())))
            .unwrap();
    h.drain();
    assert_eq!(h.producer_of(p3), prod);
    h.d.end_viewer(h.now, p3, EndReason::KeepAliveTimeout);
    h.wait(LINGER);
    assert_eq!(h.stopped(prod), Some(EndReason::IdleTimeout));
    assert!(h.worker_stopped(w));
}

#[test]
fn published_player_deadlines_are_enforced() {
    for reason in [EndReason::NeverPlayed, EndReason::KeepAliveTimeout] {
        let mut h = H::new();
        let a = app(3, "Cam");
        let mut req = player(app_target(&a, VideoRequest::default()));
        req.deadline = Some(Deadline {
            at: h.now + secs(60),
            reason: EndReason::NeverPlayed,
        });
        let v = h.d.player_join(h.now, req).unwrap();
        h.drain();
        assert_eq!(h.d.next_deadline(), Some(h.now + secs(60)));
        // The connection publishes a newer deadline (PLAY, then keep-alives).
        let at = h.now + secs(5);
        assert!(h.d.set_viewer_deadline(
            h.now,
            v,
            Some(Deadline {
                at,
                reason: reason.clone()
            })
        ));
        h.wait(secs(4));
        assert_eq!(h.ended(v), None);
        h.wait(secs(1));
        assert_eq!(h.ended(v), Some(reason));
    }
    // Cleared: it lives until ended.
    let mut h = H::new();
    let v =
        h.d.player_join(
            h.now,
            player(app_target(&app(3, "Cam"), VideoRequest::default())),
        )
        .unwrap();
    h.d.set_viewer_deadline(h.now, v, None);
    h.wait(secs(3600));
    assert_eq!(h.ended(v), None);
    // A Moonlight session's deadlines are the domain's own.
    let m = h.launch(FP_A, &app(7, "Pattern"));
    assert!(!h.d.set_viewer_deadline(h.now, m, None));
}

#[test]
fn a_player_cannot_watch_a_codec_it_cannot_carry() {
    let mut h = H::with(Settings {
        codecs: CodecSupport {
            av1: true,
            ..settings().codecs
        },
        ..settings()
    });
    let (l, _) = lobby(
        &mut h,
        LobbyRequest {
            codec: Some("av1".into()),
            ..lobby_req("Av1")
        },
    );
    let e =
        h.d.player_join(h.now, player(PlayerTarget::Lobby { name: "Av1".into() }))
            .unwrap_err();
    assert_eq!(
        e,
        Refusal::CodecNotCarried {
            codec: Codec::Av1,
            kind: "RTSP players"
        }
    );
    assert_eq!(e.to_string(), "av1 streams cannot be sent to RTSP players");
    assert!(h.d.producer(l).unwrap().viewers.is_empty());
    // A Moonlight client carries it.
    let v = join(&mut h, FP_A, l).unwrap();
    h.d.rtsp_announced(h.now, v, stream(1280, 720, Codec::Av1))
        .unwrap();
    // An HEVC lobby plays to players.
    let (hevc, _) = lobby(
        &mut h,
        LobbyRequest {
            codec: Some("hevc".into()),
            ..lobby_req("Hevc")
        },
    );
    let p =
        h.d.player_join(
            h.now,
            player(PlayerTarget::Lobby {
                name: "Hevc".into(),
            }),
        )
        .unwrap();
    assert_eq!(h.producer_of(p), hevc);
}

#[test]
fn players_see_only_what_their_principal_may_and_get_mode_refusals() {
    let mut h = H::new();
    lobby(
        &mut h,
        LobbyRequest {
            owner: Some(1),
            ..lobby_req("Mine")
        },
    );
    let as_tenant = |t: u64, target: PlayerTarget| PlayerRequest {
        principal: Principal::Tenant(t),
        ..player(target)
    };
    let mine = || PlayerTarget::Lobby {
        name: "Mine".into(),
    };
    assert!(h.d.player_join(h.now, as_tenant(1, mine())).is_ok());
    assert_eq!(
        h.d.player_join(h.now, as_tenant(2, mine())),
        Err(Refusal::NoSuchStream)
    );
    // An app owned by nobody is the operator's: a tenant cannot start it.
    let a = app(3, "Cam");
    assert_eq!(
        h.d.player_join(h.now, as_tenant(1, app_target(&a, VideoRequest::default()))),
        Err(Refusal::NoSuchStream)
    );
    let missing = PlayerTarget::App {
        name: "Nope".into(),
        app: None,
        video: VideoRequest::default(),
    };
    assert_eq!(
        h.d.player_join(h.now, player(missing)),
        Err(Refusal::NoSuchStream)
    );
    // A mode out of range in the URL: refused, and no producer is left behind.
    let before = h.d.producers().count();
    let bad = VideoRequest {
        width: Some(7),
        ..VideoRequest::default()
    };
    let e =
        h.d.player_join(h.now, player(app_target(&a, bad)))
            .unwrap_err();
    assert!(e.to_string().contains("width"), "{e}");
    assert_eq!(e.fault(), Fault::BadRequest);
    assert_eq!(h.d.producers().count(), before);
}

// ----- shutdown, and every end reason -----

#[test]
fn shutdown_ends_everything_once_and_refuses_new_work() {
    let mut h = H::new();
    let (v, w1) = h.stream(FP_A, &app(7, "Pattern"));
    let (l, w2) = lobby(&mut h, lobby_req("Shared"));
    let b = join(&mut h, FP_B, l).unwrap();
    let p =
        h.d.player_join(
            h.now,
            player(app_target(&app(3, "Cam"), VideoRequest::default())),
        )
        .unwrap();
    h.d.shutdown(h.now);
    h.d.shutdown(h.now);
    h.drain();
    for x in [v, b, p] {
        assert_eq!(h.ends(x), vec![EndReason::Shutdown]);
    }
    assert!(h.worker_stopped(w1) && h.worker_stopped(w2));
    assert_eq!((h.d.producers().count(), h.d.viewers().count()), (0, 0));
    assert_eq!(h.d.next_deadline(), None);
    let r = h.d.launch(
        h.now,
        LaunchRequest {
            client: FP_A.into(),
            app_id: 7,
            app: Some(app(7, "Pattern")),
            mode: None,
        },
    );
    assert_eq!(r, Err(Refusal::ShuttingDown));
    assert_eq!(
        h.d.create_lobby(h.now, lobby_req("x")),
        Err(Refusal::ShuttingDown)
    );
}

/// Drives one viewer to its end with `reason`, the way that reason really comes about.
fn end_with(reason: &EndReason) -> (H, ViewerId) {
    let mut h = H::new();
    let a = app(7, "Pattern");
    let v = match reason {
        EndReason::ClientQuit => {
            let (v, _) = h.stream(FP_A, &a);
            h.d.cancel(h.now, FP_A);
            v
        }
        EndReason::Replaced => {
            let (v, _) = h.stream(FP_A, &a);
            h.d.resume(h.now, FP_A).unwrap();
            v
        }
        EndReason::ControlPingSilence => {
            let (v, _) = h.stream(FP_A, &a);
            h.wait(SILENCE);
            v
        }
        EndReason::RtspDeadline => {
            let v = h.launch(FP_A, &a);
            h.wait(RTSP);
            v
        }
        EndReason::NeverConnected => {
            let v = h.launch(FP_A, &a);
            h.d.rtsp_played(h.now, v);
            h.wait(CONNECT);
            v
        }
        EndReason::IdleTimeout => {
            // Producers stop idle only without viewers, so no viewer ever ends with it: the
            // producer's stop carries it (checked by the caller through `stopped`).
            let (v, _) = h.stream(FP_A, &a);
            h.d.end_viewer(h.now, v, EndReason::ClientDisconnected);
            h.wait(LINGER);
            v
        }
        EndReason::ApiStop => {
            let (v, _) = h.stream(FP_A, &a);
            h.d.end_viewer(h.now, v, EndReason::ApiStop);
            v
        }
        EndReason::WorkerDied { detail } => {
            let (v, w) = h.stream(FP_A, &a);
            h.d.worker_exited(h.now, w, WorkerEnd::Died(detail.clone()));
            v
        }
        EndReason::AppExited { detail } => {
            let (v, w) = h.stream(FP_A, &a);
            h.d.worker_exited(h.now, w, WorkerEnd::AppExited(detail.clone()));
            v
        }
        EndReason::Shutdown => {
            let (v, _) = h.stream(FP_A, &a);
            h.d.shutdown(h.now);
            v
        }
        EndReason::ClientMisbehaved { .. } => {
            let v = h.launch(FP_A, &a);
            let e = h.d.rtsp_announced(h.now, v, stream(7, 7, Codec::H264));
            assert_eq!(
                *reason,
                EndReason::ClientMisbehaved {
                    detail: e.unwrap_err().to_string()
                }
            );
            v
        }
        EndReason::NeverPlayed | EndReason::KeepAliveTimeout => {
            let mut req = player(app_target(&app(3, "Cam"), VideoRequest::default()));
            req.deadline = Some(Deadline {
                at: h.now + secs(1),
                reason: reason.clone(),
            });
            let v = h.d.player_join(h.now, req).unwrap();
            h.wait(secs(1));
            v
        }
        // Ends only their drivers see.
        EndReason::ClientDisconnected
        | EndReason::ControlTimeout
        | EndReason::Internal { .. }
        | EndReason::PlayerTeardown => {
            let (v, _) = h.stream(FP_A, &a);
            h.d.end_viewer(h.now, v, reason.clone());
            v
        }
    };
    h.drain();
    (h, v)
}

#[test]
fn every_end_reason_ends_its_viewer_exactly_once() {
    let detail = || "why".to_owned();
    let all = [
        EndReason::ClientQuit,
        EndReason::Replaced,
        EndReason::ClientDisconnected,
        EndReason::ControlTimeout,
        EndReason::ControlPingSilence,
        EndReason::RtspDeadline,
        EndReason::NeverConnected,
        EndReason::IdleTimeout,
        EndReason::ApiStop,
        EndReason::WorkerDied { detail: detail() },
        EndReason::AppExited { detail: detail() },
        EndReason::Shutdown,
        EndReason::ClientMisbehaved {
            detail: "invalid stream parameter width = 7: even, 16..=8192".into(),
        },
        EndReason::Internal { detail: detail() },
        EndReason::PlayerTeardown,
        EndReason::KeepAliveTimeout,
        EndReason::NeverPlayed,
    ];
    for reason in &all {
        let (h, v) = end_with(reason);
        if *reason == EndReason::IdleTimeout {
            let p = h.log.iter().find_map(|a| match a {
                Action::ProducerStopped { producer, reason } => Some((*producer, reason.clone())),
                _ => None,
            });
            assert_eq!(p.map(|p| p.1), Some(EndReason::IdleTimeout));
            assert_eq!(h.ends(v), vec![EndReason::ClientDisconnected]);
        } else {
            assert_eq!(h.ends(v), vec![reason.clone()], "{reason:?}");
        }
        // Exactly one SessionEnded event per ended viewer, with the same reason.
        let ended_events = h
            .events()
            .into_iter()
            .filter(|e| matches!(e, DomainEvent::SessionEnded { id, .. } if *id == v))
            .count();
        assert_eq!(ended_events, 1, "{reason:?}");
        assert_eq!(h.d.ended_counts().values().sum::<u64>(), h.ends_total());
    }
}

impl H {
    fn ends_total(&self) -> u64 {
        self.log
            .iter()
            .filter(|a| matches!(a, Action::EndViewer { .. }))
            .count() as u64
    }
}

#[test]
fn next_deadline_is_the_earliest_of_viewers_and_producers() {
    let mut h = H::new();
    assert_eq!(h.d.next_deadline(), None);
    let (v, _) = h.stream(FP_A, &app(7, "Pattern"));
    assert_eq!(h.d.next_deadline(), Some(h.now + SILENCE));
    h.d.end_viewer(h.now, v, EndReason::ClientDisconnected);
    let t = h.now;
    h.wait(secs(1));
    h.launch(FP_B, &app(7, "Pattern"));
    assert_eq!(h.d.next_deadline(), Some((t + LINGER).min(h.now + RTSP)));
    // Ticking early does nothing.
    h.d.handle_timeout(h.now);
    assert_eq!(h.d.viewers().count(), 1);
    assert!(h.drain().is_empty());
}

#[test]
fn a_client_may_connect_control_before_play_and_both_deadlines_apply() {
    let mut h = H::new();
    let v = h.launch(FP_A, &app(7, "Pattern"));
    h.wait(secs(1));
    assert!(h.d.control_connected(h.now, v));
    // Silence (3 s from now) comes before the RTSP deadline (4 s from now).
    assert_eq!(h.d.next_deadline(), Some(h.now + SILENCE));
    h.d.control_seen(h.now + secs(2), v);
    h.wait(secs(4));
    assert_eq!(h.ended(v), Some(EndReason::RtspDeadline));
}

#[test]
fn protocol_steps_of_another_kind_or_an_ended_viewer_change_nothing() {
    let mut h = H::new();
    let p =
        h.d.player_join(
            h.now,
            player(app_target(&app(3, "Cam"), VideoRequest::default())),
        )
        .unwrap();
    h.drain();
    // A driver bug (a Moonlight step for a player) is refused without ending the player.
    assert_eq!(
        h.d.rtsp_announced(h.now, p, stream(1280, 720, Codec::H264)),
        Err(Refusal::NoViewer(p))
    );
    assert!(!h.d.rtsp_played(h.now, p) && !h.d.control_connected(h.now, p));
    assert!(!h.d.control_seen(h.now, p));
    assert!(h.drain().is_empty());
    // Steps for a viewer that already ended are ignored.
    let v = h.launch(FP_A, &app(7, "Pattern"));
    h.d.cancel(h.now, FP_A);
    h.drain();
    assert_eq!(
        h.d.rtsp_announced(h.now, v, stream(1280, 720, Codec::H264)),
        Err(Refusal::NoViewer(v))
    );
    assert!(!h.d.rtsp_played(h.now, v));
    assert!(!h.d.set_viewer_deadline(h.now, v, None));
    h.d.keyframe_wanted(v);
    assert!(h.drain().is_empty());
    assert_eq!(h.ends(v).len(), 1);
}

#[test]
fn a_lobby_keeps_its_settings_for_the_api() {
    let mut h = H::new();
    let (l, _) = lobby(
        &mut h,
        LobbyRequest {
            idle_timeout: Duration::ZERO,
            owner: Some(4),
            ..lobby_req("Plain")
        },
    );
    let p = h.d.producer(l).unwrap();
    let lobby = p.lobby().unwrap();
    assert_eq!(
        lobby.idle_timeout, MIN_LOBBY_IDLE,
        "zero would stop it at once"
    );
    assert_eq!((p.owner(), p.lobby_id()), (Some(4), Some(l.0)));
    assert!(!p.stops_when_empty() && !p.lingering());
    assert_eq!(p.listed_id(), lobby.app_id);
    assert_ne!(
        p.listed_id(),
        p.app.id,
        "clients launch the lobby, not the app"
    );
    assert_eq!(h.d.lobby_named("Plain").map(|p| p.id), Some(l));
    assert!(h.events().iter().any(|e| matches!(e,
        DomainEvent::LobbyCreated { id, name, app } if *id == l && name == "Plain" && app == "Pattern")));
}
