//! The statistics cache: the whole caching strategy lives in this folder, and
//! `docs/cache.md` explains why it is built this way.
//!
//! Handlers call one function, [`Cache::get_or_compute`], and writes call one,
//! [`Cache::after_commit`], once their transaction has committed: a create brings the entries it
//! falls in up to date (live ingest), any other write removes them. Nothing here returns an
//! error a client sees: a failing backend is logged, counted, skipped (`X-Cache: BYPASS`)
//! and, after repeated failures, not even tried until a probe succeeds.

mod backend;
pub(crate) mod breaker;
pub(crate) mod entry;
pub(crate) mod key;
mod live_updates;
mod lsn;
mod memory;
mod redis_backend;
mod shards;
pub(crate) mod single_flight;
mod stats;

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;

pub(crate) use entry::Payload;
pub(crate) use key::{CacheKey, Endpoint, Invalidation, Touch};
pub(crate) use stats::CacheStats;

use backend::Backend;
use live_updates::{Combiner, parse_record};

use crate::config::Settings;
use crate::domain::{LiveWrite, Snapshot};
use crate::metrics::{EndpointLabels, Metrics, OperationLabels};
use breaker::Breaker;
use entry::{Entry, Meta};
use memory::MemoryBackend;
use redis_backend::RedisBackend;
use shards::{CLUSTER_SHARDS, Shard, shard_of};
use single_flight::SingleFlight;

/// Failures in a row that open the circuit, and how long it then stays open.
const BREAKER_THRESHOLD: u32 = 3;
const BREAKER_COOLDOWN: Duration = Duration::from_millis(1000);
/// How often remembered (failed) invalidations are retried in the background.
const RETRY_INTERVAL: Duration = Duration::from_millis(200);
const OPERATIONS: [&str; 11] = [
    "get",
    "generations",
    "store",
    "invalidate",
    "append",
    "update",
    "replicate",
    "lsn",
    "clear",
    "ping",
    "info",
];
/// Rounds of catching up with creates logged while an answer was computed, before giving up on
/// storing it (each round reads only what was logged since the previous one).
const MAX_CATCH_UP_ROUNDS: usize = 8;
/// Rounds of compare-and-set on the entries a create updates, when other creates update them at
/// the same moment; an entry still contended after them is removed instead.
const MAX_UPDATE_ROUNDS: usize = 4;
/// Creates kept in the write log for answers still being computed; a computation that falls
/// further behind is not stored. At 250 creates/s this is 80 s.
pub(crate) const WRITE_LOG_LENGTH: u64 = 20_000;

#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheError {
    #[error("cache backend error: {0}")]
    Backend(String),
    #[error("cache operation timed out")]
    Timeout,
}

/// How a statistics answer was obtained, as `X-Cache` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheStatus {
    Hit,
    Miss,
    Bypass,
}

impl CacheStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Bypass => "BYPASS",
        }
    }
}

/// Whether a request accepts a cached answer (`Cache-Control: no-cache` does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freshness {
    AcceptCached,
    Recompute,
}

/// What a store asks of a backend; see the store script in `redis_backend.rs`.
pub(crate) struct StoreRequest<'a> {
    entry_key: &'a str,
    value: &'a [u8],
    ttl_secs: u64,
    /// (generation key, value read before computing)
    generations: &'a [(String, String)],
    /// The write log's position the value is caught up with.
    seq: u64,
    /// (index hash, index expiry) of each tag
    index_keys: Vec<(String, String)>,
    scope: String,
    index_ttl_secs: u64,
}

/// What a backend did with a store.
pub(crate) enum StoreOutcome {
    Stored,
    /// A write invalidated the entry's tags, or the log lost what the value would need.
    Refused,
    /// Creates were logged since the value's position: these, up to `seq`.
    Behind {
        seq: u64,
        records: Vec<Vec<u8>>,
    },
}

/// What a backend did with one compare-and-set of a live update.
pub(crate) enum Replaced {
    Done,
    Gone,
    /// Someone else rewrote the entry first; this is what it holds now.
    Changed(Vec<u8>),
}

