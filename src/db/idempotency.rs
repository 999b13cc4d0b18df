//! Idempotency keys: claiming one for a request, storing its response, replaying it.

use sqlx::{PgConnection, PgExecutor};

/// A response stored for a key that was used before.
#[derive(Debug)]
pub(crate) struct StoredResponse {
    pub(crate) request_hash: Vec<u8>,
    pub(crate) status: Option<i16>,
    pub(crate) response: Option<Vec<u8>>,
    pub(crate) location: Option<String>,
}

/// Claims `key` for this request inside the caller's transaction. `true` when claimed (new, or
/// expired and reclaimed). When another transaction holds the same key, Postgres makes this
/// insert wait until that one ends, so two concurrent requests never both claim it.
pub(crate) async fn claim_key(
    db: &mut PgConnection,
    principal: &[u8],
    key: &str,
    request_hash: &[u8],
) -> sqlx::Result<bool> {
    let claimed = sqlx::query_scalar!(
        r#"insert into idempotency_keys (principal, key, request_hash) values ($1, $2, $3)
         on conflict (principal, key) do update
             set request_hash = excluded.request_hash, status = null, response = null,
                 location = null, created_at = now()
             where idempotency_keys.created_at < now() - interval '24 hours'
         returning true as "claimed!""#,
        principal,
        key,
        request_hash,
    )
    .fetch_optional(db)
    .await?;
    Ok(claimed.unwrap_or(false))
}

pub(crate) async fn find_response(
    db: impl PgExecutor<'_>,
    principal: &[u8],
    key: &str,
) -> sqlx::Result<Option<StoredResponse>> {
    sqlx::query_as!(
        StoredResponse,
        "select request_hash, status, response, location from idempotency_keys
         where principal = $1 and key = $2",
        principal,
        key,
    )
    .fetch_optional(db)
    .await
}

pub(crate) async fn store_response(
    db: &mut PgConnection,
    principal: &[u8],
    key: &str,
    status: i16,
    response: &[u8],
    location: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "update idempotency_keys set status = $3, response = $4, location = $5
         where principal = $1 and key = $2",
        principal,
        key,
        status,
        response,
        location,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Forgets keys older than 24 hours.
pub(crate) async fn delete_expired_keys(db: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    let done =
        sqlx::query!("delete from idempotency_keys where created_at < now() - interval '24 hours'")
            .execute(db)
            .await?;
    Ok(done.rows_affected())
}
