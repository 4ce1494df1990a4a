//! Who is calling the management API: the admin (the token in `<state-dir>/api-token`, or a
//! peer on the unix socket, which is mode 0600 in a 0700 directory) or a tenant (a token created
//! through `POST /api/v1/tokens`, stored only as its SHA-256 digest).

use std::collections::HashMap;

/// Tenant token digest (lower-case hex SHA-256) -> (tenant id, name).
pub type TenantIndex = HashMap<String, (u64, String)>;

/// The authenticated caller of one API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Tenant { id: u64, name: String },
}

impl Principal {
    /// The tenant id, `None` for the admin.
    pub fn tenant(&self) -> Option<u64> {
        match self {
            Principal::Admin => None,
            Principal::Tenant { id, .. } => Some(*id),
        }
    }

    /// How the caller is named to itself: `admin` or `tenant:<name>`.
    pub fn label(&self) -> String {
        match self {
            Principal::Admin => "admin".to_owned(),
            Principal::Tenant { name, .. } => format!("tenant:{name}"),
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::Admin)
    }

    /// Whether this caller may see or control something owned by `owner` (`None`: the
    /// operator's). The admin sees everything; a tenant only what it owns.
    pub fn may_access(&self, owner: Option<u64>) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Tenant { id, .. } => owner == Some(*id),
        }
    }
}

/// Resolves a presented bearer token. The admin token is compared in constant time; tenant
/// tokens are looked up by digest, which leaks nothing useful about other tokens' values.
pub fn authenticate(
    presented: &str,
    admin_token: &str,
    tenants: &TenantIndex,
) -> Option<Principal> {
    if aws_lc_rs::constant_time::verify_slices_are_equal(
        presented.as_bytes(),
        admin_token.as_bytes(),
    )
    .is_ok()
    {
        return Some(Principal::Admin);
    }
    if presented.is_empty() {
        return None;
    }
    let digest = howl_core::tenants::token_digest(presented);
    tenants.get(&digest).map(|(id, name)| Principal::Tenant {
        id: *id,
        name: name.clone(),
    })
}

/// A fresh random token: 32 bytes from the system RNG, hex-encoded. `None` if the RNG
/// failed: a guessable token must never be handed out.
pub fn new_token() -> Option<String> {
    use aws_lc_rs::rand::SecureRandom;
    let mut b = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut b).ok()?;
    Some(hex::encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_resolve_to_principals() {
        let t = new_token().expect("rng");
        assert_eq!(t.len(), 64);
        let mut idx = TenantIndex::new();
        idx.insert(howl_core::tenants::token_digest(&t), (4, "team".into()));
        assert_eq!(authenticate("admin", "admin", &idx), Some(Principal::Admin));
        assert_eq!(
            authenticate(&t, "admin", &idx),
            Some(Principal::Tenant {
                id: 4,
                name: "team".into()
            })
        );
        assert_eq!(authenticate("nope", "admin", &idx), None);
        assert_eq!(authenticate("", "admin", &idx), None);
        let p = Principal::Tenant {
            id: 4,
            name: "team".into(),
        };
        assert!(p.may_access(Some(4)));
        assert!(!p.may_access(Some(5)));
        assert!(!p.may_access(None));
        assert!(Principal::Admin.may_access(Some(5)));
    }
}
