//! API keys: stored, listed, revoked and looked up by token hash.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ApiKeyRow {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) role: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) revoked_at: Option<DateTime<Utc>>,
}

pub(crate) async fn insert_key(
    db: impl PgExecutor<'_>,
    name: &str,
    role: &str,
    token_hash: &[u8],
) -> sqlx::Result<Uuid> {
    sqlx::query_scalar!(
        "insert into api_keys (id, name, role, token_hash) values ($1, $2, $3, $4) returning id",
        Uuid::now_v7(),
        name,
        role,
        token_hash,
    )
    .fetch_one(db)
    .await
}

pub(crate) async fn list_keys(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<ApiKeyRow>> {
    sqlx::query_as!(
        ApiKeyRow,
        "select id, name, role, created_at, revoked_at from api_keys order by created_at, name",
    )
    .fetch_all(db)
    .await
}

/// Marks the key revoked; false when no active key has that name.
pub async fn revoke_key(db: impl PgExecutor<'_>, name: &str) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "update api_keys set revoked_at = now() where name = $1 and revoked_at is null",
        name,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The role of the active key with this token hash.
pub(crate) async fn find_active_role(
    db: impl PgExecutor<'_>,
    token_hash: &[u8],
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        "select role from api_keys where token_hash = $1 and revoked_at is null",
        token_hash,
    )
    .fetch_optional(db)
    .await
}
