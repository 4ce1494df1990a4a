//! Pairing requests waiting for an operator's PIN, and pairing handshakes in progress.
//!
//! A Moonlight client's first `/pair` request is held open until the operator types the PIN the
//! client shows. The server keeps one [`PendingPairing`] per such request; the operator submits
//! a PIN through the API or CLI, which hands it to the waiting request. Steps 2 to 4 of the
//! handshake then arrive as separate HTTP requests that carry nothing but `uniqueid` and the
//! source address, so the handshake state is stored here between them, keyed by
//! `requester` (`uniqueid@ip`). A second pairing from the same requester while one is in
//! progress is refused rather than mixed with the first.
//!
//! The book is generic over `W`, the server's way to wake a waiting request (a oneshot sender),
//! and `S`, the protocol state stored between requests, so this crate needs neither tokio nor
//! the protocol types. Time is an input.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A pairing request waiting for its PIN, as shown to operators. It holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPairing {
    /// Short handle operators can use to pick a request.
    pub id: u64,
    /// `uniqueid@ip` of the requesting client.
    pub requester: String,
    /// The device name the client sent (most send a constant; informational).
    pub device_name: String,
    /// Lower-case hex SHA-256 of the client's certificate.
    pub fingerprint: String,
    pub created: Instant,
    pub expires: Instant,
}

/// Why a PIN could not be delivered. These are the operator's mistakes (API misuse).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    #[error("a PIN is exactly 4 digits")]
    InvalidPin,
    #[error("no client is waiting to pair")]
    NoPending,
    #[error(
        "{0} clients are waiting to pair; say which one with `client` (id, fingerprint prefix or name)"
    )]
    Ambiguous(usize),
    #[error("no pending pairing request matches {0:?}")]
    NotFound(String),
    #[error("a pairing with this client is already in progress")]
    Busy,
}

/// Checks PIN syntax: exactly four ASCII digits, as every Moonlight client generates.
pub fn validate_pin(pin: &str) -> Result<(), PinError> {
    if pin.len() == 4 && pin.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(PinError::InvalidPin)
    }
}

#[derive(Debug)]
struct Waiting<W> {
    info: PendingPairing,
    waiter: W,
}

#[derive(Debug)]
struct InProgress<S> {
    state: Option<S>,
    expires: Instant,
}

/// Pending requests and handshakes in progress. See the module docs.
#[derive(Debug)]
pub struct PairingBook<W, S> {
    next_id: u64,
    waiting: BTreeMap<u64, Waiting<W>>,
    in_progress: BTreeMap<String, InProgress<S>>,
}

impl<W, S> Default for PairingBook<W, S> {
    fn default() -> Self {
        Self {
            next_id: 1,
            waiting: BTreeMap::new(),
            in_progress: BTreeMap::new(),
        }
    }
}

impl<W, S> PairingBook<W, S> {
    /// Records a request that now waits for a PIN. Refuses a requester that already has one
    /// waiting or in progress.
    pub fn begin(
        &mut self,
        requester: &str,
        device_name: &str,
        fingerprint: &str,
        now: Instant,
        window: Duration,
        waiter: W,
    ) -> Result<u64, PinError> {
        if self.is_busy(requester) {
            return Err(PinError::Busy);
        }
        let id = self.next_id;
        self.next_id += 1;
        let info = PendingPairing {
            id,
            requester: requester.to_owned(),
            device_name: device_name.to_owned(),
            fingerprint: fingerprint.to_owned(),
            created: now,
            expires: now + window,
        };
        self.waiting.insert(id, Waiting { info, waiter });
        Ok(id)
    }

    fn is_busy(&self, requester: &str) -> bool {
        self.in_progress.contains_key(requester)
            || self.waiting.values().any(|w| w.info.requester == requester)
    }

    /// Picks the request a PIN is for and removes it from the waiting list; the caller wakes
    /// the returned waiter. The requester then counts as "in progress" until
    /// [`PairingBook::end`] or expiry.
    pub fn take_for_pin(
        &mut self,
        pin: &str,
        selector: Option<&str>,
        now: Instant,
        window: Duration,
    ) -> Result<(PendingPairing, W), PinError> {
        validate_pin(pin)?;
        let id = match selector.map(str::trim).filter(|s| !s.is_empty()) {
            None => match self.waiting.len() {
                0 => return Err(PinError::NoPending),
                1 => *self.waiting.keys().next().ok_or(PinError::NoPending)?,
                n => return Err(PinError::Ambiguous(n)),
            },
            Some(sel) => {
                let matches: Vec<u64> = self
                    .waiting
                    .values()
                    .filter(|w| matches_selector(&w.info, sel))
                    .map(|w| w.info.id)
                    .collect();
                match matches.as_slice() {
                    [] => return Err(PinError::NotFound(sel.to_owned())),
                    [one] => *one,
                    many => return Err(PinError::Ambiguous(many.len())),
                }
            }
        };
        let w = self.waiting.remove(&id).ok_or(PinError::NoPending)?;
        self.in_progress.insert(
            w.info.requester.clone(),
            InProgress {
                state: None,
                expires: now + window,
            },
        );
        Ok((w.info, w.waiter))
    }

