//! rusty_enet's `Socket` over a std UDP socket with a receive timeout.

use rusty_enet as enet;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// A std UDP socket that waits at most `poll` per receive. ENet's `Host` polls its socket in
/// its service loop; a blocking read with a short timeout lets the loop wake for a datagram at
/// once and still see its commands and timers within `poll`.
#[derive(Debug)]
pub struct PollingSocket {
    socket: UdpSocket,
    poll: Duration,
}

impl PollingSocket {
    /// Wraps a bound socket; `poll` must be non-zero (a zero read timeout means "block").
    pub fn new(socket: UdpSocket, poll: Duration) -> Self {
        Self {
            socket,
            poll: poll.max(Duration::from_millis(1)),
        }
    }
}

impl enet::Socket for PollingSocket {
    type Address = SocketAddr;
    type Error = std::io::Error;

    fn init(&mut self, _opts: enet::SocketOptions) -> Result<(), std::io::Error> {
        self.socket.set_nonblocking(false)?;
        self.socket.set_read_timeout(Some(self.poll))
    }

    fn send(&mut self, address: SocketAddr, buffer: &[u8]) -> Result<usize, std::io::Error> {
        match self.socket.send_to(buffer, address) {
            Ok(n) => Ok(n),
            // A full socket buffer or an unreachable peer must not end the host: the datagram
            // is lost, and ENet resends what was reliable.
            Err(e) if transient(&e) => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn receive(
        &mut self,
        buffer: &mut [u8; enet::MTU_MAX],
    ) -> Result<Option<(SocketAddr, enet::PacketReceived)>, std::io::Error> {
        match self.socket.recv_from(buffer) {
            Ok((n, addr)) => Ok(Some((addr, enet::PacketReceived::Complete(n)))),
            Err(e) if transient(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Errors a UDP socket reports that say nothing about our own socket's health: the poll
/// timing out, a full buffer, ICMP unreachable from a peer that is not up (yet), a signal.
fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        WouldBlock | TimedOut | ConnectionRefused | ConnectionReset | Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use enet::Socket as _;

    #[test]
    fn receive_waits_at_most_the_poll_interval_and_returns_datagrams() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut a = PollingSocket::new(a, Duration::from_millis(20));
        let mut b = PollingSocket::new(b, Duration::from_millis(20));
        let opts = || enet::SocketOptions {
            receive_buffer: 65536,
            send_buffer: 65536,
        };
        a.init(opts()).unwrap();
        b.init(opts()).unwrap();
        let mut buf = [0u8; enet::MTU_MAX];
        let start = std::time::Instant::now();
        assert!(a.receive(&mut buf).unwrap().is_none(), "nothing sent yet");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the read timed out"
        );
        assert_eq!(b.send(a_addr, b"ping").unwrap(), 4);
        let (from, got) = a.receive(&mut buf).unwrap().expect("a datagram");
        assert_eq!(from, b_addr);
        assert!(matches!(got, enet::PacketReceived::Complete(4)));
        assert_eq!(&buf[..4], b"ping");
    }
}
