//! How cache entries, their tags and writes are named.
//!
//! An entry is identified by its endpoint and the canonical text of its query, so equivalent
//! requests share it. Its *scope* says which writes can change it: those whose `occurred_at`
//! lies in its range, for its action (if it has one) and its user (if it has one). Entries are
//! indexed under *tags* (one per UTC day for the global statistics, one per user for a user's
//! profile), and a write looks only at the indexes of the days and users it touched, then
//! removes the entries whose scope contains what it wrote.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use uuid::Uuid;

pub(crate) use crate::domain::Touch;
use crate::domain::{Action, LiveWrite, TimeRange};

/// The statistics endpoints, as they are named in metric labels and cache keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Endpoint {
    Summary,
    Timeseries,
    ActiveUsers,
    TopUsers,
    UserStats,
}

impl Endpoint {
    pub(crate) const ALL: [Self; 5] = [
        Self::Summary,
        Self::Timeseries,
        Self::ActiveUsers,
        Self::TopUsers,
        Self::UserStats,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Summary => "summary",
            Self::Timeseries => "timeseries",
            Self::ActiveUsers => "active_users",
            Self::TopUsers => "top_users",
            Self::UserStats => "user_stats",
        }
    }
}

/// An index an entry is registered under, and whose generation guards its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Tag {
    Day(NaiveDate),
    User(Uuid),
}

impl Tag {
    /// The hash of entry key → scope for the entries under this tag.
    pub(crate) fn index_key(&self, prefix: &str) -> String {
        match self {
            Self::Day(d) => format!("{prefix}:ix:d:{d}"),
            Self::User(u) => format!("{prefix}:ix:u:{u}"),
        }
    }

    /// The index hash and, beside it, the sorted set of when each of its entries expires: a
    /// walk of the index first drops what has expired, so an index holds the entries alive,
    /// not every entry ever stored under the tag.
    pub(crate) fn index_keys(&self, prefix: &str) -> (String, String) {
        let index = self.index_key(prefix);
        let expiry = format!("{index}:exp");
        (index, expiry)
    }

    /// The counter every write under this tag increments (see `docs/cache.md`, "No stale set").
    pub(crate) fn generation_key(&self, prefix: &str) -> String {
        match self {
            Self::Day(d) => format!("{prefix}:g:d:{d}"),
            Self::User(u) => format!("{prefix}:g:u:{u}"),
        }
    }
}

/// Which writes can change an entry: `[from_us, to_us)` and optionally one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scope {
    pub(crate) from_us: i64,
    pub(crate) to_us: i64,
    pub(crate) action: String,
}

impl Scope {
    /// Stored as the value of the entry's field in each index hash; parsed again by the
    /// invalidation script, which is why it is plain text.
    pub(crate) fn encode(&self) -> String {
        format!("{} {} {}", self.from_us, self.to_us, self.action)
    }

    pub(crate) fn decode(raw: &str) -> Option<Self> {
        let mut parts = raw.splitn(3, ' ');
        Some(Self {
            from_us: parts.next()?.parse().ok()?,
            to_us: parts.next()?.parse().ok()?,
            action: parts.next()?.to_owned(),
        })
    }

    /// Does any written span overlap this scope? An empty action means "every action".
    pub(crate) fn is_touched_by(&self, spans: &[Span]) -> bool {
        spans.iter().any(|s| {
            self.from_us <= s.last_us
                && s.first_us < self.to_us
                && (self.action.is_empty() || self.action == s.action)
        })
    }
}

/// One cacheable answer: where it is stored and what can make it wrong.
#[derive(Debug, Clone)]
pub(crate) struct CacheKey {
    pub(crate) endpoint: Endpoint,
    canonical: String,
    scope: Scope,
    tags: Vec<Tag>,
}

impl CacheKey {
    /// `canonical` must contain every parameter that changes the answer, with defaults resolved.
    /// Global statistics are tagged with every day of the range; a user's profile with the user.
    pub(crate) fn new(
        endpoint: Endpoint,
        canonical: String,
        range: &TimeRange,
        action: Option<&Action>,
        user: Option<Uuid>,
    ) -> Self {
        let tags = match user {
            Some(u) => vec![Tag::User(u)],
            None => range.days().map(Tag::Day).collect(),
        };
        let canonical = match user {
            Some(u) => format!("user={u}&{canonical}"),
            None => canonical,
        };
        Self {
            endpoint,
            canonical,
            scope: Scope {
                from_us: range.from().timestamp_micros(),
                to_us: range.to().timestamp_micros(),
                action: action.map(|a| a.as_str().to_owned()).unwrap_or_default(),
            },
            tags,
        }
    }

    pub(crate) fn entry_key(&self, prefix: &str) -> String {
        format!("{prefix}:e:{}:{}", self.endpoint.as_str(), self.canonical)
    }

    pub(crate) fn scope(&self) -> &Scope {
        &self.scope
    }

    pub(crate) fn tags(&self) -> &[Tag] {
        &self.tags
    }

    /// Can this create change the answer? Its time and action must fall in the scope, and a
    /// user's profile changes only with that user's activities.
    pub(crate) fn is_changed_by(&self, write: &LiveWrite) -> bool {
        let at = write.occurred_at.timestamp_micros();
        let user_matches = self.tags.iter().all(|t| match t {
            Tag::User(u) => *u == write.user_id,
            Tag::Day(_) => true,
        });
        user_matches
            && self.scope.is_touched_by(&[Span {
                first_us: at,
                last_us: at,
                action: write.action.clone(),
            }])
    }
}

/// A closed interval of written times for one action, as the invalidation checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) first_us: i64,
    pub(crate) last_us: i64,
    pub(crate) action: String,
}

