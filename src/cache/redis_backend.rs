//! The Redis backend, on one Redis or on a Redis Cluster. Reads are one `GET`; stores, creates'
//! log appends, live updates and invalidations are Lua scripts, so each is atomic with respect to
//! the others (that atomicity is what makes "no stale set" and exact live updates hold). Every
//! script's keys share one hash tag (`shards.rs`), so on a cluster each runs on the one master
//! that holds its slot; the redis crate's cluster client follows `MOVED` and `ASK` redirections
//! and refreshes its slot map after a failover.
//!
//! deadpool-redis establishes connections to one Redis (with its timeouts); the hot path then
//! shares a multiplexed connection, which pipelines concurrent commands over one socket instead
//! of paying a pool checkout and a PING per request. A cluster connection multiplexes the same
//! way, one socket per node. Each worker thread has its own: a connection's I/O runs on the
//! thread that opened it, and a command from another thread would cost two cross-thread
//! wake-ups per round trip. An error drops that thread's connection to one Redis so its next
//! operation dials a fresh one; a cluster connection reconnects to each node itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{self, AsyncCommands, Script};
use deadpool_redis::{Config, Connection, Pool, PoolConfig, Runtime, Timeouts};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};

use super::key::{Invalidation, Span};
use super::shards::Shard;
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

/// Keeps the larger of two commit positions (`lsn.rs`).
const KEEP_MAX_SCRIPT: &str = include_str!("lua/keep_max.lua");

/// How long a master found without replicas is believed to have none.
const REPLICA_RECHECK: Duration = Duration::from_secs(1);

/// How connections are made: a pool for one Redis, a cluster client for a cluster.
enum Dialer {
    Single(Pool),
    Cluster(Box<ClusterClient>),
}

/// A shared, multiplexed connection to one Redis or to every node of a cluster.
#[derive(Clone)]
enum Link {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Link {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

impl Link {
    /// Sends a command that names no key to the master holding `slot` (on one Redis: to it).
    async fn on_slot(&mut self, slot: u16, cmd: redis::Cmd) -> redis::RedisResult<redis::Value> {
        match self {
            Self::Single(c) => cmd.query_async(c).await,
            Self::Cluster(c) => {
                let route = Route::new(slot, SlotAddr::Master);
                c.route_command(
                    cmd,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                )
                .await
            }
        }
    }

    /// Sends a command to every master, answering each one's reply.
    async fn on_masters(&mut self, cmd: redis::Cmd) -> redis::RedisResult<Vec<redis::Value>> {
        match self {
            Self::Single(c) => Ok(vec![cmd.query_async(c).await?]),
            Self::Cluster(c) => {
                let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                match c.route_command(cmd, routing).await? {
                    redis::Value::Map(replies) => Ok(replies.into_iter().map(|(_, v)| v).collect()),
                    other => Ok(vec![other]),
                }
            }
        }
    }
}

pub(crate) struct RedisBackend {
    dialer: Dialer,
    op_timeout: Duration,
    per_thread: Mutex<HashMap<ThreadId, Link>>,
    /// Shards whose master had no replica when last asked, until when that is believed.
    unreplicated: Mutex<HashMap<usize, Instant>>,
    store_script: Script,
    append_script: Script,
    replace_script: Script,
    invalidate_script: Script,
    keep_max_script: Script,
}

impl RedisBackend {
    /// Builds the pool for one Redis; no connection is made until the first operation.
    pub(crate) fn new(url: &str, op_timeout: Duration) -> Result<Self, CacheError> {
        let mut config = Config::from_url(url);
        config.pool = Some(PoolConfig {
            max_size: 4,
            timeouts: Timeouts {
                wait: Some(op_timeout),
                create: Some(connect_timeout(op_timeout)),
                recycle: Some(op_timeout),
            },
            ..PoolConfig::default()
        });
        let pool = config
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| CacheError::Backend(e.to_string()))?;
        Ok(Self::with_dialer(Dialer::Single(pool), op_timeout))
    }

    /// A client for the cluster that `seeds` belong to; no connection is made until the first
    /// operation, which reads the slot map from whichever seed answers.
    pub(crate) fn cluster(seeds: &[String], op_timeout: Duration) -> Result<Self, CacheError> {
        let client = ClusterClient::builder(seeds.iter().map(String::as_str))
            .connection_timeout(connect_timeout(op_timeout))
            .response_timeout(op_timeout)
            .build()
            .map_err(|e| CacheError::Backend(e.to_string()))?;
        Ok(Self::with_dialer(
            Dialer::Cluster(Box::new(client)),
            op_timeout,
        ))
    }

