//! The Redis backend. Reads are one `GET`; stores, creates' log appends, live updates and
//! invalidations are Lua scripts, so each is atomic with respect to the others (that atomicity
//! is what makes "no stale set" and exact live updates hold).
//!
//! deadpool-redis establishes connections (with its timeouts); the hot path then shares a
//! multiplexed connection, which pipelines concurrent commands over one socket instead of
//! paying a pool checkout and a PING per request. Each worker thread has its own: a connection's
//! I/O runs on the thread that opened it, and a command from another thread would cost two
//! cross-thread wake-ups per round trip. Any error drops that thread's connection so its next
//! operation dials a fresh one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::thread::ThreadId;
use std::time::Duration;

use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{self, AsyncCommands, Script};
use deadpool_redis::{Config, Connection, Pool, PoolConfig, Runtime, Timeouts};

use super::key::{Invalidation, Span};
use super::{AppendRequest, CacheError, Replaced, StoreOutcome, StoreRequest, WRITE_LOG_LENGTH};

/// Shared by the scripts that walk an index: drops the fields of entries whose time is up (at
/// most 1000 per call), so a walk costs what is alive, not everything ever stored under a tag.
const PRUNE: &str = include_str!("lua/prune.lua");

const STORE_SCRIPT: &str = include_str!("lua/store.lua");

const APPEND_SCRIPT: &str = include_str!("lua/append.lua");

const REPLACE_SCRIPT: &str = include_str!("lua/replace.lua");

/// Runs even when Redis is full under `noeviction` (`allow-oom`): it mostly deletes, and a
/// refused invalidation would keep stale entries alive. Starts with its shebang line, so it is
/// put in front of `PRUNE`, not after.
const INVALIDATE_SHEBANG: &str = "#!lua flags=allow-oom\n";

const INVALIDATE_SCRIPT: &str = include_str!("lua/invalidate.lua");

pub(crate) struct RedisBackend {
    pool: Pool,
    per_thread: Mutex<HashMap<ThreadId, MultiplexedConnection>>,
    store_script: Script,
    append_script: Script,
    replace_script: Script,
    invalidate_script: Script,
}