/// More written points than this under one tag are merged into one span per action: a batch
/// of thousands then costs the invalidation script a few comparisons per entry, not thousands,
/// at the price of removing an entry whose range falls between two written points. It never
/// keeps an entry a write can change.
const MAX_SPANS_PER_TAG: usize = 64;

/// Everything a set of writes invalidates, grouped by tag. Union of several writes is a merge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Invalidation {
    pub(crate) spans: BTreeMap<Tag, Vec<Span>>,
}

impl Invalidation {
    pub(crate) fn from_touches(touches: &[Touch]) -> Self {
        let mut inv = Self::default();
        for t in touches {
            let at = t.occurred_at.timestamp_micros();
            let span = Span {
                first_us: at,
                last_us: t.through.map_or(at, |through| through.timestamp_micros()),
                action: t.action.clone(),
            };
            for tag in [Tag::Day(t.occurred_at.date_naive()), Tag::User(t.user_id)] {
                inv.spans.entry(tag).or_default().push(span.clone());
            }
        }
        inv.compact();
        inv
    }

    pub(crate) fn merge(&mut self, other: Self) {
        for (tag, spans) in other.spans {
            self.spans.entry(tag).or_default().extend(spans);
        }
        self.compact();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    fn compact(&mut self) {
        for spans in self.spans.values_mut() {
            spans.sort_by(|a, b| {
                (&a.action, a.first_us, a.last_us).cmp(&(&b.action, b.first_us, b.last_us))
            });
            spans.dedup();
            if spans.len() > MAX_SPANS_PER_TAG {
                let mut merged: Vec<Span> = Vec::new();
                for s in spans.drain(..) {
                    match merged.last_mut() {
                        Some(m) if m.action == s.action => {
                            m.first_us = m.first_us.min(s.first_us);
                            m.last_us = m.last_us.max(s.last_us);
                        }
                        _ => merged.push(s),
                    }
                }
                *spans = merged;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::parse_instant;

    fn range(from: &str, to: &str) -> TimeRange {
        TimeRange::new(
            parse_instant(from).expect(from),
            parse_instant(to).expect(to),
        )
        .expect("valid")
    }

    fn touch(at: &str, action: &str) -> Touch {
        Touch {
            user_id: Uuid::nil(),
            action: action.into(),
            occurred_at: parse_instant(at).expect(at),
            through: None,
        }
    }

    fn touched(key: &CacheKey, touches: &[Touch]) -> bool {
        let inv = Invalidation::from_touches(touches);
        key.tags().iter().any(|tag| {
            inv.spans
                .get(tag)
                .is_some_and(|s| key.scope().is_touched_by(s))
        })
    }

    #[test]
    fn a_write_touches_only_entries_whose_range_contains_it() {
        let key = CacheKey::new(
            Endpoint::Summary,
            "x".into(),
            &range("2026-11-01T10:00:00Z", "2026-11-01T11:00:00Z"),
            None,
            None,
        );
        assert!(
            touched(&key, &[touch("2026-11-01T10:00:00Z", "a")]),
            "at from"
        );
        assert!(
            !touched(&key, &[touch("2026-11-01T11:00:00Z", "a")]),
            "at to (exclusive)"
        );
        assert!(
            !touched(&key, &[touch("2026-11-01T15:00:00Z", "a")]),
            "same day, outside"
        );
        assert!(
            !touched(&key, &[touch("2026-11-02T10:30:00Z", "a")]),
            "other day"
        );
    }

    #[test]
    fn a_touch_through_a_later_instant_covers_everything_between() {
        let key = CacheKey::new(
            Endpoint::Summary,
            "x".into(),
            &range("2026-11-01T11:00:00Z", "2026-11-01T13:00:00Z"),
            None,
            None,
        );
        let ends = [
            touch("2026-11-01T09:00:00Z", "a"),
            touch("2026-11-01T15:00:00Z", "a"),
        ];
        assert!(!touched(&key, &ends), "its two ends alone miss the entry");
        let erased = Touch {
            through: Some(parse_instant("2026-11-01T15:00:00Z").expect("instant")),
            ..touch("2026-11-01T09:00:00Z", "a")
        };
        assert!(touched(&key, &[erased]));
    }

    #[test]
    fn an_action_filtered_entry_ignores_other_actions() {
        let action = Action::parse("buy").expect("valid");
        let key = CacheKey::new(
            Endpoint::Summary,
            "x".into(),
            &range("2026-11-01", "2026-11-02"),
            Some(&action),
            None,
        );
        assert!(!touched(&key, &[touch("2026-11-01T10:00:00Z", "view")]));
        assert!(touched(&key, &[touch("2026-11-01T10:00:00Z", "buy")]));
    }

    #[test]
    fn a_large_batch_is_merged_without_missing_any_write() {
        let touches: Vec<Touch> = (0..500)
            .map(|i| {
                touch(
                    &format!("2026-11-01T{:02}:{:02}:00Z", i / 60 % 24, i % 60),
                    "a",
                )
            })
            .collect();
        let inv = Invalidation::from_touches(&touches);
        let day = inv
            .spans
            .get(&Tag::Day(
                NaiveDate::from_ymd_opt(2026, 11, 1).expect("date"),
            ))
            .expect("day tag");
        assert!(day.len() <= MAX_SPANS_PER_TAG);
        for t in &touches {
            let at = t.occurred_at.timestamp_micros();
            let scope = Scope {
                from_us: at,
                to_us: at + 1,
                action: String::new(),
            };
            assert!(scope.is_touched_by(day), "{:?}", t.occurred_at);
        }
    }

    #[test]
    fn a_scope_survives_its_text_form() {
        let s = Scope {
            from_us: -5,
            to_us: 1_764_412_800_000_000,
            action: "a:b".into(),
        };
        assert_eq!(Scope::decode(&s.encode()), Some(s));
    }
}
