//! Paired clients, keyed by the SHA-256 fingerprint of their certificate's DER.
//!
//! Moonlight clients share `uniqueid` values (`0123456789ABCDEF`) and certificate subjects, so
//! the certificate bytes are the only identity that means anything (reference part 1, 2.4).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
