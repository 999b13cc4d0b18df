//! activity-analytics: records what users do and answers analytics questions about it,
//! computing every aggregate in Postgres once and serving it from a cache until a write
//! makes it wrong. The binary (`src/main.rs`) is a thin shell over this library so that
//! tests drive the real application.
//!
//! Items are `pub(crate)` unless the binary or the integration tests (`tests/api`) use them, so
//! the compiler reports code nothing uses; `pub` marks what those two reach.

pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub(crate) mod error;
pub(crate) mod http;
pub(crate) mod metrics;
pub(crate) mod pending_updates;
pub mod rate_limiter;
pub(crate) mod read_routing;
pub mod retention;
pub mod seed;
pub mod startup;
pub mod state;
pub(crate) mod statistics;
pub mod telemetry;