/// What creates ask of a backend: log them (consecutive positions, in this order) and return
/// the entries they fall in.
pub(crate) struct AppendRequest {
    records: Vec<Vec<u8>>,
    /// Per tag touched: (index hash, index expiry), and the spans written there.
    indexes: Vec<((String, String), Vec<key::Span>)>,
    log_ttl_secs: u64,
}

/// What a miss computed: the answer, and the state and snapshot that let creates update it.
pub(crate) struct Fresh {
    pub(crate) body: Vec<u8>,
    pub(crate) live: Option<LiveSeed>,
}

/// The snapshot an answer was computed in, and its state for live updates.
pub(crate) type LiveSeed = (Snapshot, Vec<u8>);

/// Brings one cached answer up to date with creates; the statistics layer implements it, so
/// the cache never needs to know what an answer means.
pub(crate) trait LiveApplier: Send + Sync {
    /// The new (body, state) after `writes` (each of which the answer lacks; those that do not
    /// change it are ignored), or `None` when the state cannot absorb them exactly (the entry is
    /// then removed).
    fn apply(&self, body: &[u8], state: &[u8], writes: &[LiveWrite]) -> Option<(Vec<u8>, Vec<u8>)>;
}

/// A committed write, as the cache must hear of it.
#[derive(Debug, Clone)]
pub enum Committed {
    /// One created activity: applied to the entries it falls in.
    Create(LiveWrite),
    /// Anything else (batches, updates, deletes): the entries it can change are removed.
    Touched(Vec<Touch>),
}

/// State of the cache as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CacheHealth {
    Ok,
    Degraded,
    Memory,
}

impl CacheHealth {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Memory => "memory",
        }
    }
}

/// A computation's answer, how it was obtained, and the write-log position it includes. The
/// cache never looks at a computation's error: it hands the same one to every request that
/// joined the computation, whatever its type (see `get_or_compute`).
type SharedResult = Result<(Arc<Payload>, CacheStatus, u64), Arc<dyn Any + Send + Sync>>;
/// A test-only pause between a create's commit and its cache update (the same shape as
/// [`StoreHook`]).
pub type WriteHook = StoreHook;
/// A test-only pause between computing an answer and storing it, to force the stale-set race.
pub type StoreHook = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

pub struct Cache {
    backend: Backend,
    /// Where keys live (`shards.rs`): one shard on one Redis and in process, several on a
    /// cluster, each with its own breaker and remembered invalidations.
    shards: Vec<Shard>,
    ttl: Duration,
    op_timeout: Duration,
    flights: SingleFlight<SharedResult>,
    creates: Combiner,
    /// The newest published commit position, for the in-process cache (`lsn.rs`).
    local_lsn: std::sync::atomic::AtomicU64,
    metrics: Arc<Metrics>,
    applier: Arc<dyn LiveApplier>,
    before_store: Mutex<Option<StoreHook>>,
    before_update: Mutex<Option<WriteHook>>,
}

