//! Integration tests: each test spawns the real application on a free port against its own
//! Postgres database and its own cache prefix on a real Redis, so tests run in parallel.

mod activities;
mod auth;
mod cache;
mod cluster;
mod contract;
mod erasure;
mod export;
mod faults;
mod helpers;
mod hostile;
mod live;
mod otlp;
mod replica;
mod retention;
mod rollups;
mod settings;
mod stats;
