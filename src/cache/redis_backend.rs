//! The Redis backend. Reads are one `GET`; stores and invalidations are Lua scripts, so each
//! is atomic with respect to the other (that atomicity is what makes "no stale set" hold).
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

use super::CacheError;
use super::StoreRequest;
use super::key::{Invalidation, Span};

const STORE_SCRIPT: &str = r"
-- KEYS: entry, generation keys (n), index keys
-- ARGV: value, ttl, n, expected generations (n), scope, index ttl
local n = tonumber(ARGV[3])
for i = 1, n do
  local current = redis.call('GET', KEYS[1 + i]) or '0'
  if current ~= ARGV[3 + i] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
local scope = ARGV[4 + n]
local index_ttl = tonumber(ARGV[5 + n])
for i = 2 + n, #KEYS do
  redis.call('HSET', KEYS[i], KEYS[1], scope)
  if redis.call('TTL', KEYS[i]) < index_ttl then redis.call('EXPIRE', KEYS[i], index_ttl) end
end
return 1
";

const INVALIDATE_SCRIPT: &str = r"
-- KEYS: generation keys (n), then index keys
-- ARGV: generation ttl, n, then per index key: span count, then (first, last, action) per span
local gen_ttl = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
for i = 1, n do
  redis.call('INCR', KEYS[i])
  redis.call('EXPIRE', KEYS[i], gen_ttl)
end
local deleted = 0
local a = 3
for i = n + 1, #KEYS do
  local count = tonumber(ARGV[a]); a = a + 1
  local spans = {}
  for s = 1, count do
    spans[s] = { tonumber(ARGV[a]), tonumber(ARGV[a + 1]), ARGV[a + 2] }
    a = a + 3
  end
  local fields = redis.call('HGETALL', KEYS[i])
  for f = 1, #fields, 2 do
    local from, to, action = string.match(fields[f + 1], '^(%-?%d+) (%-?%d+) (.*)$')
    from = tonumber(from); to = tonumber(to)
    for s = 1, count do
      local span = spans[s]
      if from ~= nil and from <= span[2] and span[1] < to and (action == '' or action == span[3]) then
        deleted = deleted + redis.call('DEL', fields[f])
        redis.call('HDEL', KEYS[i], fields[f])
        break
      end
    end
  end
end
return deleted
";

pub struct RedisBackend {
    pool: Pool,
    per_thread: Mutex<HashMap<ThreadId, MultiplexedConnection>>,
    store_script: Script,
    invalidate_script: Script,
}

impl RedisBackend {
    /// Builds the pool; no connection is made until the first operation.
    pub fn new(url: &str, op_timeout: Duration) -> Result<Self, CacheError> {
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
            store_script: Script::new(STORE_SCRIPT),
            invalidate_script: Script::new(INVALIDATE_SCRIPT),
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

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.with_connection(|mut c| async move { c.get(key).await })
            .await
    }

    pub async fn generations(&self, keys: &[String]) -> Result<Vec<String>, CacheError> {
        let values: Vec<Option<String>> = self
            .with_connection(|mut c| async move {
                redis::cmd("MGET").arg(keys).query_async(&mut c).await
            })
            .await?;
        Ok(values
            .into_iter()
            .map(|v| v.unwrap_or_else(|| "0".into()))
            .collect())
    }

    pub async fn store(&self, req: &StoreRequest<'_>) -> Result<bool, CacheError> {
        let mut invocation = self.store_script.prepare_invoke();
        invocation.key(req.entry_key);
        for (key, _) in req.generations {
            invocation.key(key);
        }
        for key in &req.index_keys {
            invocation.key(key);
        }
        invocation
            .arg(req.value)
            .arg(req.ttl_secs)
            .arg(req.generations.len());
        for (_, expected) in req.generations {
            invocation.arg(expected);
        }
        invocation.arg(&req.scope).arg(req.index_ttl_secs);
        let stored: i64 = self
            .with_connection(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        Ok(stored == 1)
    }

    pub async fn invalidate(
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
            invocation.key(tag.index_key(prefix));
        }
        invocation.arg(generation_ttl_secs).arg(inv.spans.len());
        for spans in inv.spans.values() {
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
        self.with_connection(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await
    }

    /// Removes every entry and index under `prefix:`, a SCAN page at a time (never KEYS, which
    /// blocks Redis). Generation counters stay: resetting one to a value a running computation
    /// already read would let that computation store a result older than a write.
    pub async fn clear(&self, prefix: &str) -> Result<u64, CacheError> {
        let pattern = format!("{}:*", escape_glob(prefix));
        let generations = format!("{prefix}:g:");
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
            keys.retain(|k| !k.starts_with(&generations));
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

    pub async fn ping(&self) -> Result<(), CacheError> {
        self.with_connection(|mut c| async move {
            redis::cmd("PING").query_async::<String>(&mut c).await
        })
        .await
        .map(|_| ())
    }
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
    #[test]
    fn a_prefix_with_pattern_characters_matches_only_itself() {
        assert_eq!(super::escape_glob("a*b[1]"), r"a\*b\[1\]");
    }
}