impl Cache {
    pub(crate) fn new(
        settings: &Settings,
        metrics: Arc<Metrics>,
        applier: Arc<dyn LiveApplier>,
    ) -> Result<Self, CacheError> {
        // Every series exists from the start (at 0), so dashboards and rate() see no gaps.
        for endpoint in Endpoint::ALL.map(Endpoint::as_str) {
            let labels = EndpointLabels { endpoint };
            metrics.cache_hits.get_or_create(&labels).inc_by(0);
            metrics.cache_misses.get_or_create(&labels).inc_by(0);
            metrics.cache_bypasses.get_or_create(&labels).inc_by(0);
        }
        for operation in OPERATIONS {
            metrics
                .cache_errors
                .get_or_create(&OperationLabels { operation })
                .inc_by(0);
        }
        let prefix = &settings.cache_prefix;
        let seeds = settings.redis_cluster_seeds();
        let breaker = || Breaker::new(BREAKER_THRESHOLD, BREAKER_COOLDOWN);
        let (backend, shards) = match (&seeds[..], &settings.redis_url) {
            ([], Some(url)) => (
                Backend::Redis(RedisBackend::new(url, settings.cache_op_timeout)?),
                shards::single(prefix, breaker),
            ),
            ([], None) => (
                Backend::Memory(MemoryBackend::new(settings.cache_ttl)),
                shards::single(prefix, breaker),
            ),
            (seeds, _) => (
                Backend::Redis(RedisBackend::cluster(seeds, settings.cache_op_timeout)?),
                shards::spread(prefix, CLUSTER_SHARDS, breaker),
            ),
        };
        Ok(Self {
            backend,
            shards,
            ttl: settings.cache_ttl,
            op_timeout: settings.cache_op_timeout,
            flights: SingleFlight::default(),
            creates: Combiner::default(),
            local_lsn: std::sync::atomic::AtomicU64::new(0),
            metrics,
            applier,
            before_store: Mutex::new(None),
            before_update: Mutex::new(None),
        })
    }

