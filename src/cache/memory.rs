//! The in-process backend, used when `REDIS_URL` is unset: one instance only, since nothing
//! is shared. It keeps the same rules as Redis (generations checked at store time, scoped
//! indexes, atomic store and invalidation under one lock), so the cache's promises hold the
//! same way; moka bounds its memory and expires entries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::StoreRequest;
use super::key::{Invalidation, Scope};

/// Entries kept at most; the least useful are evicted past it.
const MAX_ENTRIES: u64 = 50_000;

#[derive(Default)]
struct Indexes {
    generations: HashMap<String, u64>,
    /// index key → entry key → encoded scope
    entries: HashMap<String, HashMap<String, String>>,
}

pub struct MemoryBackend {
    entries: moka::sync::Cache<String, Arc<[u8]>>,
    indexes: Mutex<Indexes>,
}

impl MemoryBackend {
    pub fn new(ttl: Duration) -> Self {
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

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.entries.get(key).map(|v| v.to_vec())
    }

    pub fn generations(&self, keys: &[String]) -> Vec<String> {
        let indexes = self.lock();
        keys.iter()
            .map(|k| indexes.generations.get(k).copied().unwrap_or(0).to_string())
            .collect()
    }

    pub fn store(&self, req: &StoreRequest<'_>) -> bool {
        let mut indexes = self.lock();
        let current = |k: &String| indexes.generations.get(k).copied().unwrap_or(0).to_string();
        if req
            .generations
            .iter()
            .any(|(k, expected)| current(k) != *expected)
        {
            return false;
        }
        self.entries
            .insert(req.entry_key.to_owned(), Arc::from(req.value));
        for index in &req.index_keys {
            let fields = indexes.entries.entry(index.clone()).or_default();
            if fields.len() >= 1024 {
                // Forget entries that moka has already expired or evicted.
                fields.retain(|k, _| self.entries.contains_key(k));
            }
            fields.insert(req.entry_key.to_owned(), req.scope.clone());
        }
        true
    }

    pub fn invalidate(&self, prefix: &str, inv: &Invalidation) -> u64 {
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

    pub fn clear(&self) -> u64 {
        let mut indexes = self.lock();
        let n = self.entries.entry_count();
        self.entries.invalidate_all();
        // Generations are kept: a computation that started before the clear must still be
        // refused if a write lands while it runs.
        indexes.entries.clear();
        n
    }
}
