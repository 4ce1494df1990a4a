//! Demultiplexing the shared UDP ports (STYLE practice 3): every client pings the same video
//! and audio ports, and connects to the same ENet port, so the first datagram of each must be
//! matched to its session here, in plain tested code, not in the I/O layer.
//!
//! Matching is by the 16-byte ping token (`X-SS-Ping-Payload`) and the 32-bit connect token
//! (`X-SS-Connect-Data`) that the RTSP SETUP replies handed out, never by source address, so two
//! clients behind one address (or one NAT) each find their own session (reference part 2, 1.3).

use std::collections::HashMap;
use std::hash::Hash;

/// Length of the ping token clients echo in every ping.
pub const PING_TOKEN_LEN: usize = 16;

/// A parsed UDP ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping {
    /// `token ‖ BE32 sequence`, what clients send when SETUP gave them a token.
    Token {
        token: [u8; PING_TOKEN_LEN],
        seq: u32,
    },
    /// The 4-byte `PING` of clients that got no token.
    Legacy,
}

/// Reads a ping datagram; `None` for anything else (which is ignored, not an error: the
/// ports are open to the network).
pub fn parse_ping(datagram: &[u8]) -> Option<Ping> {
    if datagram == b"PING" {
        return Some(Ping::Legacy);
    }
    if datagram.len() == PING_TOKEN_LEN + 4 {
        let mut token = [0u8; PING_TOKEN_LEN];
        token.copy_from_slice(&datagram[..PING_TOKEN_LEN]);
        let seq = u32::from_be_bytes([datagram[16], datagram[17], datagram[18], datagram[19]]);
        return Some(Ping::Token { token, seq });
    }
    None
}

/// Maps ping tokens and connect tokens to sessions. `S` is the session handle type.
#[derive(Debug)]
pub struct Router<S> {
    by_ping: HashMap<[u8; PING_TOKEN_LEN], S>,
    by_connect: HashMap<u32, S>,
}

impl<S> Default for Router<S> {
    fn default() -> Self {
        Self {
            by_ping: HashMap::new(),
            by_connect: HashMap::new(),
        }
    }
}

impl<S: Clone + Eq + Hash> Router<S> {
    /// Registers a session's tokens. Returns false (and registers nothing) if either token is
    /// already taken: tokens are random, so a clash means the caller must draw new ones.
    pub fn register(&mut self, ping: [u8; PING_TOKEN_LEN], connect: u32, session: S) -> bool {
        if self.by_ping.contains_key(&ping) || self.by_connect.contains_key(&connect) {
            return false;
        }
        self.by_ping.insert(ping, session.clone());
        self.by_connect.insert(connect, session);
        true
    }

    /// Forgets every token of `session`.
    pub fn unregister(&mut self, session: &S) {
        self.by_ping.retain(|_, s| s != session);
        self.by_connect.retain(|_, s| s != session);
    }

    /// The session a datagram on a media port belongs to.
    pub fn route_ping(&self, datagram: &[u8]) -> Option<&S> {
        match parse_ping(datagram)? {
            Ping::Token { token, .. } => self.by_ping.get(&token),
            // Legacy pings carry nothing to match on; howl always hands out tokens, and a
            // client that ignores them cannot be told apart from another on its address.
            Ping::Legacy => None,
        }
    }

    /// The session an ENet CONNECT with `data` belongs to.
    pub fn route_connect(&self, data: u32) -> Option<&S> {
        self.by_connect.get(&data)
    }

    pub fn len(&self) -> usize {
        self.by_connect.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_connect.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(token: &[u8; 16], seq: u32) -> Vec<u8> {
        let mut v = token.to_vec();
        v.extend_from_slice(&seq.to_be_bytes());
        v
    }

    #[test]
    fn reference_example_parses() {
        let d = [
            0x39, 0x43, 0x30, 0x46, 0x32, 0x41, 0x36, 0x31, 0x44, 0x33, 0x42, 0x34, 0x45, 0x35,
            0x38, 0x37, 0, 0, 0, 3,
        ];
        assert_eq!(
            parse_ping(&d),
            Some(Ping::Token {
                token: *b"9C0F2A61D3B4E587",
                seq: 3
            })
        );
        assert_eq!(parse_ping(b"PING"), Some(Ping::Legacy));
        assert_eq!(parse_ping(b"hello"), None);
    }

    #[test]
    fn two_sessions_on_one_address_are_told_apart() {
        let mut r: Router<u32> = Router::default();
        assert!(r.register(*b"AAAAAAAAAAAAAAAA", 1, 10));
        assert!(r.register(*b"BBBBBBBBBBBBBBBB", 2, 20));
        assert!(
            !r.register(*b"AAAAAAAAAAAAAAAA", 3, 30),
            "clashing token accepted"
        );
        assert_eq!(r.route_ping(&ping(b"AAAAAAAAAAAAAAAA", 1)), Some(&10));
        assert_eq!(r.route_ping(&ping(b"BBBBBBBBBBBBBBBB", 9)), Some(&20));
        assert_eq!(r.route_connect(2), Some(&20));
        assert_eq!(r.route_ping(b"PING"), None);
        r.unregister(&10);
        assert_eq!(r.route_ping(&ping(b"AAAAAAAAAAAAAAAA", 2)), None);
        assert_eq!(r.route_connect(1), None);
        assert_eq!(r.len(), 1);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(100_000))]
        #[test]
        fn arbitrary_datagrams_never_panic(d in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let mut r: Router<u8> = Router::default();
            r.register(*b"0123456789abcdef", 7, 1);
            let _ = r.route_ping(&d);
        }
    }
}
