//! The counters behind `GET /api/v1/cache/stats`.

use serde::Serialize;

use super::{Cache, Endpoint, OPERATIONS};
use crate::metrics::{EndpointLabels, OperationLabels};

#[derive(Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub(crate) struct EndpointStats {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) bypasses: u64,
}

/// The body of `GET /api/v1/cache/stats`, counted since this instance started.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CacheStats {
    #[schema(value_type = String, examples("redis"))]
    pub(crate) backend: &'static str,
    pub hits: u64,
    pub misses: u64,
    pub(crate) bypasses: u64,
    pub(crate) hit_ratio: f64,
    pub(crate) errors: u64,
    pub invalidated_keys: u64,
    pub pending_invalidations: usize,
    #[schema(value_type = std::collections::BTreeMap<String, EndpointStats>)]
    pub(crate) by_endpoint: std::collections::BTreeMap<&'static str, EndpointStats>,
}

impl Cache {
    pub(super) fn count_hit(&self, endpoint: &'static str) {
        self.metrics
            .cache_hits
            .get_or_create(&EndpointLabels { endpoint })
            .inc();
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
            pending_invalidations: self.pending_invalidations(),
            by_endpoint,
        }
    }
}
