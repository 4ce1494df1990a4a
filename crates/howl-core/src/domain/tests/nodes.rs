//! Placement: producers go to a node with room, by the spread or pack policy; with no room
//! anywhere the request is an admission refusal; a lost node ends its producers with
//! `node_lost` and no other.

use super::*;
use proptest::prelude::*;

fn limits(max: u32) -> Admission {
    Admission {
        max_producers: Some(max),
        max_encoder_sessions: None,
    }
}

/// The node of the producer `v` watches.
fn node_of(h: &H, v: ViewerId) -> String {
    let p = h.d.viewers().find(|x| x.id == v).expect("viewer").producer;
    h.d.producers()
        .find(|x| x.id == p)
        .expect("producer")
        .node
        .clone()
}

fn two_nodes(placement: Placement) -> H {
    let mut h = H::new();
    h.d.set_placement(placement);
    assert!(h.d.drain_node(LOCAL_NODE));
    h.d.node_joined(h.now, "b", 1, limits(2), NodeTraits::default());
    h.d.node_joined(h.now, "c", 2, limits(2), NodeTraits::default());
    h
}

const CLIENTS: [&str; 5] = [
    "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0",
    "b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1",
    "c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2",
    "d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3",
    "e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4",
];

#[test]
fn with_only_the_local_node_nothing_changes() {
    let mut h = H::new();
    let (v, _) = h.stream(FP_A, &app(1, "Pattern"));
    assert_eq!(node_of(&h, v), LOCAL_NODE);
    assert!(h.log.iter().any(|a| matches!(a,
        Action::StartWorker { node, .. } if node == LOCAL_NODE)));
}

#[test]
fn spread_alternates_and_the_fifth_of_four_slots_is_refused() {
    let mut h = two_nodes(Placement::Spread);
    let a = app(1, "Pattern");
    let nodes: Vec<String> = CLIENTS[..4]
        .iter()
        .map(|c| {
            let (v, _) = h.stream(c, &a);
            node_of(&h, v)
        })
        .collect();
    assert_eq!(nodes, ["b", "c", "b", "c"]);
    let r = h.d.launch(
        h.now,
        LaunchRequest {
            client: CLIENTS[4].into(),
            app_id: 1,
            app: Some(a.clone()),
            mode: None,
        },
    );
    let refusal = r.unwrap_err();
    assert_eq!(refusal, Refusal::NodesFull { nodes: 2 });
    assert!(refusal.is_capacity());
    assert_eq!(refusal.fault(), Fault::Unavailable);
    // One ends: the next fits, on the node that has room.
    h.d.cancel(h.now, CLIENTS[1]);
    h.drain();
    let (v, _) = h.stream(CLIENTS[4], &a);
    assert_eq!(node_of(&h, v), "c");
}

#[test]
fn pack_fills_one_node_first() {
    let mut h = two_nodes(Placement::Pack);
    let a = app(1, "Pattern");
    let nodes: Vec<String> = CLIENTS[..3]
        .iter()
        .map(|c| {
            let (v, _) = h.stream(c, &a);
            node_of(&h, v)
        })
        .collect();
    assert_eq!(nodes, ["b", "b", "c"]);
}

#[test]
fn a_draining_node_takes_nothing_new_and_keeps_what_runs() {
    let mut h = two_nodes(Placement::Spread);
    let a = app(1, "Pattern");
    let (v1, _) = h.stream(CLIENTS[0], &a);
    assert_eq!(node_of(&h, v1), "b");
    assert!(h.d.drain_node("b"));
    assert!(!h.d.drain_node("nope"));
    for c in &CLIENTS[1..3] {
        let (v, _) = h.stream(c, &a);
        assert_eq!(node_of(&h, v), "c");
    }
    assert_eq!(node_of(&h, v1), "b", "still running");
    assert!(h.ends(v1).is_empty());
    assert!(h.d.drain_node("c"));
    let r = h.d.create_lobby(h.now, lobby_req("x"));
    assert_eq!(r.unwrap_err(), Refusal::NoNode);
}

