//! `AppState`: what every handler, extractor and service can reach. It lives apart from
//! `startup` (which wires the HTTP server) so that the layers that use it never import the module
//! that imports them.

use std::sync::Arc;

use sqlx::PgPool;

use crate::auth::KeyStore;
use crate::cache::Cache;
use crate::config::Settings;
use crate::db;
use crate::db::partitions::KnownPartitions;
use crate::domain::WriteWindow;
use crate::metrics::Metrics;
use crate::pending_updates::PendingUpdates;
use crate::rate_limiter::RateLimiter;
use crate::read_routing::ReadRouting;

/// What every handler can reach.
pub struct AppState {
    pub pool: PgPool,
    pub cache: Arc<Cache>,
    pub(crate) keys: KeyStore,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) rate_limiter: RateLimiter,
    pub pending: Arc<PendingUpdates>,
    /// Where reads that may use `DATABASE_REPLICA_URL` go.
    pub(crate) reads: Arc<ReadRouting>,
    /// The months whose partitions exist, so writes rarely need to ask.
    pub partitions: KnownPartitions,
    /// `RETENTION_DAYS`.
    pub(crate) retention_days: Option<u32>,
    /// Stores of day parts running or waiting in the background (`statistics::store_parts_later`).
    pub(crate) part_stores: Arc<crate::statistics::PartStores>,
}

impl AppState {
    /// State without an HTTP server, for the commands that use the cache (`prewarm`).
    pub(crate) fn new(settings: &Settings) -> anyhow::Result<Self> {
        let pool = db::pool(settings)?;
        let mut metrics = Metrics::new();
        if settings.redis_url.is_some() || !settings.redis_cluster_seeds().is_empty() {
            metrics.register_redis_gauges();
        }
        let metrics = Arc::new(metrics);
        let cache = Arc::new(Cache::new(
            settings,
            metrics.clone(),
            Arc::new(crate::statistics::live::Applier),
        )?);
        let reads = Arc::new(ReadRouting::new(
            settings,
            pool.clone(),
            cache.clone(),
            metrics.clone(),
        )?);
        Ok(Self {
            keys: KeyStore::new(db::key_pool(settings)?),
            pending: Arc::new(PendingUpdates::new(
                pool.clone(),
                cache.clone(),
                reads.clone(),
            )),
            reads,
            pool,
            cache,
            metrics,
            partitions: KnownPartitions::default(),
            retention_days: settings.retention_days,
            part_stores: Arc::default(),
            rate_limiter: RateLimiter::new(
                settings.rate_limit_per_second,
                settings.rate_limit_burst,
            ),
        })
    }

    /// What a write arriving now may date its activities at.
    pub(crate) fn write_window(&self) -> WriteWindow {
        WriteWindow {
            now: chrono::Utc::now(),
            retention_days: self.retention_days,
        }
    }
}
