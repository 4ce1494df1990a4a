//! Worker reports: death, app exit, failure to start, keyframe requests.

use super::*;

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
