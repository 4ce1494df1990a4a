//! The shared WebRTC UDP port: one socket for every browser viewer, one receive task that
//! routes each datagram to its viewer's driver through [`Demux`].

use super::DATAGRAM_QUEUE_CAPACITY;
use super::demux::Demux;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One received datagram, with when it arrived.
#[derive(Debug)]
pub(super) struct Datagram {
    pub data: Vec<u8>,
    pub source: SocketAddr,
    pub at: Instant,
}

#[derive(Debug, Default)]
struct Routes {
    demux: Demux<u64>,
    queues: HashMap<u64, mpsc::Sender<Datagram>>,
    next: u64,
}

/// The shared socket and its routing table.
#[derive(Debug)]
pub struct WebRtcUdp {
    sock: Arc<UdpSocket>,
    /// The address browsers are told (the ICE host candidate).
    candidate: SocketAddr,
    routes: Mutex<Routes>,
    /// Datagrams that matched no viewer, or found its queue full.
    pub dropped: AtomicU64,
}

/// Unregisters a viewer's routes when its driver ends.
#[derive(Debug)]
pub(super) struct RouteGuard {
    udp: Arc<WebRtcUdp>,
    key: u64,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        let mut r = self.udp.lock();
        r.demux.unregister(self.key);
        r.queues.remove(&self.key);
    }
}

impl WebRtcUdp {
    /// Takes the bound socket; `candidate` is the address browsers reach it at.
    pub fn new(sock: UdpSocket, candidate: SocketAddr) -> Self {
        Self {
            sock: Arc::new(sock),
            candidate,
            routes: Mutex::default(),
            dropped: AtomicU64::new(0),
        }
    }

    pub fn candidate(&self) -> SocketAddr {
        self.candidate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        // A poisoned lock means a panic mid-update of plain maps; they are still usable.
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Routes ICE checks naming `ufrag` (and then their source addresses) to a new queue.
    pub(super) fn register(
        self: &Arc<Self>,
        ufrag: &str,
    ) -> (RouteGuard, mpsc::Receiver<Datagram>) {
        let (tx, rx) = mpsc::channel(DATAGRAM_QUEUE_CAPACITY);
        let mut r = self.lock();
        let key = r.next;
        r.next += 1;
        // Ufrags are random per viewer; a clash is astronomically unlikely and only leaves
        // the newer viewer unroutable, which its connect deadline ends.
        if !r.demux.register(ufrag, key) {
            tracing::warn!("WebRTC ufrag clash; the new viewer will not connect");
        }
        r.queues.insert(key, tx);
        drop(r);
        (
            RouteGuard {
                udp: self.clone(),
                key,
            },
            rx,
        )
    }

    /// Registered viewers and the addresses routed to them, for tests.
    #[cfg(test)]
    pub(super) fn routes(&self) -> (usize, usize) {
        let r = self.lock();
        (r.queues.len(), r.demux.addresses())
    }

    /// Sends without waiting: a full socket buffer drops the datagram (media is paced by the
    /// producer; ICE, DTLS and RTCP retransmit).
    pub(super) fn send(&self, data: &[u8], to: SocketAddr) {
        if self.sock.try_send_to(data, to).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Receives until `shutdown`, handing each datagram to its viewer.
    pub async fn serve(self: Arc<Self>, shutdown: CancellationToken) {
        let mut buf = vec![0u8; 2048];
        loop {
            let (n, source) = tokio::select! {
                r = self.sock.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    // ICMP errors from earlier sends surface here; they are not fatal.
                    Err(_) => continue,
                },
                () = shutdown.cancelled() => break,
            };
            let data = &buf[..n];
            let at = Instant::now();
            let mut r = self.lock();
            let queue = r.demux.route(data, source).and_then(|k| r.queues.get(&k));
            let delivered = queue.is_some_and(|q| {
                q.try_send(Datagram {
                    data: data.to_vec(),
                    source,
                    at,
                })
                .is_ok()
            });
            drop(r);
            if !delivered {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
