//! Property tests: random sequences of inputs (requests, protocol steps, worker reports, time
//! passing, shutdown) against the invariants every driver relies on:
//!
//! - no viewer without its producer, and each producer lists exactly its viewers;
//! - no producer without a way to stop: one without viewers has a stop time, unless it is a
//!   lobby that runs until stopped; one with viewers has none;
//! - every viewer ends exactly once, with one reason, and an ended viewer is gone;
//! - deadlines always fire: after `handle_timeout(now)` nothing is due at or before `now`;
//! - one private producer per client, one app share per app, one Moonlight stream per client
//!   and producer;
//! - after shutdown nothing is left, and every worker started was stopped or reported gone;
//! - admission control: producers never exceed the configured limits, and a request it
//!   refuses queues nothing;
//! - every live viewer's permission is the rule's answer ([`permission_of`]) and the driver
//!   was told exactly that last; an RTSP player never controls.

use super::tests::{LINGER, app, app_target, lobby_req, player, settings, stream};
use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const CLIENTS: [&str; 3] = [
    "a100000000000000000000000000000000000000000000000000000000000000",
    "b200000000000000000000000000000000000000000000000000000000000000",
    "c300000000000000000000000000000000000000000000000000000000000000",
];

#[derive(Debug, Clone)]
enum Op {
    Launch {
        client: usize,
        app: i32,
    },
    JoinLobby {
        client: usize,
        lobby: usize,
    },
    Resume {
        client: usize,
    },
    Cancel {
        client: usize,
    },
    Announce {
        viewer: usize,
        mode: usize,
    },
    Play {
        viewer: usize,
    },
    Connect {
        viewer: usize,
    },
    ControlSeen {
        viewer: usize,
    },
    Keyframe {
        viewer: usize,
    },
    PlayerApp {
        app: i32,
        video: usize,
    },
    PlayerLobby {
        lobby: usize,
        tenant: Option<u64>,
    },
    PlayerDeadline {
        viewer: usize,
        secs: Option<u64>,
    },
    End {
        viewer: usize,
        reason: usize,
    },
    CreateLobby {
        lobby: usize,
        when_empty: bool,
        idle: u64,
        owner: Option<u64>,
    },
    StopLobby {
        lobby: usize,
    },
    SetClients {
        lobby: usize,
        only: Option<usize>,
    },
    Ready {
        worker: usize,
    },
    Failed {
        worker: usize,
    },
    Exited {
        worker: usize,
        how: usize,
    },
    Advance {
        millis: u64,
    },
    Shutdown,
    /// `control`: Some(true) control, Some(false) view, None clear.
    ViewerPermission {
        viewer: usize,
        control: Option<bool>,
    },
    LobbyPermission {
        lobby: usize,
        control: bool,
    },
    ClientPermission {
        lobby: usize,
        client: usize,
        control: Option<bool>,
    },
    /// A lobby created for a client (its creator) where joiners only view.
    CreateViewOnlyLobby {
        lobby: usize,
        creator: usize,
    },
}

