//! API keys: token generation and hashing, roles, and the store that answers "which role does
//! this token have". Tokens are never stored or logged; only their SHA-256.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::db;

/// How long a looked-up key is trusted without asking the database again. The contract lets
/// a revoked key work for at most one second on every instance.
const KEY_CACHE_TTL: Duration = Duration::from_millis(900);

/// Roles are ordered: each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Read,
    Write,
    Admin,
}

impl Role {
    pub(crate) fn parse(raw: &str) -> Option<Self> {
        match raw {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }
}

/// A new random token: 256 bits from a CSPRNG seeded by the operating system.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("aak_{}", URL_SAFE_NO_PAD.encode(bytes))
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Stores a key and returns its token (the given one, or a fresh one).
pub async fn create_key(
    pool: &PgPool,
    name: &str,
    role: Role,
    token: Option<String>,
) -> anyhow::Result<String> {
    let token = token.unwrap_or_else(generate_token);
    anyhow::ensure!(
        token.len() >= 16,
        "a token must be at least 16 characters long"
    );
    anyhow::ensure!(
        !name.trim().is_empty() && name.len() <= 100,
        "a key name must be 1 to 100 characters"
    );
    db::keys::insert_key(pool, name, role.as_str(), &hash_token(&token))
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                anyhow::anyhow!("a key named {name:?} (or with this token) exists already")
            }
            other => other.into(),
        })?;
    Ok(token)
}

/// Finds the role of a token, remembering answers briefly so that a hot path of cached
/// statistics does not pay a database round trip per request.
#[derive(Clone)]
pub struct KeyStore {
    pool: PgPool,
    known: moka::future::Cache<[u8; 32], Role>,
}

impl KeyStore {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            known: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(KEY_CACHE_TTL)
                .build(),
        }
    }

    /// Unknown tokens are not remembered, so a key created a moment ago works at once.
    pub(crate) async fn role_for(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<Role>, sqlx::Error> {
        if let Some(role) = self.known.get(token_hash).await {
            return Ok(Some(role));
        }
        let role = db::keys::find_active_role(&self.pool, token_hash)
            .await?
            .as_deref()
            .and_then(Role::parse);
        if let Some(role) = role {
            self.known.insert(*token_hash, role).await;
        }
        Ok(role)
    }
}
