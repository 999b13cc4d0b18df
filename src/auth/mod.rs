//! API keys: token generation and hashing, roles, and the `Authorized<R>` extractor that a
//! handler names to require a role. Tokens are never stored or logged; only their SHA-256.

mod keys;

use std::marker::PhantomData;

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;

use crate::error::ApiError;
use crate::state::AppState;

pub use keys::{KeyStore, Role, create_key, generate_token, hash_token};

/// Marker types naming the least role a handler needs.
pub(crate) trait MinRole {
    const ROLE: Role;
}
pub(crate) struct ReadRole;
pub(crate) struct WriteRole;
pub(crate) struct AdminRole;
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
pub(crate) struct Authorized<R: MinRole> {
    /// The SHA-256 of the token: who sent the request, without keeping the token.
    pub(crate) principal: [u8; 32],
    _role: PhantomData<R>,
}

/// The token of an `Authorization: Bearer <token>` header, if the request has one.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
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