#[test]
fn a_lost_node_ends_its_producers_with_node_lost_and_no_other() {
    let mut h = two_nodes(Placement::Spread);
    let a = app(1, "Pattern");
    let (vb, _) = h.stream(CLIENTS[0], &a);
    let (vc, _) = h.stream(CLIENTS[1], &a);
    assert_eq!(
        (node_of(&h, vb).as_str(), node_of(&h, vc).as_str()),
        ("b", "c")
    );
    assert_eq!(h.d.node_lost(h.now, "b", 1, "heartbeat"), 1);
    h.drain();
    assert_eq!(
        h.ends(vb),
        vec![EndReason::NodeLost {
            node: "b".into(),
            detail: "heartbeat".into()
        }]
    );
    assert!(h.ends(vc).is_empty(), "the other node's session goes on");
    // Its worker's late report changes nothing more.
    assert_eq!(h.d.nodes().count(), 2, "local (draining) and c");
    // A replacement launch of the same client goes to a node that exists.
    let (v, _) = h.stream(CLIENTS[0], &a);
    assert_eq!(node_of(&h, v), "c");
}

#[test]
fn a_stale_loss_after_a_rejoin_changes_nothing() {
    let mut h = two_nodes(Placement::Spread);
    // Node b's connection 1 broke and connection 3 joined before the loss of 1 was reported.
    h.d.node_joined(h.now, "b", 3, limits(2), NodeTraits::default());
    assert_eq!(h.d.node_lost(h.now, "b", 1, "connection closed"), 0);
    assert!(h.d.nodes().any(|(n, s)| n == "b" && s.epoch == 3));
    // The loss of the current connection counts.
    assert_eq!(h.d.node_lost(h.now, "b", 3, "connection closed"), 0);
    assert!(!h.d.nodes().any(|(n, _)| n == "b"));
}

#[test]
fn a_replaced_launch_counts_its_own_slot_as_free() {
    let mut h = H::new();
    assert!(h.d.drain_node(LOCAL_NODE));
    h.d.node_joined(h.now, "b", 1, limits(1), NodeTraits::default());
    let a = app(1, "Pattern");
    h.stream(FP_A, &a);
    // The same client launches again: its old app stops, so the one slot suffices.
    let (v, _) = h.stream(FP_A, &a);
    assert_eq!(node_of(&h, v), "b");
}

fn gpu_node() -> NodeTraits {
    NodeTraits {
        labels: BTreeMap::from([("gpu".to_owned(), "nvidia".to_owned())]),
        gpus: 1,
    }
}

fn needs_gpu(id: i32, title: &str, label: bool, gpu: bool) -> App {
    let mut a = app(id, title);
    if label {
        a.requires
            .node_labels
            .insert("gpu".to_owned(), "nvidia".to_owned());
    }
    a.requires.requires_gpu = gpu;
    a
}

#[test]
fn an_app_that_requires_a_label_or_a_gpu_goes_to_a_node_that_has_them() {
    let mut h = H::new();
    h.d.node_joined(h.now, "b", 1, limits(2), NodeTraits::default());
    h.d.node_joined(h.now, "c", 2, limits(3), gpu_node());
    for (i, (label, gpu)) in [(true, false), (false, true), (true, true)]
        .into_iter()
        .enumerate()
    {
        let a = needs_gpu(10 + i as i32, &format!("Game {i}"), label, gpu);
        let (v, _) = h.stream(CLIENTS[i], &a);
        assert_eq!(node_of(&h, v), "c", "label {label} gpu {gpu}");
    }
    // An app without requirements still spreads to the nodes with fewer producers.
    let (v, _) = h.stream(CLIENTS[3], &app(1, "Pattern"));
    assert_ne!(node_of(&h, v), "c");
}

