//! The statistics cache: the whole caching strategy lives in this folder, and
//! `docs/cache.md` explains why it is built this way.
//!
//! Handlers call one function, [`Cache::get_or_compute`], and writes call one,
//! [`Cache::invalidate`], after their transaction has committed. Nothing here returns an
//! error a client sees: a failing backend is logged, counted, skipped (`X-Cache: BYPASS`)
//! and, after repeated failures, not even tried until a probe succeeds.

pub mod breaker;
pub mod key;
mod memory;
mod redis_backend;
pub mod single_flight;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use key::{CacheKey, Endpoint, Invalidation, Touch};

use crate::config::Settings;
use crate::error::{ApiError, ApiResult};
use crate::metrics::{EndpointLabels, Metrics, OperationLabels};
use breaker::Breaker;
use memory::MemoryBackend;
use redis_backend::RedisBackend;
use single_flight::SingleFlight;

/// Failures in a row that open the circuit, and how long it then stays open.
const BREAKER_THRESHOLD: u32 = 3;
const BREAKER_COOLDOWN: Duration = Duration::from_millis(1000);
/// How often remembered (failed) invalidations are retried in the background.
const RETRY_INTERVAL: Duration = Duration::from_millis(200);
const OPERATIONS: [&str; 6] = ["get", "generations", "store", "invalidate", "clear", "ping"];

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache backend error: {0}")]
    Backend(String),
    #[error("cache operation timed out")]
    Timeout,
}

/// How a statistics answer was obtained, as `X-Cache` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
    Bypass,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Bypass => "BYPASS",
        }
    }
}

/// Whether a request accepts a cached answer (`Cache-Control: no-cache` does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    AcceptCached,
    Recompute,
}

/// A serialized answer and its entity tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub body: Vec<u8>,
    pub etag: String,
}

const ETAG_LEN: usize = 16;

impl Payload {
    pub fn new(body: Vec<u8>) -> Self {
        let digest = Sha256::digest(&body);
        Self {
            etag: hex::encode(&digest[..ETAG_LEN / 2]),
            body,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ETAG_LEN + self.body.len());
        out.extend_from_slice(self.etag.as_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    fn decode(mut raw: Vec<u8>) -> Option<Self> {
        if raw.len() < ETAG_LEN {
            return None;
        }
        let body = raw.split_off(ETAG_LEN);
        Some(Self {
            etag: String::from_utf8(raw).ok()?,
            body,
        })
    }
}

/// What a store asks of a backend; see the store script in `redis_backend.rs`.
pub struct StoreRequest<'a> {
    entry_key: &'a str,
    value: &'a [u8],
    ttl_secs: u64,
    /// (generation key, value read before computing)
    generations: &'a [(String, String)],
    index_keys: Vec<String>,
    scope: String,
    index_ttl_secs: u64,
}

enum Backend {
    Redis(RedisBackend),
    Memory(MemoryBackend),
}

/// State of the cache as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheHealth {
    Ok,
    Degraded,
    Memory,
}

impl CacheHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Memory => "memory",
        }
    }
}

#[derive(Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct EndpointStats {
    pub hits: u64,
    pub misses: u64,
    pub bypasses: u64,
}

/// The body of `GET /api/v1/cache/stats`, counted since this instance started.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CacheStats {
    #[schema(value_type = String, examples("redis"))]
    pub backend: &'static str,
    pub hits: u64,
    pub misses: u64,
    pub bypasses: u64,
    pub hit_ratio: f64,
    pub errors: u64,
    pub invalidated_keys: u64,
    pub pending_invalidations: usize,
    #[schema(value_type = std::collections::BTreeMap<String, EndpointStats>)]
    pub by_endpoint: std::collections::BTreeMap<&'static str, EndpointStats>,
}

type SharedResult = Result<(Arc<Payload>, CacheStatus), Arc<ApiError>>;
/// A test-only pause between computing an answer and storing it, to force the stale-set race.
pub type StoreHook = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

pub struct Cache {
    backend: Backend,
    prefix: String,
    ttl: Duration,
    op_timeout: Duration,
    breaker: Breaker,
    flights: SingleFlight<SharedResult>,
    /// Invalidations that failed; until they are applied no entry is trusted.
    pending: Mutex<Vec<Invalidation>>,
    flushing: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
    before_store: Mutex<Option<StoreHook>>,
}

