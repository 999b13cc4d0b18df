//! Cache updates that committed writes owe, kept durable in Postgres (`cache_pending`, migration
//! 6) until the cache reflects them. A write inserts its row in its own transaction; once the
//! cache has been updated (not merely told to remember), the row goes. A process that dies
//! between a write's commit and its cache update leaves its row behind, and any instance's sweep
//! turns it into an invalidation: no cached answer stays without a committed write.
//!
//! Sits beside the handlers, above `cache` and `db`: it only connects the two.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sqlx::PgPool;

use crate::cache::{Cache, Committed};
use crate::db;
use crate::read_routing::ReadRouting;

/// How often applied rows are deleted (in one statement), and orphans looked for.
const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
const SWEEP_EVERY: u32 = 5;
/// A row this old belongs to a writer that died: a live one settles its rows within about a
/// second (every cache operation is bounded by `CACHE_OP_TIMEOUT_MS`).
const ORPHAN_AGE: Duration = Duration::from_secs(10);
const SWEEP_BATCH: i64 = 200;

pub struct PendingUpdates {
    pool: PgPool,
    cache: Arc<Cache>,
    reads: Arc<ReadRouting>,
    applied: Mutex<Vec<i64>>,
    orphan_age: Mutex<Duration>,
}

impl PendingUpdates {
    pub(crate) fn new(pool: PgPool, cache: Arc<Cache>, reads: Arc<ReadRouting>) -> Self {
        Self {
            pool,
            cache,
            reads,
            applied: Mutex::new(Vec::new()),
            orphan_age: Mutex::new(ORPHAN_AGE),
        }
    }

    /// Tells the cache about the committed write whose `cache_pending` row is `id`, and lets
    /// the row go once the cache reflects it. The write's position is published first, so that
    /// a read that sees the cache updated also finds the replica's bar raised (docs/scale.md).
    pub(crate) async fn settle(&self, id: i64, write: Committed) {
        self.reads.committed().await;
        if self.cache.after_commit(write).await
            && let Ok(mut applied) = self.applied.lock()
        {
            applied.push(id);
        }
    }

    /// Deletes settled rows and sweeps orphans in the background until `self` is dropped.
    pub(crate) fn spawn(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_INTERVAL);
            for round in 0u32.. {
                tick.tick().await;
                let Some(pending) = weak.upgrade() else {
                    return;
                };
                pending.forget_applied().await;
                if round % SWEEP_EVERY == 0 {
                    pending.sweep().await;
                }
            }
        });
    }

    /// How old a row must be to count as orphaned. For tests, which cannot wait ten seconds.
    pub fn set_orphan_age(&self, age: Duration) {
        if let Ok(mut a) = self.orphan_age.lock() {
            *a = age;
        }
    }

    /// Forgets the rows of settled updates now (for a command that does not run `spawn`).
    pub(crate) async fn flush(&self) {
        self.forget_applied().await;
    }

    async fn forget_applied(&self) {
        let ids = match self.applied.lock() {
            Ok(mut applied) if !applied.is_empty() => std::mem::take(&mut *applied),
            _ => return,
        };
        if let Err(error) = db::pending::delete_pending(&self.pool, &ids).await {
            // Kept for the next round; at worst the sweep invalidates them once more.
            tracing::warn!(%error, count = ids.len(), "could not forget applied cache updates");
            if let Ok(mut applied) = self.applied.lock() {
                applied.extend(ids);
            }
        }
    }

    /// Invalidates what orphaned rows touched, then forgets the rows. Several instances may
    /// sweep the same row: invalidating twice is harmless.
    async fn sweep(&self) {
        let age = self.orphan_age.lock().map(|a| *a).unwrap_or(ORPHAN_AGE);
        let orphans = match db::pending::list_orphaned(&self.pool, age, SWEEP_BATCH).await {
            Ok(orphans) => orphans,
            Err(error) => {
                tracing::debug!(%error, "could not look for orphaned cache updates");
                return;
            }
        };
        for (id, touches) in orphans {
            tracing::warn!(
                id,
                touched = touches.len(),
                "a committed write never updated the cache (its process died?): invalidating what it touched"
            );
            if self.cache.after_commit(Committed::Touched(touches)).await
                && let Ok(mut applied) = self.applied.lock()
            {
                applied.push(id);
            }
        }
    }
}
