//! Settings: the only place that reads environment variables. Everything else receives a
//! `Settings` value, so tests build one directly instead of touching the process environment.

use std::net::SocketAddr;
use std::time::Duration;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Every setting of the service, parsed and validated once at start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    pub redis_url: Option<String>,
    pub app_addr: SocketAddr,
    pub cache_prefix: String,
    pub cache_ttl: Duration,
    pub cache_op_timeout: Duration,
    pub cors_allowed_origins: Vec<String>,
    pub log_format: LogFormat,
    /// Longest wait for a database connection before a request fails with 503.
    pub db_acquire_timeout: Duration,
    pub db_max_connections: u32,
    /// Requests per second allowed for one API key (or one client address when unauthenticated).
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    /// Activities older than this many days are dropped, a month at a time; `None` keeps all.
    pub retention_days: Option<u32>,
}

/// A setting that is missing or cannot be parsed; its `Display` is the one line an operator sees.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {name} {problem}")]
pub struct ConfigError {
    name: &'static str,
    problem: String,
}

impl Settings {
    /// Reads the settings from the environment (after `.env` has been loaded by the caller).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so the parsing rules can be tested without the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let database_url = get("DATABASE_URL").ok_or(ConfigError {
            name: "DATABASE_URL",
            problem: "is required (for example postgres://postgres@127.0.0.1:5432/analytics)"
                .into(),
        })?;
        let app_addr = parse_or(&get, "APP_ADDR", "127.0.0.1:8080".parse().ok(), |v| {
            v.parse::<SocketAddr>().map_err(|e| e.to_string())
        })?;
        let cache_prefix = get("CACHE_PREFIX").unwrap_or_else(|| "analytics".into());
        if cache_prefix.contains(char::is_whitespace) {
            return Err(ConfigError {
                name: "CACHE_PREFIX",
                problem: "must not contain white space".into(),
            });
        }
        let cache_ttl = Duration::from_secs(parse_number(&get, "CACHE_TTL_SECONDS", 300, 1)?);
        let cache_op_timeout =
            Duration::from_millis(parse_number(&get, "CACHE_OP_TIMEOUT_MS", 50, 1)?);
        let cors_allowed_origins = get("CORS_ALLOWED_ORIGINS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let log_format = match get("LOG_FORMAT").as_deref() {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError {
                    name: "LOG_FORMAT",
                    problem: format!("must be `pretty` or `json`, not `{other}`"),
                });
            }
        };
        let db_acquire_timeout =
            Duration::from_millis(parse_number(&get, "DATABASE_ACQUIRE_TIMEOUT_MS", 2000, 1)?);
        let db_max_connections = parse_number(&get, "DATABASE_MAX_CONNECTIONS", 16, 1)? as u32;
        let rate_limit_per_second = parse_number(&get, "RATE_LIMIT_PER_SECOND", 100, 1)? as u32;
        let rate_limit_burst = parse_number(&get, "RATE_LIMIT_BURST", 200, 1)? as u32;
        // A retention longer than any range a statistic may cover (366 days) is allowed; the
        // upper bound only keeps date arithmetic far from overflow.
        let retention_days = get("RETENTION_DAYS")
            .map(|v| match v.parse::<u32>() {
                Ok(n) if (1..=36_500).contains(&n) => Ok(n),
                Ok(_) => Err("must be between 1 and 36500".to_owned()),
                Err(e) => Err(e.to_string()),
            })
            .transpose()
            .map_err(|e| ConfigError {
                name: "RETENTION_DAYS",
                problem: format!("is invalid: {e}"),
            })?;
        Ok(Self {
            database_url,
            redis_url: get("REDIS_URL"),
            app_addr,
            cache_prefix,
            cache_ttl,
            cache_op_timeout,
            cors_allowed_origins,
            log_format,
            db_acquire_timeout,
            db_max_connections,
            rate_limit_per_second,
            rate_limit_burst,
            retention_days,
        })
    }
}

fn parse_or<T>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: Option<T>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    match get(name) {
        Some(v) => parse(&v).map_err(|e| ConfigError {
            name,
            problem: format!("`{v}` is invalid: {e}"),
        }),
        None => default.ok_or(ConfigError {
            name,
            problem: "is required".into(),
        }),
    }
}

fn parse_number(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
    min: u64,
) -> Result<u64, ConfigError> {
    parse_or(get, name, Some(default), |v| match v.parse::<u64>() {
        Ok(n) if n >= min => Ok(n),
        Ok(_) => Err(format!("must be at least {min}")),
        Err(e) => Err(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = settings(&[("DATABASE_URL", "postgres://x")]).expect("valid");
        assert_eq!(s.app_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.cache_prefix, "analytics");
        assert_eq!(s.cache_ttl, Duration::from_secs(300));
        assert_eq!(s.cache_op_timeout, Duration::from_millis(50));
        assert!(s.redis_url.is_none());
        assert_eq!(s.log_format, LogFormat::Pretty);
        assert_eq!(s.retention_days, None);
    }

    #[test]
    fn a_bad_setting_names_itself_in_one_line() {
        let cases = [
            (vec![], "DATABASE_URL"),
            (
                vec![("DATABASE_URL", "x"), ("APP_ADDR", "nope")],
                "APP_ADDR",
            ),
            (
                vec![("DATABASE_URL", "x"), ("CACHE_TTL_SECONDS", "-1")],
                "CACHE_TTL_SECONDS",
            ),
            (
                vec![("DATABASE_URL", "x"), ("RETENTION_DAYS", "0")],
                "RETENTION_DAYS",
            ),
            (
                vec![("DATABASE_URL", "x"), ("RETENTION_DAYS", "a year")],
                "RETENTION_DAYS",
            ),
            (
                vec![("DATABASE_URL", "x"), ("CACHE_OP_TIMEOUT_MS", "0")],
                "CACHE_OP_TIMEOUT_MS",
            ),
            (
                vec![("DATABASE_URL", "x"), ("LOG_FORMAT", "xml")],
                "LOG_FORMAT",
            ),
        ];
        for (vars, name) in cases {
            let err = settings(&vars).expect_err(name).to_string();
            assert!(err.contains(name), "{name}: {err}");
            assert!(!err.contains('\n'), "{name}: {err}");
        }
    }

    #[test]
    fn cors_origins_are_split_and_trimmed() {
        let s = settings(&[
            ("DATABASE_URL", "x"),
            (
                "CORS_ALLOWED_ORIGINS",
                " https://a.example , https://b.example,",
            ),
        ])
        .expect("valid");
        assert_eq!(
            s.cors_allowed_origins,
            vec!["https://a.example", "https://b.example"]
        );
    }
}
