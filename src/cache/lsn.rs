//! The newest commit a read must reflect, shared by every instance through the cache: each
//! write publishes the primary's WAL position after its commit and before its cache update, and
//! a read that could go to a replica first asks for it (`read_routing.rs`, docs/scale.md). Kept
//! beside the write log (`{prefix}:w:lsn` in the first shard), so clearing the cache keeps it.

use std::sync::atomic::Ordering;

use super::Cache;
use super::backend::Backend;

impl Cache {
    fn lsn_key(&self) -> String {
        format!("{}:w:lsn", self.shards[0].prefix)
    }

    /// Publishes `lsn` (a WAL position, in bytes), and on a cluster waits for the shard's
    /// replica like any write. `false`: not published (the caller must not trust a replica).
    pub(crate) async fn publish_lsn(&self, lsn: u64) -> bool {
        let shard = &self.shards[0];
        match &self.backend {
            Backend::Memory(_) => {
                self.local_lsn.fetch_max(lsn, Ordering::AcqRel);
                true
            }
            Backend::Redis(r) => {
                let key = self.lsn_key();
                let value = format!("{lsn:016x}");
                let published = self
                    .bounded(shard, "lsn", r.keep_max(&key, &value))
                    .await
                    .is_ok();
                published && self.replicated(shard).await
            }
        }
    }

    /// The newest position published; `None` when the cache cannot say (a read then goes to
    /// the primary). Zero when nothing has been published yet.
    pub(crate) async fn required_lsn(&self) -> Option<u64> {
        match &self.backend {
            Backend::Memory(_) => Some(self.local_lsn.load(Ordering::Acquire)),
            Backend::Redis(r) => {
                let raw = self
                    .bounded(&self.shards[0], "lsn", r.get(&self.lsn_key()))
                    .await
                    .ok()?;
                match raw {
                    None => Some(0),
                    Some(raw) => u64::from_str_radix(std::str::from_utf8(&raw).ok()?, 16).ok(),
                }
            }
        }
    }
}
