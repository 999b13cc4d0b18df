//! Live ingest (docs/cache.md, "Live ingest"): a create is logged and applied to the entries
//! it falls in, in rounds that apply every create queued on this instance at once.

use std::sync::Mutex;
use std::time::Duration;

use super::entry::{Entry, version_of};
use super::shards::Shard;
use super::{
    AppendRequest, Cache, CacheError, Invalidation, MAX_UPDATE_ROUNDS, Payload, Replaced, Touch,
};
use crate::domain::LiveWrite;

/// The least time between two rounds of create updates on one instance. An instance under
/// steady ingest then applies several creates per round, so each entry is rewritten once per
/// round instead of once per create (at 250 creates/s: about 2.7 creates a round, a third of the
/// Redis and server work); a create pays at most this much more latency, and only when another
/// round ran just before it (see docs/cache.md, "Live ingest").
pub(super) const ROUND_INTERVAL: Duration = Duration::from_millis(10);

/// Creates waiting for their cache update, and the turn to apply them: whoever holds the turn
/// applies every create queued so far in one round (one log append, one read and one
/// compare-and-set of each entry), so concurrent creates on one instance never contend for the
/// same entries, and a busy instance applies many creates for the price of one.
#[derive(Default)]
pub(super) struct Combiner {
    queue: Mutex<Vec<(LiveWrite, tokio::sync::oneshot::Sender<bool>)>>,
    turn: tokio::sync::Mutex<()>,
    last_round: Mutex<Option<std::time::Instant>>,
}

impl Combiner {
    /// How long the turn's holder waits before taking the queue: until `interval` has passed
    /// since the last round began. An idle instance never waits.
    pub(super) fn wait_before_round(&self, interval: Duration) -> Option<Duration> {
        let last = self.last_round.lock().ok().and_then(|l| *l)?;
        interval
            .checked_sub(last.elapsed())
            .filter(|d| !d.is_zero())
    }

    pub(super) fn round_begins(&self) {
        if let Ok(mut last) = self.last_round.lock() {
            *last = Some(std::time::Instant::now());
        }
    }
}

/// What a create makes of one stored entry.
pub(super) enum Update {
    /// It already includes the create, or the create does not change it.
    Unneeded,
    /// It cannot absorb the create exactly: remove it.
    Impossible,
    To(Vec<u8>),
}

/// A write-log record: `seq:json`.
pub(super) fn parse_record(raw: &[u8]) -> Option<LiveWrite> {
    let colon = raw.iter().position(|b| *b == b':')?;
    let seq = std::str::from_utf8(&raw[..colon]).ok()?.parse().ok()?;
    let mut write: LiveWrite = serde_json::from_slice(&raw[colon + 1..]).ok()?;
    write.seq = seq;
    Some(write)
}

impl Cache {
    /// Logs a create and brings every entry it falls in up to date, together with whatever
    /// other creates are waiting on this instance (see `Combiner`).
    pub(super) async fn apply_create(&self, write: LiveWrite) -> bool {
        let hook = self.before_update.lock().ok().and_then(|h| h.clone());
        if let Some(hook) = hook {
            hook().await;
        }
        let (done_tx, mut done) = tokio::sync::oneshot::channel();
        if let Ok(mut queue) = self.creates.queue.lock() {
            queue.push((write, done_tx));
        }
        // The turn's holder takes every queued create, ours too if it came in time.
        let _turn = self.creates.turn.lock().await;
        if let Ok(applied) = done.try_recv() {
            return applied;
        }
        if let Some(wait) = self.creates.wait_before_round(ROUND_INTERVAL) {
            tokio::time::sleep(wait).await;
        }
        self.creates.round_begins();
        let batch = self
            .creates
            .queue
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default();
        let (writes, waiters): (Vec<LiveWrite>, Vec<_>) = batch.into_iter().unzip();
        let applied = self.apply_creates(writes).await;
        for waiter in waiters {
            let _ = waiter.send(applied);
        }
        done.try_recv().unwrap_or(applied)
    }

