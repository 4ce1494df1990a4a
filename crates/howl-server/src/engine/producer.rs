//! Producers: app instances (private launches, lobbies, `/app/` producers for RTSP players),
//! their workers, and the stop policy applied when a viewer leaves.

use super::{Engine, audience};
use crate::events::{Audience, Event};
use crate::viewer::feed::WorkerWatch;
use crate::worker::{self, Worker, WorkerExit};
use howl_core::{App, AppKind, EndReason, SessionId};
use howl_media::protocol::{Source, StreamParams};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long after the last producer stopped the engine returns freed heap to the OS: long
/// enough for the stopped workers' supervisors and senders to drop their buffers.
const HEAP_TRIM_DELAY: Duration = Duration::from_secs(2);

/// A shared producer created through the API.
pub(super) struct Lobby {
    pub name: String,
    /// The id clients launch to join.
    pub app_id: i32,
    pub clients: Vec<String>,
    pub stop_when_everyone_leaves: bool,
    pub idle_timeout: Duration,
    pub owner: Option<u64>,
}

/// Whose producer an instance is; decides who may join and when it stops.
pub(super) enum Role {
    /// One client's own launch: it lingers for `/resume` when the client goes away.
    Private { client: String },
    /// A lobby: it runs until the API stops it (or, when asked, its idle timeout passes).
    Lobby(Lobby),
    /// The shared producer of an app for RTSP players (`/app/<name>`): it lingers, then stops,
    /// once its last player left.
    Players,
}

pub(super) struct Instance {
    pub id: u64,
    pub role: Role,
    pub app: App,
    pub worker: Option<Arc<Worker>>,
    /// Published to viewers' feeds: they (re)subscribe when it changes.
    pub worker_tx: watch::Sender<Option<Arc<Worker>>>,
    pub starting: bool,
    pub params: Option<StreamParams>,
    /// Viewers watching this producer (at most one for a private instance).
    pub viewers: BTreeSet<SessionId>,
    pub linger_until: Option<Instant>,
}

impl Instance {
    pub fn new(id: u64, role: Role, app: App) -> Self {
        Self {
            id,
            role,
            app,
            worker: None,
            worker_tx: watch::channel(None).0,
            starting: false,
            params: None,
            viewers: BTreeSet::new(),
            linger_until: None,
        }
    }

    pub fn lobby(&self) -> Option<&Lobby> {
        match &self.role {
            Role::Lobby(l) => Some(l),
            _ => None,
        }
    }

    /// The client owning a private instance.
    pub fn private_client(&self) -> Option<&str> {
        match &self.role {
            Role::Private { client } => Some(client),
            _ => None,
        }
    }

    /// The tenant owning this producer (only lobbies have owners).
    pub fn owner(&self) -> Option<u64> {
        self.lobby().and_then(|l| l.owner)
    }

    /// The lobby id the API shows, `None` for other instances.
    pub fn lobby_id(&self) -> Option<u64> {
        self.lobby().map(|_| self.id)
    }

    /// The id clients see for this producer: the lobby's entry, or the app's.
    pub fn listed_id(&self) -> i32 {
        self.lobby().map(|l| l.app_id).unwrap_or(self.app.id)
    }

    /// A new watcher of this producer's worker.
    pub fn worker_watch(&self) -> WorkerWatch {
        self.worker_tx.subscribe()
    }

    pub fn audience(&self) -> Audience {
        audience(self.owner())
    }
}

/// Every app kind of this build streams (the worker reports what it cannot start).
pub(super) fn check_streamable(app: &App) -> Result<(), String> {
    match app.kind {
        AppKind::TestPattern { .. }
        | AppKind::Process { .. }
        | AppKind::Docker { .. }
        | AppKind::Source { .. } => Ok(()),
    }
}

pub(super) fn source_of(app: &App) -> Source {
    match &app.kind {
        AppKind::TestPattern { tone_hz } => Source::TestPattern { tone_hz: *tone_hz },
        AppKind::Process {
            command,
            args,
            env,
            working_dir,
        } => Source::Desktop(howl_media::protocol::DesktopApp {
            command: command.clone(),
            args: args.clone(),
            env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            working_dir: working_dir.clone(),
            container: None,
        }),
        AppKind::Docker {
            image,
            command,
            env,
            mounts,
            network,
        } => Source::Desktop(howl_media::protocol::DesktopApp {
            command: command.first().cloned().unwrap_or_default(),
            args: command.iter().skip(1).cloned().collect(),
            env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            working_dir: None,
            container: Some(howl_media::protocol::ContainerSpec {
                image: image.clone(),
                mounts: mounts.clone(),
                network: network.clone(),
            }),
        }),
        AppKind::Source { uri } => Source::Uri { uri: uri.clone() },
    }
}

