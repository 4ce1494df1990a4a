//! Which browser a datagram on the shared WebRTC port belongs to (sans-IO).
//!
//! Every browser viewer shares one UDP port, so the number of viewers is never limited by a
//! port range. A browser's first datagrams are ICE connectivity checks: STUN binding requests
//! whose `USERNAME` is `<our ufrag>:<its ufrag>`, and our ufrag is random per viewer. A check
//! naming a registered ufrag routes to that viewer and teaches the demultiplexer its source
//! address; everything else (DTLS, SRTP, SRTCP) routes by source address. A datagram that
//! matches nothing is dropped. The viewer's driver checks again with str0m's `Rtc::accepts`.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;

/// Source addresses remembered per viewer (its candidate pairs: one per browser interface
/// that reached us, in practice one or two). The oldest is forgotten past this, so a peer
/// that knows a ufrag cannot grow the table.
pub const MAX_ADDRS_PER_VIEWER: usize = 8;

const STUN_HEADER: usize = 20;
const STUN_MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const STUN_BINDING_REQUEST: u16 = 0x0001;
const STUN_ATTR_USERNAME: u16 = 0x0006;

/// Our ufrag in a STUN binding request (`USERNAME` = `<ours>:<theirs>`), or `None` for
/// anything else: other STUN messages, DTLS, RTP, garbage.
pub fn stun_local_ufrag(datagram: &[u8]) -> Option<&str> {
    if datagram.len() < STUN_HEADER || datagram[4..8] != STUN_MAGIC_COOKIE {
        return None;
    }
    let msg_type = u16::from_be_bytes([datagram[0], datagram[1]]);
    if msg_type != STUN_BINDING_REQUEST {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let body = datagram.get(STUN_HEADER..STUN_HEADER.checked_add(len)?)?;
    let mut at = 0usize;
    while let Some(head) = body.get(at..at.checked_add(4)?) {
        let attr = u16::from_be_bytes([head[0], head[1]]);
        let alen = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let value = body.get(at + 4..(at + 4).checked_add(alen)?)?;
        if attr == STUN_ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            let (ours, _theirs) = username.split_once(':')?;
            return Some(ours);
        }
        // Attributes are padded to 4 bytes.
        at = at + 4 + alen.div_ceil(4) * 4;
    }
    None
}

/// The routing table of the shared port.
#[derive(Debug)]
pub struct Demux<K> {
    by_ufrag: HashMap<String, K>,
    by_addr: HashMap<SocketAddr, K>,
    addrs: HashMap<K, Vec<SocketAddr>>,
}

impl<K> Default for Demux<K> {
    fn default() -> Self {
        Self {
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            addrs: HashMap::new(),
        }
    }
}

impl<K: Copy + Eq + Hash> Demux<K> {
    /// Routes checks naming `ufrag` to `key`. False (and nothing changed) when the ufrag is
    /// taken.
    pub fn register(&mut self, ufrag: &str, key: K) -> bool {
        if self.by_ufrag.contains_key(ufrag) {
            return false;
        }
        self.by_ufrag.insert(ufrag.to_owned(), key);
        self.addrs.entry(key).or_default();
        true
    }

    /// Forgets `key`: its ufrag and every address it was reached from.
    pub fn unregister(&mut self, key: K) {
        self.by_ufrag.retain(|_, k| *k != key);
        for a in self.addrs.remove(&key).unwrap_or_default() {
            if self.by_addr.get(&a) == Some(&key) {
                self.by_addr.remove(&a);
            }
        }
    }

    /// The viewer `datagram` from `src` is for, if any.
    pub fn route(&mut self, datagram: &[u8], src: SocketAddr) -> Option<K> {
        if let Some(ufrag) = stun_local_ufrag(datagram) {
            let key = *self.by_ufrag.get(ufrag)?;
            self.learn(key, src);
            return Some(key);
        }
        self.by_addr.get(&src).copied()
    }

