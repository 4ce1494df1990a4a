//! The client's configuration directory: its RSA-2048 identity, its `uniqueid` and the host
//! certificates it pinned while pairing.
//!
//! ```text
//! <config-dir>/client-key.pem     PKCS#8 RSA-2048 key (0600)
//! <config-dir>/client-cert.pem    self-signed cert, CN "NVIDIA GameStream Client", serial 0
//! <config-dir>/uniqueid           16 lower-case hex digits (informational: hosts identify
//!                                 clients by certificate, never by this value)
//! <config-dir>/hosts/<id>.pem     pinned host certificate, keyed by the host's uniqueid
//! ```
//!
//! Every write is atomic (temporary file, then rename). A half identity (key without
//! certificate or the reverse) is an error, never silently replaced: a new key means pairing
//! again with every host.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use howl_proto::pairing::ClientIdentity;

use crate::error::ClientError;

pub const KEY_FILE: &str = "client-key.pem";
pub const CERT_FILE: &str = "client-cert.pem";
pub const UNIQUEID_FILE: &str = "uniqueid";
pub const HOSTS_DIR: &str = "hosts";

/// Subject CN of the certificate, as qt and embedded use it.
pub const CLIENT_CERT_CN: &str = "NVIDIA GameStream Client";

/// The client's identity as PEM text plus the parsed form used for pairing signatures.
pub struct StoredIdentity {
    pub key_pem: String,
    pub cert_pem: String,
    pub identity: ClientIdentity,
    pub uniqueid: String,
}

impl std::fmt::Debug for StoredIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredIdentity")
            .field("key_pem", &"<redacted>")
            .field("uniqueid", &self.uniqueid)
            .finish_non_exhaustive()
    }
}

fn config_err(path: &Path, reason: impl std::fmt::Display) -> ClientError {
    ClientError::Config {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Fills `N` bytes from the system RNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], ClientError> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| ClientError::Crypto("system RNG failed".into()))?;
    Ok(b)
}

/// Creates `dir` (0700) if missing.
pub fn ensure_dir(dir: &Path) -> Result<(), ClientError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| config_err(dir, format!("cannot create directory: {e}")))
}

/// Writes `bytes` to `path` atomically with the given mode.
pub fn atomic_write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ClientError> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| config_err(path, format!("cannot write: {e}")))
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, ClientError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(config_err(path, format!("cannot read: {e}"))),
    }
}

/// An RSA-2048 key and a self-signed SHA-256 certificate shaped like the official clients'
/// (reference part 1 §2.4): CN `NVIDIA GameStream Client`, serial 0, long validity.
/// Returns `(key_pem, cert_pem)`.
pub fn generate_identity() -> Result<(String, String), ClientError> {
    let id = howl_io::generate_identity(CLIENT_CERT_CN, &[0], 2054)
        .map_err(|e| ClientError::Crypto(e.to_string()))?;
    Ok((id.key_pem, id.cert_pem))
}

/// A persisted `uniqueid` in qt's style: a random 64-bit value in lower-case hex.
fn new_uniqueid() -> Result<String, ClientError> {
    Ok(hex::encode(random_bytes::<8>()?))
}

