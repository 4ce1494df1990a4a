//! Admission control: a request that would start one producer too many is refused at once,
//! with nothing started; joining what runs is always admitted.

use super::*;

fn limited(max_producers: Option<u32>, max_encoder_sessions: Option<u32>) -> H {
    H::with(Settings {
        admission: Admission {
            max_producers,
            max_encoder_sessions,
        },
        ..settings()
    })
}

fn launch_req(client: &str, a: &App) -> LaunchRequest {
    LaunchRequest {
        client: client.into(),
        app_id: a.id,
        app: Some(a.clone()),
        mode: None,
    }
}

const FP_C: &str = "cc00000000000000000000000000000000000000000000000000000000000000";

fn refused(path: AdmissionPath, h: &H) -> u64 {
    h.d.admission_refused()
        .find(|(p, _)| *p == path)
        .map_or(0, |(_, n)| n)
}

#[test]
fn a_launch_past_max_producers_is_refused_with_nothing_started() {
    let mut h = limited(Some(2), None);
    let pattern = app(1, "Pattern");
    h.stream(FP_A, &pattern);
    h.launch(FP_B, &pattern);
    let before = h.log.len();
    let r = h.d.launch(h.now, launch_req(FP_C, &pattern));
    let refusal = r.unwrap_err();
    assert_eq!(
        refusal,
        Refusal::AtCapacity {
            limit: Limit::Producers,
            max: 2
        }
    );
    assert_eq!(refusal.fault(), Fault::Unavailable);
    let text = refusal.to_string();
    assert!(text.contains("max_producers = 2"), "{text}");
    assert!(text.contains("all 2 producer slots are in use"), "{text}");
    assert!(
        h.drain().is_empty(),
        "nothing queued: no worker, no viewer, no event"
    );
    assert_eq!(h.log.len(), before);
    assert_eq!(h.d.producers().count(), 2);
    assert_eq!(h.d.viewers().count(), 2);
    assert_eq!(h.d.private_of(FP_C), None);
    assert_eq!(refused(AdmissionPath::Launch, &h), 1);
    assert_eq!(refused(AdmissionPath::Lobby, &h), 0);
}

#[test]
fn a_slot_freed_admits_the_next_launch() {
    let mut h = limited(Some(1), None);
    let pattern = app(1, "Pattern");
    let (_, w) = h.stream(FP_A, &pattern);
    assert!(h.d.launch(h.now, launch_req(FP_B, &pattern)).is_err());
    // A client that went away keeps its slot while its app lingers for /resume ...
    let v = h.d.viewers().next().unwrap().id;
    h.d.end_viewer(h.now, v, EndReason::ClientDisconnected);
    h.drain();
    assert!(h.d.launch(h.now, launch_req(FP_B, &pattern)).is_err());
    // ... and frees it when the linger ends.
    h.wait(LINGER);
    assert!(h.worker_stopped(w));
    assert!(h.d.launch(h.now, launch_req(FP_B, &pattern)).is_ok());
    assert_eq!(refused(AdmissionPath::Launch, &h), 2);
}

#[test]
fn a_client_replacing_its_own_app_at_capacity_is_admitted() {
    let mut h = limited(Some(1), None);
    let (v, w) = h.stream(FP_A, &app(1, "Pattern"));
    let v2 =
        h.d.launch(h.now, launch_req(FP_A, &app(2, "Other")))
            .unwrap();
    h.drain();
    assert_eq!(h.ended(v), Some(EndReason::ClientQuit));
    assert!(h.worker_stopped(w));
    assert_eq!(h.d.producers().count(), 1);
    assert!(h.d.viewer(v2).is_some());
}

#[test]
fn joining_and_resuming_at_capacity_are_admitted() {
    let mut h = limited(Some(1), None);
    let (l, _) = lobby(&mut h, lobby_req("Full"));
    assert!(
        join(&mut h, FP_A, l).is_ok(),
        "a lobby join adds no producer"
    );
    assert!(join(&mut h, FP_B, l).is_ok());
    // A player of the lobby joins too.
    let p = h.d.player_join(
        h.now,
        player(PlayerTarget::Lobby {
            name: "Full".into(),
        }),
    );
    assert!(p.is_ok());
    // A new private launch is refused.
    let r = h.d.launch(h.now, launch_req(FP_C, &app(1, "Pattern")));
    assert!(matches!(r, Err(Refusal::AtCapacity { .. })));

    let mut h = limited(Some(1), None);
    h.stream(FP_A, &app(1, "Pattern"));
    assert!(h.d.resume(h.now, FP_A).is_ok(), "a resume adds no producer");
}

#[test]
fn lobby_creation_and_app_shares_are_refused_past_the_limit() {
    let mut h = limited(Some(1), None);
    let pattern = app(1, "Pattern");
    let first =
        h.d.player_join(h.now, player(app_target(&pattern, VideoRequest::default())));
    assert!(first.is_ok());
    h.drain();
    // Another player of the same app share joins the running producer.
    let second =
        h.d.player_join(h.now, player(app_target(&pattern, VideoRequest::default())));
    assert!(second.is_ok());
    h.drain();
    // A player of another app would start a second producer.
    let before = h.log.len();
    let other = h.d.player_join(
        h.now,
        player(app_target(&app(2, "Other"), VideoRequest::default())),
    );
    assert!(matches!(other, Err(Refusal::AtCapacity { max: 1, .. })));
    let l = h.d.create_lobby(h.now, lobby_req("Late"));
    assert!(matches!(l, Err(Refusal::AtCapacity { max: 1, .. })));
    assert!(h.drain().is_empty());
    assert_eq!(h.log.len(), before);
    assert!(h.d.lobby_named("Late").is_none());
    assert_eq!(refused(AdmissionPath::Player, &h), 1);
    assert_eq!(refused(AdmissionPath::Lobby, &h), 1);
}

#[test]
fn a_malformed_lobby_is_told_what_is_wrong_even_at_capacity() {
    let mut h = limited(Some(1), None);
    lobby(&mut h, lobby_req("One"));
    let r = h.d.create_lobby(h.now, lobby_req("One"));
    assert_eq!(r, Err(Refusal::LobbyExists("One".into())));
    assert_eq!(refused(AdmissionPath::Lobby, &h), 0);
}

#[test]
fn the_encoder_budget_is_named_when_it_is_the_smaller_limit() {
    let mut h = limited(Some(5), Some(1));
    h.stream(FP_A, &app(1, "Pattern"));
    let r = h.d.launch(h.now, launch_req(FP_B, &app(1, "Pattern")));
    let refusal = r.unwrap_err();
    assert_eq!(
        refusal,
        Refusal::AtCapacity {
            limit: Limit::EncoderSessions,
            max: 1
        }
    );
    assert!(refusal.to_string().contains("max_encoder_sessions = 1"));
    assert_eq!(h.d.encoder_sessions_in_use(), 1);
}

#[test]
fn without_limits_everything_is_admitted() {
    let mut h = H::new();
    for (i, fp) in [FP_A, FP_B, FP_C].into_iter().enumerate() {
        h.stream(fp, &app(1, "Pattern"));
        lobby(&mut h, lobby_req(&format!("L{i}")));
    }
    assert_eq!(h.d.producers_in_use(), 6);
    assert!(h.d.admission_refused().all(|(_, n)| n == 0));
}
