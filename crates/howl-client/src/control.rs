//! The ENet control stream, client side, on one dedicated thread.
//!
//! rusty_enet's `Host` is synchronous (its `service` blocks on the socket), so one thread owns
//! it together with the session's [`ClientCrypto`] (the outbound GCM counter must follow send order). The thread
//! connects with 48 channels and the host's connect token, then behaves like
//! moonlight-common-c: Start A (`0x0302`) and Start B (`0x0307`) reliably on channel 0, then
//! a periodic ping (`0x0200`) every [`CONTROL_PING_INTERVAL`]. Host messages are decrypted
//! here; a termination message (`0x0109`) ends the session like the real client (immediate
//! disconnect). Commands arrive on a bounded queue ([`CONTROL_COMMAND_CAPACITY`]); the thread
//! never blocks on the async side.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use howl_io::PollingSocket;
use howl_proto::control::{
    ClientCrypto, ClientMessage, Delivery, HostMessage, Reliability, channel,
};
use rusty_enet as enet;
use tokio::sync::{oneshot, watch};

use crate::error::ClientError;
use crate::stats::{EndReason, SessionStats};

/// Commands handle → control thread. Full queue: the command is refused
/// ([`ClientError::ControlBusy`]); the caller decides (input is droppable, IDR requests are
/// coalesced anyway).
pub const CONTROL_COMMAND_CAPACITY: usize = 256;
/// How long the ENet connect may take (moonlight-common-c: 10 s).
pub const ENET_CONNECT_DEADLINE: Duration = Duration::from_secs(10);
/// Periodic `0x0200` ping interval (moonlight-common-c: 100 ms).
pub const CONTROL_PING_INTERVAL: Duration = Duration::from_millis(100);
/// How long a graceful disconnect may linger for ACKs (moonlight-common-c: 2 s).
pub const ENET_DISCONNECT_LINGER: Duration = Duration::from_secs(2);
/// Longest the thread waits for a datagram before it looks at its queue and timers.
pub const ENET_POLL_INTERVAL: Duration = Duration::from_millis(2);
/// The MTU Moonlight's ENet fork proposes.
pub const ENET_MTU: u16 = 900;
/// `enet_peer_timeout(peer, 2, 10000, 10000)` as the client sets it after connecting.
pub const ENET_PEER_TIMEOUT: (u32, u32, u32) = (2, 10_000, 10_000);

/// What the session asks of the control thread.
#[derive(Debug)]
pub(crate) enum ControlCommand {
    /// Seal and send, as [`ClientMessage::delivery`] says.
    Send(ClientMessage),
    /// Graceful disconnect (`disconnect_later`), lingering up to [`ENET_DISCONNECT_LINGER`].
    Disconnect,
}

