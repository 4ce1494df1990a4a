//! The Moonlight control stream (ENet), off the engine actor.
//!
//! The ENet thread's events go to one router task ([`route_control`]). A CONNECT is the
//! engine's business (its token names the viewer, and the viewer may be gone): the router asks
//! the engine and gets back that viewer's [`ControlLink`]. From then on every packet from the
//! peer goes straight to the link, which decrypts it (AES-GCM), decodes it and acts on it
//! (keyframe requests, input to the producer's worker) in the router task. A mouse move is
//! thus ENet thread → router → worker input queue; the engine actor, busy with launches and
//! the API, is not on the path. The engine sees only connects and disconnects.

use crate::data::enet::{EnetEvent, PeerId};
use crate::viewer::ViewerStats;
use crate::viewer::feed::WorkerWatch;
use howl_proto::control::{ClientMessage, ControlCrypto};
use howl_proto::input::InputEvent;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One viewer's control stream: the opening half of its keys and where its input goes.
pub struct ControlLink {
    /// The viewer id the worker keeps held keys under.
    viewer: u64,
    crypto: ControlCrypto,
    worker_rx: WorkerWatch,
    /// Fired by the engine's end path: later packets are ignored.
    cancel: CancellationToken,
    stats: Arc<ViewerStats>,
    /// When the last control message arrived (the silence deadline).
    last_control: Mutex<Instant>,
}

impl std::fmt::Debug for ControlLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlLink")
            .field("viewer", &self.viewer)
            .finish_non_exhaustive()
    }
}

impl ControlLink {
    pub fn new(
        viewer: u64,
        crypto: ControlCrypto,
        worker_rx: WorkerWatch,
        cancel: CancellationToken,
        stats: Arc<ViewerStats>,
        now: Instant,
    ) -> Self {
        Self {
            viewer,
            crypto,
            worker_rx,
            cancel,
            stats,
            last_control: Mutex::new(now),
        }
    }