    fn learn(&mut self, key: K, src: SocketAddr) {
        let Some(list) = self.addrs.get_mut(&key) else {
            return;
        };
        if list.contains(&src) {
            return;
        }
        // An address another viewer used is this viewer's now (a browser reloaded its page
        // from the same port); the other one stops hearing from it.
        if let Some(old) = self.by_addr.insert(src, key)
            && let Some(l) = self.addrs.get_mut(&old)
        {
            l.retain(|a| *a != src);
        }
        let Some(list) = self.addrs.get_mut(&key) else {
            return;
        };
        list.push(src);
        if list.len() > MAX_ADDRS_PER_VIEWER {
            let oldest = list.remove(0);
            if self.by_addr.get(&oldest) == Some(&key) {
                self.by_addr.remove(&oldest);
            }
        }
    }

    /// Routed addresses, for leak checks in tests.
    #[cfg(test)]
    pub fn addresses(&self) -> usize {
        self.by_addr.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A binding request as a browser sends it (no integrity: the demux does not check it).
    fn binding_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&0x0024u16.to_be_bytes()); // PRIORITY first
        attrs.extend_from_slice(&4u16.to_be_bytes());
        attrs.extend_from_slice(&[0, 0, 0, 1]);
        attrs.extend_from_slice(&STUN_ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&STUN_BINDING_REQUEST.to_be_bytes());
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&STUN_MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn checks_route_by_ufrag_and_teach_the_address_the_rest_follows() {
        let mut d = Demux::default();
        assert!(d.register("abcd", 1u64));
        assert!(d.register("wxyz", 2u64));
        assert!(!d.register("abcd", 3u64), "a ufrag routes to one viewer");
        let dtls = [22u8, 254, 253, 0, 0];
        assert_eq!(d.route(&dtls, addr(5000)), None, "unknown address");
        assert_eq!(
            d.route(&binding_request("abcd:remote1"), addr(5000)),
            Some(1)
        );
        assert_eq!(d.route(&binding_request("wxyz:r"), addr(6000)), Some(2));
        assert_eq!(d.route(&dtls, addr(5000)), Some(1));
        assert_eq!(d.route(&dtls, addr(6000)), Some(2));
        assert_eq!(d.route(&binding_request("nope:r"), addr(7000)), None);
        d.unregister(1);
        assert_eq!(d.route(&dtls, addr(5000)), None);
        assert_eq!(d.route(&binding_request("abcd:remote1"), addr(5000)), None);
        assert_eq!(d.addresses(), 1);
    }

    #[test]
    fn a_viewer_keeps_a_bounded_number_of_addresses() {
        let mut d = Demux::default();
        d.register("abcd", 1u64);
        for port in 0..100 {
            d.route(&binding_request("abcd:r"), addr(1000 + port));
        }
        assert_eq!(d.addresses(), MAX_ADDRS_PER_VIEWER);
        d.unregister(1);
        assert_eq!(d.addresses(), 0);
    }

    #[test]
    fn the_username_is_read_only_from_binding_requests() {
        assert_eq!(stun_local_ufrag(&binding_request("a:b")), Some("a"));
        let mut response = binding_request("a:b");
        response[0] = 0x01; // 0x0101: binding success response
        assert_eq!(stun_local_ufrag(&response), None);
        assert_eq!(stun_local_ufrag(&binding_request("nocolon")), None);
        let mut truncated = binding_request("a:b");
        truncated.truncate(26);
        assert_eq!(stun_local_ufrag(&truncated), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn random_datagrams_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300), port in any::<u16>()) {
            let mut d = Demux::default();
            d.register("abcd", 1u64);
            let _ = d.route(&data, addr(port));
        }

        #[test]
        fn mutated_binding_requests_never_panic(
            user in "[a-z:]{0,20}",
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
            cut in any::<usize>(),
        ) {
            let mut m = binding_request(&user);
            for (at, b) in flips {
                let i = at % m.len();
                m[i] = b;
            }
            m.truncate(cut % (m.len() + 1));
            let mut d = Demux::default();
            d.register("abcd", 1u64);
            let _ = d.route(&m, addr(1));
        }
    }
}