    pub(crate) fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Redis(r) if r.is_cluster() => "redis-cluster",
            Backend::Redis(_) => "redis",
            Backend::Memory(_) => "memory",
        }
    }

    fn shard_for(&self, key: &CacheKey) -> &Shard {
        &self.shards[shard_of(key, self.shards.len())]
    }

    /// Retries failed invalidations in the background until the cache is dropped.
    pub(crate) fn spawn_retry_task(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RETRY_INTERVAL);
            loop {
                tick.tick().await;
                let Some(cache) = weak.upgrade() else { return };
                for shard in &cache.shards {
                    if shard.has_pending() {
                        cache.flush_pending(shard).await;
                    }
                }
            }
        });
    }

    /// The answer for `key`: from the cache when it holds one, else computed by `compute`
    /// (once per key and generations on this instance, however many ask) and stored, brought up
    /// to date with the creates logged while it was computed, unless a write invalidated the
    /// key meanwhile.
    pub(crate) async fn get_or_compute<F, Fut, E>(
        &self,
        key: &CacheKey,
        freshness: Freshness,
        compute: F,
    ) -> Result<(Arc<Payload>, CacheStatus), Arc<E>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Fresh, E>>,
        E: Send + Sync + 'static,
    {
        let endpoint = key.endpoint.as_str();
        let shard = self.shard_for(key);
        // The miss and bypass paths hold the aggregate query's future, many kilobytes; boxed,
        // they keep the future of a HIT small, and a HIT no longer copies them around.
        if !self.ready_for_reads(shard).await {
            return Box::pin(self.bypass(endpoint, &compute)).await;
        }
        let entry_key = key.entry_key(&shard.prefix);
        if freshness == Freshness::AcceptCached {
            match self.cached(shard, &entry_key).await {
                Ok(Some(payload)) => {
                    self.count_hit(endpoint);
                    return Ok((Arc::new(payload), CacheStatus::Hit));
                }
                Ok(None) => {}
                Err(_) => return Box::pin(self.bypass(endpoint, &compute)).await,
            }
        }
        Box::pin(self.compute_and_store(shard, key, entry_key, freshness, &compute)).await
    }

    /// The miss path: reads the generations and the write log's position, computes once per
    /// key and generations (single flight), and stores the answer unless a write invalidated it.
    async fn compute_and_store<F, Fut, E>(
        &self,
        shard: &Shard,
        key: &CacheKey,
        entry_key: String,
        freshness: Freshness,
        compute: &F,
    ) -> Result<(Arc<Payload>, CacheStatus), Arc<E>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Fresh, E>>,
        E: Send + Sync + 'static,
    {
        let endpoint = key.endpoint.as_str();
        let generation_keys: Vec<String> = key
            .tags()
            .iter()
            .map(|t| t.generation_key(&shard.prefix))
            .collect();
        let Ok((seq, generations)) = self
            .bounded(
                shard,
                "generations",
                self.backend_position(shard, &generation_keys),
            )
            .await
        else {
            return self.bypass(endpoint, compute).await;
        };
        // A request that starts after a write's invalidation never joins a computation that
        // began before it: the generations are part of the flight's key.
        let flight_key = format!("{entry_key}#{}", generations.join(","));
        let generations: Vec<(String, String)> =
            generation_keys.into_iter().zip(generations).collect();
        let result = self
            .flights
            .run(flight_key, || async {
                // A request that missed just before the previous flight stored its answer
                // finds it here instead of computing it a second time.
                if freshness == Freshness::AcceptCached
                    && let Ok(Some(payload)) = self.cached(shard, &entry_key).await
                {
                    return Ok((Arc::new(payload), CacheStatus::Hit, u64::MAX));
                }
                let fresh = self
                    .timed_compute(endpoint, compute)
                    .await
                    .map_err(|e| Arc::new(e) as Arc<dyn Any + Send + Sync>)?;
                let (payload, includes, status) = self
                    .store(shard, key, &entry_key, &generations, seq, fresh)
                    .await;
                Ok((Arc::new(payload), status, includes))
            })
            .await;
        let (payload, status, includes) = match result {
            Ok(answer) => answer,
            // A flight's error is of the type its first request computes with; a request that
            // joined with another type (no caller does) computes on its own.
            Err(shared) => match shared.downcast::<E>() {
                Ok(error) => return Err(error),
                Err(_) => return self.bypass(endpoint, compute).await,
            },
        };
        if includes < seq {
            // Joined a computation that began before a create this request must see (promise
            // 1): the stored entry has it, since creates update entries before they answer.
            if let Ok(Some(payload)) = self.cached(shard, &entry_key).await {
                self.count_hit(endpoint);
                return Ok((Arc::new(payload), CacheStatus::Hit));
            }
            return self.bypass(endpoint, compute).await;
        }
        let labels = EndpointLabels { endpoint };
        match status {
            CacheStatus::Hit => self.metrics.cache_hits.get_or_create(&labels).inc(),
            CacheStatus::Miss => self.metrics.cache_misses.get_or_create(&labels).inc(),
            CacheStatus::Bypass => self.metrics.cache_bypasses.get_or_create(&labels).inc(),
        };
        Ok((payload, status))
    }

    /// Tells the cache about a committed write, and returns once the cache reflects it (or
    /// has remembered that it must). The work runs in its own task, so that nothing that drops
    /// the request's future (a server shutting down, a timeout around the handler) can cancel
    /// the cache update of a write that committed.
    /// Answers whether the cache reflects it now (`false`: remembered for later).
    pub async fn after_commit(self: &Arc<Self>, write: Committed) -> bool {
        let cache = self.clone();
        let task = tokio::spawn(async move {
            match write {
                Committed::Create(write) => cache.apply_create(write).await,
                Committed::Touched(touches) => cache.invalidate(&touches).await,
            }
        });
        task.await.unwrap_or_else(|error| {
            tracing::error!(%error, "cache update after a write failed to run");
            false
        })
    }

    async fn remove(&self, shard: &Shard, keys: Vec<String>) -> Result<(), CacheError> {
        if keys.is_empty() {
            return Ok(());
        }
        let n = self
            .bounded(shard, "update", self.backend_remove(&keys))
            .await?;
        self.metrics.cache_invalidated_keys.inc_by(n);
        Ok(())
    }

    /// Removes every entry the touched activities can change, in every shard, and answers
    /// whether it did now. Never fails the write: an invalidation that cannot be applied to a
    /// shard now is remembered there, and reads of that shard bypass the cache until it has been.
    async fn invalidate(&self, touches: &[Touch]) -> bool {
        let inv = Invalidation::from_touches(touches);
        if inv.is_empty() {
            return true;
        }
        let done = futures_util::future::join_all(
            self.shards
                .iter()
                .map(|shard| self.invalidate_in(shard, inv.clone())),
        )
        .await;
        done.into_iter().all(|d| d)
    }

    /// Applies `inv` to one shard (and waits for its replica on a cluster), or remembers it.
    async fn invalidate_in(&self, shard: &Shard, inv: Invalidation) -> bool {
        if shard.has_pending() || !shard.breaker.allow() {
            shard.remember(inv);
            self.flush_pending(shard).await;
            return false;
        }
        match self
            .bounded(shard, "invalidate", self.backend_invalidate(shard, &inv))
            .await
        {
            Ok(n) => {
                self.metrics.cache_invalidated_keys.inc_by(n);
                if self.replicated(shard).await {
                    return true;
                }
                shard.remember(inv);
                false
            }
            Err(_) => {
                shard.remember(inv);
                false
            }
        }
    }

    /// Has what this instance wrote to `shard` reached a replica (where one exists)? See
    /// `RedisBackend::replicated`.
    async fn replicated(&self, shard: &Shard) -> bool {
        let limit = self.op_timeout * 2;
        self.bounded_by(shard, "replicate", limit, self.backend_replicated(shard))
            .await
            .is_ok()
    }

    /// Drops every entry under the prefix.
    pub(crate) async fn clear(&self) -> Result<u64, CacheError> {
        let removed = match &self.backend {
            Backend::Redis(r) => {
                let mut removed = 0;
                for shard in &self.shards {
                    removed += self
                        .bounded_by(shard, "clear", Duration::from_secs(30), r.clear(shard))
                        .await?;
                }
                removed
            }
            Backend::Memory(m) => m.clear(),
        };
        tracing::info!(removed, shards = self.shards.len(), "cache cleared");
        Ok(removed)
    }

    /// Refuses a Redis that may evict keys: an evicted index or generation would let a write
    /// miss entries it changes, and stale answers be served (docs/cache.md, "Eviction"). A full
    /// Redis under `noeviction` only costs BYPASS. A Redis that cannot be asked is let through
    /// with a warning, so a cache outage at start does not stop the service (promise 5).
    pub(crate) async fn check_eviction_policy(&self) -> Result<(), CacheError> {
        let Backend::Redis(r) = &self.backend else {
            return Ok(());
        };
        // Every master must keep every key: on a cluster each is asked.
        match tokio::time::timeout(Duration::from_secs(2), r.eviction_settings()).await {
            Ok(Ok((maxmemory, policy))) if maxmemory > 0 && policy != "noeviction" => {
                Err(CacheError::Backend(format!(
                    "Redis evicts keys (maxmemory-policy {policy}, maxmemory {maxmemory}): an evicted index or counter would serve stale statistics; set maxmemory-policy noeviction, or maxmemory 0"
                )))
            }
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not read Redis' maxmemory-policy; it must be noeviction (or maxmemory 0)");
                Ok(())
            }
            Err(_) => {
                tracing::warn!(
                    "Redis did not answer at start; its maxmemory-policy must be noeviction (or maxmemory 0)"
                );
                Ok(())
            }
        }
    }

    pub(crate) async fn health(&self) -> CacheHealth {
        match &self.backend {
            Backend::Memory(_) => CacheHealth::Memory,
            Backend::Redis(_) if self.shards.iter().any(|s| !s.breaker.allow()) => {
                CacheHealth::Degraded
            }
            Backend::Redis(r) => match self.bounded(&self.shards[0], "ping", r.ping()).await {
                Ok(()) if !self.shards.iter().any(Shard::has_pending) => CacheHealth::Ok,
                _ => CacheHealth::Degraded,
            },
        }
    }

    /// Drops the write log (the recent creates, with their users' ids), for an erasure: no copy
    /// of an erased user's data stays in the cache. Stores that needed to catch up from it are
    /// refused once (BYPASS). The log expires on its own within `max(TTL, 10 min)` if Redis
    /// cannot be reached now.
    pub(crate) async fn forget_write_log(&self) {
        let result = match &self.backend {
            Backend::Redis(r) => {
                let mut result = Ok(());
                for shard in &self.shards {
                    let dropped = self
                        .bounded(shard, "update", r.forget_write_log(shard))
                        .await;
                    result = result.and(dropped);
                }
                result
            }
            Backend::Memory(m) => {
                m.forget_write_log();
                Ok(())
            }
        };
        if let Err(error) = result {
            tracing::warn!(%error, "could not drop the cache's write log after an erasure; it expires on its own");
        }
    }

    /// Invalidations remembered because the cache could not take them yet.
    pub(crate) fn pending_invalidations(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.pending.lock().map(|p| p.len()).unwrap_or(0))
            .sum()
    }

    /// Memory Redis uses and its limit (see `RedisBackend::memory`); `None` for the in-process
    /// cache or when Redis does not answer in time.
    pub(crate) async fn redis_memory(&self) -> Option<(u64, u64)> {
        match &self.backend {
            Backend::Redis(r) => self.bounded(&self.shards[0], "info", r.memory()).await.ok(),
            Backend::Memory(_) => None,
        }
    }

    /// Installs (or removes) a pause between a create's commit and its cache update. For tests only.
    pub fn set_before_update_hook(&self, hook: Option<WriteHook>) {
        if let Ok(mut h) = self.before_update.lock() {
            *h = hook;
        }
    }

    /// Installs (or removes) a pause between computing and storing. For tests only.
    pub fn set_before_store_hook(&self, hook: Option<StoreHook>) {
        if let Ok(mut h) = self.before_store.lock() {
            *h = hook;
        }
    }

    async fn bypass<F, Fut, E>(
        &self,
        endpoint: &'static str,
        compute: &F,
    ) -> Result<(Arc<Payload>, CacheStatus), Arc<E>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Fresh, E>>,
    {
        let fresh = self
            .timed_compute(endpoint, compute)
            .await
            .map_err(Arc::new)?;
        self.metrics
            .cache_bypasses
            .get_or_create(&EndpointLabels { endpoint })
            .inc();
        Ok((Arc::new(Payload::new(fresh.body)), CacheStatus::Bypass))
    }

    async fn timed_compute<F, Fut, E>(
        &self,
        endpoint: &'static str,
        compute: &F,
    ) -> Result<Fresh, E>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Fresh, E>>,
    {
        let started = Instant::now();
        let fresh = compute().await?;
        self.metrics
            .aggregate_duration
            .get_or_create(&EndpointLabels { endpoint })
            .observe(started.elapsed().as_secs_f64());
        Ok(fresh)
    }

    /// Stores a computed answer, first applying the creates logged since `seq` that its
    /// snapshot did not see. Returns the answer as stored (or as computed, when it could not be
    /// stored), the write-log position it includes, and `Bypass` if the cache failed (`Miss`
    /// otherwise, stored or refused by a racing write).
    async fn store(
        &self,
        shard: &Shard,
        key: &CacheKey,
        entry_key: &str,
        generations: &[(String, String)],
        mut seq: u64,
        fresh: Fresh,
    ) -> (Payload, u64, CacheStatus) {
        let hook = self.before_store.lock().ok().and_then(|h| h.clone());
        if let Some(hook) = hook {
            hook().await;
        }
        let mut payload = Payload::new(fresh.body);
        let mut live = fresh.live;
        // Jitter spreads the expiry of entries filled together (by a prewarm, say), so they
        // are not all recomputed in the same second.
        let jitter = rand::rng().random_range(0..=self.ttl.as_secs() / 10);
        let ttl_secs = self.ttl.as_secs() + jitter;
        let index_keys: Vec<(String, String)> = key
            .tags()
            .iter()
            .map(|t| t.index_keys(&shard.prefix))
            .collect();
        let scope = key.scope().encode();
        for _ in 0..MAX_CATCH_UP_ROUNDS {
            let value = Entry {
                payload: payload.clone(),
                live: live.as_ref().map(|(snapshot, state)| {
                    (
                        Meta {
                            snapshot: snapshot.clone(),
                            seq,
                        },
                        state.clone(),
                    )
                }),
            }
            .encode();
            let request = StoreRequest {
                entry_key,
                value: &value,
                ttl_secs,
                generations,
                seq,
                index_keys: index_keys.clone(),
                scope: scope.clone(),
                // An index must outlive every entry it lists, or a write could no longer find them.
                index_ttl_secs: self.ttl.as_secs() * 11 / 10 + 60,
            };
            match self
                .bounded(shard, "store", self.backend_store(shard, &request))
                .await
            {
                Ok(StoreOutcome::Stored) => return (payload, seq, CacheStatus::Miss),
                Err(_) => return (payload, seq, CacheStatus::Bypass),
                Ok(StoreOutcome::Refused) => {
                    tracing::debug!(
                        key = entry_key,
                        "not stored: a write invalidated it while it was computed"
                    );
                    return (payload, seq, CacheStatus::Miss);
                }
                Ok(StoreOutcome::Behind { seq: now, records }) => {
                    match self.catch_up(key, &payload, live.take(), &records) {
                        Some((caught_up, state)) => {
                            payload = caught_up;
                            live = state;
                            seq = now;
                        }
                        None => return (payload, seq, CacheStatus::Miss),
                    }
                }
            }
        }
        (payload, seq, CacheStatus::Miss)
    }

    /// Applies the logged creates an answer's snapshot did not see. `None` when one of them
    /// changes an answer that cannot absorb it.
    fn catch_up(
        &self,
        key: &CacheKey,
        payload: &Payload,
        live: Option<LiveSeed>,
        records: &[Vec<u8>],
    ) -> Option<(Payload, Option<LiveSeed>)> {
        let mut lacking = Vec::new();
        for raw in records {
            let write = parse_record(raw)?;
            if key.is_changed_by(&write) {
                lacking.push(write);
            }
        }
        let Some((snapshot, state)) = live else {
            // Without a state nothing can be applied: only an answer no create changed stores.
            return lacking.is_empty().then(|| (payload.clone(), None));
        };
        lacking.retain(|w| !snapshot.sees(w.xid));
        if lacking.is_empty() {
            return Some((payload.clone(), Some((snapshot, state))));
        }
        let (body, state) = self.applier.apply(&payload.body, &state, &lacking)?;
        Some((Payload::new(body), Some((snapshot, state))))
    }

    fn generation_ttl_secs(&self) -> u64 {
        (self.ttl.as_secs() * 2).max(86_400)
    }

    /// May reads of `shard` use the cache? Not while an invalidation of it is remembered
    /// (one last try first), nor while its breaker is open.
    async fn ready_for_reads(&self, shard: &Shard) -> bool {
        if shard.has_pending() {
            self.flush_pending(shard).await;
            if shard.has_pending() {
                return false;
            }
        }
        shard.breaker.allow()
    }

    /// Applies every invalidation remembered for `shard` in one script call.
    async fn flush_pending(&self, shard: &Shard) {
        let Ok(_only_one_flush) = shard.flushing.try_lock() else {
            return;
        };
        let (count, merged) = {
            let Ok(pending) = shard.pending.lock() else {
                return;
            };
            let mut merged = Invalidation::default();
            for inv in pending.iter() {
                merged.merge(inv.clone());
            }
            (pending.len(), merged)
        };
        if count == 0 || !shard.breaker.allow() {
            return;
        }
        if let Ok(n) = self
            .bounded(shard, "invalidate", self.backend_invalidate(shard, &merged))
            .await
            && self.replicated(shard).await
        {
            self.metrics.cache_invalidated_keys.inc_by(n);
            if let Ok(mut pending) = shard.pending.lock() {
                pending.drain(..count);
            }
            tracing::info!(
                count,
                removed = n,
                shard = shard.index,
                "remembered cache invalidations applied"
            );
        }
    }
}

/// The form of a write-log record, for backends that log in process.
fn format_record(seq: u64, record: &[u8]) -> Vec<u8> {
    let mut out = format!("{seq}:").into_bytes();
    out.extend_from_slice(record);
    out
}
