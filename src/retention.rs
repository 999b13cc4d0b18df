//! `RETENTION_DAYS`: whole months of expired activities are dropped with their rollups, and the
//! cache forgets every answer they were part of. `analytics retention` runs it once; `serve`
//! every hour, one instance at a time. docs/rollups.md ("Partitions and retention") explains it.
//!
//! Sits beside the handlers, above `db` and `cache`, like `pending_updates`.

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use sqlx::{Connection, PgPool};

use crate::cache::Committed;
use crate::db;
use crate::db::partitions::{KnownPartitions, Partition};
use crate::pending_updates::PendingUpdates;
use crate::state::AppState;

/// The advisory lock only one retention run holds at a time, across every instance.
const LOCK: (i32, i32) = (7412, 1);
/// Touches recorded per `cache_pending` row: a month of 20,000 users is about 100,000 of them.
const TOUCHES_PER_UPDATE: usize = 2_000;

/// One partition dropped by a run.
#[derive(Debug, Clone)]
pub struct Dropped {
    pub(crate) partition: Partition,
    /// Activities it held (as the rollups counted them).
    pub(crate) events: i64,
    /// Cached answers' touches sent to the cache.
    pub(crate) touches: usize,
}

/// What a run did.
#[derive(Debug)]
pub enum Outcome {
    /// `RETENTION_DAYS` is unset: everything is kept.
    KeepEverything,
    /// Another instance is applying retention right now.
    Busy,
    /// Activities before `cutoff` have expired; the partitions wholly before it were dropped.
    Applied {
        cutoff: DateTime<Utc>,
        dropped: Vec<Dropped>,
    },
}

/// What `serve` does every hour: create the next month's partition ahead of need, then apply
/// retention. Failures are logged and retried the next hour.
pub(crate) async fn run_hourly(state: &AppState) {
    if let Err(error) = db::partitions::ensure_ahead(&state.pool, Utc::now()).await {
        tracing::warn!(%error, "could not create the partitions of the coming month");
    }
    match apply(
        &state.pool,
        &state.pending,
        &state.partitions,
        state.retention_days,
        Utc::now(),
    )
    .await
    {
        Ok(outcome) => log(&outcome),
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "retention failed; retried in an hour")
        }
    }
}

/// Logs what a run did, one line per dropped partition.
pub(crate) fn log(outcome: &Outcome) {
    match outcome {
        Outcome::KeepEverything => tracing::debug!("RETENTION_DAYS is unset: nothing expires"),
        Outcome::Busy => tracing::debug!("another instance is applying retention"),
        Outcome::Applied { cutoff, dropped } => {
            for d in dropped {
                tracing::info!(
                    partition = %d.partition.name,
                    from = %d.partition.first_instant,
                    to = %d.partition.end_instant,
                    activities = d.events,
                    "expired partition dropped"
                );
            }
            tracing::debug!(%cutoff, dropped = dropped.len(), "retention applied");
        }
    }
}

/// Drops every partition that ends at or before `now - retention_days`, its rollup rows, and
/// the cached answers they were part of.
pub async fn apply(
    pool: &PgPool,
    pending: &PendingUpdates,
    known: &KnownPartitions,
    retention_days: Option<u32>,
    now: DateTime<Utc>,
) -> anyhow::Result<Outcome> {
    let Some(days) = retention_days else {
        return Ok(Outcome::KeepEverything);
    };
    let cutoff = now - Duration::days(i64::from(days));
    // A connection of its own, closed afterwards: detaching waits for every query that still
    // reads the partition (an export may take minutes), so the service's statement timeout is
    // lifted here, and the setting must not go back to the pool.
    let mut conn = pool.acquire().await?.detach();
    sqlx::raw_sql("set statement_timeout = 0")
        .execute(&mut conn)
        .await?;
    let locked = sqlx::query_scalar!(
        r#"select pg_try_advisory_lock($1, $2) as "locked!""#,
        LOCK.0,
        LOCK.1,
    )
    .fetch_one(&mut conn)
    .await?;
    if !locked {
        return Ok(Outcome::Busy);
    }
    // An interrupted run may have detached partitions without dropping them.
    let mut expired = db::partitions::detached_leftovers(&mut conn).await?;
    for p in db::partitions::list(&mut conn).await? {
        if p.end_instant <= cutoff {
            let started = Instant::now();
            db::partitions::detach(&mut conn, &p).await?;
            tracing::debug!(partition = %p.name, seconds = started.elapsed().as_secs_f64(), "detached");
            expired.push(p);
        }
    }
    let mut dropped = Vec::with_capacity(expired.len());
    for p in expired {
        dropped.push(drop_partition(&mut conn, pending, p).await?);
    }
    if !dropped.is_empty() {
        known.forget();
    }
    conn.close().await?;
    Ok(Outcome::Applied { cutoff, dropped })
}

/// Drops a detached partition and its rollups in one transaction, then has the cache forget
/// what they were part of (the `cache_pending` rows make sure it does, even if this process
/// dies first).
async fn drop_partition(
    conn: &mut sqlx::PgConnection,
    pending: &PendingUpdates,
    partition: Partition,
) -> anyhow::Result<Dropped> {
    let mut tx = Connection::begin(&mut *conn).await?;
    db::partitions::drop_detached(&mut tx, &partition).await?;
    let forgotten = db::retention::forget_rollups(
        &mut tx,
        partition.first_instant.date_naive(),
        partition.end_instant.date_naive(),
    )
    .await?;
    let mut updates = Vec::new();
    for chunk in forgotten.touches.chunks(TOUCHES_PER_UPDATE) {
        updates.push((
            db::pending::insert_pending(&mut tx, chunk).await?,
            chunk.to_vec(),
        ));
    }
    tx.commit().await?;
    for (id, touches) in updates {
        pending.settle(id, Committed::Touched(touches)).await;
    }
    Ok(Dropped {
        partition,
        events: forgotten.events,
        touches: forgotten.touches.len(),
    })
}
