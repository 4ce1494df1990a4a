//! Live events for operators: typed, JSON-serialisable, fanned out to `/api/v1/events`.
//!
//! Publishing never waits: the bus is a bounded broadcast ring, so the core actor and the
//! engine hand an event over in constant time and a slow SSE subscriber only loses its own
//! place (it gets a `lagged` event and refetches). Events carry names, fingerprints, ids and
//! reasons, never a key, IV, PIN or token: the types below have no field that could hold one.

use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::broadcast;

/// How many events the bus holds for subscribers that have not read them yet. A subscriber
/// further behind than this is told it lagged and should refetch lists.
pub const EVENT_BUS_CAPACITY: usize = 1024;

/// Who may see an event: everything is visible to the admin; an owned event (a tenant's lobby,
/// its sessions and workers, its apps) is visible to that tenant too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Audience {
    #[default]
    AdminOnly,
    Tenant(u64),
}

/// One thing that happened.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    PairingRequested {
        id: u64,
        device_name: String,
        fingerprint: String,
    },
    PairingCompleted {
        fingerprint: String,
        name: String,
    },
    PairingFailed {
        /// `uniqueid@address` of the client (its certificate is not known at every step).
        requester: String,
        reason: String,
    },
    ClientUnpaired {
        fingerprint: String,
    },
    ClientRenamed {
        fingerprint: String,
        name: String,
    },
    SessionStarted {
        id: u64,
        client: String,
        app: String,
        lobby_id: Option<u64>,
    },
    SessionEnded {
        id: u64,
        client: String,
        app: String,
        lobby_id: Option<u64>,
        reason: String,
    },
    LobbyCreated {
        id: u64,
        name: String,
        app: String,
    },
    LobbyStopped {
        id: u64,
        name: String,
        reason: String,
    },
    WorkerStarted {
        pid: u32,
        app: String,
        lobby_id: Option<u64>,
    },
    WorkerDied {
        pid: Option<u32>,
        app: String,
        lobby_id: Option<u64>,
        reason: String,
    },
    AppChanged {
        id: i32,
        title: String,
        change: &'static str,
    },
    /// A source app's input failed or stalled; its viewers see a "no signal" slate while the
    /// worker reconnects with backoff.
    SourceLost {
        app: String,
        lobby_id: Option<u64>,
        /// The worker's reason, with any credentials of the URI removed.
        reason: String,
    },
    /// A source app's input delivers pictures again.
    SourceRestored {
        app: String,
        lobby_id: Option<u64>,
    },
}

impl Event {
    /// The SSE `event:` name (the same as the JSON `type`).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::PairingRequested { .. } => "pairing_requested",
            Event::PairingCompleted { .. } => "pairing_completed",
            Event::PairingFailed { .. } => "pairing_failed",
            Event::ClientUnpaired { .. } => "client_unpaired",
            Event::ClientRenamed { .. } => "client_renamed",
            Event::SessionStarted { .. } => "session_started",
            Event::SessionEnded { .. } => "session_ended",
            Event::LobbyCreated { .. } => "lobby_created",
            Event::LobbyStopped { .. } => "lobby_stopped",
            Event::WorkerStarted { .. } => "worker_started",
            Event::WorkerDied { .. } => "worker_died",
            Event::AppChanged { .. } => "app_changed",
            Event::SourceLost { .. } => "source_lost",
            Event::SourceRestored { .. } => "source_restored",
        }
    }
}

/// An event with its sequence number and audience.
#[derive(Debug, Clone, Serialize)]
pub struct Envelope {
    pub seq: u64,
    pub at_unix_ms: u64,
    #[serde(skip)]
    pub audience: Audience,
    #[serde(flatten)]
    pub event: Event,
}

/// The publishing side; cheap to clone.
#[derive(Clone, Debug)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<Envelope>>,
    seq: Arc<AtomicU64>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(EVENT_BUS_CAPACITY);
        Self {
            tx,
            seq: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Publishes without waiting; with no subscriber the event is simply gone.
    pub fn publish(&self, audience: Audience, event: Event) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        #[allow(clippy::disallowed_methods)] // wall-clock stamp for operators, not for logic
        let at_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        tracing::debug!(seq, kind = event.kind(), "event");
        let _ = self.tx.send(Arc::new(Envelope {
            seq,
            at_unix_ms,
            audience,
            event,
        }));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Envelope>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_serialise_with_their_type_and_reach_subscribers() {
        let bus = EventBus::new();
        let mut rx = bus.subscribe();
        bus.publish(
            Audience::Tenant(3),
            Event::SessionEnded {
                id: 7,
                client: "ab".into(),
                app: "Test Pattern".into(),
                lobby_id: None,
                reason: "client quit".into(),
            },
        );
        let e = rx.recv().await.expect("event");
        assert_eq!(e.audience, Audience::Tenant(3));
        let v = serde_json::to_value(&*e).expect("json");
        assert_eq!(v["type"], "session_ended");
        assert_eq!(v["reason"], "client quit");
        assert_eq!(v["seq"], 1);
        assert!(v.get("audience").is_none());
        assert_eq!(e.event.kind(), "session_ended");
    }

    #[tokio::test]
    async fn a_slow_subscriber_lags_instead_of_blocking_the_publisher() {
        let bus = EventBus::new();
        let mut rx = bus.subscribe();
        for i in 0..(EVENT_BUS_CAPACITY as u64 + 10) {
            bus.publish(
                Audience::AdminOnly,
                Event::ClientUnpaired {
                    fingerprint: format!("{i}"),
                },
            );
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(10))
        ));
    }
}