    fn with_dialer(dialer: Dialer, op_timeout: Duration) -> Self {
        Self {
            dialer,
            op_timeout,
            per_thread: Mutex::new(HashMap::new()),
            unreplicated: Mutex::new(HashMap::new()),
            store_script: Script::new(&format!("{PRUNE}{STORE_SCRIPT}")),
            append_script: Script::new(&format!("{PRUNE}{APPEND_SCRIPT}")),
            replace_script: Script::new(REPLACE_SCRIPT),
            invalidate_script: Script::new(&format!(
                "{INVALIDATE_SHEBANG}{PRUNE}{INVALIDATE_SCRIPT}"
            )),
            keep_max_script: Script::new(KEEP_MAX_SCRIPT),
        }
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.dialer, Dialer::Cluster(_))
    }

    async fn connection(&self) -> Result<Link, CacheError> {
        let thread = std::thread::current().id();
        if let Some(conn) = self
            .per_thread
            .lock()
            .ok()
            .and_then(|c| c.get(&thread).cloned())
        {
            return Ok(conn);
        }
        let conn = match &self.dialer {
            Dialer::Single(pool) => {
                let pooled = pool
                    .get()
                    .await
                    .map_err(|e| CacheError::Backend(e.to_string()))?;
                Link::Single(Connection::take(pooled))
            }
            Dialer::Cluster(client) => Link::Cluster(
                client
                    .get_async_connection()
                    .await
                    .map_err(|e| CacheError::Backend(e.to_string()))?,
            ),
        };
        if let Ok(mut per_thread) = self.per_thread.lock() {
            per_thread.insert(thread, conn.clone());
        }
        Ok(conn)
    }

