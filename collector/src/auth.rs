//! API tokens and roles. A token is 32 random bytes, shown once when issued; the store
//! keeps only its SHA-256 (a token is random, not a password: a fast hash is enough).
//!
//! Roles: `host` (a cordond: sends events, fetches its commands), `viewer` (reads),
//! `responder` (reads and issues commands), `admin` (all of that, and tokens).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// What every token string starts with, so a leaked one is easy to recognise.
pub const PREFIX: &str = "cdn_";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Host,
    Viewer,
    Responder,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Host => "host",
            Role::Viewer => "viewer",
            Role::Responder => "responder",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may do what `needed` may. Hosts and people are apart: a host
    /// token reads nothing, and no person's token sends events as a host.
    pub fn allows(self, needed: Role) -> bool {
        match (self, needed) {
            (Role::Host, Role::Host) => true,
            (Role::Host, _) | (_, Role::Host) => false,
            (have, needed) => have.rank() >= needed.rank(),
        }
    }

    fn rank(self) -> u8 {
        match self {
            Role::Host => 0,
            Role::Viewer => 1,
            Role::Responder => 2,
            Role::Admin => 3,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "host" => Ok(Role::Host),
            "viewer" => Ok(Role::Viewer),
            "responder" => Ok(Role::Responder),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: host, viewer, responder or admin"
            )),
        }
    }
}

/// A token as stored, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// For `host` tokens: the host they speak for.
    pub host: Option<String>,
    pub created_ns: i64,
    pub revoked_ns: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a host token needs --host NAME")]
    NoHost,
    #[error("only host tokens name a host")]
    HostForPerson,
    #[error("a name is 1 to 100 letters, digits, '.', '_', '-' or '@'")]
    BadName,
    #[error("no randomness from the kernel: {0}")]
    Random(String),
}

/// A new token: its stored form, and the secret to hand out (once).
pub fn issue(
    name: &str,
    role: Role,
    host: Option<&str>,
) -> Result<(TokenInfo, String), TokenError> {
    if !valid_name(name) || host.is_some_and(|h| !valid_name(h)) {
        return Err(TokenError::BadName);
    }
    match (role, host) {
        (Role::Host, None) => return Err(TokenError::NoHost),
        (Role::Host, Some(_)) => {}
        (_, Some(_)) => return Err(TokenError::HostForPerson),
        (_, None) => {}
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| TokenError::Random(e.to_string()))?;
    let mut id = [0u8; 6];
    getrandom::fill(&mut id).map_err(|e| TokenError::Random(e.to_string()))?;
    let info = TokenInfo {
        id: hex(&id),
        name: name.to_string(),
        role,
        host: host.map(str::to_string),
        created_ns: crate::clock::now_ns(),
        revoked_ns: None,
    };
    Ok((info, format!("{PREFIX}{}", hex(&secret))))
}

/// What the store keeps of a token.
pub fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

pub fn valid_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest_and_hosts_stand_apart() {
        assert!(Role::Admin.allows(Role::Responder));
        assert!(Role::Responder.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Responder));
        assert!(!Role::Responder.allows(Role::Admin));
        assert!(!Role::Admin.allows(Role::Host));
        assert!(!Role::Host.allows(Role::Viewer));
        assert!(Role::Host.allows(Role::Host));
    }

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let (a, secret_a) = issue("alice", Role::Viewer, None).unwrap();
        let (_, secret_b) = issue("alice", Role::Viewer, None).unwrap();
        assert_ne!(secret_a, secret_b);
        assert!(secret_a.starts_with(PREFIX) && secret_a.len() == PREFIX.len() + 64);
        assert_eq!(hash(&secret_a).len(), 64);
        assert_ne!(hash(&secret_a), hash(&secret_b));
        assert_eq!(a.role, Role::Viewer);
    }

    #[test]
    fn host_tokens_name_their_host_and_people_do_not() {
        assert!(matches!(
            issue("h", Role::Host, None),
            Err(TokenError::NoHost)
        ));
        assert!(matches!(
            issue("bob", Role::Admin, Some("web-1")),
            Err(TokenError::HostForPerson)
        ));
        assert!(matches!(
            issue("a b", Role::Viewer, None),
            Err(TokenError::BadName)
        ));
        assert_eq!(
            issue("web-1", Role::Host, Some("web-1"))
                .unwrap()
                .0
                .host
                .as_deref(),
            Some("web-1")
        );
    }
}
