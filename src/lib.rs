//! activity-analytics: records what users do and answers analytics questions about it,
//! computing every aggregate in Postgres once and serving it from a cache until a write
//! makes it wrong. The binary (`src/main.rs`) is a thin shell over this library so that
//! tests drive the real application.

pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod http;
pub mod metrics;
pub mod pending_updates;
pub mod rate_limiter;
pub mod retention;
pub mod seed;
pub mod startup;
pub mod state;
pub mod statistics;
pub mod telemetry;
