//! The HTTP surface: one file per resource, each with a `configure` that registers its
//! routes, plus the middleware every response goes through. Handlers parse into `domain`,
//! call `statistics` or `db`, and turn the answer into JSON; they never write SQL.

pub mod activities;
pub mod body;
pub mod cache_admin;
pub mod dashboard;
pub mod export;
pub mod health;
pub mod idempotency;
pub mod middleware;
pub mod openapi;
pub mod rate_limit;
mod responses;
pub mod stats;
pub mod users;

use actix_web::web;

use crate::error::ApiError;

/// Registers every route of the service.
pub fn configure(cfg: &mut web::ServiceConfig) {
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
