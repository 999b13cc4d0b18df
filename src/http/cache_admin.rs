//! `/api/v1/cache`: counters for operators, and the admin-only clear and prewarm.

use super::responses::{Forbidden, Guarded};
use crate::cache::CacheStats;
use crate::error::Problem;
use actix_web::{HttpResponse, web};
use chrono::Utc;

use crate::auth::{AdminRole, Authorized, ReadRole};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::statistics;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/cache").route(web::delete().to(clear_cache)))
        .service(web::resource("/cache/stats").route(web::get().to(cache_stats)))
        .service(web::resource("/cache/prewarm").route(web::post().to(prewarm_cache)));
}

#[utoipa::path(get, path = "/api/v1/cache/stats", tag = "cache", security(("bearer" = [])),
    responses((status = 200, description = "Counters since this instance started", body = CacheStats), Guarded))]
pub(crate) async fn cache_stats(
    _: Authorized<ReadRole>,
    state: web::Data<AppState>,
) -> HttpResponse {
    HttpResponse::Ok().json(state.cache.stats())
}

#[utoipa::path(delete, path = "/api/v1/cache", tag = "cache", security(("bearer" = [])),
    responses((status = 204, description = "Every entry under CACHE_PREFIX dropped"), (status = 500, description = "The cache could not be cleared", body = Problem, content_type = "application/problem+json"), Guarded, Forbidden))]
pub(crate) async fn clear_cache(
    _: Authorized<AdminRole>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    state
        .cache
        .clear()
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("could not clear the cache: {e}")))?;
    Ok(HttpResponse::NoContent().finish())
}

/// Starts the prewarm in the background and answers at once.
#[utoipa::path(post, path = "/api/v1/cache/prewarm", tag = "cache", security(("bearer" = [])),
    responses((status = 202, description = "Prewarm started in the background", body = serde_json::Value), Guarded, Forbidden))]
pub(crate) async fn prewarm_cache(
    _: Authorized<AdminRole>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let state = state.into_inner();
    tokio::spawn(async move {
        match statistics::prewarm(&state, Utc::now()).await {
            Ok(n) => tracing::info!(answers = n, "cache prewarmed"),
            Err(e) => tracing::warn!(error = ?e, "cache prewarm failed"),
        }
    });
    HttpResponse::Accepted().json(serde_json::json!({"status": "started"}))
}