fn permission(control: bool) -> Permission {
    if control {
        Permission::Control
    } else {
        Permission::View
    }
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0..CLIENTS.len();
    let v = any::<usize>();
    prop_oneof![
        (c.clone(), 1..4i32).prop_map(|(client, app)| Op::Launch { client, app }),
        (c.clone(), 0..3usize).prop_map(|(client, lobby)| Op::JoinLobby { client, lobby }),
        c.clone().prop_map(|client| Op::Resume { client }),
        c.prop_map(|client| Op::Cancel { client }),
        (v, 0..5usize).prop_map(|(viewer, mode)| Op::Announce { viewer, mode }),
        v.prop_map(|viewer| Op::Play { viewer }),
        v.prop_map(|viewer| Op::Connect { viewer }),
        v.prop_map(|viewer| Op::ControlSeen { viewer }),
        v.prop_map(|viewer| Op::Keyframe { viewer }),
        (1..4i32, 0..3usize).prop_map(|(app, video)| Op::PlayerApp { app, video }),
        (0..3usize, prop::option::of(1..3u64))
            .prop_map(|(lobby, tenant)| Op::PlayerLobby { lobby, tenant }),
        (v, prop::option::of(0..20u64))
            .prop_map(|(viewer, secs)| Op::PlayerDeadline { viewer, secs }),
        (v, 0..6usize).prop_map(|(viewer, reason)| Op::End { viewer, reason }),
        (
            0..3usize,
            any::<bool>(),
            0..40u64,
            prop::option::of(1..3u64)
        )
            .prop_map(|(lobby, when_empty, idle, owner)| Op::CreateLobby {
                lobby,
                when_empty,
                idle,
                owner
            }),
        (0..3usize).prop_map(|lobby| Op::StopLobby { lobby }),
        (0..3usize, prop::option::of(0..CLIENTS.len()))
            .prop_map(|(lobby, only)| Op::SetClients { lobby, only }),
        any::<usize>().prop_map(|worker| Op::Ready { worker }),
        any::<usize>().prop_map(|worker| Op::Failed { worker }),
        (any::<usize>(), 0..3usize).prop_map(|(worker, how)| Op::Exited { worker, how }),
        (0..15_000u64).prop_map(|millis| Op::Advance { millis }),
        Just(Op::Shutdown),
        (v, prop::option::of(any::<bool>()))
            .prop_map(|(viewer, control)| Op::ViewerPermission { viewer, control }),
        (0..3usize, any::<bool>())
            .prop_map(|(lobby, control)| Op::LobbyPermission { lobby, control }),
        (0..3usize, 0..CLIENTS.len(), prop::option::of(any::<bool>())).prop_map(
            |(lobby, client, control)| Op::ClientPermission {
                lobby,
                client,
                control
            }
        ),
        (0..3usize, 0..CLIENTS.len())
            .prop_map(|(lobby, creator)| Op::CreateViewOnlyLobby { lobby, creator }),
    ]
}

/// A driver that executes nothing but remembers everything, to check the invariants.
struct Model {
    d: Domain,
    now: Instant,
    /// Every viewer id ever handed out, so inputs also hit ended ones (stale ids).
    viewers: Vec<ViewerId>,
    ends: BTreeMap<ViewerId, Vec<EndReason>>,
    started_events: BTreeSet<ViewerId>,
    ended_events: usize,
    /// Workers started and not yet reported ready or failed.
    pending: Vec<WorkerId>,
    /// Workers reported ready and not yet reported exited.
    running: Vec<WorkerId>,
    /// Workers that are still alive as far as the domain should know: started, not stopped
    /// by an action, not reported gone.
    alive: BTreeSet<WorkerId>,
    /// Every action, in order.
    log: Vec<Action>,
    /// What the driver was last told each viewer may do.
    told: BTreeMap<ViewerId, Permission>,
}

impl Model {
    fn new() -> Self {
        // The virtual clock's origin; tests read the real clock only here.
        #[allow(clippy::disallowed_methods)]
        Self::at(Instant::now())
    }

    fn at(t0: Instant) -> Self {
        Self::with(t0, settings())
    }

    fn with(t0: Instant, settings: Settings) -> Self {
        Self {
            d: Domain::new(settings),
            now: t0,
            viewers: Vec::new(),
            ends: BTreeMap::new(),
            started_events: BTreeSet::new(),
            ended_events: 0,
            pending: Vec::new(),
            running: Vec::new(),
            alive: BTreeSet::new(),
            log: Vec::new(),
            told: BTreeMap::new(),
        }
    }

    fn pick(&self, i: usize) -> Option<ViewerId> {
        (!self.viewers.is_empty()).then(|| self.viewers[i % self.viewers.len()])
    }

    fn lobby_app_id(&self, i: usize) -> i32 {
        self.d
            .lobby_named(&format!("L{i}"))
            .map_or(1000 + i as i32, Producer::listed_id)
    }

