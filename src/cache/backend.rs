//! Which backend the cache runs on, and every call to it: each bounded by
//! `CACHE_OP_TIMEOUT_MS` and counted, so a slow or failing backend costs a request at most that
//! wait and the breaker sees every failure.

use std::future::Future;
use std::time::Duration;

use super::entry::Entry;
use super::memory::MemoryBackend;
use super::redis_backend::RedisBackend;
use super::shards::Shard;
use super::{
    AppendRequest, Cache, CacheError, Invalidation, Payload, Replaced, StoreOutcome, StoreRequest,
};
use crate::metrics::OperationLabels;

pub(super) enum Backend {
    Redis(RedisBackend),
    Memory(MemoryBackend),
}

impl Cache {
    pub(super) async fn bounded<T>(
        &self,
        shard: &Shard,
        operation: &'static str,
        op: impl Future<Output = Result<T, CacheError>>,
    ) -> Result<T, CacheError> {
        self.bounded_by(shard, operation, self.op_timeout, op).await
    }

    /// Runs one backend operation on `shard` within `limit`, feeding the shard's breaker and
    /// the error counter.
    pub(super) async fn bounded_by<T>(
        &self,
        shard: &Shard,
        operation: &'static str,
        limit: Duration,
        op: impl Future<Output = Result<T, CacheError>>,
    ) -> Result<T, CacheError> {
        let result = tokio::time::timeout(limit, op)
            .await
            .unwrap_or(Err(CacheError::Timeout));
        match &result {
            Ok(_) => shard.breaker.record_success(),
            Err(error) => {
                shard.breaker.record_failure();
                self.metrics
                    .cache_errors
                    .get_or_create(&OperationLabels { operation })
                    .inc();
                tracing::warn!(operation, shard = shard.index, %error, "cache operation failed; going on without the cache");
            }
        }
        result
    }

    /// The stored answer under `entry_key`; an undecodable value counts as absent.
    pub(super) async fn cached(
        &self,
        shard: &Shard,
        entry_key: &str,
    ) -> Result<Option<Payload>, CacheError> {
        let raw = self
            .bounded(shard, "get", self.backend_get(entry_key))
            .await?;
        Ok(raw.and_then(|raw| Entry::decode_payload(&raw)))
    }

    pub(super) async fn backend_get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        match &self.backend {
            Backend::Redis(r) => r.get(key).await,
            Backend::Memory(m) => Ok(m.get(key)),
        }
    }

    /// The write log's position and the generations of `keys`, read together.
    pub(super) async fn backend_position(
        &self,
        shard: &Shard,
        keys: &[String],
    ) -> Result<(u64, Vec<String>), CacheError> {
        match &self.backend {
            Backend::Redis(r) => r.position(shard, keys).await,
            Backend::Memory(m) => Ok(m.position(keys)),
        }
    }

    pub(super) async fn backend_store(
        &self,
        shard: &Shard,
        req: &StoreRequest<'_>,
    ) -> Result<StoreOutcome, CacheError> {
        match &self.backend {
            Backend::Redis(r) => r.store(shard, req).await,
            Backend::Memory(m) => Ok(m.store(req)),
        }
    }

    pub(super) async fn backend_append(
        &self,
        shard: &Shard,
        req: &AppendRequest,
    ) -> Result<(u64, Vec<(String, Vec<u8>)>), CacheError> {
        match &self.backend {
            Backend::Redis(r) => r.append(shard, req).await,
            Backend::Memory(m) => Ok(m.append(req)),
        }
    }

    pub(super) async fn backend_replace(
        &self,
        items: &[(String, Vec<u8>, Vec<u8>)],
    ) -> Result<Vec<Replaced>, CacheError> {
        match &self.backend {
            Backend::Redis(r) => r.replace(items).await,
            Backend::Memory(m) => Ok(m.replace(items)),
        }
    }

    pub(super) async fn backend_remove(&self, keys: &[String]) -> Result<u64, CacheError> {
        match &self.backend {
            Backend::Redis(r) => r.remove(keys).await,
            Backend::Memory(m) => Ok(m.remove(keys)),
        }
    }

    pub(super) async fn backend_invalidate(
        &self,
        shard: &Shard,
        inv: &Invalidation,
    ) -> Result<u64, CacheError> {
        match &self.backend {
            Backend::Redis(r) => r.invalidate(shard, inv, self.generation_ttl_secs()).await,
            Backend::Memory(m) => Ok(m.invalidate(&shard.prefix, inv)),
        }
    }

    /// Returns once what this instance wrote to `shard` would survive a failover of its master
    /// (`RedisBackend::replicated`); immediate on one Redis and in process.
    pub(super) async fn backend_replicated(&self, shard: &Shard) -> Result<(), CacheError> {
        match &self.backend {
            Backend::Redis(r) => r.replicated(shard).await,
            Backend::Memory(_) => Ok(()),
        }
    }
}