/// Handle to the control thread. Dropping it signals the thread, which disconnects at once and
/// exits within [`ENET_POLL_INTERVAL`]; `Drop` does not join.
#[derive(Debug)]
pub(crate) struct ControlThread {
    commands: std::sync::mpsc::SyncSender<ControlCommand>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Everything the thread needs.
pub(crate) struct ControlSetup {
    pub server: SocketAddr,
    pub connect_data: u32,
    pub crypto: ClientCrypto,
    pub stats: Arc<SessionStats>,
    /// Set to true when the thread exits (the session has ended).
    pub ended: watch::Sender<bool>,
}

impl ControlThread {
    /// Binds a UDP socket, starts the thread and the ENet connect. The receiver yields once:
    /// `Ok` when connected (after Start A/B were queued), `Err(reason)` otherwise.
    pub(crate) fn start(
        setup: ControlSetup,
    ) -> Result<(Self, oneshot::Receiver<Result<(), String>>), ClientError> {
        let server = setup.server;
        let bind: SocketAddr = if server.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let io = |source| ClientError::Io {
            what: "ENet socket",
            peer: server,
            source,
        };
        let socket = UdpSocket::bind(bind).map_err(io)?;
        let control_err = |reason: String| ClientError::Control {
            peer: server,
            reason,
        };
        let settings = enet::HostSettings {
            peer_limit: 1,
            channel_limit: channel::CHANNEL_COUNT,
            ..Default::default()
        };
        let mut host = enet::Host::new(PollingSocket::new(socket, ENET_POLL_INTERVAL), settings)
            .map_err(|e| control_err(format!("ENet host: {e:?}")))?;
        host.set_mtu(ENET_MTU)
            .map_err(|e| control_err(format!("ENet MTU: {e:?}")))?;
        let peer = host
            .connect(server, channel::CHANNEL_COUNT, setup.connect_data)
            .map_err(|e| control_err(format!("ENet connect: {e:?}")))?
            .id();
        let (cmd_tx, cmd_rx) = std::sync::mpsc::sync_channel(CONTROL_COMMAND_CAPACITY);
        let (connected_tx, connected_rx) = oneshot::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("howl-client-enet".into())
                .spawn(move || {
                    let ControlSetup {
                        crypto,
                        stats,
                        ended,
                        ..
                    } = setup;
                    let mut driver = Driver {
                        host,
                        peer,
                        crypto,
                        stats: stats.clone(),
                        connected_tx: Some(connected_tx),
                    };
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        driver.run(&cmd_rx, &stop)
                    }));
                    let reason = match r {
                        Ok(reason) => reason,
                        Err(_) => EndReason::ControlFailed("control thread panicked".into()),
                    };
                    if let Some(tx) = driver.connected_tx.take() {
                        let _ = tx.send(Err(format!("{reason:?}")));
                    }
                    stats.set_end(reason);
                    let _ = ended.send(true);
                })
                .map_err(|e| control_err(format!("cannot start thread: {e}")))?
        };
        Ok((
            Self {
                commands: cmd_tx,
                stop,
                thread: Some(thread),
            },
            connected_rx,
        ))
    }

    /// Queues a command without blocking.
    pub(crate) fn send(&self, cmd: ControlCommand) -> Result<(), ClientError> {
        self.commands.try_send(cmd).map_err(|e| match e {
            std::sync::mpsc::TrySendError::Full(_) => ClientError::ControlBusy,
            std::sync::mpsc::TrySendError::Disconnected(_) => ClientError::SessionEnded,
        })
    }

    /// Whether the thread has exited.
    pub(crate) fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Signals an immediate stop (no linger).
    pub(crate) fn signal_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for ControlThread {
    fn drop(&mut self) {
        self.signal_stop();
        // Not joined: the thread exits on its own within one poll interval.
        drop(self.thread.take());
    }
}

struct Driver {
    host: enet::Host<PollingSocket>,
    peer: enet::PeerID,
    crypto: ClientCrypto,
    stats: Arc<SessionStats>,
    connected_tx: Option<oneshot::Sender<Result<(), String>>>,
}

impl Driver {
    /// Seals and sends one message; false if the peer is gone or sealing failed.
    fn send(&mut self, msg: &ClientMessage, delivery: Delivery) -> Result<(), EndReason> {
        let sealed = self
            .crypto
            .seal(msg)
            .map_err(|e| EndReason::ControlFailed(format!("sealing a control message: {e}")))?;
        let packet = match delivery.reliability {
            Reliability::Reliable => enet::Packet::reliable(sealed.as_slice()),
            Reliability::Unreliable => enet::Packet::unreliable(sealed.as_slice()),
            Reliability::Unsequenced => enet::Packet::unreliable_unsequenced(sealed.as_slice()),
        };
        if let Some(p) = self.host.get_peer_mut(self.peer)
            && p.connected()
        {
            // A send error means the peer is disconnecting; the Disconnect event follows.
            if p.send(delivery.channel, &packet).is_ok() {
                SessionStats::add(&self.stats.control_messages_out, 1);
            }
        }
        Ok(())
    }

