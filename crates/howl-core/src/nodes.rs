//! Media nodes' credentials: join tokens and pinned node certificates (docs/nodes.md).
//!
//! A node joins once with a **join token** and its self-signed certificate; the control plane
//! pins that certificate under the node's name (as pairing pins a client's), and every later
//! connection is authenticated by the pinned certificate alone. Tokens are single-use unless
//! created reusable, always expire, and only their SHA-256 digest is stored: the token itself
//! is shown once, when created. A token also carries the control plane's certificate
//! fingerprint, so the node can authenticate the control plane on its first connection.
//!
//! Sans-IO: time is an input (`now_unix`), the randomness of a new token comes from the
//! caller, and persistence is [`NodeBook::load`] / [`NodeBook::save`] of one JSON file.

use crate::store::{StoreError, atomic_write, read_optional};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The file in the state directory (mode 0600).
pub const NODES_FILE: &str = "nodes.json";
/// Its schema version.
pub const NODES_SCHEMA: u32 = 1;
/// The prefix of every join token (its format version).
pub const TOKEN_PREFIX: &str = "howl-node1";
/// A token's lifetime when none is asked for.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 3600;
/// The longest lifetime a token may have (a year): every token expires.
pub const MAX_TOKEN_TTL_SECS: u64 = 365 * 24 * 3600;
/// Longest node name.
pub const MAX_NODE_NAME: usize = 63;

/// A join token as stored: its digest, never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinTokenRecord {
    pub id: u64,
    /// Lower-case hex SHA-256 of the token's secret part.
    pub secret_sha256: String,
    pub created_unix: u64,
    pub expires_unix: u64,
    pub reusable: bool,
    /// Nodes that joined with it (a single-use token is spent after one).
    pub uses: u32,
}

/// A node whose certificate is pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedNode {
    pub name: String,
    /// Lower-case hex SHA-256 of the node's certificate (DER).
    pub cert_sha256: String,
    pub joined_unix: u64,
}

/// Everything persisted about nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeBook {
    pub version: u32,
    pub next_token_id: u64,
    pub tokens: Vec<JoinTokenRecord>,
    pub nodes: Vec<PinnedNode>,
}

impl Default for NodeBook {
    fn default() -> Self {
        Self {
            version: NODES_SCHEMA,
            next_token_id: 1,
            tokens: Vec::new(),
            nodes: Vec::new(),
        }
    }
}

/// Why a node was refused. The texts name no secret (they are logged and sent to the node).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefusal {
    #[error("unknown certificate and no join token (create one with `howl nodes token`)")]
    UnknownCertificate,
    #[error("the join token is not one this control plane issued")]
    BadToken,
    #[error("the join token expired")]
    TokenExpired,
    #[error(
        "the join token was used already (single-use; create one with --reusable for many nodes)"
    )]
    TokenUsed,
    #[error("node name must be 1 to {MAX_NODE_NAME} of [A-Za-z0-9._-]")]
    BadName,
    #[error("the token's ttl must be 1 to {MAX_TOKEN_TTL_SECS} seconds")]
    BadTtl,
}

/// A join token split into its parts: `howl-node1.<secret>.<control plane fingerprint>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedToken<'a> {
    pub secret: &'a str,
    /// The control plane's certificate fingerprint (64 lower-case hex digits).
    pub control_plane_sha256: &'a str,
}

/// Splits a token; `None` when it is not in the token format.
pub fn parse_token(token: &str) -> Option<ParsedToken<'_>> {
    let mut parts = token.trim().split('.');
    let (prefix, secret, fp) = (parts.next()?, parts.next()?, parts.next()?);
    let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if prefix != TOKEN_PREFIX || parts.next().is_some() || !hex64(secret) || !hex64(fp) {
        return None;
    }
    Some(ParsedToken {
        secret,
        control_plane_sha256: fp,
    })
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// Checks a node name: 1..=63 of `[A-Za-z0-9._-]` (it appears in logs, metrics and URLs).
pub fn validate_node_name(name: &str) -> Result<(), JoinRefusal> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NODE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(JoinRefusal::BadName)
    }
}

/// A node the book admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub name: String,
    /// True when this join pinned its certificate (the token was spent).
    pub first_join: bool,
    /// True when the name was pinned to another certificate before (a node that lost its
    /// state directory, e.g. a pod on an emptyDir, joined again with a token).
    pub repinned: bool,
}

