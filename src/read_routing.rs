//! Where reads go when `DATABASE_REPLICA_URL` names a streaming replica (docs/scale.md, "Read
//! replica"). Promise 1 is global: a read must reflect every write acknowledged before it
//! started, on any instance. So every write publishes the primary's WAL position after its commit
//! and before it is acknowledged (through the cache, `cache::lsn`), and a read goes to the replica
//! only when the replica has replayed at least the newest position published; otherwise, or when
//! the replica cannot be asked or fails the read, the read runs on the primary. A HIT never
//! comes here: it reads neither database.
//!
//! Sits beside the handlers, above `cache` and `db`: it only connects the two.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::PgPool;

use crate::cache::Cache;
use crate::cache::breaker::Breaker;
use crate::config::Settings;
use crate::db;
use crate::metrics::{Metrics, ReadLabels};

/// Failures in a row after which the replica is left alone for a while, and for how long: a
/// replica that is down costs one failed attempt per cool-down, not one per read.
const BREAKER_THRESHOLD: u32 = 2;
const BREAKER_COOLDOWN: Duration = Duration::from_secs(2);
/// The longest a read waits for a replica connection before going to the primary.
const REPLICA_ACQUIRE: Duration = Duration::from_millis(250);

/// Where one read goes.
pub(crate) struct Route {
    pub(crate) pool: PgPool,
    on_replica: bool,
    /// Why a read that could have gone to the replica did not.
    reason: Option<&'static str>,
}

impl Route {
    fn primary(pool: &PgPool, reason: Option<&'static str>) -> Self {
        Self {
            pool: pool.clone(),
            on_replica: false,
            reason,
        }
    }
}

/// Runs one read where `reads` routes it, and once more on the primary if it failed on the
/// replica. A macro rather than a function taking a closure: the statistics' reads borrow the
/// request's state inside async closures, which a generic `Fn(PgPool) -> Future` cannot express
/// as `Send` for the tasks that run them.
macro_rules! routed_read {
    ($reads:expr, |$pool:ident| $read:expr) => {{
        let reads = &$reads;
        let route = reads.route().await;
        let result = {
            let $pool = &route.pool;
            $read.await
        };
        if reads.retry_on_primary(&route, &result) {
            let $pool = reads.primary();
            $read.await
        } else {
            result
        }
    }};
}

pub(crate) use routed_read;

struct Replica {
    pool: PgPool,
    /// The replay position last seen on the replica: it only grows, so a read needing no more
    /// than this goes to the replica without asking again.
    replayed: AtomicU64,
    breaker: Breaker,
}

pub struct ReadRouting {
    primary: PgPool,
    replica: Option<Replica>,
    cache: Arc<Cache>,
    metrics: Arc<Metrics>,
    /// The newest commit position this instance could not publish (0: none). Until it is
    /// published, reads on this instance go to the primary.
    unpublished: AtomicU64,
}