/// Loads the identity and uniqueid from `dir`, creating whatever is missing.
pub fn load_or_create(dir: &Path) -> Result<StoredIdentity, ClientError> {
    ensure_dir(dir)?;
    let kp = dir.join(KEY_FILE);
    let cp = dir.join(CERT_FILE);
    let (key_pem, cert_pem) = match (read_optional(&kp)?, read_optional(&cp)?) {
        (Some(k), Some(c)) => {
            let k = String::from_utf8(k).map_err(|_| config_err(&kp, "not UTF-8 PEM"))?;
            let c = String::from_utf8(c).map_err(|_| config_err(&cp, "not UTF-8 PEM"))?;
            (k, c)
        }
        (None, None) => {
            let (k, c) = generate_identity()?;
            atomic_write(&kp, k.as_bytes(), 0o600)?;
            atomic_write(&cp, c.as_bytes(), 0o644)?;
            (k, c)
        }
        (Some(_), None) => {
            return Err(config_err(
                &cp,
                "missing while the key exists; restore it or move both aside",
            ));
        }
        (None, Some(_)) => {
            return Err(config_err(
                &kp,
                "missing while the certificate exists; restore it or move both aside",
            ));
        }
    };
    let identity =
        ClientIdentity::from_pem(key_pem.as_bytes(), cert_pem.as_bytes()).map_err(|source| {
            ClientError::Identity {
                path: dir.to_path_buf(),
                source,
            }
        })?;
    let up = dir.join(UNIQUEID_FILE);
    let uniqueid = match read_optional(&up)? {
        Some(b) => {
            let s = String::from_utf8_lossy(&b).trim().to_owned();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(config_err(&up, "not a hex uniqueid"));
            }
            s
        }
        None => {
            let id = new_uniqueid()?;
            atomic_write(&up, format!("{id}\n").as_bytes(), 0o644)?;
            id
        }
    };
    Ok(StoredIdentity {
        key_pem,
        cert_pem,
        identity,
        uniqueid,
    })
}

/// A host uniqueid made safe as a file name (anything but `[A-Za-z0-9-_]` becomes `_`).
fn host_file_name(host_unique_id: &str) -> String {
    let mut s: String = host_unique_id
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        s.push('_');
    }
    s.push_str(".pem");
    s
}

/// Path of the pinned certificate of the host with `host_unique_id`.
pub fn pinned_cert_path(dir: &Path, host_unique_id: &str) -> PathBuf {
    dir.join(HOSTS_DIR).join(host_file_name(host_unique_id))
}

/// The pinned certificate PEM of a host, if this client paired with it.
pub fn load_pinned(dir: &Path, host_unique_id: &str) -> Result<Option<Vec<u8>>, ClientError> {
    read_optional(&pinned_cert_path(dir, host_unique_id))
}

/// Pins a host certificate after successful pairing.
pub fn store_pinned(dir: &Path, host_unique_id: &str, cert_pem: &[u8]) -> Result<(), ClientError> {
    ensure_dir(&dir.join(HOSTS_DIR))?;
    atomic_write(&pinned_cert_path(dir, host_unique_id), cert_pem, 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;
    use howl_proto::pairing::Certificate;

    #[test]
    fn generated_identity_has_the_official_shape_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cfg");
        let a = load_or_create(&root).unwrap();
        assert!(a.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(a.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(a.uniqueid.len(), 16);
        // A real RSA-2048 signature (256 bytes) over the certificate.
        assert_eq!(a.identity.cert_signature().len(), 256);
        let cert = Certificate::parse(a.cert_pem.as_bytes()).unwrap();
        let sig = a.identity.sign(b"hello").unwrap();
        assert!(cert.verify(b"hello", &sig));
        // Serial 0 (DER `02 01 00` right after the version field) and the CN.
        let der = howl_proto::pairing::cert_der_from_pem(a.cert_pem.as_bytes()).unwrap();
        let version_then_serial = [0xa0, 0x03, 0x02, 0x01, 0x02, 0x02, 0x01, 0x00];
        assert!(der.windows(8).any(|w| w == version_then_serial));
        assert!(
            der.windows(CLIENT_CERT_CN.len())
                .any(|w| w == CLIENT_CERT_CN.as_bytes())
        );
        let b = load_or_create(&root).unwrap();
        assert_eq!(a.cert_pem, b.cert_pem);
        assert_eq!(a.uniqueid, b.uniqueid);
        let mode = |n: &str| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(root.join(n))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(KEY_FILE), 0o600);
    }

    #[test]
    fn half_identity_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join(CERT_FILE)).unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(ClientError::Config { .. })
        ));
    }

    #[test]
    fn pinned_certs_are_keyed_by_sanitized_host_id() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_pinned(dir.path(), "ABC-1").unwrap(), None);
        store_pinned(dir.path(), "ABC-1", b"pem").unwrap();
        assert_eq!(load_pinned(dir.path(), "ABC-1").unwrap().unwrap(), b"pem");
        assert_eq!(host_file_name("../x/y"), "___x_y.pem");
        assert_eq!(host_file_name(""), "_.pem");
    }
}
