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
        /// Which check failed, typed: the metric counts by it, never by `reason`'s text.
        failure: PairingFailure,
        /// The detail for people (step and error message).
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
    /// An operator changed what a session may do: `control` (its input reaches the desktop)
    /// or `view` (its input is dropped and counted).
    PermissionChanged {
        id: u64,
        client: String,
        lobby_id: Option<u64>,
        permission: howl_core::domain::Permission,
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
    /// A media node joined (or rejoined) and takes producers.
    NodeJoined {
        node: String,
        first_join: bool,
    },
    /// A media node was lost (connection closed, heartbeat deadline, removed); its producers
    /// ended with `node_lost`.
    NodeLost {
        node: String,
        reason: String,
        producers: usize,
    },
    /// A node takes no new producers; its running ones go on to their end.
    NodeDrained {
        node: String,
    },
}

/// Why a pairing failed, as a fixed set (the JSON `failure` field and the
/// `howl_pairing_attempts_total` outcome).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PairingFailure {
    /// The challenge hashes disagree: the PIN entered differs from the client's.
    WrongPin,
    /// The client's signature does not verify with its certificate's key.
    BadSignature,
    /// A step arrived out of order, or with no pairing in progress.
    OutOfOrder,
    /// The request or a certificate in it could not be used, or the PIN entered was not
    /// 4 digits.
    Malformed,
    /// The server failed (crypto, randomness, storage): not the client's doing.
    Internal,
}

impl PairingFailure {
    /// The failure a pairing error stands for.
    pub fn of(e: &howl_proto::pairing::PairingError) -> Self {
        use howl_proto::pairing::PairingError as E;
        match e {
            E::WrongPin => Self::WrongPin,
            E::BadSignature => Self::BadSignature,
            E::OutOfOrder { .. } | E::NotPaired | E::PairingInProgress => Self::OutOfOrder,
            E::Certificate(_) | E::InvalidPin | E::BadField(_) => Self::Malformed,
            E::Crypto => Self::Internal,
        }
    }

    /// The `outcome` label of `howl_pairing_attempts_total` (one of
    /// `metrics::PAIRING_OUTCOMES`).
    pub fn outcome(self) -> &'static str {
        match self {
            Self::WrongPin => "wrong_pin",
            Self::BadSignature => "bad_signature",
            Self::OutOfOrder | Self::Malformed | Self::Internal => "failed",
        }
    }
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
            Event::PermissionChanged { .. } => "permission_changed",
            Event::LobbyCreated { .. } => "lobby_created",
            Event::LobbyStopped { .. } => "lobby_stopped",
            Event::WorkerStarted { .. } => "worker_started",
            Event::WorkerDied { .. } => "worker_died",
            Event::AppChanged { .. } => "app_changed",
            Event::SourceLost { .. } => "source_lost",
            Event::SourceRestored { .. } => "source_restored",
            Event::NodeJoined { .. } => "node_joined",
            Event::NodeLost { .. } => "node_lost",
            Event::NodeDrained { .. } => "node_drained",
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

    #[test]
    fn pairing_failures_are_typed_from_the_error_not_its_text() {
        use howl_proto::pairing::PairingError as E;
        let cases = [
            (E::WrongPin, PairingFailure::WrongPin, "wrong_pin"),
            (
                E::BadSignature,
                PairingFailure::BadSignature,
                "bad_signature",
            ),
            (
                E::OutOfOrder {
                    expected: "a",
                    got: "b",
                },
                PairingFailure::OutOfOrder,
                "failed",
            ),
            (E::BadField("x"), PairingFailure::Malformed, "failed"),
            (E::InvalidPin, PairingFailure::Malformed, "failed"),
            (E::Crypto, PairingFailure::Internal, "failed"),
        ];
        for (err, failure, outcome) in cases {
            assert_eq!(PairingFailure::of(&err), failure, "{err}");
            assert_eq!(failure.outcome(), outcome, "{err}");
            assert!(crate::control::metrics::PAIRING_OUTCOMES.contains(&outcome));
        }
        let v = serde_json::to_value(Event::PairingFailed {
            requester: "u@1.2.3.4".into(),
            failure: PairingFailure::BadSignature,
            reason: "signature does not verify".into(),
        })
        .unwrap();
        assert_eq!(v["failure"], "bad_signature");
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
