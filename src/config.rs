//! Settings: every one an environment variable (or the flag of the same name), declared once
//! here with its default and its check, so `analytics <command> --help` lists them all. Clap reads
//! them; everything else receives a `Settings` value, so tests build one directly.

use std::net::SocketAddr;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Every setting of the service, parsed and validated once at start. An empty variable counts
/// as unset (`REDIS_URL=` in a `.env` means no Redis).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Settings (each also read from the environment variable shown)")]
pub struct Settings {
    /// Postgres connection string, for example postgres://postgres@127.0.0.1:5432/analytics.
    /// `analytics migrate` creates the database if missing.
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Redis connection string. Unset: an in-process cache, correct for one instance only.
    #[arg(
        long,
        env = "REDIS_URL",
        value_name = "REDIS_URL",
        hide_env_values = true
    )]
    pub redis_url: Option<String>,
    /// A streaming replica of DATABASE_URL (a hot standby). Statistics misses, lists and gets
    /// read there when it has replayed every write they must reflect, otherwise from the primary
    /// (docs/scale.md, "Read replica"). Unset: everything reads the primary.
    #[arg(
        long,
        env = "DATABASE_REPLICA_URL",
        value_name = "DATABASE_REPLICA_URL",
        hide_env_values = true
    )]
    pub database_replica_url: Option<String>,
    /// Seed nodes of a Redis Cluster, comma-separated (redis://10.0.0.1:7000,redis://10.0.0.2:7000).
    /// Set, it replaces REDIS_URL: the cache runs on the cluster, its keys spread over 12 hash
    /// slots (docs/cache.md, "Redis Cluster").
    #[arg(
        long,
        env = "REDIS_CLUSTER_URLS",
        value_name = "REDIS_CLUSTER_URLS",
        hide_env_values = true
    )]
    pub redis_cluster_urls: Option<String>,
    /// Listen address. Port 0 picks a free port; the chosen address is logged.
    #[arg(
        long,
        env = "APP_ADDR",
        value_name = "APP_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub app_addr: SocketAddr,
    /// Namespace of every cache key, so several deployments or test runs can share one Redis.
    #[arg(long, env = "CACHE_PREFIX", value_name = "CACHE_PREFIX", default_value = "analytics", value_parser = cache_prefix)]
    pub cache_prefix: String,
    /// Lifetime of a cached aggregate in seconds (up to 10% random jitter is added).
    #[arg(long = "cache-ttl-seconds", env = "CACHE_TTL_SECONDS", value_name = "CACHE_TTL_SECONDS",
          default_value = "300", value_parser = at_least_one(Duration::from_secs))]
    pub cache_ttl: Duration,
    /// Longest wait on any one cache operation, in milliseconds, before the request goes on
    /// without the cache.
    #[arg(long = "cache-op-timeout-ms", env = "CACHE_OP_TIMEOUT_MS", value_name = "CACHE_OP_TIMEOUT_MS",
          default_value = "50", value_parser = at_least_one(Duration::from_millis))]
    pub cache_op_timeout: Duration,
    /// Comma-separated origins allowed to call the API from a browser (empty: none).
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_name = "CORS_ALLOWED_ORIGINS", default_value = "",
          value_parser = list)]
    pub cors_allowed_origins: ::std::vec::Vec<String>,
    /// Log format.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_name = "LOG_FORMAT",
        value_enum,
        default_value = "pretty"
    )]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax); one that does not parse means `info`.
    #[arg(
        long,
        env = "RUST_LOG",
        value_name = "RUST_LOG",
        default_value = "info"
    )]
    pub log_filter: String,
    /// An OTLP/HTTP collector (OpenTelemetry Collector, Jaeger, Tempo...) every span is exported
    /// to, batched off the request path. Unset: nothing is exported. The other standard OTEL_*
    /// variables are read by the exporter.
    #[arg(
        long,
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        value_name = "OTEL_EXPORTER_OTLP_ENDPOINT"
    )]
    pub otlp_endpoint: Option<String>,
    /// The service name the exported spans carry.
    #[arg(
        long,
        env = "OTEL_SERVICE_NAME",
        value_name = "OTEL_SERVICE_NAME",
        default_value = "activity-analytics"
    )]
    pub otel_service_name: String,
    /// Longest wait for a database connection before a request fails with 503, in milliseconds.
    #[arg(long = "database-acquire-timeout-ms", env = "DATABASE_ACQUIRE_TIMEOUT_MS", value_name = "DATABASE_ACQUIRE_TIMEOUT_MS", default_value = "2000", value_parser = at_least_one(Duration::from_millis))]
    pub db_acquire_timeout: Duration,
    /// Size of the database connection pool.
    #[arg(long = "database-max-connections", env = "DATABASE_MAX_CONNECTIONS", value_name = "DATABASE_MAX_CONNECTIONS",
          default_value = "16", value_parser = RangedU64ValueParser::<u32>::new().range(1..))]
    pub db_max_connections: u32,
    /// Requests per second allowed for one API key (or one client address when no token is
    /// sent). Over it: 429 with Retry-After.
    #[arg(long, env = "RATE_LIMIT_PER_SECOND", value_name = "RATE_LIMIT_PER_SECOND", default_value = "100",
          value_parser = RangedU64ValueParser::<u32>::new().range(1..))]
    pub rate_limit_per_second: u32,
    /// Requests allowed in a burst above RATE_LIMIT_PER_SECOND.
    #[arg(long, env = "RATE_LIMIT_BURST", value_name = "RATE_LIMIT_BURST", default_value = "200",
          value_parser = RangedU64ValueParser::<u32>::new().range(1..))]
    pub rate_limit_burst: u32,
    /// Activities older than this many days are dropped, a whole month at a time, with their
    /// rollups and cached answers; older backfills are refused. Unset: every activity is kept.
    // Longer than any range a statistic may cover (366 days) is allowed; the upper bound only
    // keeps date arithmetic far from overflow.
    #[arg(long, env = "RETENTION_DAYS", value_name = "RETENTION_DAYS",
          value_parser = RangedU64ValueParser::<u32>::new().range(1..=36_500))]
    pub retention_days: Option<u32>,
}