    fn apply(&mut self, op: &Op) {
        let now = self.now;
        match *op {
            Op::Launch { client, app: a } => {
                let r = self.d.launch(
                    now,
                    LaunchRequest {
                        client: CLIENTS[client].into(),
                        app_id: a,
                        app: Some(app(a, &format!("App{a}"))),
                        mode: None,
                    },
                );
                self.admitted(r);
            }
            Op::JoinLobby { client, lobby } => {
                let app_id = self.lobby_app_id(lobby);
                let r = self.d.launch(
                    now,
                    LaunchRequest {
                        client: CLIENTS[client].into(),
                        app_id,
                        app: None,
                        mode: Some((1280, 720, 60)),
                    },
                );
                self.admitted(r);
            }
            Op::Resume { client } => {
                let r = self.d.resume(now, CLIENTS[client]);
                self.admitted(r);
            }
            Op::Cancel { client } => {
                self.d.cancel(now, CLIENTS[client]);
            }
            Op::Announce { viewer, mode } => {
                if let Some(v) = self.pick(viewer) {
                    let s = match mode {
                        0 => stream(1280, 720, Codec::H264),
                        1 => stream(1920, 1080, Codec::H264),
                        2 => stream(1280, 720, Codec::Hevc),
                        3 => stream(7, 7, Codec::H264),
                        _ => stream(1280, 720, Codec::Av1),
                    };
                    let was_live = self.d.viewer(v).is_some_and(|v| v.moonlight().is_some());
                    let r = self.d.rtsp_announced(now, v, s);
                    if r.is_err() && was_live {
                        assert!(self.d.viewer(v).is_none(), "a refused ANNOUNCE ends it");
                    }
                }
            }
            Op::Play { viewer } => {
                if let Some(v) = self.pick(viewer) {
                    self.d.rtsp_played(now, v);
                }
            }
            Op::Connect { viewer } => {
                if let Some(v) = self.pick(viewer) {
                    self.d.control_connected(now, v);
                }
            }
            Op::ControlSeen { viewer } => {
                if let Some(v) = self.pick(viewer) {
                    self.d.control_seen(now, v);
                }
            }
            Op::Keyframe { viewer } => {
                if let Some(v) = self.pick(viewer) {
                    self.d.keyframe_wanted(v);
                }
            }
            Op::PlayerApp { app: a, video } => {
                let video = match video {
                    0 => VideoRequest::default(),
                    1 => VideoRequest {
                        width: Some(640),
                        height: Some(360),
                        ..VideoRequest::default()
                    },
                    _ => VideoRequest {
                        width: Some(7),
                        ..VideoRequest::default()
                    },
                };
                let target = app_target(&app(a, &format!("App{a}")), video);
                let r = self.d.player_join(now, player(target));
                self.admitted(r);
            }
            Op::PlayerLobby { lobby, tenant } => {
                let mut req = player(PlayerTarget::Lobby {
                    name: format!("L{lobby}"),
                });
                if let Some(t) = tenant {
                    req.principal = Principal::Tenant(t);
                }
                let r = self.d.player_join(now, req);
                self.admitted(r);
            }
            Op::PlayerDeadline { viewer, secs } => {
                if let Some(v) = self.pick(viewer) {
                    let d = secs.map(|s| Deadline {
                        at: now + Duration::from_secs(s),
                        reason: if s % 2 == 0 {
                            EndReason::KeepAliveTimeout
                        } else {
                            EndReason::NeverPlayed
                        },
                    });
                    self.d.set_viewer_deadline(now, v, d);
                }
            }
            Op::End { viewer, reason } => {
                if let Some(v) = self.pick(viewer) {
                    let reason = match reason {
                        0 => EndReason::ClientDisconnected,
                        1 => EndReason::ControlTimeout,
                        2 => EndReason::ApiStop,
                        3 => EndReason::PlayerTeardown,
                        4 => EndReason::ClientMisbehaved { detail: "x".into() },
                        _ => EndReason::Internal { detail: "y".into() },
                    };
                    let live = self.d.viewer(v).is_some();
                    assert_eq!(self.d.end_viewer(now, v, reason), live);
                }
            }
            Op::CreateLobby {
                lobby,
                when_empty,
                idle,
                owner,
            } => {
                let r = self.d.create_lobby(
                    now,
                    LobbyRequest {
                        stop_when_everyone_leaves: when_empty,
                        idle_timeout: Duration::from_secs(idle),
                        owner,
                        ..lobby_req(&format!("L{lobby}"))
                    },
                );
                self.admitted(r);
            }
            Op::StopLobby { lobby } => {
                if let Some(id) = self.d.lobby_named(&format!("L{lobby}")).map(|p| p.id) {
                    self.d.stop_lobby(now, id).unwrap();
                }
            }
            Op::SetClients { lobby, only } => {
                if let Some(id) = self.d.lobby_named(&format!("L{lobby}")).map(|p| p.id) {
                    let list: Vec<String> =
                        only.map(|c| CLIENTS[c].to_owned()).into_iter().collect();
                    self.d.set_lobby_clients(id, &list).unwrap();
                }
            }
            Op::Ready { worker } => {
                if !self.pending.is_empty() {
                    let w = self.pending.remove(worker % self.pending.len());
                    if self.d.worker_ready(now, w) {
                        self.running.push(w);
                    }
                }
            }
            Op::Failed { worker } => {
                if !self.pending.is_empty() {
                    let w = self.pending.remove(worker % self.pending.len());
                    self.alive.remove(&w);
                    self.d.worker_failed(now, w, "no encoder".into());
                }
            }
            Op::Exited { worker, how } => {
                if !self.running.is_empty() {
                    let w = self.running.remove(worker % self.running.len());
                    self.alive.remove(&w);
                    let end = match how {
                        0 => WorkerEnd::Stopped,
                        1 => WorkerEnd::Died("killed".into()),
                        _ => WorkerEnd::AppExited("exit 0".into()),
                    };
                    self.d.worker_exited(now, w, end);
                }
            }
            Op::Advance { millis } => {
                self.now += Duration::from_millis(millis);
                self.d.handle_timeout(self.now);
                self.drain();
                self.check_nothing_due();
            }
            Op::Shutdown => self.d.shutdown(now),
            Op::ViewerPermission { viewer, control } => {
                if let Some(v) = self.pick(viewer) {
                    let player = self.d.viewer(v).is_some_and(|v| !v.kind.sends_input());
                    let r = self.d.set_viewer_permission(v, control.map(permission));
                    match r {
                        Ok(p) => assert_eq!(Some(p), self.d.viewer(v).map(|v| v.permission)),
                        Err(Refusal::NoViewer(_)) => assert!(self.d.viewer(v).is_none()),
                        Err(Refusal::NoInput(_)) => assert!(player && control == Some(true)),
                        Err(e) => panic!("unexpected refusal {e}"),
                    }
                }
            }
            Op::LobbyPermission { lobby, control } => {
                if let Some(id) = self.d.lobby_named(&format!("L{lobby}")).map(|p| p.id) {
                    self.d
                        .set_lobby_permission(id, permission(control))
                        .unwrap();
                }
            }
            Op::ClientPermission {
                lobby,
                client,
                control,
            } => {
                if let Some(id) = self.d.lobby_named(&format!("L{lobby}")).map(|p| p.id) {
                    self.d
                        .set_lobby_client_permission(id, CLIENTS[client], control.map(permission))
                        .unwrap();
                }
            }
            Op::CreateViewOnlyLobby { lobby, creator } => {
                let r = self.d.create_lobby(
                    now,
                    LobbyRequest {
                        permissions: LobbyPermissions {
                            joiners: Permission::View,
                            creator: Some(CLIENTS[creator].to_uppercase()),
                            clients: BTreeMap::new(),
                        },
                        ..lobby_req(&format!("L{lobby}"))
                    },
                );
                self.admitted(r);
            }
        }
        self.drain();
        self.check();
    }

