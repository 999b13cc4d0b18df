//! API keys: token generation and hashing, roles, and the `Authorized<R>` extractor that a
//! handler names to require a role. Tokens are never stored or logged; only their SHA-256.

use std::marker::PhantomData;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{FromRequest, HttpRequest, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::LocalBoxFuture;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::db;
use crate::error::ApiError;
use crate::startup::AppState;

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
    pub fn parse(raw: &str) -> Option<Self> {
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
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            known: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(KEY_CACHE_TTL)
                .build(),
        }
    }

    /// Unknown tokens are not remembered, so a key created a moment ago works at once.
    pub async fn role_for(&self, token_hash: &[u8; 32]) -> Result<Option<Role>, sqlx::Error> {
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

/// Marker types naming the least role a handler needs.
pub trait MinRole {
    const ROLE: Role;
}
pub struct ReadRole;
pub struct WriteRole;
pub struct AdminRole;
impl MinRole for ReadRole {
    const ROLE: Role = Role::Read;
}
impl MinRole for WriteRole {
    const ROLE: Role = Role::Write;
}
impl MinRole for AdminRole {
    const ROLE: Role = Role::Admin;
}

/// Proof that the request carries a valid token with at least role `R`.
pub struct Authorized<R: MinRole> {
    /// The SHA-256 of the token: who sent the request, without keeping the token.
    pub principal: [u8; 32],
    _role: PhantomData<R>,
}

/// The token of an `Authorization: Bearer <token>` header, if the request has one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl<R: MinRole> FromRequest for Authorized<R> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let principal = bearer_token(req.headers()).map(hash_token);
        let keys = req
            .app_data::<web::Data<AppState>>()
            .map(|s| s.keys.clone());
        Box::pin(async move {
            let (Some(principal), Some(keys)) = (principal, keys) else {
                return Err(ApiError::Unauthorized);
            };
            let role = keys
                .role_for(&principal)
                .await?
                .ok_or(ApiError::Unauthorized)?;
            if role < R::ROLE {
                return Err(ApiError::Forbidden);
            }
            Ok(Self {
                principal,
                _role: PhantomData,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hash_stably() {
        let (a, b) = (generate_token(), generate_token());
        assert_ne!(a, b);
        assert!(a.len() >= 40, "{a}");
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Read < Role::Write && Role::Write < Role::Admin);
        for r in [Role::Read, Role::Write, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
