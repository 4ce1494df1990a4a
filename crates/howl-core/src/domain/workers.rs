//! Worker lifecycle: starting a producer's worker, and its supervisor's reports.

use super::*;

impl Domain {
    // ----- inputs: workers -----

    /// A worker started. True: it is its producer's current worker (hand it to the viewers);
    /// false: stale (its producer stopped or restarted it meanwhile), and a
    /// [`Action::StopWorker`] for it is queued.
    pub fn worker_ready(&mut self, _now: Instant, worker: WorkerId) -> bool {
        let Some(p) = self
            .producers
            .values_mut()
            .find(|p| p.worker.id() == Some(worker))
        else {
            self.outbox.push_back(Action::StopWorker { worker });
            return false;
        };
        if p.worker == WorkerState::Ready(worker) {
            return true; // reported twice
        }
        p.worker = WorkerState::Ready(worker);
        let (owner, event) = (
            p.owner(),
            DomainEvent::WorkerStarted {
                worker,
                app: p.app.title.clone(),
                lobby_id: p.lobby_id(),
            },
        );
        self.publish(owner, event);
        true
    }

    /// A worker failed to start: operators are told why, then its producer stops
    /// ([`EndReason::WorkerDied`]).
    pub fn worker_failed(&mut self, _now: Instant, worker: WorkerId, detail: String) {
        self.worker_gone(
            worker,
            format!("failed to start: {detail}"),
            EndReason::WorkerDied { detail },
        );
    }

    /// A worker ended. Its producer stops: [`EndReason::AppExited`] when the app ended by
    /// itself, [`EndReason::WorkerDied`] otherwise. A report about a worker that is no longer
    /// its producer's current one (stopped on request, replaced) changes nothing.
    pub fn worker_exited(&mut self, _now: Instant, worker: WorkerId, end: WorkerEnd) {
        match end {
            WorkerEnd::AppExited(detail) => {
                if let Some(id) = self.detach_worker(worker) {
                    self.stop_producer(id, EndReason::AppExited { detail });
                }
            }
            WorkerEnd::NodeLost { node, detail } => {
                let why = format!("node {node} lost: {detail}");
                self.worker_gone(worker, why, EndReason::NodeLost { node, detail });
            }
            WorkerEnd::Died(detail) => {
                self.worker_gone(worker, detail.clone(), EndReason::WorkerDied { detail });
            }
            WorkerEnd::Stopped => {
                // Only stale workers are stopped on request; a current one that stops leaves
                // its viewers with nothing to watch, which is a death as far as they can tell.
                let detail = "stopped without being asked".to_owned();
                self.worker_gone(worker, detail.clone(), EndReason::WorkerDied { detail });
            }
        }
    }

    fn worker_gone(&mut self, worker: WorkerId, why: String, reason: EndReason) {
        let Some(id) = self.detach_worker(worker) else {
            return;
        };
        if let Some(p) = self.producers.get(&id) {
            let event = DomainEvent::WorkerDied {
                worker,
                app: p.app.title.clone(),
                lobby_id: p.lobby_id(),
                reason: why,
            };
            self.publish(p.owner(), event);
        }
        self.stop_producer(id, reason);
    }

    /// Forgets `worker` (it is gone: nothing to stop) and returns its producer, if current.
    fn detach_worker(&mut self, worker: WorkerId) -> Option<ProducerId> {
        let p = self
            .producers
            .values_mut()
            .find(|p| p.worker.id() == Some(worker))?;
        p.worker = WorkerState::None;
        Some(p.id)
    }

    /// (Re)starts a producer's worker with `params`, stopping the previous one.
    pub(super) fn start_worker(&mut self, id: ProducerId, params: StreamParams) {
        let worker = WorkerId(self.next_worker);
        self.next_worker += 1;
        let Some(p) = self.producers.get_mut(&id) else {
            return;
        };
        if let Some(old) = p.worker.id() {
            self.outbox.push_back(Action::StopWorker { worker: old });
        }
        p.worker = WorkerState::Starting(worker);
        p.params = Some(params.clone());
        let node = p.node.clone();
        self.outbox.push_back(Action::StartWorker {
            producer: id,
            worker,
            params,
            node,
        });
    }
}