    /// A request's answer: a refusal by admission control queued nothing (no worker, no
    /// viewer, no event; the outbox is empty before each input).
    fn admitted<T>(&mut self, r: Result<T, Refusal>) {
        if let Err(refusal @ Refusal::AtCapacity { .. }) = r {
            assert_eq!(
                self.d.poll_action(),
                None,
                "{refusal} half-started something"
            );
        }
    }

    /// Executes the actions as far as the invariants care.
    fn drain(&mut self) {
        while let Some(a) = self.d.poll_action() {
            self.log.push(a.clone());
            match a {
                Action::StartWorker { worker, .. } => {
                    self.pending.push(worker);
                    assert!(self.alive.insert(worker), "{worker} started twice");
                }
                Action::StopWorker { worker } => {
                    // Stopping is idempotent: a worker stopped while starting is stopped
                    // again when its late ready report arrives.
                    self.alive.remove(&worker);
                    self.running.retain(|w| *w != worker);
                }
                Action::EndViewer { viewer, reason } => {
                    assert!(self.d.viewer(viewer.id).is_none(), "ended but still there");
                    assert!(self.started_events.contains(&viewer.id));
                    self.ends.entry(viewer.id).or_default().push(reason);
                }
                Action::Publish { event, .. } => match event {
                    DomainEvent::SessionStarted { id, .. } => {
                        assert!(self.started_events.insert(id));
                        self.viewers.push(id);
                    }
                    DomainEvent::SessionEnded { .. } => self.ended_events += 1,
                    _ => {}
                },
                Action::RequestKeyframe { worker } | Action::ReleaseInput { worker, .. } => {
                    assert!(self.alive.contains(&worker), "{worker} is not running");
                }
                Action::ProducerStopped { producer, .. } => {
                    assert!(self.d.producer(producer).is_none());
                }
                Action::SetPermission { viewer, permission } => {
                    assert!(self.d.viewer(viewer).is_some(), "told about a gone viewer");
                    self.told.insert(viewer, permission);
                }
            }
        }
    }

