//! Executing the domain's ends (a viewer's connection, a producer's resources), its events,
//! and the tick that feeds it the drivers' liveness and time.

use super::{Engine, audience};
use crate::domain::events::Event;
use crate::viewer::ViewerKind;
use howl_core::EndReason;
use howl_core::domain::{self, DomainEvent, ProducerId};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long after the last producer stopped the engine returns freed heap to the OS: long
/// enough for the stopped workers' supervisors and senders to drop their buffers.
const HEAP_TRIM_DELAY: Duration = Duration::from_secs(2);

impl Engine {
    /// The driver's half of the one end path (the domain already removed the viewer and
    /// applied its producer's stop policy): the kind tells its client why where its protocol
    /// can, the viewer's tasks are cancelled, and its counters retire into the totals.
    pub(super) fn viewer_ended(&mut self, viewer: &domain::Viewer, reason: &EndReason) {
        let sid = viewer.id;
        let Some(mut v) = self.viewers.remove(&sid) else {
            return;
        };
        v.kind.on_end(reason);
        v.cancel.cancel();
        if let ViewerKind::Moonlight(m) = &v.kind {
            self.router.unregister(&sid);
            if let Some(peer) = m.peer() {
                self.by_peer.remove(&peer);
            }
        }
        v.stats.video_queue_depth.store(0, Ordering::Relaxed);
        v.stats.video_queue_bytes.store(0, Ordering::Relaxed);
        self.retire(&v, reason);
        // Fingerprints are shortened in logs; a player's label is short already.
        let who = match v.kind {
            ViewerKind::Moonlight(_) => crate::domain::short(&viewer.label),
            ViewerKind::RtspPlayer(_) | ViewerKind::Browser(_) => &viewer.label,
        };
        tracing::info!(session = %sid, kind = v.kind.label(), client = %who, reason = %reason,
            frames_sent = v.stats.frames_sent.load(Ordering::Relaxed), "session ended");
    }

    /// A producer is gone: its viewers' feeds close, and an idle engine returns its heap.
    pub(super) fn producer_stopped(&mut self, id: ProducerId, reason: &EndReason, now: Instant) {
        // Dropping the sender closes the watch: every feed still following it ends.
        if let Some(tx) = self.producers.remove(&id) {
            tx.send_replace(None);
        }
        tracing::info!(producer = %id, reason = %reason, "app stopped");
        if self.domain.producers().next().is_none() {
            // Idle now. Once the worker supervisors and sender tasks have let go of their
            // buffers, hand the freed heap back to the OS (see `tick`).
            self.trim_due = Some(now + HEAP_TRIM_DELAY);
            self.trimmed_idle.store(false, Ordering::Relaxed);
        }
    }

    /// An event for operators; worker pids are the driver's to add.
    pub(super) fn publish(&mut self, owner: Option<u64>, event: DomainEvent) {
        let event = match event {
            DomainEvent::SessionStarted {
                id,
                client,
                app,
                lobby_id,
            } => Event::SessionStarted {
                id: id.0,
                client,
                app,
                lobby_id,
            },
            DomainEvent::SessionEnded {
                id,
                client,
                app,
                lobby_id,
                reason,
            } => Event::SessionEnded {
                id: id.0,
                client,
                app,
                lobby_id,
                reason: reason.to_string(),
            },
            DomainEvent::PermissionChanged {
                id,
                client,
                lobby_id,
                permission,
            } => Event::PermissionChanged {
                id: id.0,
                client,
                lobby_id,
                permission,
            },
            DomainEvent::LobbyCreated { id, name, app } => Event::LobbyCreated {
                id: id.0,
                name,
                app,
            },
            DomainEvent::LobbyStopped { id, name, reason } => Event::LobbyStopped {
                id: id.0,
                name,
                reason: reason.to_string(),
            },
            DomainEvent::WorkerStarted {
                worker,
                app,
                lobby_id,
            } => {
                let Some(w) = self.workers.get(&worker) else {
                    return;
                };
                Event::WorkerStarted {
                    pid: w.pid,
                    app,
                    lobby_id,
                }
            }
            DomainEvent::WorkerDied {
                worker,
                app,
                lobby_id,
                reason,
            } => Event::WorkerDied {
                pid: self.workers.get(&worker).map(|w| w.pid),
                app,
                lobby_id,
                reason,
            },
        };
        self.settings.events.publish(audience(owner), event);
    }

    /// Feeds the domain what the drivers saw since the last tick (control traffic, the
    /// deadlines player connections publish), then time; the drain that follows ends what
    /// expired. Drivers publish rather than call in, so a wedged driver task cannot keep a
    /// viewer alive.
    pub(super) fn tick(&mut self, now: Instant) {
        self.trim_heap_when_idle(now);
        for (&id, v) in &self.viewers {
            match &v.kind {
                ViewerKind::Moonlight(m) => {
                    if let Some(seen) = m.last_control() {
                        self.domain.control_seen(seen, id);
                    }
                }
                ViewerKind::RtspPlayer(p) => {
                    self.domain.set_viewer_deadline(now, id, p.link.deadline());
                }
                ViewerKind::Browser(b) => {
                    self.domain.set_viewer_deadline(now, id, b.link.deadline());
                }
            }
        }
        self.domain.handle_timeout(now);
    }

    fn trim_heap_when_idle(&mut self, now: Instant) {
        if self.domain.producers().next().is_some() {
            self.trim_due = None;
        } else if self.trim_due.is_some_and(|t| now >= t) {
            self.trim_due = None;
            // RSS returns to its baseline between bursts (seed 002) instead of staying at the
            // high-water mark in glibc's per-thread arenas.
            let trims = self.heap_trims.clone();
            let done = self.trimmed_idle.clone();
            tokio::task::spawn_blocking(move || {
                crate::heap::release_freed();
                trims.fetch_add(1, Ordering::Relaxed);
                done.store(true, Ordering::Relaxed);
            });
        }
    }
}
