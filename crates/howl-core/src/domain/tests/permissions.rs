//! Viewer permissions: who controls by default, what an operator changes live, and that the
//! driver is told every change (and only changes).

use super::*;

const FP_C: &str = "cc00000000000000000000000000000000000000000000000000000000000000";

/// Each permission the driver was told for `v`, in order.
fn told(h: &H, v: ViewerId) -> Vec<Permission> {
    h.log
        .iter()
        .filter_map(|a| match a {
            Action::SetPermission { viewer, permission } if *viewer == v => Some(*permission),
            _ => None,
        })
        .collect()
}

fn perm(h: &H, v: ViewerId) -> Permission {
    h.d.viewer(v).unwrap().permission
}

/// A lobby whose joiners view, created for client A.
fn view_only_lobby(h: &mut H) -> ProducerId {
    lobby(
        h,
        LobbyRequest {
            permissions: LobbyPermissions {
                joiners: Permission::View,
                creator: Some(FP_A.to_uppercase()),
                clients: BTreeMap::new(),
            },
            ..lobby_req("Class")
        },
    )
    .0
}

#[test]
fn a_private_launchs_client_controls_and_an_operator_can_make_it_view_live() {
    let mut h = H::new();
    let (v, _) = h.stream(FP_A, &app(1, "Desk"));
    assert_eq!(
        told(&h, v),
        vec![Permission::Control],
        "told once, at the launch"
    );
    assert_eq!(
        h.d.set_viewer_permission(v, Some(Permission::View)),
        Ok(Permission::View)
    );
    h.drain();
    assert_eq!(told(&h, v), vec![Permission::Control, Permission::View]);
    let released = |h: &H| {
        h.log
            .iter()
            .filter(|a| matches!(a, Action::ReleaseInput { viewer, .. } if *viewer == v))
            .count()
    };
    assert_eq!(released(&h), 1, "whatever it held is released");
    assert!(h.events().iter().any(|e| matches!(e,
        DomainEvent::PermissionChanged { id, permission: Permission::View, lobby_id: None, .. }
            if *id == v)));
    // Setting what it has already tells nobody anything.
    assert_eq!(
        h.d.set_viewer_permission(v, Some(Permission::View)),
        Ok(Permission::View)
    );
    h.drain();
    assert_eq!(told(&h, v).len(), 2);
    // Clearing the override returns to the rule: the owner controls.
    assert_eq!(h.d.set_viewer_permission(v, None), Ok(Permission::Control));
    h.drain();
    assert_eq!(told(&h, v).last(), Some(&Permission::Control));
    assert_eq!(released(&h), 1, "nothing to release when it gains control");
}

#[test]
fn lobbies_let_everyone_control_unless_they_say_otherwise() {
    let mut h = H::new();
    let (l, _) = lobby(&mut h, lobby_req("Open"));
    let a = join(&mut h, FP_A, l).unwrap();
    let b = join(&mut h, FP_B, l).unwrap();
    assert_eq!(
        (perm(&h, a), perm(&h, b)),
        (Permission::Control, Permission::Control)
    );
}

#[test]
fn in_a_view_only_lobby_the_creator_controls_and_joiners_view() {
    let mut h = H::new();
    let l = view_only_lobby(&mut h);
    let a = join(&mut h, FP_A, l).unwrap();
    let b = join(&mut h, FP_B, l).unwrap();
    assert_eq!(told(&h, a), vec![Permission::Control]);
    assert_eq!(told(&h, b), vec![Permission::View]);
    let lobby = h.d.producer(l).unwrap().lobby().unwrap();
    assert_eq!(
        lobby.permissions.creator.as_deref(),
        Some(FP_A),
        "stored lower-cased"
    );
}

#[test]
fn changing_what_joiners_get_applies_at_once_to_viewers_without_their_own_setting() {
    let mut h = H::new();
    let l = view_only_lobby(&mut h);
    let a = join(&mut h, FP_A, l).unwrap();
    let b = join(&mut h, FP_B, l).unwrap();
    let c = join(&mut h, FP_C, l).unwrap();
    h.d.set_lobby_client_permission(l, FP_C, Some(Permission::View))
        .unwrap();
    h.drain();
    h.d.set_lobby_permission(l, Permission::Control).unwrap();
    h.drain();
    assert_eq!(
        told(&h, b),
        vec![Permission::View, Permission::Control],
        "live"
    );
    assert_eq!(
        told(&h, a),
        vec![Permission::Control],
        "unchanged: not told again"
    );
    assert_eq!(
        told(&h, c),
        vec![Permission::View],
        "its client's setting wins"
    );
    h.d.set_lobby_permission(l, Permission::View).unwrap();
    h.drain();
    assert_eq!(perm(&h, b), Permission::View);
}

