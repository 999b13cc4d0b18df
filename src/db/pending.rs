//! `cache_pending`: the cache updates committed writes still owe (migration 6).

use std::time::Duration;

use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor};

use crate::domain::Touch;

/// Records, in the write's own transaction, that the cache must still hear of `touches`.
pub(crate) async fn insert_pending(tx: &mut PgConnection, touches: &[Touch]) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        "insert into cache_pending (touches) values ($1) returning id",
        Json(touches) as _,
    )
    .fetch_one(tx)
    .await
}

/// Forgets updates the cache has applied.
pub(crate) async fn delete_pending(db: impl PgExecutor<'_>, ids: &[i64]) -> sqlx::Result<u64> {
    sqlx::query!("delete from cache_pending where id = any($1)", ids)
        .execute(db)
        .await
        .map(|done| done.rows_affected())
}

/// Updates older than `age`, oldest first: their writer should long have applied them.
pub(crate) async fn list_orphaned(
    db: impl PgExecutor<'_>,
    age: Duration,
    limit: i64,
) -> sqlx::Result<Vec<(i64, Vec<Touch>)>> {
    let rows = sqlx::query!(
        r#"select id, touches as "touches: Json<Vec<Touch>>" from cache_pending
         where created_at < now() - make_interval(secs => $1)
         order by created_at limit $2"#,
        age.as_secs_f64(),
        limit,
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.touches.0)).collect())
}
