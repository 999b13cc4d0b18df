//! The HTTP surface: one file per resource, each with a `configure` that registers its
//! routes, plus the middleware every response goes through. Handlers parse into `domain`,
//! call `statistics` or `db`, and turn the answer into JSON; they never write SQL.

pub(crate) mod activities;
pub(crate) mod body;
pub(crate) mod cache_admin;
pub(crate) mod dashboard;
pub(crate) mod export;
pub(crate) mod health;
pub(crate) mod idempotency;
pub(crate) mod middleware;
pub(crate) mod openapi;
pub(crate) mod rate_limit;
mod responses;
pub(crate) mod stats;
pub(crate) mod users;

use actix_web::web;

use crate::error::ApiError;

/// Registers every route of the service.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|err, _| ApiError::BadRequest(err.to_string()).into()),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|err, _| ApiError::NotFound(err.to_string()).into()),
    )
    .configure(health::configure)
    .configure(openapi::configure)
    .configure(dashboard::configure)
    .service(
        // The export's path would otherwise be taken for an activity id.
        web::scope("/api/v1")
            .configure(export::configure)
            .configure(activities::configure)
            .configure(stats::configure)
            .configure(cache_admin::configure)
            .configure(users::configure),
    );
}