#[test]
fn no_node_with_the_requirement_is_a_refusal_naming_it_on_every_path() {
    let mut h = H::new();
    h.d.node_joined(h.now, "b", 1, limits(2), NodeTraits::default());
    let a = needs_gpu(7, "Game", true, false);
    let launch = h.d.launch(
        h.now,
        LaunchRequest {
            client: FP_A.into(),
            app_id: 7,
            app: Some(a.clone()),
            mode: None,
        },
    );
    let refusal = launch.unwrap_err();
    assert_eq!(
        refusal,
        Refusal::Unsatisfied {
            unmet: "label gpu=nvidia".into()
        }
    );
    assert!(refusal.is_capacity());
    assert!(refusal.to_string().contains("gpu=nvidia"), "{refusal}");
    let mut req = lobby_req("l");
    req.app = Some(needs_gpu(8, "Gpu", false, true));
    let lobby = h.d.create_lobby(h.now, req);
    assert_eq!(
        lobby.unwrap_err(),
        Refusal::Unsatisfied {
            unmet: "a GPU".into()
        }
    );
    let player =
        h.d.player_join(h.now, player(app_target(&a, VideoRequest::default())));
    assert!(
        matches!(player, Err(Refusal::Unsatisfied { .. })),
        "{player:?}"
    );
    let counted: u64 = h.d.admission_refused().map(|(_, n)| n).sum();
    assert_eq!(counted, 3);
    assert!(h.d.producers().next().is_none(), "nothing half-started");
    // A node with the label joins: the same launch is placed on it.
    h.d.node_joined(h.now, "gpu1", 2, limits(1), gpu_node());
    let (v, _) = h.stream(FP_A, &a);
    assert_eq!(node_of(&h, v), "gpu1");
    // Full, it is a capacity refusal (the slot), not a missing requirement.
    let full = h.d.launch(
        h.now,
        LaunchRequest {
            client: FP_B.into(),
            app_id: 7,
            app: Some(a),
            mode: None,
        },
    );
    assert!(matches!(full, Err(Refusal::AtCapacity { .. })), "{full:?}");
}

proptest! {
    /// Whatever the joins, losses, drains and launches: a placement never takes a node past
    /// its limit, nothing is placed on a draining or unknown node, and a refusal is an
    /// admission refusal.
    #[test]
    fn placement_never_oversubscribes(ops in proptest::collection::vec((0u8..5, 0usize..3, 0usize..5, any::<bool>()), 1..60),
                                      pack in any::<bool>()) {
        let mut h = H::new();
        h.d.set_placement(if pack { Placement::Pack } else { Placement::Spread });
        let names = ["local", "b", "c"];
        let plain = app(1, "Pattern");
        let gpu = needs_gpu(2, "Game", true, true);
        for (i, (op, n, c, flag)) in ops.into_iter().enumerate() {
            let name = names[n];
            let epoch = i as u64;
            match op {
                0 => {
                    let traits = if flag { gpu_node() } else { NodeTraits::default() };
                    h.d.node_joined(h.now, name, epoch, limits(1 + n as u32), traits)
                }
                1 => { h.d.node_lost(h.now, name, epoch, "lost"); }
                2 => { h.d.drain_node(name); }
                3 => {
                    let draining: Vec<String> = h.d.nodes().filter(|(_, s)| s.draining).map(|(n, _)| n.to_owned()).collect();
                    let a = if flag { &gpu } else { &plain };
                    match h.d.launch(h.now, LaunchRequest { client: CLIENTS[c].into(), app_id: a.id, app: Some(a.clone()), mode: None }) {
                        Ok(v) => {
                            let node = node_of(&h, v);
                            let traits = h.d.nodes().find(|(n, _)| *n == node).map(|(_, s)| s.traits.clone()).unwrap_or_default();
                            prop_assert!(a.requires.unmet(&traits.labels, traits.gpus).is_none(), "{node} lacks what {} requires", a.title);
                            prop_assert!(!draining.contains(&node), "placed on draining {node}");
                            let slot = h.d.nodes().find(|(n, _)| *n == node).map(|(_, s)| s.clone());
                            prop_assert!(slot.is_some(), "placed on unknown {node}");
                            if let Some(max) = slot.and_then(|s| s.limits.max_producers) {
                                prop_assert!(h.d.producers_on(&node) <= max, "{node} over its limit");
                            }
                        }
                        Err(r) => {
                            prop_assert!(r.is_capacity(), "{r:?}");
                            if matches!(r, Refusal::Unsatisfied { .. }) {
                                prop_assert!(h.d.nodes().all(|(_, s)| s.draining || a.requires.unmet(&s.traits.labels, s.traits.gpus).is_some()), "refused though a ready node has the requirements");
                            }
                        }
                    }
                }
                _ => { h.d.cancel(h.now, CLIENTS[c]); }
            }
            h.drain();
            for p in h.d.producers() {
                prop_assert!(h.d.nodes().any(|(n, _)| n == p.node), "producer on a lost node");
            }
        }
    }
}
