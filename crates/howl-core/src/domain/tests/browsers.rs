//! Browsers: joining lobbies by id, tenants, codecs, published deadlines.

use super::*;

fn browser(lobby: ProducerId, principal: Principal) -> BrowserRequest {
    BrowserRequest {
        lobby,
        principal,
        label: "browser:admin@127.0.0.1:50000".into(),
        deadline: None,
    }
}

#[test]
fn a_browser_joins_a_lobby_and_ends_by_its_published_deadline() {
    let mut h = H::new();
    let (l, _) = lobby(&mut h, lobby_req("Web"));
    let mut req = browser(l, Principal::Admin);
    req.deadline = Some(Deadline {
        at: h.now + secs(15),
        reason: EndReason::NeverConnected,
    });
    let v = h.d.browser_join(h.now, req).unwrap();
    h.drain();
    assert_eq!(h.producer_of(v), l);
    assert!(matches!(
        h.d.viewer(v).unwrap().kind,
        ViewerKind::Browser(_)
    ));
    assert_eq!(h.d.next_deadline(), Some(h.now + secs(15)));
    // Connected: the driver publishes its silence deadline instead.
    let at = h.now + secs(5);
    assert!(h.d.set_viewer_deadline(
        h.now,
        v,
        Some(Deadline {
            at,
            reason: EndReason::BrowserGone
        })
    ));
    h.wait(secs(4));
    assert_eq!(h.ended(v), None);
    h.wait(secs(1));
    assert_eq!(h.ended(v), Some(EndReason::BrowserGone));
    // The lobby outlives its viewer.
    assert_eq!(h.stopped(l), None);
}

#[test]
fn a_browser_sees_only_its_tenants_lobbies_and_codecs_it_decodes() {
    let mut h = H::with(Settings {
        codecs: CodecSupport {
            av1: true,
            ..settings().codecs
        },
        ..settings()
    });
    let (mine, _) = lobby(
        &mut h,
        LobbyRequest {
            owner: Some(7),
            ..lobby_req("Mine")
        },
    );
    assert_eq!(
        h.d.browser_join(h.now, browser(mine, Principal::Tenant(8))),
        Err(Refusal::NoLobby(mine))
    );
    assert!(
        h.d.browser_join(h.now, browser(mine, Principal::Tenant(7)))
            .is_ok()
    );
    let (hevc, _) = lobby(
        &mut h,
        LobbyRequest {
            codec: Some("hevc".into()),
            ..lobby_req("Hevc")
        },
    );
    let e =
        h.d.browser_join(h.now, browser(hevc, Principal::Admin))
            .unwrap_err();
    assert_eq!(e.to_string(), "hevc streams cannot be sent to browsers");
    assert!(h.d.producer(hevc).unwrap().viewers.is_empty());
    // AV1 is carried (the driver sends it to browsers whose offer lists it).
    let (av1, _) = lobby(
        &mut h,
        LobbyRequest {
            codec: Some("av1".into()),
            ..lobby_req("Av1")
        },
    );
    assert!(
        h.d.browser_join(h.now, browser(av1, Principal::Admin))
            .is_ok()
    );
    assert_eq!(
        h.d.browser_join(h.now, browser(ProducerId(999), Principal::Admin)),
        Err(Refusal::NoLobby(ProducerId(999)))
    );
}
