//! What the cache needs to know about one committed create to bring cached answers up to date
//! (docs/cache.md, "Live ingest"), and which transactions a cached answer already saw.
//!
//! Both come from Postgres: a `LiveWrite` from the create's own transaction, a `Snapshot` from
//! the transaction that computed an answer. No I/O here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The transactions a query saw, as Postgres' `pg_current_snapshot()` describes them: every
/// transaction below `xmin` had ended, none from `xmax` on had, and `xip` were running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub(crate) xmin: u64,
    pub(crate) xmax: u64,
    pub(crate) xip: Vec<u64>,
}

impl Snapshot {
    /// Parses `pg_snapshot` text: `xmin:xmax:xip,xip,...`.
    pub(crate) fn parse(raw: &str) -> Option<Self> {
        let mut parts = raw.splitn(3, ':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let xip = match parts.next()? {
            "" => Vec::new(),
            list => list
                .split(',')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?,
        };
        Some(Self { xmin, xmax, xip })
    }

    /// Did a query with this snapshot see the (committed) transaction `xid`?
    /// The same rule as Postgres' `pg_visible_in_snapshot`.
    pub(crate) fn sees(&self, xid: u64) -> bool {
        xid < self.xmin || (xid < self.xmax && !self.xip.contains(&xid))
    }
}

/// The same user's nearest other activities around a new one, read in the create's transaction
/// while it holds that user's write lock (migration 5), so no other write of the user can change
/// them before the create commits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbours {
    /// Latest other activity at or before the new one, any action.
    pub(crate) prev_any: Option<DateTime<Utc>>,
    /// Earliest other activity at or after the new one, any action.
    pub(crate) next_any: Option<DateTime<Utc>>,
    /// The same, for activities of the new one's action only.
    pub(crate) prev_same: Option<DateTime<Utc>>,
    pub(crate) next_same: Option<DateTime<Utc>>,
}

/// What one write did to one activity: its values before or after it. Enough to find every
/// cached answer the write can change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Touch {
    pub(crate) user_id: Uuid,
    pub(crate) action: String,
    pub(crate) occurred_at: DateTime<Utc>,
    /// For a write that removed many activities of one user, action and UTC day at once (an
    /// erasure): the touch covers every instant from `occurred_at` through this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) through: Option<DateTime<Utc>>,
}

impl From<&LiveWrite> for Touch {
    fn from(w: &LiveWrite) -> Self {
        Self {
            user_id: w.user_id,
            action: w.action.clone(),
            occurred_at: w.occurred_at,
            through: None,
        }
    }
}

/// One committed create, as the cache applies it to the answers it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveWrite {
    /// Position in the cache's write log; 0 until it is logged.
    #[serde(default)]
    pub(crate) seq: u64,
    /// The creating transaction (`pg_current_xact_id()`).
    pub(crate) xid: u64,
    pub(crate) user_id: Uuid,
    pub(crate) action: String,
    pub(crate) occurred_at: DateTime<Utc>,
    pub(crate) duration_ms: Option<i64>,
    pub(crate) value: Option<f64>,
    pub(crate) neighbours: Neighbours,
}

impl LiveWrite {
    /// Was the user already active in `[from, to)` (which contains this activity) before it,
    /// counting only activities of its action when `same_action`? Any other activity of the user
    /// inside the interval is either at or before this one (then `prev` is one of them, or a later
    /// one) or at or after it (then `next` is).
    pub(crate) fn user_already_in(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        same_action: bool,
    ) -> bool {
        let (prev, next) = if same_action {
            (self.neighbours.prev_same, self.neighbours.next_same)
        } else {
            (self.neighbours.prev_any, self.neighbours.next_any)
        };
        prev.is_some_and(|p| p >= from) || next.is_some_and(|n| n < to)
    }

    /// Does this write fall in `[from, to)` and, when the answer is narrowed to one action, in
    /// that action?
    pub(crate) fn falls_in(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        action: Option<&str>,
    ) -> bool {
        from <= self.occurred_at && self.occurred_at < to && action.is_none_or(|a| a == self.action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::parse_instant;

    fn at(raw: &str) -> DateTime<Utc> {
        parse_instant(raw).expect(raw)
    }

    #[test]
    fn a_snapshot_sees_what_ended_before_it_and_nothing_else() {
        let s = Snapshot::parse("100:105:101,103").expect("valid");
        assert!(s.sees(99), "ended before xmin");
        assert!(s.sees(102), "between, not running");
        assert!(!s.sees(101), "running");
        assert!(!s.sees(105), "at xmax");
        assert!(!s.sees(200), "after xmax");
        assert_eq!(
            Snapshot::parse("7:7:"),
            Some(Snapshot {
                xmin: 7,
                xmax: 7,
                xip: vec![]
            })
        );
        assert_eq!(Snapshot::parse("7:x:"), None);
    }

    #[test]
    fn a_user_is_already_in_a_range_only_through_a_neighbour_inside_it() {
        let write = LiveWrite {
            seq: 0,
            xid: 1,
            user_id: Uuid::nil(),
            action: "view".into(),
            occurred_at: at("2026-11-30T12:00:00Z"),
            duration_ms: None,
            value: None,
            neighbours: Neighbours {
                prev_any: Some(at("2026-11-30T08:00:00Z")),
                next_any: None,
                prev_same: None,
                next_same: Some(at("2026-11-30T15:00:00Z")),
            },
        };
        let (day, next_day) = (at("2026-11-30T00:00:00Z"), at("2026-12-01T00:00:00Z"));
        assert!(write.user_already_in(day, next_day, false));
        assert!(write.user_already_in(day, next_day, true));
        assert!(!write.user_already_in(
            at("2026-11-30T09:00:00Z"),
            at("2026-11-30T13:00:00Z"),
            false
        ));
        assert!(
            !write.user_already_in(at("2026-11-30T09:00:00Z"), at("2026-11-30T15:00:00Z"), true),
            "to is exclusive"
        );
        assert!(write.user_already_in(
            at("2026-11-30T09:00:00Z"),
            at("2026-11-30T15:00:01Z"),
            true
        ));
        assert!(write.falls_in(day, next_day, Some("view")));
        assert!(!write.falls_in(day, next_day, Some("buy")));
        assert!(!write.falls_in(at("2026-11-30T12:00:01Z"), next_day, None));
    }
}
