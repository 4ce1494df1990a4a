//! The ENet control host (UDP 47999), run on one dedicated thread.
//!
//! rusty_enet's `Host` is a transpiled C state machine behind raw pointers, so it is neither
//! `Send` nor async. It lives on its own thread which does nothing but service the host: it
//! waits at most [`POLL_INTERVAL`] for a datagram, turns ENet events into [`EnetEvent`]s for the
//! session router, and applies [`EnetCommand`]s from it. Both directions are bounded channels;
//! the thread never blocks on the router (events that do not fit are dropped and counted), so
//! a slow router cannot stall ENet acknowledgements and time out every client at once.
//!
//! Session matching (which peer belongs to which stream) is the router's job: this module only
//! reports the CONNECT `data` word that carries the session's connect token.

use howl_io::PollingSocket;
use rusty_enet as enet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// Longest the thread sleeps waiting for a datagram before it looks at its command queue.
pub const POLL_INTERVAL: Duration = Duration::from_millis(2);
/// Events thread → router. Overflow drops the event (counted in `events_dropped`).
pub const EVENT_CAPACITY: usize = 4096;
/// Commands router → thread. Overflow fails the `try_send` at the caller, who counts it.
pub const COMMAND_CAPACITY: usize = 4096;
/// Peers the host can hold at once (one per streaming client).
pub const PEER_LIMIT: usize = 256;
/// Channels accepted per peer: Moonlight opens 48 (0x30).
pub const CHANNEL_LIMIT: usize = 255;
/// Moonlight's ENet fork proposes an MTU of 900; never send more in one datagram.
pub const MTU: u16 = 900;

/// A peer handle, stable while the peer is connected.
pub type PeerId = usize;

/// What the ENet thread reports.
#[derive(Debug)]
pub enum EnetEvent {
    Connected {
        peer: PeerId,
        addr: SocketAddr,
        data: u32,
    },
    Received {
        peer: PeerId,
        channel: u8,
        data: Vec<u8>,
    },
    /// The peer disconnected or timed out (ENet's own liveness check).
    Disconnected { peer: PeerId },
    /// ENet's smoothed round-trip time to a connected peer, reported every [`RTT_REPORT`].
    Rtt { peer: PeerId, rtt_ms: u32 },
}

/// How often the ENet thread reports each connected peer's round-trip time.
pub const RTT_REPORT: std::time::Duration = std::time::Duration::from_secs(1);

/// What the router asks of the ENet thread.
#[derive(Debug)]
pub enum EnetCommand {
    Send {
        peer: PeerId,
        channel: u8,
        data: Vec<u8>,
    },
    /// Flushes queued packets, then disconnects gracefully (the termination message sent just
    /// before still arrives).
    DisconnectLater { peer: PeerId, data: u32 },
    /// Timeouts as the client configures them: limit, minimum and maximum in ms.
    SetTimeout {
        peer: PeerId,
        limit: u32,
        min_ms: u32,
        max_ms: u32,
    },
}

/// Live counters of the ENet thread.
#[derive(Debug, Default)]
pub struct EnetStats {
    pub connects: AtomicU64,
    pub disconnects: AtomicU64,
    pub packets_in: AtomicU64,
    pub events_dropped: AtomicU64,
}

/// Handle to the ENet thread. Dropping it (or calling [`EnetHost::stop`]) ends the thread
/// within one [`POLL_INTERVAL`]; `Drop` signals and joins, which is bounded by that interval.
#[derive(Debug)]
pub struct EnetHost {
    commands: std::sync::mpsc::SyncSender<EnetCommand>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub stats: Arc<EnetStats>,
    pub local_addr: SocketAddr,
}