/// Turns a URI source's reports into events and counters, until its worker ends. Each change
/// the watch shows is one event; losses and recoveries coalesced between two looks (a source
/// flapping faster than this task runs) still reach the counters.
async fn watch_source(
    mut status: watch::Receiver<worker::SourceStatus>,
    mut exit: watch::Receiver<WorkerExit>,
    events: crate::events::EventBus,
    audience: Audience,
    app: String,
    lobby_id: Option<u64>,
    [losses, recoveries]: [Arc<AtomicU64>; 2],
) {
    let mut seen = worker::SourceStatus::default();
    loop {
        tokio::select! {
            r = status.changed() => if r.is_err() { return },
            r = exit.changed() => {
                if r.is_err() || *exit.borrow() != WorkerExit::Running {
                    return;
                }
                continue;
            }
        }
        let now = status.borrow_and_update().clone();
        losses.fetch_add(now.losses.saturating_sub(seen.losses), Ordering::Relaxed);
        recoveries.fetch_add(
            now.recoveries.saturating_sub(seen.recoveries),
            Ordering::Relaxed,
        );
        match (&seen.down, &now.down) {
            (_, Some(reason)) if now.losses > seen.losses => events.publish(
                audience,
                Event::SourceLost {
                    app: app.clone(),
                    lobby_id,
                    reason: reason.clone(),
                },
            ),
            (_, None) if now.recoveries > seen.recoveries => events.publish(
                audience,
                Event::SourceRestored {
                    app: app.clone(),
                    lobby_id,
                },
            ),
            _ => {}
        }
        seen = now;
    }
}

impl Engine {
    /// Adds a producer; its worker starts with [`Engine::start_worker`].
    pub(super) fn add_instance(&mut self, role: Role, app: App) -> u64 {
        let id = self.next_id();
        self.instances.insert(id, Instance::new(id, role, app));
        id
    }

    /// The client's own (private) instance.
    pub(super) fn instance_of(&self, client: &str) -> Option<u64> {
        self.instances
            .values()
            .find(|i| i.private_client() == Some(client))
            .map(|i| i.id)
    }

    /// (Re)starts the instance's worker with `params`; the result arrives at
    /// [`Engine::worker_ready`].
    pub(super) fn start_worker(&mut self, inst_id: u64, params: StreamParams) {
        let Some(inst) = self.instances.get_mut(&inst_id) else {
            return;
        };
        if let Some(w) = inst.worker.take() {
            w.stop();
        }
        inst.params = Some(params.clone());
        inst.starting = true;
        // send_replace: stored even while no viewer subscribes yet.
        inst.worker_tx.send_replace(None);
        let bin = self.settings.worker_bin.clone();
        let dir = self.settings.runtime_dir.clone();
        let engine = self.handle();
        tokio::spawn(async move {
            let result = worker::spawn(&bin, &dir, params)
                .await
                .map(Arc::new)
                .map_err(|e| e.to_string());
            if let Some(engine) = engine {
                engine
                    .tell(move |e, now| e.worker_ready(inst_id, result, now))
                    .await;
            }
        });
    }

