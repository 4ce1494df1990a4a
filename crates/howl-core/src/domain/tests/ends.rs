//! Shutdown, every end reason exactly once, and inputs that must change nothing.

use super::*;

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
        EndReason::NodeLost { node, detail } => {
            h.d.node_joined(h.now, node, 1, Admission::default(), NodeTraits::default());
            assert!(h.d.drain_node(LOCAL_NODE));
            let (v, _) = h.stream(FP_A, &a);
            assert_eq!(h.d.node_lost(h.now, node, 1, detail), 1);
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
        EndReason::BrowserGone => {
            let (l, _) = lobby(&mut h, lobby_req("Web"));
            let v =
                h.d.browser_join(
                    h.now,
                    BrowserRequest {
                        lobby: l,
                        principal: Principal::Admin,
                        label: "browser:admin".into(),
                        deadline: Some(Deadline {
                            at: h.now + secs(1),
                            reason: reason.clone(),
                        }),
                    },
                )
                .unwrap();
            h.wait(secs(1));
            v
        }
        // Ends only their drivers see.
        EndReason::BrowserLeft
        | EndReason::ClientDisconnected
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
        EndReason::BrowserLeft,
        EndReason::BrowserGone,
        EndReason::NodeLost {
            node: "gpu-1".into(),
            detail: detail(),
        },
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