    /// Logs `writes` and updates the entries they fall in, in every shard at once; where a
    /// shard cannot be reached, falls back to an invalidation of everything they touched there,
    /// remembered until applied.
    pub(super) async fn apply_creates(&self, writes: Vec<LiveWrite>) -> bool {
        if writes.is_empty() {
            return true;
        }
        let touches: Vec<Touch> = writes.iter().map(Touch::from).collect();
        let Ok(records) = writes
            .iter()
            .map(serde_json::to_vec)
            .collect::<Result<Vec<_>, _>>()
        else {
            return self.invalidate(&touches).await;
        };
        // The entries to update are found as an invalidation would find them: by the same tags
        // and spans (a listed entry a create does not change is left as it was by the applier);
        // a shard that cannot take the update takes that invalidation instead.
        let inv = Invalidation::from_touches(&touches);
        let applied = futures_util::future::join_all(
            self.shards
                .iter()
                .map(|shard| self.apply_creates_in(shard, writes.clone(), &records, &inv)),
        )
        .await;
        applied.into_iter().all(|a| a)
    }

    /// `apply_creates` in one shard, with its own write log and so its own positions.
    async fn apply_creates_in(
        &self,
        shard: &Shard,
        mut writes: Vec<LiveWrite>,
        records: &[Vec<u8>],
        inv: &Invalidation,
    ) -> bool {
        let fall_back = || self.invalidate_in(shard, inv.clone());
        if shard.has_pending() || !shard.breaker.allow() {
            return fall_back().await;
        }
        let request = AppendRequest {
            records: records.to_vec(),
            indexes: inv
                .spans
                .iter()
                .map(|(tag, spans)| (tag.index_keys(&shard.prefix), spans.clone()))
                .collect(),
            log_ttl_secs: self.ttl.as_secs().max(600),
        };
        let Ok((first, listed)) = self
            .bounded(shard, "append", self.backend_append(shard, &request))
            .await
        else {
            return fall_back().await;
        };
        for (seq, w) in (first..).zip(writes.iter_mut()) {
            w.seq = seq;
        }
        match self.update_entries(shard, &writes, listed).await {
            Ok(()) if self.replicated(shard).await => true,
            _ => fall_back().await,
        }
    }

    /// Applies `writes` to the listed entries by compare-and-set, re-reading any that another
    /// instance (or a store) rewrote first.
    pub(super) async fn update_entries(
        &self,
        shard: &Shard,
        writes: &[LiveWrite],
        mut listed: Vec<(String, Vec<u8>)>,
    ) -> Result<(), CacheError> {
        for _ in 0..MAX_UPDATE_ROUNDS {
            let mut replacements = Vec::new();
            let mut removals = Vec::new();
            for (key, raw) in listed.drain(..) {
                match self.updated(&raw, writes) {
                    Update::Unneeded => {}
                    Update::Impossible => removals.push(key),
                    Update::To(value) => replacements.push((key, version_of(&raw).to_vec(), value)),
                }
            }
            self.remove(shard, removals).await?;
            if replacements.is_empty() {
                return Ok(());
            }
            let outcomes = self
                .bounded(shard, "update", self.backend_replace(&replacements))
                .await?;
            let mut updated = 0;
            for ((key, _, _), outcome) in replacements.into_iter().zip(outcomes) {
                match outcome {
                    Replaced::Done => updated += 1,
                    Replaced::Gone => {}
                    Replaced::Changed(raw) => listed.push((key, raw)),
                }
            }
            self.metrics.cache_updated_entries.inc_by(updated);
            if listed.is_empty() {
                return Ok(());
            }
        }
        // Still contended: removing is always safe, since a later store catches up from the log.
        self.remove(shard, listed.into_iter().map(|(k, _)| k).collect())
            .await
    }

    /// What `writes` make of one stored entry: only those it lacks are applied.
    pub(super) fn updated(&self, raw: &[u8], writes: &[LiveWrite]) -> Update {
        let Some(entry) = Entry::decode(raw) else {
            return Update::Impossible;
        };
        let Some((meta, state)) = entry.live else {
            return Update::Impossible;
        };
        let lacking: Vec<LiveWrite> = writes
            .iter()
            .filter(|w| meta.lacks(w.seq, w.xid))
            .cloned()
            .collect();
        if lacking.is_empty() {
            return Update::Unneeded;
        }
        let Some((body, state)) = self.applier.apply(&entry.payload.body, &state, &lacking) else {
            return Update::Impossible;
        };
        // An unchanged body keeps its entity tag without hashing it again.
        let payload = if body == entry.payload.body {
            entry.payload
        } else {
            Payload::new(body)
        };
        Update::To(
            Entry {
                payload,
                live: Some((meta, state)),
            }
            .encode(),
        )
    }
}