    fn check(&self) {
        let d = &self.d;
        for v in d.viewers() {
            let p = d
                .producer(v.producer)
                .expect("no viewer without its producer");
            assert!(p.viewers.contains(&v.id));
            assert!(!self.ends.contains_key(&v.id), "{} ended yet lives", v.id);
            assert_eq!(
                v.permission,
                permission_of(p, v),
                "stale permission of {}",
                v.id
            );
            assert_eq!(self.told.get(&v.id), Some(&v.permission), "driver not told");
            if !v.kind.sends_input() {
                assert_eq!(v.permission, Permission::View, "a player controls");
            }
            if p.private_client().is_some() && v.permission_override.is_none() {
                assert_eq!(v.permission, Permission::Control, "a launch's client views");
            }
        }
        let limits = d.settings().admission;
        for max in [limits.max_producers, limits.max_encoder_sessions]
            .into_iter()
            .flatten()
        {
            assert!(
                d.producers_in_use() <= max,
                "past the admission limit {max}"
            );
        }
        let mut private = BTreeSet::new();
        let mut shares = BTreeSet::new();
        let mut names = BTreeSet::new();
        for p in d.producers() {
            for v in &p.viewers {
                assert_eq!(d.viewer(*v).map(|v| v.producer), Some(p.id));
            }
            if p.viewers.is_empty() {
                assert!(
                    p.stop_at.is_some() || p.policy == StopPolicy::UntilStopped,
                    "a producer nobody watches must have a stop time: {p:?}"
                );
            } else {
                assert_eq!(p.stop_at, None);
            }
            match &p.kind {
                ProducerKind::Private { client } => {
                    assert!(private.insert(client.clone()), "two apps for one client");
                    assert!(p.viewers.len() <= 1);
                    assert!(matches!(p.policy, StopPolicy::WithClient { .. }));
                }
                ProducerKind::AppShare => {
                    assert!(shares.insert(p.app.id), "two producers for one app");
                    assert!(p.params.is_some());
                }
                ProducerKind::Lobby(l) => {
                    assert!(names.insert(l.name.clone()));
                    assert!(p.params.is_some());
                }
            }
            // One Moonlight stream per client and producer.
            let mut clients = BTreeSet::new();
            for v in p.viewers.iter().filter_map(|v| d.viewer(*v)) {
                if let Some(c) = v.moonlight().and(v.principal.client()) {
                    assert!(clients.insert(c.to_owned()), "two streams of {c}");
                }
            }
        }
        for (v, reasons) in &self.ends {
            assert_eq!(reasons.len(), 1, "{v} ended {reasons:?}");
        }
        let ended_total: u64 = d.ended_counts().values().sum();
        assert_eq!(ended_total as usize, self.ends.len());
        assert_eq!(self.ended_events, self.ends.len());
    }