    fn worker_ready(&mut self, instance: u64, result: Result<Arc<Worker>, String>, now: Instant) {
        let engine = self.handle();
        let Some(inst) = self.instances.get_mut(&instance) else {
            // The instance ended while its worker started: dropping the handle stops it.
            return;
        };
        inst.starting = false;
        let w = match result {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(instance, error = %e, "media worker failed to start");
                self.worker_died(instance, format!("failed to start: {e}"), e, now);
                return;
            }
        };
        let mut exit = w.exit();
        tokio::spawn(async move {
            let outcome = loop {
                if exit.changed().await.is_err() {
                    break WorkerExit::Died("supervisor gone".into());
                }
                let v = exit.borrow().clone();
                if v != WorkerExit::Running {
                    break v;
                }
            };
            if let Some(engine) = engine {
                engine
                    .tell(move |e, now| e.worker_exited(instance, outcome, now))
                    .await;
            }
        });
        if matches!(inst.app.kind, AppKind::Source { .. }) {
            tokio::spawn(watch_source(
                w.source_status(),
                w.exit(),
                self.settings.events.clone(),
                inst.audience(),
                inst.app.title.clone(),
                inst.lobby_id(),
                [self.source_losses.clone(), self.source_recoveries.clone()],
            ));
        }
        self.settings.events.publish(
            inst.audience(),
            Event::WorkerStarted {
                pid: w.pid,
                app: inst.app.title.clone(),
                lobby_id: inst.lobby_id(),
            },
        );
        inst.worker = Some(w.clone());
        inst.worker_tx.send_replace(Some(w));
    }

    fn worker_exited(&mut self, instance: u64, exit: WorkerExit, now: Instant) {
        match exit {
            WorkerExit::Died(detail) => self.worker_died(instance, detail.clone(), detail, now),
            WorkerExit::AppExited(detail) => {
                self.stop_instance(instance, EndReason::AppExited { detail }, now);
            }
            WorkerExit::Running | WorkerExit::Stopped => {}
        }
    }

    /// A worker died or never started: operators are told why, then its instance stops.
    fn worker_died(&mut self, instance: u64, reason: String, detail: String, now: Instant) {
        let Some(inst) = self.instances.get(&instance) else {
            return;
        };
        self.settings.events.publish(
            inst.audience(),
            Event::WorkerDied {
                pid: inst.worker.as_ref().map(|w| w.pid),
                app: inst.app.title.clone(),
                lobby_id: inst.lobby_id(),
                reason,
            },
        );
        self.stop_instance(instance, EndReason::WorkerDied { detail }, now);
    }

    /// Removes a viewer from its producer and applies the producer's stop policy.
    pub(super) fn leave_instance(
        &mut self,
        sid: SessionId,
        instance: u64,
        reason: EndReason,
        now: Instant,
    ) {
        let Some(inst) = self.instances.get_mut(&instance) else {
            return;
        };
        inst.viewers.remove(&sid);
        // No stuck keys: whatever this viewer held on the desktop is released.
        if let Some(w) = &inst.worker {
            w.release_input(sid.0);
        }
        let empty = inst.viewers.is_empty();
        match &inst.role {
            // Players come and go (a probe, a reconnect): keep the producer a while.
            Role::Players => {
                if empty {
                    inst.linger_until = Some(now + self.settings.linger);
                }
            }
            // Producers outlive viewers: a lobby only stops by policy, after its idle timeout.
            Role::Lobby(l) => {
                if empty && l.stop_when_everyone_leaves {
                    inst.linger_until = Some(now + l.idle_timeout);
                }
            }
            Role::Private { .. } => match reason {
                // The client went away without quitting: keep the app for /resume.
                EndReason::ClientDisconnected
                | EndReason::ControlTimeout
                | EndReason::ControlPingSilence => {
                    inst.linger_until = Some(now + self.settings.linger);
                }
                // A newer stream of the same client took over; the app keeps running.
                EndReason::Replaced => {}
                _ => {
                    let id = inst.id;
                    self.stop_instance(id, reason, now);
                }
            },
        }
    }

    /// Ends every viewer of the instance and stops its worker.
    pub(super) fn stop_instance(&mut self, instance: u64, reason: EndReason, now: Instant) {
        // Removed first, so the viewers ended below find no instance to act on.
        let Some(inst) = self.instances.remove(&instance) else {
            return;
        };
        for sid in &inst.viewers {
            self.end_viewer(*sid, reason.clone(), now);
        }
        if let Some(w) = &inst.worker {
            w.stop();
        }
        inst.worker_tx.send_replace(None);
        tracing::info!(instance, app = %inst.app.title, reason = %reason, "app stopped");
        if self.instances.is_empty() {
            // Idle now. Once the worker supervisors and sender tasks have let go of their
            // buffers, hand the freed heap back to the OS (see `tick`).
            self.trim_due = Some(now + HEAP_TRIM_DELAY);
            self.trimmed_idle.store(false, Ordering::Relaxed);
        }
        if let Some(l) = inst.lobby() {
            self.settings.events.publish(
                audience(l.owner),
                Event::LobbyStopped {
                    id: instance,
                    name: l.name.clone(),
                    reason: reason.to_string(),
                },
            );
        }
    }
}