fn cache_prefix(v: &str) -> Result<String, String> {
    if v.is_empty() || v.contains(char::is_whitespace) {
        return Err("must be non-empty, without white space".into());
    }
    Ok(v.to_owned())
}

/// A whole number of at least 1, in the unit `unit` gives it.
fn at_least_one(unit: fn(u64) -> Duration) -> impl Fn(&str) -> Result<Duration, String> + Clone {
    move |v| match v.trim().parse::<u64>() {
        Ok(n) if n >= 1 => Ok(unit(n)),
        Ok(_) => Err("must be at least 1".into()),
        Err(e) => Err(e.to_string()),
    }
}

impl Settings {
    /// The cluster's seed nodes (`REDIS_CLUSTER_URLS`); empty when no cluster is set.
    pub fn redis_cluster_seeds(&self) -> Vec<String> {
        self.redis_cluster_urls
            .as_deref()
            .map(|v| list(v).unwrap_or_default())
            .unwrap_or_default()
    }
}

/// A comma-separated list, trimmed, without empty items.
fn list(v: &str) -> Result<Vec<String>, String> {
    Ok(v.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    /// Parses flags, which win over the environment, so these hold whatever the test process's
    /// environment holds; `tests/api/settings.rs` runs the binary to cover the variables and
    /// their defaults.
    fn settings(args: &[&str]) -> Result<Settings, clap::Error> {
        let mut argv = vec!["analytics"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|c| c.settings)
    }

    #[test]
    fn a_bad_setting_names_itself() {
        let cases = [
            (vec!["--app-addr=nope"], "APP_ADDR"),
            (vec!["--cache-ttl-seconds=-1"], "CACHE_TTL_SECONDS"),
            (vec!["--cache-ttl-seconds=0"], "CACHE_TTL_SECONDS"),
            (vec!["--retention-days=0"], "RETENTION_DAYS"),
            (vec!["--retention-days=a year"], "RETENTION_DAYS"),
            (vec!["--cache-op-timeout-ms=0"], "CACHE_OP_TIMEOUT_MS"),
            (vec!["--log-format=xml"], "LOG_FORMAT"),
            (vec!["--cache-prefix=a b"], "CACHE_PREFIX"),
            (
                vec!["--database-max-connections=0"],
                "DATABASE_MAX_CONNECTIONS",
            ),
        ];
        for (mut args, name) in cases {
            args.push("--database-url=postgres://x");
            let err = settings(&args).expect_err(name).to_string();
            let first = err.lines().next().unwrap_or_default();
            assert!(first.contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn cors_origins_are_split_and_trimmed() {
        let s = settings(&[
            "--database-url=x",
            "--cors-allowed-origins= https://a.example , https://b.example,",
        ])
        .expect("valid");
        assert_eq!(
            s.cors_allowed_origins,
            vec!["https://a.example", "https://b.example"]
        );
    }

    #[test]
    fn durations_keep_their_units() {
        let s = settings(&[
            "--database-url=x",
            "--cache-ttl-seconds=7",
            "--cache-op-timeout-ms=9",
            "--database-acquire-timeout-ms=11",
        ])
        .expect("valid");
        assert_eq!(s.cache_ttl, Duration::from_secs(7));
        assert_eq!(s.cache_op_timeout, Duration::from_millis(9));
        assert_eq!(s.db_acquire_timeout, Duration::from_millis(11));
    }
}
