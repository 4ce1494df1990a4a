//! The one path by which a viewer ends, and the tick that enforces every deadline.

use super::{Engine, Viewer, audience};
use crate::events::Event;
use crate::viewer::ViewerKind;
use howl_core::{EndReason, SessionId};
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Engine {
    /// The one way a viewer ends, whatever its kind: its protocol is told why (where it
    /// listens), its tasks are cancelled, its counters retire into the totals, operators get
    /// a `session_ended` event, and its producer applies its stop policy. False when there
    /// was no such viewer (it ended already).
    pub(super) fn end_viewer(&mut self, sid: SessionId, reason: EndReason, now: Instant) -> bool {
        let Some(mut v) = self.viewers.remove(&sid) else {
            return false;
        };
        v.kind.on_end(&reason);
        v.cancel.cancel();
        if let ViewerKind::Moonlight(m) = &v.kind {
            self.router.unregister(&sid);
            if let Some(peer) = m.peer() {
                self.by_peer.remove(&peer);
            }
        }
        v.stats.video_queue_depth.store(0, Ordering::Relaxed);
        self.retire(&v, &reason);
        // Fingerprints are shortened in logs; a player's label is short already.
        let who = match v.kind {
            ViewerKind::Moonlight(_) => crate::core_task::short(&v.client),
            ViewerKind::RtspPlayer(_) => &v.client,
        };
        tracing::info!(session = %sid, kind = v.kind.label(), client = %who, reason = %reason,
            frames_sent = v.stats.frames_sent.load(Ordering::Relaxed), "session ended");
        let inst = self.instances.get(&v.instance);
        self.settings.events.publish(
            audience(inst.and_then(|i| i.owner())),
            Event::SessionEnded {
                id: sid.0,
                client: v.client.clone(),
                app: inst.map(|i| i.app.title.clone()).unwrap_or_default(),
                lobby_id: inst.and_then(|i| i.lobby_id()),
                reason: reason.to_string(),
            },
        );
        self.leave_instance(sid, v.instance, reason, now);
        true
    }

    /// Ends every viewer and stops every producer.
    pub(super) fn end_everything(&mut self, reason: EndReason, now: Instant) {
        let ids: Vec<u64> = self.instances.keys().copied().collect();
        for id in ids {
            self.stop_instance(id, reason.clone(), now);
        }
        let sids: Vec<SessionId> = self.viewers.keys().copied().collect();
        for sid in sids {
            self.end_viewer(sid, reason.clone(), now);
        }
    }

    /// Every deadline: each viewer's own (its driver computes them, the engine enforces them,
    /// so a wedged or vanished driver task cannot keep a viewer alive), the producers'
    /// linger, and the idle heap trim.
    pub(super) fn tick(&mut self, now: Instant) {
        self.trim_heap_when_idle(now);
        let expired: Vec<(SessionId, EndReason)> = self
            .viewers
            .values_mut()
            .filter_map(|v| Some((v.id, v.kind.expired(now)?)))
            .collect();
        for (sid, reason) in expired {
            self.end_viewer(sid, reason, now);
        }
        let lingering: Vec<u64> = self
            .instances
            .values()
            .filter(|i| i.viewers.is_empty() && i.linger_until.is_some_and(|t| now >= t))
            .map(|i| i.id)
            .collect();
        for id in lingering {
            self.stop_instance(id, EndReason::IdleTimeout, now);
        }
    }

    fn trim_heap_when_idle(&mut self, now: Instant) {
        if !self.instances.is_empty() {
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

    /// Adds a new viewer to `instance` and tells operators.
    pub(super) fn attach_viewer(&mut self, viewer: Viewer) {
        if let Some(inst) = self.instances.get_mut(&viewer.instance) {
            inst.viewers.insert(viewer.id);
            inst.linger_until = None;
            self.settings.events.publish(
                inst.audience(),
                Event::SessionStarted {
                    id: viewer.id.0,
                    client: viewer.client.clone(),
                    app: inst.app.title.clone(),
                    lobby_id: inst.lobby_id(),
                },
            );
        }
        self.viewers.insert(viewer.id, viewer);
    }
}
