//! SQL and nothing else. Functions here take an executor (a pool or a transaction) and
//! domain types, and return `sqlx::Result`; they never see a request or the cache.

pub mod activities;
pub(crate) mod export;
pub mod idempotency;
pub mod keys;
pub mod partitions;
pub(crate) mod pending;
pub mod retention;
pub mod stats;
pub(crate) mod wal;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgPool};

use crate::config::Settings;

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A pool that connects lazily, so the service starts (and `/readyz` reports) while the
/// database is away, and requests fail fast with 503 instead of hanging.
pub(crate) fn pool(settings: &Settings) -> Result<PgPool, sqlx::Error> {
    pool_of(settings, settings.db_max_connections)
}

/// A small pool of its own for checking API keys: when the database is slower than the load
/// and every connection of the main pool is taken, requests still get their keys checked, so
/// cached answers go on being served while the others fail fast with 503.
pub(crate) fn key_pool(settings: &Settings) -> Result<PgPool, sqlx::Error> {
    pool_of(settings, 2)
}

fn pool_of(settings: &Settings, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    pool_at(
        &settings.database_url,
        max_connections,
        settings.db_acquire_timeout,
    )
}

/// A lazily connecting pool to `url` with the service's session settings; the read replica's
/// pool (`read_routing.rs`) is one too, with its own wait for a connection.
pub(crate) fn pool_at(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    // No statement may hold a connection (and a client) longer than this: a runaway query is
    // cancelled and the request answered 503 instead of queueing everyone behind it.
    // JIT is off: the statistics read a few thousand rollup rows, and compiling a plan (tens of
    // milliseconds, triggered by the planner's estimate of the edge scans) costs more than it saves.
    // Plans are always made for the actual parameters: after five executions Postgres may switch
    // a prepared statement to a generic plan, and without the range it cannot tell that the edge
    // days of a range are empty, so it can choose to scan every activity (seconds instead of ms).
    let options = PgConnectOptions::from_str(url)?.options([
        ("statement_timeout", "15s"),
        ("jit", "off"),
        ("plan_cache_mode", "force_custom_plan"),
    ]);
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .idle_timeout(Duration::from_secs(300))
        .connect_lazy_with(options))
}

/// Begins a write transaction. Its statements (and the rollup triggers they fire) are keyed
/// lookups whose best plan does not depend on the values: they may use generic plans, which
/// saves planning each statement again (about a millisecond of CPU for a create's neighbours)
/// under the connection's `force_custom_plan`, which only the range statistics need.
pub(crate) async fn begin_write(
    pool: &PgPool,
) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    pool.begin_with("begin; set local plan_cache_mode = force_generic_plan")
        .await
}

/// Creates the database named in `database_url` if it does not exist yet.
pub(crate) async fn create_database_if_missing(database_url: &str) -> anyhow::Result<()> {
    let options = PgConnectOptions::from_str(database_url)?;
    let name = options
        .get_database()
        .ok_or_else(|| anyhow::anyhow!("DATABASE_URL names no database"))?
        .to_owned();
    let mut admin = options.clone().database("postgres").connect().await?;
    let exists = sqlx::query_scalar!(
        r#"select exists (select 1 from pg_database where datname = $1) as "exists!""#,
        &name,
    )
    .fetch_one(&mut admin)
    .await?;
    if !exists {
        // Identifiers cannot be bound as parameters; quote it as Postgres would.
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        admin
            .execute(sqlx::AssertSqlSafe(format!("create database {quoted}")))
            .await?;
        tracing::info!(database = %name, "created database");
    }
    admin.close().await?;
    Ok(())
}

/// Applies pending migrations, on a connection of their own without the service's statement
/// timeout: one migration may rewrite a large table (migration 8 copies every activity).
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?.detach();
    sqlx::raw_sql("set statement_timeout = 0")
        .execute(&mut conn)
        .await?;
    MIGRATOR.run(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// Is the database answering?
pub(crate) async fn ping(pool: &PgPool) -> sqlx::Result<()> {
    sqlx::raw_sql("select 1").execute(pool).await.map(|_| ())
}
