//! The state directory: the host's key and certificate, its persisted state and the API token.
//!
//! Created on first start with mode 0700. Secrets (the private key, the API token, the state
//! file with client certificates) are 0600. Every write is atomic (howl_core::store), and every
//! unreadable or corrupt file is reported with its path instead of being silently replaced:
//! regenerating the key would force every client to pair again.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use howl_core::store::{StoreError, atomic_write, read_optional};
use howl_core::{PersistedState, SCHEMA_VERSION};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const KEY_FILE: &str = "server-key.pem";
pub const CERT_FILE: &str = "server-cert.pem";
pub const STATE_FILE: &str = "state.json";
pub const TOKEN_FILE: &str = "api-token";

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot create state directory {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    #[error(
        "{present} exists but {missing} does not; restore it, or move both aside to make a new identity (clients must then pair again)"
    )]
    HalfIdentity { present: PathBuf, missing: PathBuf },
    #[error("cannot generate the server key: {0}")]
    KeyGen(String),
}

/// Default location: `$XDG_STATE_HOME/howl`, else `~/.local/state/howl`.
pub fn default_state_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("howl");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".local/state/howl")
}

pub use howl_io::IdentityPem;

/// An opened state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens the directory, creating it (0700) when missing.
    pub fn open(root: &Path) -> Result<Self, StateDirError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|source| StateDirError::Create {
                path: root.to_path_buf(),
                source,
            })?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Loads the host key and certificate, generating both on first start.
    pub fn load_or_create_identity(&self) -> Result<(IdentityPem, bool), StateDirError> {
        let kp = self.path(KEY_FILE);
        let cp = self.path(CERT_FILE);
        match (read_optional(&kp)?, read_optional(&cp)?) {
            (Some(k), Some(c)) => {
                let key_pem = String::from_utf8(k).map_err(|_| StateDirError::BadFile {
                    path: kp.clone(),
                    reason: "not UTF-8 PEM".into(),
                })?;
                let cert_pem = String::from_utf8(c).map_err(|_| StateDirError::BadFile {
                    path: cp.clone(),
                    reason: "not UTF-8 PEM".into(),
                })?;
                Ok((IdentityPem { key_pem, cert_pem }, false))
            }
            (None, None) => {
                let id = generate_identity()?;
                atomic_write(&kp, id.key_pem.as_bytes(), 0o600)?;
                atomic_write(&cp, id.cert_pem.as_bytes(), 0o644)?;
                Ok((id, true))
            }
            (Some(_), None) => Err(StateDirError::HalfIdentity {
                present: kp,
                missing: cp,
            }),
            (None, Some(_)) => Err(StateDirError::HalfIdentity {
                present: cp,
                missing: kp,
            }),
        }
    }

    /// Loads `state.json`, creating it with a fresh host `uniqueid` on first start.
    pub fn load_or_create_state(&self) -> Result<PersistedState, StateDirError> {
        let p = self.path(STATE_FILE);
        if let Some(s) = PersistedState::load(&p)? {
            if s.schema < SCHEMA_VERSION {
                // Older schema read successfully: write it back in the current version.
                let mut s = s;
                s.schema = SCHEMA_VERSION;
                s.save(&p)?;
                return Ok(s);
            }
            return Ok(s);
        }
        let s = PersistedState::new(new_uniqueid()?);
        s.save(&p)?;
        Ok(s)
    }

    /// Loads the admin API token, creating it (0600) on first start.
    pub fn load_or_create_token(&self) -> Result<String, StateDirError> {
        let p = self.path(TOKEN_FILE);
        if let Some(b) = read_optional(&p)? {
            if let Ok(meta) = std::fs::metadata(&p)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(path = %p.display(), "API token file is readable by others; chmod 600 it");
            }
            let t = String::from_utf8(b)
                .map(|s| s.trim().to_owned())
                .map_err(|_| StateDirError::BadFile {
                    path: p.clone(),
                    reason: "not UTF-8".into(),
                })?;
            if t.len() < 16 {
                return Err(StateDirError::BadFile {
                    path: p,
                    reason: "token shorter than 16 characters".into(),
                });
            }
            return Ok(t);
        }
        let token = hex::encode(random_bytes::<32>()?);
        atomic_write(&p, format!("{token}\n").as_bytes(), 0o600)?;
        Ok(token)
    }

    /// Reads the token without creating it (for CLI subcommands).
    pub fn read_token(root: &Path) -> Result<String, StateDirError> {
        let p = root.join(TOKEN_FILE);
        match read_optional(&p)? {
            Some(b) => Ok(String::from_utf8_lossy(&b).trim().to_owned()),
            None => Err(StateDirError::BadFile {
                path: p,
                reason: "missing: start `howl serve` with this state directory first".into(),
            }),
        }
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], StateDirError> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| StateDirError::KeyGen("system RNG failed".into()))?;
    Ok(b)
}

/// A host uniqueid in the UUID shape Sunshine uses (upper-case hex with dashes).
fn new_uniqueid() -> Result<String, StateDirError> {
    let b = random_bytes::<16>()?;
    let h = hex::encode_upper(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// RSA-2048 key and a self-signed SHA-256 certificate, the shape every client expects
/// (reference part 1, 2.4). Validity is long: clients never check it once pinned.
pub fn generate_identity() -> Result<IdentityPem, StateDirError> {
    let serial = random_bytes::<16>()?;
    howl_io::generate_identity("howl GameStream host", &serial, 2064)
        .map_err(|e| StateDirError::KeyGen(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_creates_everything_and_second_reuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s");
        let sd = StateDir::open(&root).unwrap();
        let (id1, fresh) = sd.load_or_create_identity().unwrap();
        assert!(fresh);
        assert!(id1.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let st1 = sd.load_or_create_state().unwrap();
        let t1 = sd.load_or_create_token().unwrap();
        assert_eq!(t1.len(), 64);
        let mode = |n: &str| {
            std::fs::metadata(root.join(n))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(KEY_FILE), 0o600);
        assert_eq!(mode(TOKEN_FILE), 0o600);
        assert_eq!(mode(STATE_FILE), 0o600);
        assert_eq!(
            std::fs::metadata(&root).unwrap().permissions().mode() & 0o777,
            0o700
        );

        let sd = StateDir::open(&root).unwrap();
        let (id2, fresh) = sd.load_or_create_identity().unwrap();
        assert!(!fresh);
        assert_eq!(id1.cert_pem, id2.cert_pem);
        assert_eq!(sd.load_or_create_state().unwrap(), st1);
        assert_eq!(sd.load_or_create_token().unwrap(), t1);
    }

    #[test]
    fn half_identity_and_corrupt_state_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::open(dir.path()).unwrap();
        sd.load_or_create_identity().unwrap();
        std::fs::remove_file(dir.path().join(CERT_FILE)).unwrap();
        let e = sd.load_or_create_identity().unwrap_err().to_string();
        assert!(e.contains(CERT_FILE), "{e}");
        std::fs::write(dir.path().join(STATE_FILE), b"{garbage").unwrap();
        let e = sd.load_or_create_state().unwrap_err().to_string();
        assert!(e.contains(STATE_FILE), "{e}");
    }
}
