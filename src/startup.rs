//! Building and running the application: `Application::build` binds the listener (port 0
//! picks a free one, which tests use) and wires state, middleware and routes.

use std::net::TcpListener;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::http::{Method, header};
use actix_web::middleware::{ErrorHandlers, from_fn};
use actix_web::{App, HttpServer, web};
use tracing_actix_web::TracingLogger;

use crate::config::Settings;
use crate::http::middleware::{
    head_as_get, problem_for_other_errors, record_metrics, request_id_header, security_headers,
};
use crate::http::rate_limit::limit_rate;
use crate::state::AppState;
use crate::{db, http, retention};

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let state = web::Data::new(AppState::new(&settings)?);
        state.cache.check_eviction_policy().await?;
        state.cache.spawn_retry_task();
        state.pending.spawn();
        state.reads.spawn_retry_task();
        spawn_housekeeping(state.clone());
        match state.cache.backend_name() {
            "memory" => tracing::info!(
                "REDIS_URL is unset: using the in-process cache (correct for one instance only)"
            ),
            backend => tracing::info!(backend, prefix = %settings.cache_prefix, "statistics cache"),
        }
        let listener = TcpListener::bind(settings.app_addr)?;
        let port = listener.local_addr()?.port();
        let origins = settings.cors_allowed_origins.clone();
        let server_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(ErrorHandlers::new().default_handler(problem_for_other_errors))
                .wrap(cors(&origins))
                .wrap(from_fn(limit_rate))
                .wrap(from_fn(record_metrics))
                .wrap(from_fn(request_id_header))
                .wrap(from_fn(security_headers))
                .wrap(from_fn(head_as_get))
                .wrap(TracingLogger::default())
                .app_data(server_state.clone())
                .configure(http::configure)
        })
        .listen(listener)?
        .run();
        tracing::info!(address = %format!("{}:{port}", settings.app_addr.ip()), "listening");
        Ok(Self {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until SIGINT or SIGTERM, then lets in-flight requests finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// How many closed days back the hourly refresh stores the parts of local days in use: the
/// default range's.
const REFRESHED_PART_DAYS: u32 = 31;

/// Hourly, from the start: forget expired idempotency keys, idle rate-limit buckets and the
/// quarter-hour bitmaps of days no longer open, store the parts of local days in use and the
/// unions of users of days that closed, create next month's partition, and apply
/// `RETENTION_DAYS` (one instance at a time).
fn spawn_housekeeping(state: web::Data<AppState>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            retention::run_hourly(&state).await;
            state.rate_limiter.forget_idle();
            match db::idempotency::delete_expired_keys(&state.pool).await {
                Ok(n) => tracing::debug!(removed = n, "expired idempotency keys removed"),
                Err(e) => tracing::warn!(error = %e, "could not remove expired idempotency keys"),
            }
            match db::retention::prune_recent_quarters(&state.pool).await {
                Ok(n) => {
                    tracing::debug!(removed = n, "quarter-hour bitmaps of closed days removed")
                }
                Err(e) => tracing::warn!(error = %e, "could not remove old quarter-hour bitmaps"),
            }
            // The parts of local days in use, for each day that closed or took a late write.
            match db::stats::refresh_parts(&state.pool, REFRESHED_PART_DAYS).await {
                Ok(n) => tracing::debug!(parts = n, "parts of local days stored"),
                Err(e) => tracing::warn!(error = %e, "could not store parts of local days"),
            }
            // The unions of closed days' users, for each day that closed or took a late write.
            match db::stats::refresh_blocks(&state.pool).await {
                Ok(n) => tracing::debug!(blocks = n, "unions of closed days stored"),
                Err(e) => tracing::warn!(error = %e, "could not store unions of closed days"),
            }
        }
    });
}

/// Browsers may call the API from the listed origins only; credentials stay off because the
/// API authenticates with a bearer token, not cookies.
fn cors(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_NONE_MATCH,
            header::CACHE_CONTROL,
            header::HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([
            header::HeaderName::from_static("x-cache"),
            header::ETAG,
            header::HeaderName::from_static("x-request-id"),
            header::LOCATION,
            header::RETRY_AFTER,
        ])
        .max_age(3600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}