impl ReadRouting {
    pub(crate) fn new(
        settings: &Settings,
        primary: PgPool,
        cache: Arc<Cache>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, sqlx::Error> {
        let replica = match settings.database_replica_url.as_deref() {
            None => None,
            Some(url) => Some(Replica {
                pool: db::pool_at(url, settings.db_max_connections, REPLICA_ACQUIRE)?,
                replayed: AtomicU64::new(0),
                breaker: Breaker::new(BREAKER_THRESHOLD, BREAKER_COOLDOWN),
            }),
        };
        Ok(Self {
            primary,
            replica,
            cache,
            metrics,
            unpublished: AtomicU64::new(0),
        })
    }

    /// After a write's commit, before its cache update and its answer: publishes the position a
    /// replica must have replayed to reflect it. Without a replica there is nothing to publish.
    pub(crate) async fn committed(&self) {
        if self.replica.is_none() {
            return;
        }
        let lsn = match db::wal::current_position(&self.primary).await {
            Ok(lsn) => lsn,
            Err(error) => {
                // Its position is unknown: this instance trusts no replica until a later
                // publication succeeds, which covers this write too.
                tracing::warn!(%error, "could not read the primary's WAL position after a write");
                u64::MAX
            }
        };
        if lsn == u64::MAX || !self.cache.publish_lsn(lsn).await {
            self.unpublished.fetch_max(lsn, Ordering::AcqRel);
        }
    }

    /// Where a read that must reflect every acknowledged write goes now. Run it there, then
    /// hand its result to [`Self::retry_on_primary`].
    pub(crate) async fn route(&self) -> Route {
        let Some(replica) = &self.replica else {
            return Route::primary(&self.primary, None);
        };
        match self.replica_may_serve(replica).await {
            Ok(()) => Route {
                pool: replica.pool.clone(),
                on_replica: true,
                reason: None,
            },
            Err(reason) => Route::primary(&self.primary, Some(reason)),
        }
    }

    /// Counts where a read went; `true` when it failed on the replica and must run again on
    /// the primary (reads change nothing, so running one twice is harmless).
    pub(crate) fn retry_on_primary<T, E: std::fmt::Display>(
        &self,
        route: &Route,
        result: &Result<T, E>,
    ) -> bool {
        let Some(replica) = &self.replica else {
            return false;
        };
        match (route.on_replica, result) {
            (true, Ok(_)) => {
                replica.breaker.record_success();
                self.count("replica", "replayed");
                false
            }
            (true, Err(error)) => {
                replica.breaker.record_failure();
                tracing::warn!(%error, "a read failed on the replica; reading the primary");
                self.count("primary", "failed");
                true
            }
            (false, _) => {
                self.count("primary", route.reason.unwrap_or("primary"));
                false
            }
        }
    }

    pub(crate) fn primary(&self) -> &PgPool {
        &self.primary
    }

    /// `Ok` when the replica may serve a read now; otherwise why not.
    async fn replica_may_serve(&self, replica: &Replica) -> Result<(), &'static str> {
        if !self.publish_pending().await {
            return Err("unpublished");
        }
        if !replica.breaker.allow() {
            return Err("unavailable");
        }
        let required = self.cache.required_lsn().await.ok_or("unknown")?;
        if replica.replayed.load(Ordering::Acquire) >= required {
            return Ok(());
        }
        match db::wal::replayed_position(&replica.pool).await {
            Ok(Some(replayed)) => {
                replica.breaker.record_success();
                replica.replayed.fetch_max(replayed, Ordering::AcqRel);
                if replayed >= required {
                    Ok(())
                } else {
                    Err("lagging")
                }
            }
            // Not a standby (promoted, or misconfigured): it cannot say what it has replayed.
            Ok(None) => Err("not_a_standby"),
            Err(error) => {
                replica.breaker.record_failure();
                tracing::warn!(%error, "the replica did not answer; reading the primary");
                Err("unavailable")
            }
        }
    }

    /// Publishes a position this instance failed to publish, every 200 ms until it succeeds,
    /// so other instances learn it even if this one serves no reads (docs/scale.md).
    pub(crate) fn spawn_retry_task(self: &Arc<Self>) {
        if self.replica.is_none() {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let Some(reads) = weak.upgrade() else { return };
                if reads.unpublished.load(Ordering::Acquire) != 0 {
                    reads.publish_pending().await;
                }
            }
        });
    }

    /// Publishes a position this instance failed to publish; `true` when none is left.
    async fn publish_pending(&self) -> bool {
        let pending = self.unpublished.load(Ordering::Acquire);
        if pending == 0 {
            return true;
        }
        let lsn = match pending {
            u64::MAX => match db::wal::current_position(&self.primary).await {
                Ok(lsn) => lsn,
                Err(_) => return false,
            },
            lsn => lsn,
        };
        if !self.cache.publish_lsn(lsn).await {
            return false;
        }
        // A later failure may have raised it meanwhile; that one stays.
        let _ = self
            .unpublished
            .compare_exchange(pending, 0, Ordering::AcqRel, Ordering::Acquire);
        self.unpublished.load(Ordering::Acquire) == 0
    }

    fn count(&self, target: &'static str, reason: &'static str) {
        self.metrics
            .db_reads
            .get_or_create(&ReadLabels { target, reason })
            .inc();
    }
}