impl RedisBackend {
    /// Builds the pool; no connection is made until the first operation.
    pub(crate) fn new(url: &str, op_timeout: Duration) -> Result<Self, CacheError> {
        let mut config = Config::from_url(url);
        config.pool = Some(PoolConfig {
            max_size: 4,
            timeouts: Timeouts {
                wait: Some(op_timeout),
                create: Some(op_timeout.max(Duration::from_millis(200))),
                recycle: Some(op_timeout),
            },
            ..PoolConfig::default()
        });
        let pool = config
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| CacheError::Backend(e.to_string()))?;
        Ok(Self {
            pool,
            per_thread: Mutex::new(HashMap::new()),
            store_script: Script::new(&format!("{PRUNE}{STORE_SCRIPT}")),
            append_script: Script::new(&format!("{PRUNE}{APPEND_SCRIPT}")),
            replace_script: Script::new(REPLACE_SCRIPT),
            invalidate_script: Script::new(&format!(
                "{INVALIDATE_SHEBANG}{PRUNE}{INVALIDATE_SCRIPT}"
            )),
        })
    }

    async fn connection(&self) -> Result<MultiplexedConnection, CacheError> {
        let thread = std::thread::current().id();
        if let Some(conn) = self
            .per_thread
            .lock()
            .ok()
            .and_then(|c| c.get(&thread).cloned())
        {
            return Ok(conn);
        }
        let pooled = self
            .pool
            .get()
            .await
            .map_err(|e| CacheError::Backend(e.to_string()))?;
        let conn = Connection::take(pooled);
        if let Ok(mut per_thread) = self.per_thread.lock() {
            per_thread.insert(thread, conn.clone());
        }
        Ok(conn)
    }

    /// Runs `op` on the shared connection, dropping that connection if it fails.
    async fn with_connection<T, F, Fut>(&self, op: F) -> Result<T, CacheError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.connection().await?;
        op(conn).await.map_err(|e| {
            if let Ok(mut per_thread) = self.per_thread.lock() {
                per_thread.remove(&std::thread::current().id());
            }
            CacheError::Backend(e.to_string())
        })
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.with_connection(|mut c| async move { c.get(key).await })
            .await
    }

    /// The write log's position and the values of `generation_keys`, in one round trip.
    pub(crate) async fn position(
        &self,
        prefix: &str,
        generation_keys: &[String],
    ) -> Result<(u64, Vec<String>), CacheError> {
        let position_key = position_key(prefix);
        let values: Vec<Option<String>> = self
            .with_connection(|mut c| async move {
                redis::cmd("MGET")
                    .arg(&position_key)
                    .arg(generation_keys)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let mut values = values.into_iter().map(|v| v.unwrap_or_else(|| "0".into()));
        let position = values
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| CacheError::Backend("unreadable write-log position".into()))?;
        Ok((position, values.collect()))
    }

    pub(crate) async fn store(
        &self,
        prefix: &str,
        req: &StoreRequest<'_>,
    ) -> Result<StoreOutcome, CacheError> {
        let mut invocation = self.store_script.prepare_invoke();
        invocation
            .key(req.entry_key)
            .key(position_key(prefix))
            .key(log_key(prefix));
        for (key, _) in req.generations {
            invocation.key(key);
        }
        for (index, expiry) in &req.index_keys {
            invocation.key(index).key(expiry);
        }
        invocation
            .arg(req.value)
            .arg(req.ttl_secs)
            .arg(req.generations.len());
        for (_, expected) in req.generations {
            invocation.arg(expected);
        }
        invocation
            .arg(req.seq)
            .arg(&req.scope)
            .arg(req.index_ttl_secs);
        let reply: Vec<Vec<u8>> = self
            .with_connection(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        match reply.split_first() {
            Some((status, _)) if status == b"1" => Ok(StoreOutcome::Stored),
            Some((status, rest)) if status == b"2" => {
                let (seq, records) = rest
                    .split_first()
                    .ok_or_else(|| CacheError::Backend("store script: no position".into()))?;
                Ok(StoreOutcome::Behind {
                    seq: parse_u64(seq)?,
                    records: records.to_vec(),
                })
            }
            _ => Ok(StoreOutcome::Refused),
        }
    }

    pub(crate) async fn append(
        &self,
        prefix: &str,
        req: &AppendRequest,
    ) -> Result<(u64, Vec<(String, Vec<u8>)>), CacheError> {
        let mut invocation = self.append_script.prepare_invoke();
        invocation.key(position_key(prefix)).key(log_key(prefix));
        invocation
            .arg(WRITE_LOG_LENGTH)
            .arg(req.log_ttl_secs)
            .arg(req.records.len());
        for record in &req.records {
            invocation.arg(record);
        }
        for ((index, expiry), spans) in &req.indexes {
            invocation.key(index).key(expiry);
            push_spans(&mut invocation, spans);
        }
        let reply: Vec<Vec<u8>> = self
            .with_connection(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        let (first, keys) = reply
            .split_first()
            .ok_or_else(|| CacheError::Backend("append script: no position".into()))?;
        let first = parse_u64(first)?;
        let keys: Vec<String> = keys
            .iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        if keys.is_empty() {
            return Ok((first, Vec::new()));
        }
        // An entry rewritten or removed since the script ran is read as it is now: the update
        // compares versions, and an entry that already includes these creates is left alone.
        let values: Vec<Option<Vec<u8>>> = self
            .with_connection(|mut c| {
                let keys = &keys;
                async move { redis::cmd("MGET").arg(keys).query_async(&mut c).await }
            })
            .await?;
        let listed = keys
            .into_iter()
            .zip(values)
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        Ok((first, listed))
    }

    pub(crate) async fn replace(
        &self,
        items: &[(String, Vec<u8>, Vec<u8>)],
    ) -> Result<Vec<Replaced>, CacheError> {
        let mut invocation = self.replace_script.prepare_invoke();
        for (key, version, value) in items {
            invocation.key(key).arg(version).arg(value);
        }
        let reply: Vec<Vec<u8>> = self
            .with_connection(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        Ok(reply
            .into_iter()
            .map(|r| match r.as_slice() {
                b"1" => Replaced::Done,
                b"" => Replaced::Gone,
                _ => Replaced::Changed(r),
            })
            .collect())
    }

    pub(crate) async fn remove(&self, keys: &[String]) -> Result<u64, CacheError> {
        self.with_connection(|mut c| async move {
            redis::cmd("DEL").arg(keys).query_async(&mut c).await
        })
        .await
    }

    pub(crate) async fn invalidate(
        &self,
        prefix: &str,
        inv: &Invalidation,
        generation_ttl_secs: u64,
    ) -> Result<u64, CacheError> {
        let mut invocation = self.invalidate_script.prepare_invoke();
        for tag in inv.spans.keys() {
            invocation.key(tag.generation_key(prefix));
        }
        for tag in inv.spans.keys() {
            let (index, expiry) = tag.index_keys(prefix);
            invocation.key(index).key(expiry);
        }
        invocation.arg(generation_ttl_secs).arg(inv.spans.len());
        for spans in inv.spans.values() {
            push_spans(&mut invocation, spans);
        }
        self.with_connection(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await
    }

    /// Removes every entry and index under `prefix:`, a SCAN page at a time (never KEYS, which
    /// blocks Redis). Generation counters and the write log stay: resetting either to a value a
    /// running computation already read would let it store a result older than a write.
    pub(crate) async fn clear(&self, prefix: &str) -> Result<u64, CacheError> {
        let pattern = format!("{}:*", escape_glob(prefix));
        let generations = format!("{prefix}:g:");
        let write_log = format!("{prefix}:w:");
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let pattern = pattern.as_str();
            let (next, mut keys): (u64, Vec<String>) = self
                .with_connection(|mut c| async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            keys.retain(|k| !k.starts_with(&generations) && !k.starts_with(&write_log));
            if !keys.is_empty() {
                let n: u64 = self
                    .with_connection(|mut c| async move {
                        redis::cmd("UNLINK").arg(&keys).query_async(&mut c).await
                    })
                    .await?;
                removed += n;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    /// Redis' `maxmemory` and `maxmemory-policy`, if it lets us read them (managed services may
    /// rename `CONFIG`).
    pub(crate) async fn eviction_settings(&self) -> Result<(u64, String), CacheError> {
        let pairs: Vec<String> = self
            .with_connection(|mut c| async move {
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("maxmemory*")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let setting = |name: &str| {
            pairs
                .chunks_exact(2)
                .find(|p| p[0] == name)
                .map(|p| p[1].clone())
        };
        let maxmemory = setting("maxmemory")
            .and_then(|m| m.parse().ok())
            .ok_or_else(|| CacheError::Backend("CONFIG GET maxmemory gave no number".into()))?;
        let policy = setting("maxmemory-policy").unwrap_or_else(|| "noeviction".into());
        Ok((maxmemory, policy))
    }

    /// Redis' memory in use and its limit: `maxmemory`, or the machine's memory when no
    /// `maxmemory` is set (Redis then grows until the machine runs out), from `INFO memory`.
    pub(crate) async fn memory(&self) -> Result<(u64, u64), CacheError> {
        let info: String = self
            .with_connection(|mut c| async move {
                redis::cmd("INFO").arg("memory").query_async(&mut c).await
            })
            .await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let used = field("used_memory")
            .ok_or_else(|| CacheError::Backend("INFO memory gave no used_memory".into()))?;
        let limit = field("maxmemory")
            .filter(|m| *m > 0)
            .or_else(|| field("total_system_memory"))
            .unwrap_or(0);
        Ok((used, limit))
    }

    /// Drops the write log, keeping its position: a store that must catch up finds too few
    /// records and is refused (the store script counts them), never fed a wrong one.
    pub(crate) async fn forget_write_log(&self, prefix: &str) -> Result<(), CacheError> {
        let key = log_key(prefix);
        self.with_connection(|mut c| async move {
            redis::cmd("DEL").arg(&key).query_async::<u64>(&mut c).await
        })
        .await
        .map(|_| ())
    }

    pub(crate) async fn ping(&self) -> Result<(), CacheError> {
        self.with_connection(|mut c| async move {
            redis::cmd("PING").query_async::<String>(&mut c).await
        })
        .await
        .map(|_| ())
    }
}

/// A tag's written spans as the scripts' `read_spans` reads them.
fn push_spans(invocation: &mut redis::ScriptInvocation<'_>, spans: &[Span]) {
    invocation.arg(spans.len());
    for Span {
        first_us,
        last_us,
        action,
    } in spans
    {
        invocation.arg(first_us).arg(last_us).arg(action);
    }
}

/// The counter of creates logged so far: the write log's position.
fn position_key(prefix: &str) -> String {
    format!("{prefix}:w:seq")
}

/// The creates logged recently, scored by position (`docs/cache.md`, "Live ingest").
fn log_key(prefix: &str) -> String {
    format!("{prefix}:w:log")
}

fn parse_u64(raw: &[u8]) -> Result<u64, CacheError> {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| CacheError::Backend("unreadable number from a script".into()))
}

/// Escapes the characters SCAN MATCH treats as a pattern, so a prefix matches only itself.
fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::Scope;

    #[test]
    fn a_prefix_with_pattern_characters_matches_only_itself() {
        assert_eq!(super::escape_glob("a*b[1]"), r"a\*b\[1\]");
    }

    /// The scripts decide in Lua which entries a write touches, the in-process backend and the
    /// live updates in Rust (`Scope::is_touched_by`): one table of cases holds both to one rule,
    /// the Lua side run by a real Redis (`TEST_REDIS_URL`, default the local one).
    #[tokio::test]
    async fn the_scripts_touch_exactly_what_scope_is_touched_by_says() {
        let span = |first: i64, last: i64, action: &str| Span {
            first_us: first,
            last_us: last,
            action: action.to_owned(),
        };
        let scope = |from: i64, to: i64, action: &str| Scope {
            from_us: from,
            to_us: to,
            action: action.to_owned(),
        };
        let cases = [
            (scope(100, 200, ""), vec![span(150, 150, "view")]),
            (scope(100, 200, ""), vec![span(200, 200, "view")]),
            (scope(100, 200, ""), vec![span(100, 100, "view")]),
            (scope(100, 200, ""), vec![span(99, 99, "view")]),
            (scope(100, 200, ""), vec![span(50, 100, "view")]),
            (scope(100, 200, ""), vec![span(50, 99, "view")]),
            (scope(100, 200, ""), vec![span(199, 400, "buy")]),
            (scope(100, 200, "view"), vec![span(150, 150, "buy")]),
            (scope(100, 200, "view"), vec![span(150, 150, "view")]),
            (
                scope(100, 200, "view"),
                vec![span(1, 2, "view"), span(150, 150, "view")],
            ),
            (
                scope(100, 200, "view"),
                vec![span(1, 2, "view"), span(150, 150, "buy")],
            ),
            (scope(-200, -100, ""), vec![span(-150, -150, "x")]),
            (scope(-200, -100, ""), vec![span(-100, -100, "x")]),
            (scope(0, 1, "a:b.c-d_e"), vec![span(0, 0, "a:b.c-d_e")]),
            (scope(100, 200, ""), vec![]),
        ];
        let url =
            std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let client = redis::Client::open(url).expect("redis url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("a Redis to run the scripts on");
        let rule = Script::new(&format!(
            "{PRUNE}\nlocal spans = read_spans(2)\nreturn touched(ARGV[1], spans) and 1 or 0"
        ));
        for (scope, spans) in cases {
            let mut invocation = rule.prepare_invoke();
            invocation.arg(scope.encode());
            push_spans(&mut invocation, &spans);
            let lua: i64 = invocation.invoke_async(&mut conn).await.expect("script");
            assert_eq!(
                lua == 1,
                scope.is_touched_by(&spans),
                "{scope:?} touched by {spans:?}"
            );
        }
    }
}
