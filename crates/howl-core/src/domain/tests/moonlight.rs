//! Private launches: the worker follows ANNOUNCE, deadlines of each phase, linger and resume,
//! replacement, refusals of a mode or codec.

use super::*;

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
fn current_game_prefers_what_the_client_watches_over_its_own_app() {
    let mut h = H::new();
    assert_eq!(h.d.current_game(FP_A), 0);
    let (v, _) = h.stream(FP_A, &app(7, "Pattern"));
    assert_eq!(h.d.current_game(FP_A), 7);
    let (l, _) = lobby(&mut h, lobby_req("Shared"));
    let listed = h.d.producer(l).unwrap().listed_id();
    // Watching its own app (lower id) comes first; once that stream ends, the lobby shows.
    let in_lobby = join(&mut h, FP_A, l).unwrap();
    assert_eq!(h.d.current_game(FP_A), 7);
    h.d.end_viewer(h.now, v, EndReason::ClientDisconnected);
    assert_eq!(h.d.current_game(FP_A), listed);
    h.d.end_viewer(h.now, in_lobby, EndReason::ClientQuit);
    assert_eq!(h.d.current_game(FP_A), 7, "its own app still lingers");
    assert_eq!(h.d.current_game(FP_B), 0);
}
