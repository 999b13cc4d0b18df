//! Liveness, readiness and metrics: unauthenticated, for orchestrators and Prometheus.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::db;
use crate::metrics::CacheGauges;
use crate::state::AppState;

/// The database check in `/readyz` gives up after this, so a probe never hangs.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process runs", body = serde_json::Value)))]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready", body = Readiness), (status = 503, description = "Database unreachable", body = Readiness)))]
pub(crate) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (database, cache) = tokio::join!(
        tokio::time::timeout(READINESS_TIMEOUT, db::ping(&state.pool)),
        state.cache.health()
    );
    let database_ok = matches!(database, Ok(Ok(())));
    let body = Readiness {
        database: if database_ok { "ok" } else { "unavailable" }.into(),
        cache: cache.as_str().into(),
    };
    if database_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let cache = CacheGauges {
        pending_invalidations: state.cache.pending_invalidations(),
        redis_memory: state.cache.redis_memory().await,
    };
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.encode(&state.pool, &cache))
}

/// The body of `/readyz`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Readiness {
    /// `ok` or `unavailable`
    pub(crate) database: String,
    /// `ok`, `degraded` (Redis failing: answers come from Postgres) or `memory` (in-process cache)
    pub(crate) cache: String,
}
