//! RTSP players: one producer per app, published deadlines, codecs, principals.

use super::*;

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