    /// Forgets a waiting request (its HTTP request ended or timed out).
    pub fn cancel_waiting(&mut self, id: u64) -> bool {
        self.waiting.remove(&id).is_some()
    }

    /// Stores the handshake state for the next request of `requester`.
    pub fn put_state(&mut self, requester: &str, state: S, now: Instant, window: Duration) {
        self.in_progress.insert(
            requester.to_owned(),
            InProgress {
                state: Some(state),
                expires: now + window,
            },
        );
    }

    /// Takes the stored handshake state (the requester stays "in progress" until it is put
    /// back or ended).
    pub fn take_state(&mut self, requester: &str) -> Option<S> {
        self.in_progress
            .get_mut(requester)
            .and_then(|p| p.state.take())
    }

    /// Ends the handshake of `requester` (success, failure or `/unpair`).
    pub fn end(&mut self, requester: &str) -> bool {
        self.in_progress.remove(requester).is_some()
    }

    /// Drops everything past its deadline; returns how many entries went.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.waiting.len() + self.in_progress.len();
        self.waiting.retain(|_, w| w.info.expires > now);
        self.in_progress.retain(|_, p| p.expires > now);
        before - self.waiting.len() - self.in_progress.len()
    }

    /// Requests waiting for a PIN, oldest first.
    pub fn pending(&self) -> Vec<PendingPairing> {
        self.waiting.values().map(|w| w.info.clone()).collect()
    }

    /// Number of handshakes past the PIN step.
    pub fn in_progress_count(&self) -> usize {
        self.in_progress.len()
    }
}

fn matches_selector(info: &PendingPairing, sel: &str) -> bool {
    if sel.parse::<u64>().ok() == Some(info.id) {
        return true;
    }
    let lower = sel.to_ascii_lowercase();
    (lower.len() >= 6 && info.fingerprint.starts_with(&lower))
        || info.device_name == sel
        || info.requester == sel
}

#[cfg(test)]
// Tests need a real instant to start from; the code under test never reads the clock.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(120);

    #[test]
    fn pin_goes_to_the_only_waiter() {
        let now = Instant::now();
        let mut b: PairingBook<&str, u8> = PairingBook::default();
        let id = b.begin("u@1", "roth", "abcdef01", now, W, "w1").unwrap();
        assert_eq!(b.pending().len(), 1);
        assert_eq!(
            b.take_for_pin("12a4", None, now, W),
            Err(PinError::InvalidPin)
        );
        let (info, w) = b.take_for_pin("1234", None, now, W).unwrap();
        assert_eq!((info.id, w), (id, "w1"));
        assert!(b.pending().is_empty());
        // The requester is busy until the handshake ends.
        assert_eq!(
            b.begin("u@1", "roth", "x", now, W, "w2"),
            Err(PinError::Busy)
        );
        b.put_state("u@1", 7, now, W);
        assert_eq!(b.take_state("u@1"), Some(7));
        assert_eq!(b.take_state("u@1"), None);
        assert!(b.end("u@1"));
        assert!(b.begin("u@1", "roth", "x", now, W, "w2").is_ok());
    }

    #[test]
    fn several_waiters_need_a_selector() {
        let now = Instant::now();
        let mut b: PairingBook<u8, u8> = PairingBook::default();
        b.begin("u@1", "a", "aaaaaaaa11", now, W, 1).unwrap();
        let id2 = b.begin("u@2", "b", "bbbbbbbb22", now, W, 2).unwrap();
        assert_eq!(
            b.take_for_pin("1234", None, now, W),
            Err(PinError::Ambiguous(2))
        );
        assert_eq!(
            b.take_for_pin("1234", Some("zzz"), now, W),
            Err(PinError::NotFound("zzz".into()))
        );
        let (info, w) = b.take_for_pin("1234", Some("BBBBBBBB"), now, W).unwrap();
        assert_eq!((info.id, w), (id2, 2));
        let (_, w) = b.take_for_pin("1234", None, now, W).unwrap();
        assert_eq!(w, 1);
        assert_eq!(
            b.take_for_pin("1234", None, now, W),
            Err(PinError::NoPending)
        );
    }

    #[test]
    fn everything_expires() {
        let now = Instant::now();
        let mut b: PairingBook<u8, u8> = PairingBook::default();
        b.begin("u@1", "a", "f1", now, W, 1).unwrap();
        b.begin("u@2", "b", "f2", now, W, 2).unwrap();
        b.take_for_pin("1234", Some("2"), now, W).unwrap();
        assert_eq!(b.expire(now + W / 2), 0);
        assert_eq!(b.expire(now + W), 2);
        assert!(b.pending().is_empty());
        assert_eq!(b.in_progress_count(), 0);
    }

    #[test]
    fn cancelled_waiter_is_gone() {
        let now = Instant::now();
        let mut b: PairingBook<u8, u8> = PairingBook::default();
        let id = b.begin("u@1", "a", "f1", now, W, 1).unwrap();
        assert!(b.cancel_waiting(id));
        assert!(!b.cancel_waiting(id));
        assert_eq!(
            b.take_for_pin("1234", None, now, W),
            Err(PinError::NoPending)
        );
    }
}
