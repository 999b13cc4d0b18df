//! Which backend the cache runs on, and every call to it: each bounded by
//! `CACHE_OP_TIMEOUT_MS` and counted, so a slow or failing backend costs a request at most that
//! wait and the breaker sees every failure.

use std::future::Future;
use std::time::Duration;

use super::entry::Entry;
use super::memory::MemoryBackend;
use super::redis_backend::RedisBackend;
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
        operation: &'static str,
        op: impl Future<Output = Result<T, CacheError>>,
    ) -> Result<T, CacheError> {
        self.bounded_by(operation, self.op_timeout, op).await
    }

    /// Runs one backend operation within `limit`, feeding the breaker and the error counter.
    pub(super) async fn bounded_by<T>(
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
    pub(super) async fn cached(&self, entry_key: &str) -> Result<Option<Payload>, CacheError> {
        let raw = self.bounded("get", self.backend_get(entry_key)).await?;
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
        keys: &[String],
    ) -> Result<(u64, Vec<String>), CacheError> {
        match &self.backend {
            Backend::Redis(r) => r.position(&self.prefix, keys).await,
            Backend::Memory(m) => Ok(m.position(keys)),
        }
    }

    pub(super) async fn backend_store(
        &self,
        req: &StoreRequest<'_>,
    ) -> Result<StoreOutcome, CacheError> {
        match &self.backend {
            Backend::Redis(r) => r.store(&self.prefix, req).await,
            Backend::Memory(m) => Ok(m.store(req)),
        }
    }

    pub(super) async fn backend_append(
        &self,
        req: &AppendRequest,
    ) -> Result<(u64, Vec<(String, Vec<u8>)>), CacheError> {
        match &self.backend {
            Backend::Redis(r) => r.append(&self.prefix, req).await,
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

    pub(super) async fn backend_invalidate(&self, inv: &Invalidation) -> Result<u64, CacheError> {
        match &self.backend {
            Backend::Redis(r) => {
                r.invalidate(&self.prefix, inv, self.generation_ttl_secs())
                    .await
            }
            Backend::Memory(m) => Ok(m.invalidate(&self.prefix, inv)),
        }
    }
}