    fn run(
        &mut self,
        commands: &std::sync::mpsc::Receiver<ControlCommand>,
        stop: &AtomicBool,
    ) -> EndReason {
        let connect_deadline = Instant::now() + ENET_CONNECT_DEADLINE;
        let mut connected = false;
        let mut next_ping = Instant::now();
        let mut linger_until: Option<Instant> = None;
        loop {
            if stop.load(Ordering::Relaxed) {
                if let Some(p) = self.host.get_peer_mut(self.peer) {
                    p.disconnect_now(0);
                }
                self.host.flush();
                return EndReason::Stopped;
            }
            loop {
                let event = match self.host.service() {
                    Ok(Some(ev)) => ev.no_ref(),
                    Ok(None) => break,
                    Err(e) => return EndReason::ControlFailed(format!("ENet socket: {e}")),
                };
                match event {
                    enet::EventNoRef::Connect { .. } => {
                        connected = true;
                        self.stats.control_connected.store(true, Ordering::Relaxed);
                        if let Some(p) = self.host.get_peer_mut(self.peer) {
                            let (limit, min, max) = ENET_PEER_TIMEOUT;
                            p.set_timeout(limit, min, max);
                        }
                        // Start A is an IDR request on the generic channel, then Start B.
                        let generic = Delivery::reliable(channel::GENERIC);
                        if let Err(r) = self
                            .send(&ClientMessage::RequestIdr, generic)
                            .and_then(|()| self.send(&ClientMessage::StartB, generic))
                        {
                            return r;
                        }
                        self.host.flush();
                        next_ping = Instant::now() + CONTROL_PING_INTERVAL;
                        if let Some(tx) = self.connected_tx.take() {
                            let _ = tx.send(Ok(()));
                        }
                    }
                    enet::EventNoRef::Receive { packet, .. } => {
                        match self.crypto.open(packet.data()) {
                            Ok(HostMessage::Termination(reason)) => {
                                SessionStats::add(&self.stats.control_messages_in, 1);
                                // Like the client: disconnect at once and report the reason.
                                if let Some(p) = self.host.get_peer_mut(self.peer) {
                                    p.disconnect_now(0);
                                }
                                self.host.flush();
                                return EndReason::Terminated(reason);
                            }
                            Ok(_) => SessionStats::add(&self.stats.control_messages_in, 1),
                            Err(_) => SessionStats::add(&self.stats.control_rejected, 1),
                        }
                    }
                    enet::EventNoRef::Disconnect { data, .. } => {
                        if !connected {
                            return EndReason::ControlFailed(format!(
                                "ENet connect refused (data {data})"
                            ));
                        }
                        return if linger_until.is_some() {
                            EndReason::Stopped
                        } else {
                            EndReason::ControlDisconnected { data }
                        };
                    }
                }
            }
            let now = Instant::now();
            if !connected && now >= connect_deadline {
                return EndReason::ControlFailed(format!(
                    "ENet connect not completed within {ENET_CONNECT_DEADLINE:?}"
                ));
            }
            while let Ok(cmd) = commands.try_recv() {
                match cmd {
                    ControlCommand::Send(msg) if connected && linger_until.is_none() => {
                        let delivery = msg.delivery();
                        if let Err(r) = self.send(&msg, delivery) {
                            return r;
                        }
                    }
                    // Before connect or while disconnecting there is nobody to send to.
                    ControlCommand::Send(_) => {}
                    ControlCommand::Disconnect => {
                        if linger_until.is_none() {
                            if let Some(p) = self.host.get_peer_mut(self.peer) {
                                if connected {
                                    p.disconnect_later(0);
                                } else {
                                    p.reset();
                                }
                            }
                            if !connected {
                                return EndReason::Stopped;
                            }
                            linger_until = Some(now + ENET_DISCONNECT_LINGER);
                        }
                    }
                }
            }
            if connected && linger_until.is_none() && now >= next_ping {
                let generic = Delivery::reliable(channel::GENERIC);
                if let Err(r) = self.send(&ClientMessage::PeriodicPing, generic) {
                    return r;
                }
                next_ping = now + CONTROL_PING_INTERVAL;
            }
            if linger_until.is_some_and(|t| now >= t) {
                if let Some(p) = self.host.get_peer_mut(self.peer) {
                    p.reset();
                }
                return EndReason::Stopped;
            }
            self.host.flush();
        }
    }
}
