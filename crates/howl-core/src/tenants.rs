//! Tenants: API callers that see and control only what they created (their lobbies, the
//! sessions and workers of those lobbies, their apps).
//!
//! A tenant is identified by its bearer token. Only the token's SHA-256 digest is stored, so
//! a leaked state file does not leak working tokens; the token itself is shown once, when the
//! tenant is created.

use serde::{Deserialize, Serialize};

/// Longest tenant name accepted.
pub const MAX_TENANT_NAME: usize = 64;

/// A tenant as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantRecord {
    pub id: u64,
    pub name: String,
    /// Lower-case hex SHA-256 of the token.
    pub token_sha256: String,
    pub created_unix: u64,
}

/// SHA-256 of a presented token, lower-case hex (the form stored and compared).
pub fn token_digest(token: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref())
}

/// Checks a tenant name: 1..=64 printable characters, trimmed.
pub fn validate_name(name: &str) -> Result<String, String> {
    let n = name.trim();
    if n.is_empty() {
        return Err("a tenant needs a non-empty name".into());
    }
    if n.len() > MAX_TENANT_NAME {
        return Err(format!("a tenant name is at most {MAX_TENANT_NAME} bytes"));
    }
    if n.chars().any(char::is_control) {
        return Err("a tenant name must not contain control characters".into());
    }
    Ok(n.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_stable_hex() {
        let d = token_digest("abc");
        assert_eq!(
            d,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(validate_name("  team a ").as_deref(), Ok("team a"));
        assert!(validate_name("   ").is_err());
        assert!(validate_name(&"x".repeat(65)).is_err());
        assert!(validate_name("a\nb").is_err());
    }
}
