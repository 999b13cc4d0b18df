//! Positions in the primary's write-ahead log, in bytes, as the read replica's routing compares
//! them (`read_routing.rs`, docs/scale.md).

use sqlx::PgPool;

/// The primary's WAL position now: at or past the commit of every write that has returned from
/// its `COMMIT`.
pub(crate) async fn current_position(pool: &PgPool) -> sqlx::Result<u64> {
    let lsn: i64 = sqlx::query_scalar("select (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(lsn).unwrap_or(0))
}

/// The position a standby has replayed; `None` on a server that is not in recovery.
pub(crate) async fn replayed_position(pool: &PgPool) -> sqlx::Result<Option<u64>> {
    let lsn: Option<i64> =
        sqlx::query_scalar("select (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint")
            .fetch_one(pool)
            .await?;
    Ok(lsn.map(|l| u64::try_from(l).unwrap_or(0)))
}
