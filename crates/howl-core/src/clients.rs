//! Paired clients, keyed by the SHA-256 fingerprint of their certificate's DER.
//!
//! Moonlight clients share `uniqueid` values (`0123456789ABCDEF`) and certificate subjects, so
//! the certificate bytes are the only identity that means anything (reference part 1, 2.4).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The canonical form of a certificate fingerprint (SHA-256, 64 hex digits, lower case), or
/// `None` when `s` is not one. Every place that takes a fingerprint from outside uses this.
pub fn normalize_fingerprint(s: &str) -> Option<String> {
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// One paired client as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairedClient {
    /// Lower-case hex SHA-256 of the certificate DER: the client's identity.
    pub fingerprint: String,
    /// A human name for operators (the device name sent while pairing, renamable).
    pub name: String,
    /// The client's certificate, PEM.
    pub cert_pem: String,
    /// Seconds since the Unix epoch at pairing time.
    pub paired_at_unix: u64,
}

/// The set of paired clients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientRegistry {
    by_fingerprint: BTreeMap<String, PairedClient>,
}

impl ClientRegistry {
    pub fn from_list(list: Vec<PairedClient>) -> Self {
        let by_fingerprint = list
            .into_iter()
            .map(|c| (c.fingerprint.clone(), c))
            .collect();
        Self { by_fingerprint }
    }

    pub fn to_list(&self) -> Vec<PairedClient> {
        self.by_fingerprint.values().cloned().collect()
    }

    pub fn is_paired(&self, fingerprint: &str) -> bool {
        self.by_fingerprint.contains_key(fingerprint)
    }

    pub fn get(&self, fingerprint: &str) -> Option<&PairedClient> {
        self.by_fingerprint.get(fingerprint)
    }

    /// Adds or replaces (re-pairing replaces the entry, as clients expect).
    pub fn insert(&mut self, client: PairedClient) {
        self.by_fingerprint
            .insert(client.fingerprint.clone(), client);
    }

    pub fn remove(&mut self, fingerprint: &str) -> Option<PairedClient> {
        self.by_fingerprint.remove(fingerprint)
    }

    pub fn len(&self) -> usize {
        self.by_fingerprint.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_fingerprint.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_fingerprint;

    #[test]
    fn fingerprints_are_64_hex_digits_in_lower_case() {
        assert_eq!(
            normalize_fingerprint(&"AB".repeat(32)).as_deref(),
            Some("ab".repeat(32).as_str())
        );
        assert_eq!(normalize_fingerprint(&"ab".repeat(31)), None);
        assert_eq!(
            normalize_fingerprint(&format!("{}zz", "ab".repeat(31))),
            None
        );
        assert_eq!(normalize_fingerprint(""), None);
    }
}