    /// When the last control message (or the CONNECT) arrived.
    pub fn last_seen(&self) -> Instant {
        // A poisoned lock only means a panic mid-store of a Copy value.
        *self.last_control.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One ENet packet from the client, received at `now`.
    pub fn on_packet(&self, channel: u8, data: &[u8], now: Instant) {
        if self.cancel.is_cancelled() {
            return;
        }
        *self.last_control.lock().unwrap_or_else(|e| e.into_inner()) = now;
        match self.crypto.open(data) {
            Ok(msg) => {
                self.stats.control_messages.fetch_add(1, Ordering::Relaxed);
                self.on_message(msg);
            }
            Err(e) => {
                self.stats.control_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(viewer = self.viewer, channel, error = %e, "undecryptable control message");
            }
        }
    }

    fn on_message(&self, msg: ClientMessage) {
        let worker = self.worker_rx.borrow().clone();
        match msg {
            ClientMessage::RequestIdr | ClientMessage::InvalidateReferenceFrames { .. } => {
                // A keyframe answers both; we do not advertise reference invalidation.
                if let Some(w) = worker {
                    w.request_keyframe();
                }
            }
            ClientMessage::Input(bytes) => {
                self.stats.input_events.fetch_add(1, Ordering::Relaxed);
                match InputEvent::decode(&bytes) {
                    Ok(ev) => {
                        tracing::trace!(viewer = self.viewer, event = ?ev, "input");
                        // Each viewer injects as itself: the worker keeps held keys per viewer.
                        if let Some(w) = worker
                            && howl_media::xinput::for_desktop(&ev)
                        {
                            w.input(self.viewer, ev);
                        }
                    }
                    Err(e) => tracing::debug!(viewer = self.viewer, error = %e, "bad input packet"),
                }
            }
            _ => {}
        }
    }

    /// ENet's latest round-trip time to the client.
    pub fn on_rtt(&self, rtt_ms: u32) {
        // Stored at least 1 so that 0 keeps meaning "no report yet".
        self.stats
            .rtt_ms
            .store(u64::from(rtt_ms).max(1), Ordering::Relaxed);
    }
}

/// What the router needs from the engine.
pub trait ControlEngine: Send + Sync {
    /// A CONNECT with `data` (the connect token) from `peer`: the viewer's link, or `None`
    /// when no viewer has that token (the engine refuses the peer).
    fn connected(
        &self,
        peer: PeerId,
        addr: std::net::SocketAddr,
        data: u32,
    ) -> impl Future<Output = Option<Arc<ControlLink>>> + Send;
    /// The peer disconnected or timed out.
    fn disconnected(&self, peer: PeerId) -> impl Future<Output = ()> + Send;
}

/// Routes the ENet thread's events until `stop` or the thread ends: packets and RTT reports to
/// their peer's link, connects and disconnects to the engine.
pub async fn route_control(
    mut events: mpsc::Receiver<EnetEvent>,
    engine: impl ControlEngine,
    stop: CancellationToken,
) {
    let mut links: HashMap<PeerId, Arc<ControlLink>> = HashMap::new();
    loop {
        let ev = tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => ev,
                None => break,
            },
            () = stop.cancelled() => break,
        };
        match ev {
            EnetEvent::Received {
                peer,
                channel,
                data,
            } => {
                if let Some(link) = links.get(&peer) {
                    let now = Instant::now();
                    link.on_packet(channel, &data, now);
                }
            }
            EnetEvent::Rtt { peer, rtt_ms } => {
                if let Some(link) = links.get(&peer) {
                    link.on_rtt(rtt_ms);
                }
            }
            // Waits for the engine's answer, so the packets right behind the CONNECT find
            // their link. Connects are rare and the engine answers within its deadline.
            EnetEvent::Connected { peer, addr, data } => {
                match engine.connected(peer, addr, data).await {
                    Some(link) => {
                        links.insert(peer, link);
                    }
                    None => {
                        links.remove(&peer);
                    }
                }
            }
            EnetEvent::Disconnected { peer } => {
                links.remove(&peer);
                engine.disconnected(peer).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::Worker;
    use howl_media::protocol::Message;
    use howl_proto::control::{ClientCrypto, IvVariant};
    use howl_proto::input::InputEvent;
    use std::time::Duration;
    use tokio::sync::watch;

    const KEY: [u8; 16] = [7; 16];

    #[allow(clippy::disallowed_methods)]
    fn origin() -> Instant {
        Instant::now()
    }

    #[test]
    fn a_viewers_link_decrypts_its_input_and_hands_it_to_the_worker_as_itself() {
        let (worker, mut ends) = Worker::detached();
        let (_tx, worker_rx) = watch::channel(Some(Arc::new(worker)));
        let iv = IvVariant::from_advertised(howl_proto::sdp::EncryptionFlags::ALL.0);
        let stats = Arc::new(ViewerStats::default());
        let cancel = CancellationToken::new();
        let t0 = origin();
        let link = ControlLink::new(
            42,
            ControlCrypto::new(KEY, iv).unwrap(),
            worker_rx,
            cancel.clone(),
            stats.clone(),
            t0,
        );
        let mut client = ClientCrypto::new(KEY, iv).unwrap();
        let packet = client
            .seal(&ClientMessage::input(&InputEvent::MouseMove {
                dx: 3,
                dy: -4,
            }))
            .unwrap();
        let t1 = t0 + Duration::from_secs(3);
        link.on_packet(0, &packet, t1);
        match ends.input.try_recv() {
            Ok(Message::Input { viewer, .. }) => assert_eq!(viewer, 42),
            other => panic!("expected the viewer's input, got {other:?}"),
        }
        assert_eq!(stats.input_events.load(Ordering::Relaxed), 1);
        // The packet counts as control traffic for the silence deadline.
        assert_eq!(link.last_seen(), t1);
        // Garbage is counted, not acted on.
        link.on_packet(0, b"not a control packet", t1);
        assert_eq!(stats.control_errors.load(Ordering::Relaxed), 1);
        // After the end path fired, nothing more reaches the worker.
        cancel.cancel();
        let late = client.seal(&ClientMessage::RequestIdr).unwrap();
        link.on_packet(0, &late, t1);
        assert!(ends.input.try_recv().is_err());
        assert!(ends.commands.try_recv().is_err());
    }
}