impl Cache {
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Result<Self, CacheError> {
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
        let backend = match &settings.redis_url {
            Some(url) => Backend::Redis(RedisBackend::new(url, settings.cache_op_timeout)?),
            None => Backend::Memory(MemoryBackend::new(settings.cache_ttl)),
        };
        Ok(Self {
            backend,
            prefix: settings.cache_prefix.clone(),
            ttl: settings.cache_ttl,
            op_timeout: settings.cache_op_timeout,
            breaker: Breaker::new(BREAKER_THRESHOLD, BREAKER_COOLDOWN),
            flights: SingleFlight::default(),
            pending: Mutex::new(Vec::new()),
            flushing: tokio::sync::Mutex::new(()),
            metrics,
            before_store: Mutex::new(None),
        })
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Redis(_) => "redis",
            Backend::Memory(_) => "memory",
        }
    }

    /// Retries failed invalidations in the background until the cache is dropped.
    pub fn spawn_retry_task(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RETRY_INTERVAL);
            loop {
                tick.tick().await;
                let Some(cache) = weak.upgrade() else { return };
                if cache.has_pending() {
                    cache.flush_pending().await;
                }
            }
        });
    }

    /// The answer for `key`: from the cache when it holds one, else computed by `compute`
    /// (once per key and generation on this instance, however many ask) and stored unless a
    /// write invalidated the key while it was being computed.
    pub async fn get_or_compute<F, Fut>(
        &self,
        key: &CacheKey,
        freshness: Freshness,
        compute: F,
    ) -> ApiResult<(Arc<Payload>, CacheStatus)>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ApiResult<Vec<u8>>>,
    {
        let endpoint = key.endpoint.as_str();
        // The miss and bypass paths hold the aggregate query's future, many kilobytes; boxed,
        // they keep the future of a HIT small, and a HIT no longer copies them around.
        if !self.ready_for_reads().await {
            return Box::pin(self.bypass(endpoint, compute)).await;
        }
        let entry_key = key.entry_key(&self.prefix);
        if freshness == Freshness::AcceptCached {
            match self.cached(&entry_key).await {
                Ok(Some(payload)) => {
                    self.metrics
                        .cache_hits
                        .get_or_create(&EndpointLabels { endpoint })
                        .inc();
                    return Ok((Arc::new(payload), CacheStatus::Hit));
                }
                Ok(None) => {}
                Err(_) => return Box::pin(self.bypass(endpoint, compute)).await,
            }
        }
        Box::pin(self.compute_and_store(key, entry_key, freshness, compute)).await
    }

    /// The miss path: reads the generations, computes once per key and generations (single
    /// flight), and stores the answer unless a write invalidated it meanwhile.
    async fn compute_and_store<F, Fut>(
        &self,
        key: &CacheKey,
        entry_key: String,
        freshness: Freshness,
        compute: F,
    ) -> ApiResult<(Arc<Payload>, CacheStatus)>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ApiResult<Vec<u8>>>,
    {
        let endpoint = key.endpoint.as_str();
        let generation_keys: Vec<String> = key
            .tags()
            .iter()
            .map(|t| t.generation_key(&self.prefix))
            .collect();
        let Ok(generations) = self
            .bounded("generations", self.backend_generations(&generation_keys))
            .await
        else {
            return self.bypass(endpoint, compute).await;
        };
        let flight_key = format!("{entry_key}#{}", generations.join(","));
        let generations: Vec<(String, String)> =
            generation_keys.into_iter().zip(generations).collect();
        let result = self
            .flights
            .run(flight_key, || async {
                // A request that missed just before the previous flight stored its answer
                // finds it here instead of computing it a second time.
                if freshness == Freshness::AcceptCached
                    && let Ok(Some(payload)) = self.cached(&entry_key).await
                {
                    return Ok((Arc::new(payload), CacheStatus::Hit));
                }
                let payload = self
                    .timed_compute(endpoint, compute)
                    .await
                    .map_err(Arc::new)?;
                let payload = Arc::new(payload);
                self.store(key, &entry_key, &generations, &payload).await;
                Ok((payload, CacheStatus::Miss))
            })
            .await;
        let (payload, status) = result.map_err(ApiError::Shared)?;
        let labels = EndpointLabels { endpoint };
        match status {
            CacheStatus::Hit => self.metrics.cache_hits.get_or_create(&labels).inc(),
            _ => self.metrics.cache_misses.get_or_create(&labels).inc(),
        };
        Ok((payload, status))
    }

    /// Removes every entry the touched activities can change. Never fails the write: an
    /// invalidation that cannot be applied now is remembered, and reads bypass the cache
    /// until it has been.
    pub async fn invalidate(&self, touches: &[Touch]) {
        let inv = Invalidation::from_touches(touches);
        if inv.is_empty() {
            return;
        }
        if self.has_pending() || !self.breaker.allow() {
            self.remember(inv);
            self.flush_pending().await;
            return;
        }
        match self
            .bounded("invalidate", self.backend_invalidate(&inv))
            .await
        {
            Ok(n) => {
                self.metrics.cache_invalidated_keys.inc_by(n);
            }
            Err(_) => self.remember(inv),
        }
    }

    /// Drops every entry under the prefix.
    pub async fn clear(&self) -> Result<u64, CacheError> {
        let removed = match &self.backend {
            Backend::Redis(r) => {
                self.bounded_by("clear", Duration::from_secs(30), r.clear(&self.prefix))
                    .await?
            }
            Backend::Memory(m) => m.clear(),
        };
        tracing::info!(removed, prefix = %self.prefix, "cache cleared");
        Ok(removed)
    }

    pub async fn health(&self) -> CacheHealth {
        match &self.backend {
            Backend::Memory(_) => CacheHealth::Memory,
            Backend::Redis(_) if !self.breaker.allow() => CacheHealth::Degraded,
            Backend::Redis(r) => match self.bounded("ping", r.ping()).await {
                Ok(()) if !self.has_pending() => CacheHealth::Ok,
                _ => CacheHealth::Degraded,
            },
        }
    }

    pub fn stats(&self) -> CacheStats {
        let by_endpoint: std::collections::BTreeMap<_, _> = Endpoint::ALL
            .iter()
            .map(|e| {
                let labels = EndpointLabels {
                    endpoint: e.as_str(),
                };
                let stats = EndpointStats {
                    hits: self.metrics.cache_hits.get_or_create(&labels).get(),
                    misses: self.metrics.cache_misses.get_or_create(&labels).get(),
                    bypasses: self.metrics.cache_bypasses.get_or_create(&labels).get(),
                };
                (e.as_str(), stats)
            })
            .collect();
        let hits = by_endpoint.values().map(|s| s.hits).sum();
        let misses = by_endpoint.values().map(|s| s.misses).sum();
        let bypasses = by_endpoint.values().map(|s| s.bypasses).sum();
        let lookups = hits + misses + bypasses;
        CacheStats {
            backend: self.backend_name(),
            hits,
            misses,
            bypasses,
            hit_ratio: if lookups == 0 {
                0.0
            } else {
                hits as f64 / lookups as f64
            },
            errors: OPERATIONS
                .iter()
                .map(|operation| {
                    self.metrics
                        .cache_errors
                        .get_or_create(&OperationLabels { operation })
                        .get()
                })
                .sum(),
            invalidated_keys: self.metrics.cache_invalidated_keys.get(),
            pending_invalidations: self.pending.lock().map(|p| p.len()).unwrap_or(0),
            by_endpoint,
        }
    }

    /// Installs (or removes) a pause between computing and storing. For tests only.
    pub fn set_before_store_hook(&self, hook: Option<StoreHook>) {
        if let Ok(mut h) = self.before_store.lock() {
            *h = hook;
        }
    }

    async fn bypass<F, Fut>(
        &self,
        endpoint: &'static str,
        compute: F,
    ) -> ApiResult<(Arc<Payload>, CacheStatus)>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ApiResult<Vec<u8>>>,
    {
        let payload = self.timed_compute(endpoint, compute).await?;
        self.metrics
            .cache_bypasses
            .get_or_create(&EndpointLabels { endpoint })
            .inc();
        Ok((Arc::new(payload), CacheStatus::Bypass))
    }

    async fn timed_compute<F, Fut>(&self, endpoint: &'static str, compute: F) -> ApiResult<Payload>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ApiResult<Vec<u8>>>,
    {
        let started = Instant::now();
        let body = compute().await?;
        self.metrics
            .aggregate_duration
            .get_or_create(&EndpointLabels { endpoint })
            .observe(started.elapsed().as_secs_f64());
        Ok(Payload::new(body))
    }

    async fn store(
        &self,
        key: &CacheKey,
        entry_key: &str,
        generations: &[(String, String)],
        payload: &Payload,
    ) {
        let hook = self.before_store.lock().ok().and_then(|h| h.clone());
        if let Some(hook) = hook {
            hook().await;
        }
        // Jitter spreads the expiry of entries filled together (by a prewarm, say), so they
        // are not all recomputed in the same second.
        let jitter = rand::rng().random_range(0..=self.ttl.as_secs() / 10);
        let ttl_secs = self.ttl.as_secs() + jitter;
        let value = payload.encode();
        let request = StoreRequest {
            entry_key,
            value: &value,
            ttl_secs,
            generations,
            index_keys: key
                .tags()
                .iter()
                .map(|t| t.index_key(&self.prefix))
                .collect(),
            scope: key.scope().encode(),
            // An index must outlive every entry it lists, or a write could no longer find them.
            index_ttl_secs: self.ttl.as_secs() * 11 / 10 + 60,
        };
        match self.bounded("store", self.backend_store(&request)).await {
            Ok(true) => {}
            Ok(false) => tracing::debug!(
                key = entry_key,
                "not stored: a write invalidated it while it was computed"
            ),
            Err(_) => {}
        }
    }

    fn generation_ttl_secs(&self) -> u64 {
        (self.ttl.as_secs() * 2).max(86_400)
    }

    fn has_pending(&self) -> bool {
        self.pending.lock().map(|p| !p.is_empty()).unwrap_or(true)
    }

    fn remember(&self, inv: Invalidation) {
        tracing::warn!(
            tags = inv.spans.len(),
            "cache invalidation failed; remembered, and reads bypass the cache until it is applied"
        );
        if let Ok(mut p) = self.pending.lock() {
            p.push(inv);
        }
    }

    async fn ready_for_reads(&self) -> bool {
        if self.has_pending() {
            self.flush_pending().await;
            if self.has_pending() {
                return false;
            }
        }
        self.breaker.allow()
    }

    /// Applies every remembered invalidation in one script call.
    async fn flush_pending(&self) {
        let Ok(_only_one_flush) = self.flushing.try_lock() else {
            return;
        };
        let (count, merged) = {
            let Ok(pending) = self.pending.lock() else {
                return;
            };
            let mut merged = Invalidation::default();
            for inv in pending.iter() {
                merged.merge(inv.clone());
            }
            (pending.len(), merged)
        };
        if count == 0 || !self.breaker.allow() {
            return;
        }
        if let Ok(n) = self
            .bounded("invalidate", self.backend_invalidate(&merged))
            .await
        {
            self.metrics.cache_invalidated_keys.inc_by(n);
            if let Ok(mut pending) = self.pending.lock() {
                pending.drain(..count);
            }
            tracing::info!(count, removed = n, "remembered cache invalidations applied");
        }
    }

    async fn bounded<T>(
        &self,
        operation: &'static str,
        op: impl Future<Output = Result<T, CacheError>>,
    ) -> Result<T, CacheError> {
        self.bounded_by(operation, self.op_timeout, op).await
    }

    /// Runs one backend operation within `limit`, feeding the breaker and the error counter.
    async fn bounded_by<T>(
        &self,
        operation: &'static str,
        limit: Duration,
        op: impl Future<Output = Result<T, CacheError>>,
    ) -> Result<T, CacheError> {
        let result = tokio::time::timeout(limit, op)
            .await
            .unwrap_or(Err(CacheError::Timeout));
        match &result {
            Ok(_) => self.breaker.record_success(),
            Err(error) => {
                self.breaker.record_failure();
                self.metrics
                    .cache_errors
                    .get_or_create(&OperationLabels { operation })
                    .inc();
                tracing::warn!(operation, %error, "cache operation failed; going on without the cache");
            }
        }
        result
    }

    /// The stored answer under `entry_key`; an undecodable value counts as absent.
    async fn cached(&self, entry_key: &str) -> Result<Option<Payload>, CacheError> {
        let raw = self.bounded("get", self.backend_get(entry_key)).await?;
        Ok(raw.and_then(Payload::decode))
    }

    async fn backend_get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        match &self.backend {
            Backend::Redis(r) => r.get(key).await,
            Backend::Memory(m) => Ok(m.get(key)),
        }
    }

    async fn backend_generations(&self, keys: &[String]) -> Result<Vec<String>, CacheError> {
        match &self.backend {
            Backend::Redis(r) => r.generations(keys).await,
            Backend::Memory(m) => Ok(m.generations(keys)),
        }
    }

    async fn backend_store(&self, req: &StoreRequest<'_>) -> Result<bool, CacheError> {
        match &self.backend {
            Backend::Redis(r) => r.store(req).await,
            Backend::Memory(m) => Ok(m.store(req)),
        }
    }

    async fn backend_invalidate(&self, inv: &Invalidation) -> Result<u64, CacheError> {
        match &self.backend {
            Backend::Redis(r) => {
                r.invalidate(&self.prefix, inv, self.generation_ttl_secs())
                    .await
            }
            Backend::Memory(m) => Ok(m.invalidate(&self.prefix, inv)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_survives_its_stored_form() {
        let p = Payload::new(br#"{"events":3}"#.to_vec());
        assert_eq!(p.etag.len(), ETAG_LEN);
        assert_eq!(Payload::decode(p.encode()), Some(p));
        assert_eq!(Payload::decode(b"short".to_vec()), None);
    }
}
