//! The Prometheus registry this application owns (never a process-global one, so several
//! applications can run in one test process) and the series the contract names.
//! Recording happens where the event happens (the cache, the HTTP middleware); this module
//! only defines the series and encodes them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sqlx::PgPool;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EndpointLabels {
    pub(crate) endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OperationLabels {
    pub(crate) operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub(crate) method: String,
    pub(crate) route: String,
    pub(crate) status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub(crate) method: String,
    pub(crate) route: String,
}

/// Where a read that may go to the replica went, and why.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReadLabels {
    pub(crate) target: &'static str,
    pub(crate) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct BuildLabels {
    pub(crate) version: &'static str,
}

/// What `/metrics` reads from the cache at scrape time.
pub(crate) struct CacheGauges {
    pub(crate) pending_invalidations: usize,
    /// Redis' memory in use and its limit; `None` without Redis or when it did not answer.
    pub(crate) redis_memory: Option<(u64, u64)>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabels {
    pub(crate) state: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs to about 3 s: a cache hit sits at the bottom, a cold 366-day aggregate at the top.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) cache_hits: Family<EndpointLabels, Counter>,
    pub(crate) cache_misses: Family<EndpointLabels, Counter>,
    pub(crate) cache_bypasses: Family<EndpointLabels, Counter>,
    pub(crate) cache_errors: Family<OperationLabels, Counter>,
    pub(crate) cache_invalidated_keys: Counter,
    pub(crate) cache_updated_entries: Counter,
    pub(crate) http_requests: Family<RequestLabels, Counter>,
    pub(crate) http_request_duration: HistogramFamily<RouteLabels>,
    pub(crate) aggregate_duration: HistogramFamily<EndpointLabels>,
    pub(crate) db_reads: Family<ReadLabels, Counter>,
    db_pool_connections: Family<StateLabels, Gauge>,
    cache_pending_invalidations: Gauge,
    redis_memory_used: Gauge,
    redis_memory_limit: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let m = Self {
            cache_hits: Family::default(),
            cache_misses: Family::default(),
            cache_bypasses: Family::default(),
            cache_errors: Family::default(),
            cache_invalidated_keys: Counter::default(),
            cache_updated_entries: Counter::default(),
            http_requests: Family::default(),
            http_request_duration: Family::new_with_constructor(latency_histogram),
            aggregate_duration: Family::new_with_constructor(latency_histogram),
            db_reads: Family::default(),
            db_pool_connections: Family::default(),
            cache_pending_invalidations: Gauge::default(),
            redis_memory_used: Gauge::default(),
            redis_memory_limit: Gauge::default(),
            registry: Registry::default(),
        };
        // Counters get their `_total` suffix from the encoder.
        registry.register(
            "analytics_cache_hits",
            "Statistics answered from the cache",
            m.cache_hits.clone(),
        );
        registry.register(
            "analytics_cache_misses",
            "Statistics computed and stored",
            m.cache_misses.clone(),
        );
        registry.register(
            "analytics_cache_bypasses",
            "Statistics computed without the cache (unavailable, skipped or refused)",
            m.cache_bypasses.clone(),
        );
        registry.register(
            "analytics_cache_errors",
            "Failed cache operations",
            m.cache_errors.clone(),
        );
        registry.register(
            "analytics_cache_invalidated_keys",
            "Cache entries removed by writes",
            m.cache_invalidated_keys.clone(),
        );
        registry.register(
            "analytics_cache_updated_entries",
            "Cache entries brought up to date by a create instead of being removed",
            m.cache_updated_entries.clone(),
        );
        registry.register(
            "analytics_http_requests",
            "HTTP requests answered",
            m.http_requests.clone(),
        );
        registry.register(
            "analytics_http_request_duration_seconds",
            "Time to answer an HTTP request",
            m.http_request_duration.clone(),
        );
        registry.register(
            "analytics_aggregate_duration_seconds",
            "Time to compute one statistics answer in Postgres",
            m.aggregate_duration.clone(),
        );
        registry.register(
            "analytics_db_reads",
            "Reads that may go to DATABASE_REPLICA_URL, by where they went (primary, replica) and why",
            m.db_reads.clone(),
        );
        registry.register(
            "analytics_db_pool_connections",
            "Database pool connections by state",
            m.db_pool_connections.clone(),
        );
        registry.register(
            "analytics_cache_pending_invalidations",
            "Invalidations remembered because Redis could not take them; statistics bypass the cache until they drain",
            m.cache_pending_invalidations.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "analytics_build_info",
            "Always 1; the running version as a label",
            build_info,
        );
        Self { registry, ..m }
    }

    /// Registers the Redis memory gauges: only a service that runs on Redis has them, so an
    /// in-process cache does not report a made-up zero.
    pub(crate) fn register_redis_gauges(&mut self) {
        self.registry.register(
            "analytics_redis_memory_used_bytes",
            "Memory Redis uses (INFO memory: used_memory)",
            self.redis_memory_used.clone(),
        );
        self.registry.register(
            "analytics_redis_memory_limit_bytes",
            "Redis' maxmemory, or the machine's memory when maxmemory is unset",
            self.redis_memory_limit.clone(),
        );
    }

    /// The text exposition, with the pool and cache gauges read at this moment.
    pub(crate) fn encode(&self, pool: &PgPool, cache: &CacheGauges) -> String {
        self.cache_pending_invalidations
            .set(i64::try_from(cache.pending_invalidations).unwrap_or(i64::MAX));
        if let Some((used, limit)) = cache.redis_memory {
            self.redis_memory_used
                .set(i64::try_from(used).unwrap_or(i64::MAX));
            self.redis_memory_limit
                .set(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        let idle = pool.num_idle() as i64;
        let size = i64::from(pool.size());
        let max = i64::from(pool.options().get_max_connections());
        for (state, value) in [("idle", idle), ("active", size - idle), ("max", max)] {
            self.db_pool_connections
                .get_or_create(&StateLabels { state })
                .set(value);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