    /// Runs `op` on the shared connection. A connection to one Redis that fails is dropped, so
    /// the next operation dials again; a cluster connection is kept, since it reconnects to each
    /// node and refreshes its slot map itself, and dialing every node again because one master
    /// died would cost the shards on the others their cache too.
    async fn with_connection<T, F, Fut>(&self, op: F) -> Result<T, CacheError>
    where
        F: FnOnce(Link) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.connection().await?;
        op(conn).await.map_err(|e| {
            if !self.is_cluster()
                && let Ok(mut per_thread) = self.per_thread.lock()
            {
                per_thread.remove(&std::thread::current().id());
            }
            CacheError::Backend(e.to_string())
        })
    }

    /// Waits until the master holding the shard's slot has passed every write this connection
    /// sent it to a replica, so that a failover cannot promote a replica that lacks an
    /// invalidation or a live update a client was told had landed (docs/cache.md, "Redis
    /// Cluster"). A master with no replica connected (one just promoted, say) has nothing to
    /// wait for: no replica of it can be promoted with fewer writes than it has; that is
    /// remembered for a second, so its writes do not each wait for a WAIT to time out. One
    /// Redis is not replicated by us: nothing to do.
    pub(crate) async fn replicated(&self, shard: &Shard) -> Result<(), CacheError> {
        if !self.is_cluster() || self.known_unreplicated(shard.index) {
            return Ok(());
        }
        let slot = shard.slot;
        // Half the operation timeout, which is also the cluster client's response timeout: a
        // WAIT that times out is still answered, and ROLE can be asked.
        let wait_ms = (self.op_timeout.as_millis() as u64 / 2).max(1);
        let (acked, has_replicas) = self
            .with_connection(|mut c| async move {
                let mut wait = redis::cmd("WAIT");
                wait.arg(1).arg(wait_ms);
                let acked: i64 = redis::from_redis_value(c.on_slot(slot, wait).await?)?;
                if acked >= 1 {
                    return Ok((true, true));
                }
                // ROLE on a master: ["master", offset, [[ip, port, offset], ...]].
                let role: Vec<redis::Value> =
                    redis::from_redis_value(c.on_slot(slot, redis::cmd("ROLE")).await?)?;
                let has_replicas =
                    matches!(role.get(2), Some(redis::Value::Array(r)) if !r.is_empty());
                Ok((false, has_replicas))
            })
            .await?;
        match (acked, has_replicas) {
            (true, _) => Ok(()),
            (false, false) => {
                if let Ok(mut unreplicated) = self.unreplicated.lock() {
                    unreplicated.insert(shard.index, Instant::now() + REPLICA_RECHECK);
                }
                Ok(())
            }
            (false, true) => Err(CacheError::Backend(
                "no replica acknowledged the write in time".into(),
            )),
        }
    }

    fn known_unreplicated(&self, shard: usize) -> bool {
        self.unreplicated
            .lock()
            .ok()
            .and_then(|u| u.get(&shard).copied())
            .is_some_and(|until| Instant::now() < until)
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.with_connection(|mut c| async move { c.get(key).await })
            .await
    }

    /// The write log's position and the values of `generation_keys`, in one round trip.
    pub(crate) async fn position(
        &self,
        shard: &Shard,
        generation_keys: &[String],
    ) -> Result<(u64, Vec<String>), CacheError> {
        let position_key = position_key(&shard.prefix);
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
        shard: &Shard,
        req: &StoreRequest<'_>,
    ) -> Result<StoreOutcome, CacheError> {
        let mut invocation = self.store_script.prepare_invoke();
        invocation
            .key(req.entry_key)
            .key(position_key(&shard.prefix))
            .key(log_key(&shard.prefix));
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
        shard: &Shard,
        req: &AppendRequest,
    ) -> Result<(u64, Vec<(String, Vec<u8>)>), CacheError> {
        let mut invocation = self.append_script.prepare_invoke();
        invocation
            .key(position_key(&shard.prefix))
            .key(log_key(&shard.prefix));
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
        shard: &Shard,
        inv: &Invalidation,
        generation_ttl_secs: u64,
    ) -> Result<u64, CacheError> {
        let mut invocation = self.invalidate_script.prepare_invoke();
        for tag in inv.spans.keys() {
            invocation.key(tag.generation_key(&shard.prefix));
        }
        for tag in inv.spans.keys() {
            let (index, expiry) = tag.index_keys(&shard.prefix);
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
    /// blocks Redis) on the master holding the prefix's `slot`. Generation counters and the
    /// write log stay: resetting either to a value a running computation already read would let
    /// it store a result older than a write.
    pub(crate) async fn clear(&self, shard: &Shard) -> Result<u64, CacheError> {
        let (prefix, slot) = (shard.prefix.as_str(), shard.slot);
        let pattern = format!("{}:*", escape_glob(prefix));
        let generations = format!("{prefix}:g:");
        let write_log = format!("{prefix}:w:");
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let pattern = pattern.as_str();
            let (next, mut keys): (u64, Vec<String>) = self
                .with_connection(|mut c| async move {
                    let mut scan = redis::cmd("SCAN");
                    scan.arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000);
                    Ok(redis::from_redis_value(c.on_slot(slot, scan).await?)?)
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

    /// The `maxmemory` and `maxmemory-policy` of a master that may evict keys, if any does (on
    /// one Redis: its own), else `(0, "noeviction")`; an error if one does not let us read them
    /// (managed services may rename `CONFIG`).
    pub(crate) async fn eviction_settings(&self) -> Result<(u64, String), CacheError> {
        let replies: Vec<Vec<String>> = self
            .with_connection(|mut c| async move {
                let mut config = redis::cmd("CONFIG");
                config.arg("GET").arg("maxmemory*");
                c.on_masters(config)
                    .await?
                    .into_iter()
                    .map(|v| Ok(redis::from_redis_value(v)?))
                    .collect()
            })
            .await?;
        let mut worst = (0, "noeviction".to_owned());
        for pairs in replies {
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
            if maxmemory > 0 && policy != "noeviction" {
                worst = (maxmemory, policy);
            }
        }
        Ok(worst)
    }

    /// Memory in use and its limit, added up over the masters (one Redis: itself): each one's
    /// `maxmemory`, or its machine's memory when no `maxmemory` is set (Redis then grows until
    /// the machine runs out), from `INFO memory`.
    pub(crate) async fn memory(&self) -> Result<(u64, u64), CacheError> {
        let infos: Vec<String> = self
            .with_connection(|mut c| async move {
                let mut info = redis::cmd("INFO");
                info.arg("memory");
                c.on_masters(info)
                    .await?
                    .into_iter()
                    .map(|v| Ok(redis::from_redis_value(v)?))
                    .collect()
            })
            .await?;
        let (mut used, mut limit) = (0, 0);
        for info in &infos {
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            used += field("used_memory")
                .ok_or_else(|| CacheError::Backend("INFO memory gave no used_memory".into()))?;
            limit += field("maxmemory")
                .filter(|m| *m > 0)
                .or_else(|| field("total_system_memory"))
                .unwrap_or(0);
        }
        Ok((used, limit))
    }

    /// Drops the write log, keeping its position: a store that must catch up finds too few
    /// records and is refused (the store script counts them), never fed a wrong one.
    pub(crate) async fn forget_write_log(&self, shard: &Shard) -> Result<(), CacheError> {
        let key = log_key(&shard.prefix);
        self.with_connection(|mut c| async move {
            redis::cmd("DEL").arg(&key).query_async::<u64>(&mut c).await
        })
        .await
        .map(|_| ())
    }

    /// Sets `key` to `value` unless it holds a larger one (both fixed-width hex).
    pub(crate) async fn keep_max(&self, key: &str, value: &str) -> Result<(), CacheError> {
        let mut invocation = self.keep_max_script.prepare_invoke();
        invocation.key(key).arg(value);
        self.with_connection(|mut c| async move { invocation.invoke_async::<i64>(&mut c).await })
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

/// Connection set-up may take longer than one operation (a TCP and, on a cluster, a slot-map
/// round trip), but never long.
fn connect_timeout(op_timeout: Duration) -> Duration {
    op_timeout.max(Duration::from_millis(200))
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