#[test]
fn a_clients_setting_in_a_lobby_beats_creator_and_joiners_and_survives_a_rejoin() {
    let mut h = H::new();
    let l = view_only_lobby(&mut h);
    let a = join(&mut h, FP_A, l).unwrap();
    let b = join(&mut h, FP_B, l).unwrap();
    h.d.set_lobby_client_permission(l, &FP_B.to_uppercase(), Some(Permission::Control))
        .unwrap();
    h.d.set_lobby_client_permission(l, FP_A, Some(Permission::View))
        .unwrap();
    h.drain();
    assert_eq!(
        (perm(&h, a), perm(&h, b)),
        (Permission::View, Permission::Control)
    );
    // B comes back: its client's setting still holds.
    let b2 = join(&mut h, FP_B, l).unwrap();
    assert_eq!(h.ended(b), Some(EndReason::Replaced));
    assert_eq!(told(&h, b2), vec![Permission::Control]);
    // Cleared: back to the rules (A is the creator).
    h.d.set_lobby_client_permission(l, FP_A, None).unwrap();
    h.drain();
    assert_eq!(perm(&h, a), Permission::Control);
}

#[test]
fn a_viewers_own_setting_beats_everything_and_ends_with_it() {
    let mut h = H::new();
    let l = view_only_lobby(&mut h);
    let b = join(&mut h, FP_B, l).unwrap();
    h.d.set_viewer_permission(b, Some(Permission::Control))
        .unwrap();
    h.d.set_lobby_client_permission(l, FP_B, Some(Permission::View))
        .unwrap();
    h.d.set_lobby_permission(l, Permission::View).unwrap();
    h.drain();
    assert_eq!(told(&h, b), vec![Permission::View, Permission::Control]);
    // A new stream starts from the rules again.
    let b2 = join(&mut h, FP_B, l).unwrap();
    assert_eq!(perm(&h, b2), Permission::View);
}

#[test]
fn players_only_view_and_bad_requests_are_refused_with_their_fault() {
    let mut h = H::new();
    let l = view_only_lobby(&mut h);
    let p =
        h.d.player_join(
            h.now,
            player(PlayerTarget::Lobby {
                name: "Class".into(),
            }),
        )
        .unwrap();
    h.drain();
    assert_eq!(told(&h, p), vec![Permission::View]);
    let r = h.d.set_viewer_permission(p, Some(Permission::Control));
    assert_eq!(r, Err(Refusal::NoInput("RTSP players")));
    assert_eq!(r.unwrap_err().fault(), Fault::BadRequest);
    assert_eq!(
        h.d.set_viewer_permission(p, Some(Permission::View)),
        Ok(Permission::View)
    );
    let gone = SessionId(999);
    assert_eq!(
        h.d.set_viewer_permission(gone, None),
        Err(Refusal::NoViewer(gone))
    );
    let r =
        h.d.set_lobby_client_permission(l, "nope", Some(Permission::View));
    assert_eq!(r, Err(Refusal::BadFingerprint("nope".into())));
    let (private, _) = h.stream(FP_C, &app(1, "Desk"));
    let not_lobby = h.producer_of(private);
    assert_eq!(
        h.d.set_lobby_permission(not_lobby, Permission::View),
        Err(Refusal::NoLobby(not_lobby))
    );
    let bad_creator = LobbyRequest {
        permissions: LobbyPermissions {
            creator: Some("zz".into()),
            ..LobbyPermissions::default()
        },
        ..lobby_req("Other")
    };
    assert_eq!(
        h.d.create_lobby(h.now, bad_creator),
        Err(Refusal::BadFingerprint("zz".into()))
    );
}

#[test]
fn names_round_trip() {
    for p in [Permission::View, Permission::Control] {
        assert_eq!(Permission::from_name(p.name()), Some(p));
    }
    assert_eq!(Permission::from_name("admin"), None);
    assert!(Permission::Control.allows_input() && !Permission::View.allows_input());
}
