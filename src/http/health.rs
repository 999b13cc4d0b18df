//! Liveness, readiness and metrics: unauthenticated, for orchestrators and Prometheus.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::db;
use crate::startup::AppState;

/// The database check in `/readyz` gives up after this, so a probe never hangs.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (database, cache) = tokio::join!(
        tokio::time::timeout(READINESS_TIMEOUT, db::ping(&state.pool)),
        state.cache.health()
    );
    let database_ok = matches!(database, Ok(Ok(())));
    let body = json!({
        "database": if database_ok { "ok" } else { "unavailable" },
        "cache": cache,
    });
    if database_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.encode(&state.pool))
}
