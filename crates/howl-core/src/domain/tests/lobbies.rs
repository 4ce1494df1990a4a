//! Lobbies: they outlive viewers, stop by policy or API, admit by membership, refuse other
//! modes.

use super::*;

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
