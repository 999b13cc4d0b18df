//! The in-process backend, used when `REDIS_URL` is unset: one instance only, since nothing
//! is shared. It keeps the same rules as Redis (generations checked at store time, a write log
//! that stores catch up with, scoped indexes, compare-and-set live updates, every operation
//! atomic under one lock), so the cache's promises hold the same way; moka bounds its memory and
//! expires entries.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::entry::version_of;
use super::key::{Invalidation, Scope};
use super::{AppendRequest, Replaced, StoreOutcome, StoreRequest, WRITE_LOG_LENGTH, format_record};

/// Entries kept at most; the least useful are evicted past it.
const MAX_ENTRIES: u64 = 50_000;

#[derive(Default)]
struct Indexes {
    generations: HashMap<String, u64>,
    /// index key → entry key → encoded scope
    entries: HashMap<String, HashMap<String, String>>,
    /// The write log: its position, and the records after `position - log.len()`.
    position: u64,
    log: VecDeque<Vec<u8>>,
}

pub(crate) struct MemoryBackend {
    entries: moka::sync::Cache<String, Arc<[u8]>>,
    indexes: Mutex<Indexes>,
}

impl MemoryBackend {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .time_to_live(ttl)
                .build(),
            indexes: Mutex::new(Indexes::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Indexes> {
        self.indexes.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.entries.get(key).map(|v| v.to_vec())
    }

    pub(crate) fn position(&self, keys: &[String]) -> (u64, Vec<String>) {
        let indexes = self.lock();
        let generations = keys
            .iter()
            .map(|k| indexes.generations.get(k).copied().unwrap_or(0).to_string())
            .collect();
        (indexes.position, generations)
    }

    pub(crate) fn store(&self, req: &StoreRequest<'_>) -> StoreOutcome {
        let mut indexes = self.lock();
        let current = |k: &String| indexes.generations.get(k).copied().unwrap_or(0).to_string();
        if req
            .generations
            .iter()
            .any(|(k, expected)| current(k) != *expected)
        {
            return StoreOutcome::Refused;
        }
        if indexes.position != req.seq {
            let behind = indexes.position.saturating_sub(req.seq);
            if indexes.position < req.seq || behind > indexes.log.len() as u64 {
                return StoreOutcome::Refused;
            }
            let skip = indexes.log.len() - behind as usize;
            return StoreOutcome::Behind {
                seq: indexes.position,
                records: indexes.log.iter().skip(skip).cloned().collect(),
            };
        }
        self.entries
            .insert(req.entry_key.to_owned(), Arc::from(req.value));
        for (index, _) in &req.index_keys {
            let fields = indexes.entries.entry(index.clone()).or_default();
            self.prune(fields);
            fields.insert(req.entry_key.to_owned(), req.scope.clone());
        }
        StoreOutcome::Stored
    }

    pub(crate) fn append(&self, req: &AppendRequest) -> (u64, Vec<(String, Vec<u8>)>) {
        let mut indexes = self.lock();
        let first = indexes.position + 1;
        for record in &req.records {
            indexes.position += 1;
            let position = indexes.position;
            indexes.log.push_back(format_record(position, record));
        }
        while indexes.log.len() as u64 > WRITE_LOG_LENGTH {
            indexes.log.pop_front();
        }
        let mut listed: Vec<(String, Vec<u8>)> = Vec::new();
        for ((index, _), spans) in &req.indexes {
            let Some(fields) = indexes.entries.get_mut(index) else {
                continue;
            };
            self.prune(fields);
            for (key, scope) in fields.iter() {
                if Scope::decode(scope).is_some_and(|s| s.is_touched_by(spans))
                    && !listed.iter().any(|(k, _)| k == key)
                    && let Some(value) = self.entries.get(key)
                {
                    listed.push((key.clone(), value.to_vec()));
                }
            }
        }
        (first, listed)
    }

    pub(crate) fn replace(&self, items: &[(String, Vec<u8>, Vec<u8>)]) -> Vec<Replaced> {
        let _atomic = self.lock();
        items
            .iter()
            .map(|(key, version, value)| match self.entries.get(key) {
                None => Replaced::Gone,
                Some(current) if version_of(&current) == version.as_slice() => {
                    self.entries
                        .insert(key.clone(), Arc::from(value.as_slice()));
                    Replaced::Done
                }
                Some(current) => Replaced::Changed(current.to_vec()),
            })
            .collect()
    }

    pub(crate) fn remove(&self, keys: &[String]) -> u64 {
        let _atomic = self.lock();
        keys.iter()
            .filter(|k| self.entries.remove(k.as_str()).is_some())
            .count() as u64
    }

    pub(crate) fn invalidate(&self, prefix: &str, inv: &Invalidation) -> u64 {
        let mut indexes = self.lock();
        let mut deleted = 0;
        for (tag, spans) in &inv.spans {
            *indexes
                .generations
                .entry(tag.generation_key(prefix))
                .or_default() += 1;
            let Some(fields) = indexes.entries.get_mut(&tag.index_key(prefix)) else {
                continue;
            };
            fields.retain(|entry, scope| {
                let touched = Scope::decode(scope).is_none_or(|s| s.is_touched_by(spans));
                if touched && self.entries.remove(entry).is_some() {
                    deleted += 1;
                }
                !touched
            });
        }
        deleted
    }

    pub(crate) fn clear(&self) -> u64 {
        let mut indexes = self.lock();
        let n = self.entries.entry_count();
        self.entries.invalidate_all();
        // Generations and the write log are kept: a computation that started before the clear
        // must still be refused, or caught up, if a write lands while it runs.
        indexes.entries.clear();
        n
    }

    /// Drops every logged create, keeping the position: a computation that must catch up from
    /// the log can no longer, and is refused instead (never applied a wrong record).
    pub(crate) fn forget_write_log(&self) {
        self.lock().log.clear();
    }

    /// Forgets index fields whose entries moka has expired or evicted, so an index holds the
    /// entries alive, not every entry ever stored under its tag.
    fn prune(&self, fields: &mut HashMap<String, String>) {
        fields.retain(|k, _| self.entries.contains_key(k));
    }
}