impl NodeBook {
    /// Reads the book; a missing file is an empty book.
    pub fn load(path: &Path) -> Result<Self, StoreError> {
        match read_optional(path)? {
            None => Ok(Self::default()),
            Some(b) => serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
        }
    }

    /// Writes the book atomically, mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), StoreError> {
        // Cannot fail: the book is plain data.
        let json = serde_json::to_vec_pretty(self).unwrap_or_default();
        atomic_write(path, &json, 0o600)
    }

    /// Records a new token whose secret is `secret_hex` (64 hex digits of the caller's
    /// randomness) and returns the token text to show once. Expired tokens are forgotten.
    pub fn issue(
        &mut self,
        now_unix: u64,
        secret_hex: &str,
        control_plane_sha256: &str,
        ttl_secs: u64,
        reusable: bool,
    ) -> Result<(u64, String), JoinRefusal> {
        if ttl_secs == 0 || ttl_secs > MAX_TOKEN_TTL_SECS {
            return Err(JoinRefusal::BadTtl);
        }
        self.tokens.retain(|t| t.expires_unix > now_unix);
        let id = self.next_token_id;
        self.next_token_id += 1;
        self.tokens.push(JoinTokenRecord {
            id,
            secret_sha256: sha256_hex(secret_hex.as_bytes()),
            created_unix: now_unix,
            expires_unix: now_unix.saturating_add(ttl_secs),
            reusable,
            uses: 0,
        });
        Ok((
            id,
            format!("{TOKEN_PREFIX}.{secret_hex}.{control_plane_sha256}"),
        ))
    }

    /// The pinned node with this certificate.
    pub fn node_by_cert(&self, cert_sha256: &str) -> Option<&PinnedNode> {
        self.nodes.iter().find(|n| n.cert_sha256 == cert_sha256)
    }

    /// Decides whether a connecting node may join. A pinned certificate is enough (the token,
    /// if any, is ignored: a node restarted with its old token file still joins); otherwise a
    /// valid token pins the certificate under `name`. On `Ok` with `first_join`, the caller
    /// saves the book.
    pub fn authenticate(
        &mut self,
        now_unix: u64,
        cert_sha256: &str,
        name: &str,
        token: &str,
    ) -> Result<Admitted, JoinRefusal> {
        if let Some(n) = self.node_by_cert(cert_sha256) {
            return Ok(Admitted {
                name: n.name.clone(),
                first_join: false,
                repinned: false,
            });
        }
        if token.is_empty() {
            return Err(JoinRefusal::UnknownCertificate);
        }
        let parsed = parse_token(token).ok_or(JoinRefusal::BadToken)?;
        let digest = sha256_hex(parsed.secret.as_bytes());
        let t = self
            .tokens
            .iter()
            .position(|t| t.secret_sha256 == digest)
            .ok_or(JoinRefusal::BadToken)?;
        if self.tokens[t].expires_unix <= now_unix {
            return Err(JoinRefusal::TokenExpired);
        }
        if !self.tokens[t].reusable && self.tokens[t].uses > 0 {
            return Err(JoinRefusal::TokenUsed);
        }
        validate_node_name(name)?;
        // A valid token is the operator's word that this node may join under this name: a
        // node that lost its key (a fresh state directory) takes its name back, and the old
        // certificate stops working.
        let before = self.nodes.len();
        self.nodes.retain(|n| n.name != name);
        let repinned = self.nodes.len() != before;
        self.tokens[t].uses += 1;
        self.nodes.push(PinnedNode {
            name: name.to_owned(),
            cert_sha256: cert_sha256.to_owned(),
            joined_unix: now_unix,
        });
        Ok(Admitted {
            name: name.to_owned(),
            first_join: true,
            repinned,
        })
    }

    /// Forgets a node's pinned certificate; it must join with a token again.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.nodes.len();
        self.nodes.retain(|n| n.name != name);
        self.nodes.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CP: &str = "cc00000000000000000000000000000000000000000000000000000000000000";
    const CERT_A: &str = "aa";
    const CERT_B: &str = "bb";

    fn secret(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    #[test]
    fn a_token_pins_the_certificate_and_later_joins_need_only_it() {
        let mut b = NodeBook::default();
        let (_, tok) = b.issue(100, &secret(1), CP, 60, false).expect("issued");
        assert!(tok.starts_with("howl-node1."));
        assert_eq!(parse_token(&tok).map(|p| p.control_plane_sha256), Some(CP));
        assert!(!tok.contains(&b.tokens[0].secret_sha256), "stored hashed");
        let a = b.authenticate(110, CERT_A, "gpu-1", &tok).expect("joins");
        assert!(a.first_join);
        // Later: the certificate alone, with or without the (spent) token.
        assert_eq!(
            b.authenticate(5000, CERT_A, "other", "").map(|a| a.name),
            Ok("gpu-1".to_owned())
        );
        assert!(b.authenticate(5000, CERT_A, "gpu-1", &tok).is_ok());
    }

    #[test]
    fn wrong_reused_expired_tokens_and_foreign_certificates_are_refused() {
        let mut b = NodeBook::default();
        let (_, tok) = b.issue(100, &secret(1), CP, 60, false).expect("issued");
        assert_eq!(
            b.authenticate(101, CERT_B, "n", ""),
            Err(JoinRefusal::UnknownCertificate)
        );
        let wrong = format!("{TOKEN_PREFIX}.{}.{CP}", secret(2));
        assert_eq!(
            b.authenticate(101, CERT_B, "n", &wrong),
            Err(JoinRefusal::BadToken)
        );
        assert_eq!(
            b.authenticate(101, CERT_B, "n", "garbage"),
            Err(JoinRefusal::BadToken)
        );
        assert_eq!(
            b.authenticate(160, CERT_B, "n", &tok),
            Err(JoinRefusal::TokenExpired)
        );
        assert!(b.authenticate(150, CERT_A, "a", &tok).is_ok());
        assert_eq!(
            b.authenticate(151, CERT_B, "b", &tok),
            Err(JoinRefusal::TokenUsed)
        );
        assert!(
            b.node_by_cert(CERT_B).is_none(),
            "nothing pinned on refusal"
        );
    }

    #[test]
    fn a_reusable_token_admits_many_nodes_until_it_expires() {
        let mut b = NodeBook::default();
        let (_, tok) = b.issue(0, &secret(3), CP, 100, true).expect("issued");
        assert!(b.authenticate(1, "c1", "n1", &tok).is_ok());
        assert!(b.authenticate(2, "c2", "n2", &tok).is_ok());
        // n1 again with a new key (its state was lost) and a valid token: re-pinned, and its
        // old certificate is worthless.
        let a = b.authenticate(3, "c3", "n1", &tok).expect("re-pinned");
        assert!(a.first_join && a.repinned);
        assert_eq!(
            b.authenticate(4, "c1", "n1", ""),
            Err(JoinRefusal::UnknownCertificate)
        );
        assert_eq!(
            b.authenticate(3, "c5", "bad name", &tok),
            Err(JoinRefusal::BadName)
        );
        assert_eq!(
            b.authenticate(100, "c4", "n4", &tok),
            Err(JoinRefusal::TokenExpired)
        );
        assert!(b.remove("n1"));
        assert_eq!(
            b.authenticate(5, "c3", "x", ""),
            Err(JoinRefusal::UnknownCertificate),
            "a removed node needs a token again"
        );
    }

    #[test]
    fn ttl_is_bounded_and_expired_tokens_are_forgotten() {
        let mut b = NodeBook::default();
        assert_eq!(
            b.issue(0, &secret(1), CP, 0, false),
            Err(JoinRefusal::BadTtl)
        );
        assert_eq!(
            b.issue(0, &secret(1), CP, MAX_TOKEN_TTL_SECS + 1, false),
            Err(JoinRefusal::BadTtl)
        );
        b.issue(0, &secret(1), CP, 10, false).expect("issued");
        b.issue(20, &secret(2), CP, 10, false).expect("issued");
        assert_eq!(b.tokens.len(), 1);
    }

    #[test]
    fn the_book_round_trips_through_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join(NODES_FILE);
        assert_eq!(NodeBook::load(&p).expect("empty"), NodeBook::default());
        let mut b = NodeBook::default();
        let (_, tok) = b.issue(0, &secret(1), CP, 10, false).expect("issued");
        b.authenticate(1, "c1", "n1", &tok).expect("joins");
        b.save(&p).expect("saved");
        assert_eq!(NodeBook::load(&p).expect("loaded"), b);
        let text = std::fs::read_to_string(&p).expect("read");
        assert!(!text.contains(&secret(1)), "no token secret on disk");
    }
}
