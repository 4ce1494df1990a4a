//! Executing the domain's worker actions: starting a producer's worker, and turning its
//! supervisor's reports (ready, failed, exited) into domain inputs.

use super::{Engine, audience};
use crate::domain::events::{Audience, Event};
use crate::worker::{self, Worker, WorkerExit};
use howl_core::AppKind;
use howl_core::domain::{ProducerId, WorkerEnd, WorkerId, WorkerState};
use howl_media::protocol::StreamParams;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::watch;

/// Turns a URI source's reports into events and counters, until its worker ends. Each change
/// the watch shows is one event; losses and recoveries coalesced between two looks (a source
/// flapping faster than this task runs) still reach the counters.
async fn watch_source(
    mut status: watch::Receiver<worker::SourceStatus>,
    mut exit: watch::Receiver<WorkerExit>,
    events: crate::domain::events::EventBus,
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
    /// Starts a worker for `producer`; its fate comes back as a job ([`Engine::worker_started`]).
    /// Until then the producer's viewers see no worker.
    pub(super) fn start_worker(
        &mut self,
        producer: ProducerId,
        worker_id: WorkerId,
        params: StreamParams,
        node: String,
    ) {
        // send_replace: stored even while no viewer follows it yet.
        self.producers
            .entry(producer)
            .or_insert_with(|| watch::channel(None).0)
            .send_replace(None);
        let bin = self.settings.worker_bin.clone();
        let dir = self.settings.runtime_dir.clone();
        let engine = self.handle();
        let nodes = self.settings.nodes.clone();
        tokio::spawn(async move {
            let result = if node == crate::node::LOCAL {
                worker::spawn(&bin, &dir, params).await
            } else {
                // One start deadline for the node's part and the worker's own start-up.
                let remote = async {
                    let (stream, rest, proc) = nodes.start_worker(&node, worker_id.0).await?;
                    worker::attach_remote(stream, rest, proc, params).await
                };
                tokio::time::timeout(worker::START_DEADLINE, remote)
                    .await
                    .unwrap_or(Err(worker::WorkerError::StartTimeout(
                        worker::START_DEADLINE,
                    )))
            };
            let result = result.map(Arc::new).map_err(|e| e.to_string());
            if let Some(engine) = engine {
                engine
                    .tell(move |e, now| e.worker_started(worker_id, result, now))
                    .await;
            }
        });
    }

    fn worker_started(&mut self, id: WorkerId, result: Result<Arc<Worker>, String>, now: Instant) {
        let w = match result {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(worker = %id, error = %e, "media worker failed to start");
                self.domain.worker_failed(now, id, e);
                return;
            }
        };
        // Known before the domain hears of it: a stale worker is stopped by the drain.
        self.workers.insert(id, w.clone());
        if !self.domain.worker_ready(now, id) {
            return;
        }
        let Some(p) = self
            .domain
            .producers()
            .find(|p| p.worker == WorkerState::Ready(id))
        else {
            return;
        };
        let (producer, owner, title, lobby_id) =
            (p.id, p.owner(), p.app.title.clone(), p.lobby_id());
        if matches!(p.app.kind, AppKind::Source { .. }) {
            tokio::spawn(watch_source(
                w.source_status(),
                w.exit(),
                self.settings.events.clone(),
                audience(owner),
                title,
                lobby_id,
                [self.source_losses.clone(), self.source_recoveries.clone()],
            ));
        }
        let mut exit = w.exit();
        let engine = self.handle();
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
                    .tell(move |e, now| e.worker_exited(id, outcome, now))
                    .await;
            }
        });
        self.producers
            .entry(producer)
            .or_insert_with(|| watch::channel(None).0)
            .send_replace(Some(w));
    }

    fn worker_exited(&mut self, id: WorkerId, exit: WorkerExit, now: Instant) {
        let end = match exit {
            WorkerExit::Running => return,
            WorkerExit::Stopped => WorkerEnd::Stopped,
            WorkerExit::Died(detail) => WorkerEnd::Died(detail),
            WorkerExit::AppExited(detail) => WorkerEnd::AppExited(detail),
            WorkerExit::NodeLost { node, detail } => WorkerEnd::NodeLost { node, detail },
        };
        self.domain.worker_exited(now, id, end);
        // Drained here, while the worker is still known: its death event names its pid.
        self.drain(now);
        self.workers.remove(&id);
    }
}
