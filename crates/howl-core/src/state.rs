//! The persisted state file (`state.json` in the state directory), with a schema version.
//!
//! Version history (add a migration arm to [`PersistedState::from_json`] when bumping):
//! - 1: host `uniqueid` and paired clients.
//! - 2: adds API-created `apps` and `tenants` (tenant tokens, stored as SHA-256 digests).
//!   A version-1 file reads as version 2 with both lists empty.

use crate::apps::StoredApp;
use crate::clients::PairedClient;
use crate::store::{StoreError, atomic_write, read_optional};
use crate::tenants::TenantRecord;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The schema version this build writes and the newest it reads.
pub const SCHEMA_VERSION: u32 = 2;

/// Everything howl must remember across restarts, except key material (kept in PEM files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistedState {
    pub schema: u32,
    /// The host's identity towards clients; stable forever (clients de-duplicate hosts by it).
    pub uniqueid: String,
    #[serde(default)]
    pub clients: Vec<PairedClient>,
    /// Apps created through the management API (config-file apps are not stored here).
    #[serde(default)]
    pub apps: Vec<StoredApp>,
    /// Tenants and the digests of their API tokens.
    #[serde(default)]
    pub tenants: Vec<TenantRecord>,
}

#[derive(Deserialize)]
struct VersionProbe {
    schema: Option<u32>,
}

impl PersistedState {
    pub fn new(uniqueid: String) -> Self {
        Self {
            schema: SCHEMA_VERSION,
            uniqueid,
            clients: Vec::new(),
            apps: Vec::new(),
            tenants: Vec::new(),
        }
    }

    /// Parses a state file, naming `path` in every error.
    pub fn from_json(path: &Path, bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let probe: VersionProbe =
            serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        match probe.schema {
            None => Err(corrupt("no \"schema\" field".into())),
            Some(v) if v > SCHEMA_VERSION => Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found: v,
                supported: SCHEMA_VERSION,
            }),
            Some(0) => Err(corrupt("schema 0 is not a valid version".into())),
            Some(_) => {
                // Version 1 lacks `apps` and `tenants`; serde defaults them (the migration).
                let mut s: Self =
                    serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
                s.schema = SCHEMA_VERSION;
                if s.uniqueid.trim().is_empty() {
                    return Err(corrupt("empty \"uniqueid\"".into()));
                }
                Ok(s)
            }
        }
    }

    /// Loads the file, or `Ok(None)` when there is none yet.
    pub fn load(path: &Path) -> Result<Option<Self>, StoreError> {
        match read_optional(path)? {
            None => Ok(None),
            Some(b) => Self::from_json(path, &b).map(Some),
        }
    }

    /// Writes the file atomically (mode 0600: it holds client certificates).
    pub fn save(&self, path: &Path) -> Result<(), StoreError> {
        let mut json = serde_json::to_vec_pretty(self).map_err(|e| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("cannot serialise state: {e}"),
        })?;
        json.push(b'\n');
        atomic_write(path, &json, 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        assert!(PersistedState::load(&p).unwrap().is_none());
        let mut s = PersistedState::new("ABC".into());
        s.clients.push(PairedClient {
            fingerprint: "00ff".into(),
            name: "n".into(),
            cert_pem: "pem".into(),
            paired_at_unix: 5,
        });
        s.save(&p).unwrap();
        assert_eq!(PersistedState::load(&p).unwrap(), Some(s));
    }

    #[test]
    fn corrupt_and_future_files_are_named_errors() {
        let p = Path::new("/x/state.json");
        let e = PersistedState::from_json(p, b"{not json").unwrap_err();
        assert!(e.to_string().contains("/x/state.json"), "{e}");
        assert!(matches!(e, StoreError::Corrupt { .. }));
        let e = PersistedState::from_json(p, br#"{"schema":99,"uniqueid":"a"}"#).unwrap_err();
        assert!(matches!(e, StoreError::TooNew { found: 99, .. }));
        let e = PersistedState::from_json(p, br#"{"uniqueid":"a"}"#).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }));
    }

    #[test]
    fn a_version_1_file_migrates_to_version_2() {
        let s = PersistedState::from_json(
            Path::new("s"),
            br#"{"schema":1,"uniqueid":"A","clients":[]}"#,
        )
        .unwrap();
        assert_eq!(s.schema, 2);
        assert!(s.apps.is_empty() && s.tenants.is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = PersistedState::from_json(Path::new("s"), &b);
        }
    }
}