    fn check_nothing_due(&self) {
        for v in self.d.viewers() {
            if let Some(dl) = &v.deadline {
                assert!(dl.at > self.now, "{} outlived its deadline", v.id);
            }
        }
        for p in self.d.producers() {
            assert!(p.stop_at.is_none_or(|t| t > self.now));
        }
        assert!(self.d.next_deadline().is_none_or(|t| t > self.now));
    }

    /// The end of a run: a long quiet time, then shutdown, then the workers still starting
    /// report in, as a real driver's would.
    fn finish(&mut self) {
        // Two ticks: a viewer ended by the first may start its producer's linger.
        for _ in 0..2 {
            self.apply(&Op::Advance { millis: 3_600_000 });
        }
        // Everything left after an hour of silence is meant to be: lobbies that run until
        // stopped, and viewers whose drivers publish no deadline (and their producers).
        for v in self.d.viewers() {
            assert!(v.deadline.is_none() && v.moonlight().is_none(), "{v:?}");
        }
        for p in self.d.producers() {
            assert!(!p.viewers.is_empty() || p.policy == StopPolicy::UntilStopped);
        }
        self.apply(&Op::Shutdown);
        assert_eq!(self.d.viewers().count(), 0);
        assert_eq!(self.d.producers().count(), 0);
        assert_eq!(self.d.next_deadline(), None);
        while !self.pending.is_empty() {
            self.apply(&Op::Ready { worker: 0 });
        }
        assert!(self.alive.is_empty(), "workers leaked: {:?}", self.alive);
        for v in &self.viewers {
            assert_eq!(self.ends.get(v).map(Vec::len), Some(1), "{v} never ended");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_over_random_input_sequences(ops in prop::collection::vec(op(), 1..80)) {
        let mut m = Model::new();
        for op in &ops {
            m.apply(op);
        }
        m.finish();
    }

    /// Admission control: with limits, producers (and so encoder sessions) never exceed them
    /// after any input, a refusal queues nothing (see `Model::admitted`), and every other
    /// invariant holds as without limits.
    #[test]
    fn producers_never_exceed_the_admission_limits(
        ops in prop::collection::vec(op(), 1..80),
        max_producers in prop::option::of(1..4u32),
        max_encoder_sessions in prop::option::of(1..4u32),
    ) {
        let t0 = Model::new().now;
        let admission = Admission { max_producers, max_encoder_sessions };
        let mut m = Model::with(t0, Settings { admission, ..settings() });
        for op in &ops {
            m.apply(op);
        }
        m.finish();
    }

    /// No clock, no randomness: the same inputs give the same actions, ids included.
    #[test]
    fn runs_are_a_pure_function_of_their_inputs(ops in prop::collection::vec(op(), 1..60)) {
        let t0 = Model::new().now;
        let (mut a, mut b) = (Model::at(t0), Model::at(t0));
        for op in &ops {
            a.apply(op);
            b.apply(op);
        }
        prop_assert_eq!(&a.log, &b.log);
    }

    /// Without any report from drivers, time alone ends every Moonlight session and every
    /// producer that has a stop time: nothing waits forever on a vanished client.
    #[test]
    fn time_alone_ends_every_moonlight_session(
        launches in prop::collection::vec((0..CLIENTS.len(), 1..4i32, 0..3u8), 1..20),
    ) {
        let mut m = Model::new();
        for (client, a, steps) in launches {
            m.apply(&Op::Launch { client, app: a });
            let v = m.viewers.len() - 1;
            if steps > 0 {
                m.apply(&Op::Announce { viewer: v, mode: 0 });
            }
            if steps > 1 {
                m.apply(&Op::Play { viewer: v });
                m.apply(&Op::Connect { viewer: v });
            }
        }
        // The longest deadline, then the linger it starts.
        m.apply(&Op::Advance { millis: RTSP_MAX.as_millis() as u64 });
        m.apply(&Op::Advance { millis: LINGER.as_millis() as u64 });
        prop_assert_eq!(m.d.viewers().count(), 0);
        prop_assert_eq!(m.d.producers().count(), 0);
        m.finish();
    }
}

/// The longest any Moonlight deadline of the test settings runs.
const RTSP_MAX: Duration = Duration::from_secs(5);
