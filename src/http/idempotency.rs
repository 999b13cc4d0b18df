//! `Idempotency-Key` on the create endpoints: a retry with the same key and body gets the
//! first response and stores nothing twice; the same key with another body is 422.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::db;
use crate::error::{ApiError, ApiResult};

const HEADER: &str = "Idempotency-Key";

/// The request's key, if it sent one: 1 to 255 visible ASCII characters.
pub(crate) fn key_of(req: &HttpRequest) -> ApiResult<Option<String>> {
    let Some(value) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()));
    match key {
        Some(k) => Ok(Some(k.to_owned())),
        None => Err(ApiError::field(
            HEADER,
            "must be 1 to 255 visible ASCII characters",
        )),
    }
}

/// A key claimed for this request; the work happens in its transaction.
pub(crate) struct Claim {
    tx: Transaction<'static, Postgres>,
    principal: [u8; 32],
    key: String,
}

pub(crate) enum Idempotent {
    /// Do the work (inside the claim's transaction when there is one).
    Proceed(Option<Claim>),
    /// The answer to an earlier request with this key and body.
    Replay(HttpResponse),
}

impl Claim {
    pub(crate) fn connection(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Stores the response with the key and commits the work.
    pub(crate) async fn finish(
        mut self,
        status: StatusCode,
        body: &[u8],
        location: Option<&str>,
    ) -> ApiResult<()> {
        db::idempotency::store_response(
            &mut self.tx,
            &self.principal,
            &self.key,
            status.as_u16() as i16,
            body,
            location,
        )
        .await?;
        self.tx.commit().await?;
        Ok(())
    }
}

/// Claims the key, or finds the response already stored for it.
pub(crate) async fn begin(
    pool: &PgPool,
    principal: [u8; 32],
    key: Option<String>,
    body: &Value,
) -> ApiResult<Idempotent> {
    let Some(key) = key else {
        return Ok(Idempotent::Proceed(None));
    };
    // serde_json keeps object keys sorted, so equal JSON hashes equally however it was spelt.
    let request_hash = Sha256::digest(serde_json::to_vec(body).unwrap_or_default()).to_vec();
    let mut tx = pool.begin().await?;
    if db::idempotency::claim_key(&mut tx, &principal, &key, &request_hash).await? {
        return Ok(Idempotent::Proceed(Some(Claim { tx, principal, key })));
    }
    let stored = db::idempotency::find_response(&mut *tx, &principal, &key).await?;
    tx.rollback().await?;
    let Some(stored) = stored else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "idempotency key vanished while being read"
        )));
    };
    if stored.request_hash != request_hash {
        return Err(ApiError::field(
            HEADER,
            "was already used with a different request body",
        ));
    }
    let (Some(status), Some(body)) = (stored.status, stored.response) else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "idempotency key claimed without a response"
        )));
    };
    let status = StatusCode::from_u16(status as u16).map_err(|e| ApiError::Internal(e.into()))?;
    let mut response = HttpResponse::build(status);
    response
        .content_type("application/json")
        .insert_header(("Idempotent-Replayed", "true"));
    if let Some(location) = stored.location {
        response.insert_header((header::LOCATION, location));
    }
    Ok(Idempotent::Replay(response.body(body)))
}