impl EnetHost {
    /// Binds `addr` and starts the thread. Events arrive on the returned receiver.
    pub fn start(addr: SocketAddr) -> std::io::Result<(Self, mpsc::Receiver<EnetEvent>)> {
        let socket = UdpSocket::bind(addr)?;
        let local_addr = socket.local_addr()?;
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_CAPACITY);
        let (cmd_tx, cmd_rx) = std::sync::mpsc::sync_channel(COMMAND_CAPACITY);
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(EnetStats::default());
        let settings = enet::HostSettings {
            peer_limit: PEER_LIMIT,
            channel_limit: CHANNEL_LIMIT,
            ..Default::default()
        };
        let mut host = enet::Host::new(PollingSocket::new(socket, POLL_INTERVAL), settings)
            .map_err(|e| std::io::Error::other(format!("ENet host: {e:?}")))?;
        host.set_mtu(MTU)
            .map_err(|e| std::io::Error::other(format!("ENet MTU: {e:?}")))?;
        let thread = {
            let stop = stop.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("howl-enet".into())
                .spawn(move || {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run(&mut host, &ev_tx, &cmd_rx, &stop, &stats)
                    }));
                    if r.is_err() {
                        tracing::error!("ENet thread panicked; control streams are down");
                    }
                })?
        };
        Ok((
            Self {
                commands: cmd_tx,
                stop,
                thread: Some(thread),
                stats,
                local_addr,
            },
            ev_rx,
        ))
    }

    /// A cloneable sender for commands.
    pub fn sender(&self) -> EnetSender {
        EnetSender(self.commands.clone())
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // Bounded: the loop checks `stop` at least every POLL_INTERVAL.
            let _ = t.join();
        }
    }
}

impl Drop for EnetHost {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A cloneable, non-blocking command sender.
#[derive(Debug, Clone)]
pub struct EnetSender(std::sync::mpsc::SyncSender<EnetCommand>);

impl EnetSender {
    pub fn send(&self, cmd: EnetCommand) -> bool {
        self.0.try_send(cmd).is_ok()
    }
}

fn run(
    host: &mut enet::Host<PollingSocket>,
    events: &mpsc::Sender<EnetEvent>,
    commands: &std::sync::mpsc::Receiver<EnetCommand>,
    stop: &AtomicBool,
    stats: &EnetStats,
) {
    let emit = |ev: EnetEvent| {
        if events.try_send(ev).is_err() {
            stats.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    };
    let mut last_rtt_report = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if last_rtt_report.elapsed() >= RTT_REPORT {
            last_rtt_report = std::time::Instant::now();
            for p in host.connected_peers() {
                emit(EnetEvent::Rtt {
                    peer: p.id().0,
                    rtt_ms: u32::try_from(p.round_trip_time().as_millis()).unwrap_or(u32::MAX),
                });
            }
        }
        loop {
            match host.service() {
                Ok(Some(ev)) => match ev.no_ref() {
                    enet::EventNoRef::Connect { peer, data } => {
                        stats.connects.fetch_add(1, Ordering::Relaxed);
                        let addr = host
                            .get_peer(peer)
                            .and_then(|p| p.address())
                            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                        emit(EnetEvent::Connected {
                            peer: peer.0,
                            addr,
                            data,
                        });
                    }
                    enet::EventNoRef::Disconnect { peer, .. } => {
                        stats.disconnects.fetch_add(1, Ordering::Relaxed);
                        emit(EnetEvent::Disconnected { peer: peer.0 });
                    }
                    enet::EventNoRef::Receive {
                        peer,
                        channel_id,
                        packet,
                    } => {
                        stats.packets_in.fetch_add(1, Ordering::Relaxed);
                        emit(EnetEvent::Received {
                            peer: peer.0,
                            channel: channel_id,
                            data: packet.data().to_vec(),
                        });
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "ENet socket error");
                    break;
                }
            }
        }
        while let Ok(cmd) = commands.try_recv() {
            apply(host, cmd);
        }
        host.flush();
    }
    // Tell every connected client we are going away; best effort, bounded by one flush.
    for p in host.connected_peers_mut() {
        p.disconnect_now(0);
    }
    host.flush();
}

fn apply(host: &mut enet::Host<PollingSocket>, cmd: EnetCommand) {
    match cmd {
        EnetCommand::Send {
            peer,
            channel,
            data,
        } => {
            if let Some(p) = host.get_peer_mut(enet::PeerID(peer))
                && p.connected()
            {
                let _ = p.send(channel, &enet::Packet::reliable(data.as_slice()));
            }
        }
        EnetCommand::DisconnectLater { peer, data } => {
            if let Some(p) = host.get_peer_mut(enet::PeerID(peer)) {
                p.disconnect_later(data);
            }
        }
        EnetCommand::SetTimeout {
            peer,
            limit,
            min_ms,
            max_ms,
        } => {
            if let Some(p) = host.get_peer_mut(enet::PeerID(peer)) {
                p.set_timeout(limit, min_ms, max_ms);
            }
        }
    }
}
