//! Where a deployment's keys live. Every key of one shard carries the shard's hash tag, so each
//! script's keys (an entry, the indexes and generations of its tags, the shard's write log) fall
//! in one Redis Cluster slot, as a cluster requires of a script. An entry belongs to one shard,
//! chosen by hashing its key; a write visits every shard, since any shard may hold entries its
//! day or user touches (docs/cache.md, "Redis Cluster").
//!
//! One Redis (or the in-process cache) is one shard tagged `{prefix}`, the layout that existed
//! before clusters. On a cluster there are [`CLUSTER_SHARDS`], whose tags are chosen so that
//! their slots sit one in each twelfth of the slot space: `redis-cli --cluster create` gives
//! each master an equal run of slots, so 1, 2, 3, 4, 6 or 12 masters each hold the same number
//! of shards, and reads spread evenly over them whatever day is hot.

use std::sync::Mutex;

use super::breaker::Breaker;
use super::key::{CacheKey, Invalidation};

/// Shards on a cluster. Every instance of a deployment must agree on it (an entry stored in a
/// shard that a write does not visit would never be invalidated), which is why it is a constant
/// and not a setting.
pub(crate) const CLUSTER_SHARDS: usize = 12;

/// One shard as the cache uses it: where its keys live, and its own breaker and remembered
/// invalidations, so a master that fails costs BYPASS only for the entries in its slots.
pub(crate) struct Shard {
    pub(crate) index: usize,
    pub(crate) prefix: String,
    pub(crate) slot: u16,
    pub(crate) breaker: Breaker,
    /// Invalidations that failed here; until they are applied no entry of this shard is trusted.
    pub(crate) pending: Mutex<Vec<Invalidation>>,
    pub(crate) flushing: tokio::sync::Mutex<()>,
}

impl Shard {
    fn new(index: usize, prefix: String, breaker: Breaker) -> Self {
        Self {
            index,
            slot: slot_of(&prefix),
            prefix,
            breaker,
            pending: Mutex::new(Vec::new()),
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn has_pending(&self) -> bool {
        self.pending.lock().map(|p| !p.is_empty()).unwrap_or(true)
    }

    pub(crate) fn remember(&self, inv: Invalidation) {
        tracing::warn!(
            shard = self.index,
            tags = inv.spans.len(),
            "cache invalidation failed; remembered, and reads of this shard bypass the cache until it is applied"
        );
        if let Ok(mut p) = self.pending.lock() {
            p.push(inv);
        }
    }
}

/// Slots of a Redis Cluster.
const SLOTS: u32 = 16_384;

/// One shard holding everything, tagged with the prefix itself.
pub(crate) fn single(prefix: &str, breaker: impl Fn() -> Breaker) -> Vec<Shard> {
    vec![Shard::new(0, format!("{{{prefix}}}"), breaker())]
}

/// `count` shards whose slots fall one in each `count`-th of the slot space: shard `i` is tagged
/// `{prefix.k}` with the least `k` that puts it in the `i`-th run.
pub(crate) fn spread(prefix: &str, count: usize, breaker: impl Fn() -> Breaker) -> Vec<Shard> {
    let count = count.max(1) as u32;
    (0..count)
        .map(|i| {
            let (lo, hi) = (i * SLOTS / count, (i + 1) * SLOTS / count);
            let tag = (0u64..)
                .map(|k| format!("{{{prefix}.{k}}}"))
                .find(|tag| (lo..hi).contains(&u32::from(slot_of(tag))))
                .unwrap_or_else(|| unreachable!("every run of slots is reached by some tag"));
            Shard::new(i as usize, tag, breaker())
        })
        .collect()
}

/// Which of `count` shards an entry lives in: a hash of its key without prefix, so every
/// instance puts the same entry in the same shard.
pub(crate) fn shard_of(key: &CacheKey, count: usize) -> usize {
    if count <= 1 {
        return 0;
    }
    (fnv1a(key.entry_key("").as_bytes()) % count as u64) as usize
}

/// The cluster slot of a key: CRC16 (XMODEM) of its hash tag, or of the whole key when it has
/// none, modulo 16384, as Redis computes it (the redis crate keeps its own copy private).
fn slot_of(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|b| *b == b'{').and_then(|open| {
        let close = bytes[open + 1..].iter().position(|b| *b == b'}')?;
        (close > 0).then(|| &bytes[open + 1..open + 1 + close])
    });
    let crc = tagged.unwrap_or(bytes).iter().fold(0u16, |crc, b| {
        (0..8).fold(crc ^ (u16::from(*b) << 8), |crc, _| {
            if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            }
        })
    });
    crc % SLOTS as u16
}

/// FNV-1a: stable across processes and versions, unlike the standard library's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_the_ones_redis_computes() {
        // `CLUSTER KEYSLOT` on Redis 7 (the hash-tag cases are the examples of its manual).
        assert_eq!(slot_of("foo"), 12182);
        assert_eq!(slot_of("{user1000}.following"), slot_of("user1000"));
        assert_eq!(slot_of("foo{}{bar}"), 8363);
        assert_eq!(slot_of("foo{{bar}}zap"), 4015);
        assert_eq!(slot_of("foo{bar}{zap}"), 5061);
        assert_eq!(slot_of("123456789"), 12739);
        assert_eq!(slot_of("{analytics}:e:summary:x"), 14118);
    }

    fn breaker() -> Breaker {
        Breaker::new(3, std::time::Duration::from_secs(1))
    }

    #[test]
    fn spread_shards_sit_one_in_each_run_of_slots() {
        let shards = spread("analytics", CLUSTER_SHARDS, breaker);
        assert_eq!(shards.len(), CLUSTER_SHARDS);
        for (i, shard) in shards.iter().enumerate() {
            assert_eq!(shard.index, i);
            let slot = u32::from(shard.slot);
            let run = slot * CLUSTER_SHARDS as u32 / SLOTS;
            assert_eq!(
                run as usize, i,
                "shard {i} ({}) in slot {slot}",
                shard.prefix
            );
            assert_eq!(slot_of(&format!("{}:e:x", shard.prefix)), shard.slot);
        }
    }

    #[test]
    fn one_redis_keeps_the_layout_it_had_before_clusters() {
        let shards = single("analytics", breaker);
        assert_eq!(shards.len(), 1);
        assert_eq!(shards[0].prefix, "{analytics}");
    }
}
