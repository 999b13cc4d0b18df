//! Live ingest: how one create changes each statistic, exactly (docs/cache.md, "Live ingest").
//!
//! A cached answer is stored with a `LiveState`: the answer plus what a create needs that the
//! answer does not show (the sum and count behind an average; the users just below a top-users
//! list and a bound on everyone else). Counts and sums move by the create's own values. A distinct
//! count grows by one only if the user had no other activity in the counted interval, which the
//! create's neighbours tell for any interval (`LiveWrite::user_already_in`).
//!
//! Applying the same creates in any order gives the same state: the cache applies them in the
//! order their updates reach Redis, not the order they committed.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::cache::LiveApplier;
use std::collections::BTreeMap;

use serde_json::value::RawValue;

use crate::db::stats::{
    ActionCount, ActiveUsers, Point, Summary, TopUser, TopUsers, UserStats, average,
};
use crate::domain::stats_query::ActiveUsersDay;
use crate::domain::{LiveWrite, LocalTime, Zone};

/// How many more users than asked a top-users entry keeps: a create by someone below the list
/// raises the bound on everyone outside it by one, and the list stays provable (and cached)
/// while its last shown user is above that bound.
pub(crate) fn top_users_kept(limit: i64) -> i64 {
    3 * limit + 30
}

/// What live updates need beside a cached answer (which they read from its body). Externally
/// tagged: serde's internally tagged enums buffer numbers in a way `arbitrary_precision` breaks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LiveState {
    Summary {
        action: Option<String>,
        duration_sum: f64,
        duration_count: i64,
    },
    Timeseries {
        action: Option<String>,
    },
    ActiveUsers {
        action: Option<String>,
        /// Whose midnights bound the windows (entries stored before zones: UTC).
        #[serde(default)]
        tz: Zone,
    },
    /// Top users shows the first `limit` of `kept`, so its body is made from the state.
    TopUsers {
        from: LocalTime,
        to: LocalTime,
        action: Option<String>,
        limit: usize,
        /// Heaviest first, more than `limit`: every count here is exact.
        kept: Vec<TopUser>,
        /// Nobody outside `kept` has more events than this.
        outside_at_most: i64,
        /// Whose clocks `last_seen` shows.
        #[serde(default)]
        tz: Zone,
    },
    UserStats {
        action: Option<String>,
        /// Whose days `active_days` counts, and whose clocks first/last seen show.
        #[serde(default)]
        tz: Zone,
    },
}

/// Creates this state cannot absorb exactly: the entry must be recomputed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Unprovable;

impl From<serde_json::Error> for Unprovable {
    fn from(_: serde_json::Error) -> Self {
        Self
    }
}

impl LiveState {
    /// A top-users state from the `top_users_kept(limit)` heaviest users of the range.
    pub(crate) fn top_users(
        answer: TopUsers,
        action: Option<String>,
        limit: i64,
        tz: Zone,
    ) -> Self {
        let kept_len = top_users_kept(limit) as usize;
        // A full list may hide users with as many events as its last one; a shorter one is everyone.
        let outside_at_most = if answer.items.len() >= kept_len {
            answer.items.last().map_or(0, |u| u.events)
        } else {
            0
        };
        Self::TopUsers {
            from: answer.from,
            to: answer.to,
            action,
            limit: usize::try_from(limit).unwrap_or(0),
            kept: answer.items,
            outside_at_most,
            tz,
        }
    }

    /// The body of a top-users answer: what the state shows.
    pub(crate) fn top_users_body(&self) -> Option<TopUsers> {
        match self {
            Self::TopUsers {
                from,
                to,
                limit,
                kept,
                ..
            } => Some(TopUsers {
                from: *from,
                to: *to,
                items: kept.iter().take(*limit).cloned().collect(),
            }),
            _ => None,
        }
    }

    /// Brings `body` (the answer) and the state up to date with creates they did not include.
    pub(crate) fn apply(
        &mut self,
        body: &[u8],
        writes: &[LiveWrite],
    ) -> Result<Vec<u8>, Unprovable> {
        Ok(match self {
            Self::Summary {
                action,
                duration_sum,
                duration_count,
            } => {
                let mut answer: Summary = serde_json::from_slice(body)?;
                for w in writes {
                    summary(
                        &mut answer,
                        action.as_deref(),
                        duration_sum,
                        duration_count,
                        w,
                    );
                }
                serde_json::to_vec(&answer)?
            }
            Self::Timeseries { action } => timeseries(body, action.as_deref(), writes)?,
            Self::ActiveUsers { action, tz } => {
                let mut answer: ActiveUsers = serde_json::from_slice(body)?;
                for w in writes {
                    active_users(&mut answer, action.as_deref(), *tz, w);
                }
                serde_json::to_vec(&answer)?
            }
            Self::UserStats { action, tz } => {
                let mut answer: UserStats = serde_json::from_slice(body)?;
                for w in writes {
                    user_stats(&mut answer, action.as_deref(), *tz, w);
                }
                serde_json::to_vec(&answer)?
            }
            Self::TopUsers {
                from,
                to,
                action,
                limit,
                kept,
                outside_at_most,
                tz,
            } => {
                for w in writes {
                    if !w.falls_in(from.utc(), to.utc(), action.as_deref()) {
                        continue;
                    }
                    match kept.iter_mut().find(|u| u.user_id == w.user_id) {
                        Some(user) => {
                            user.events += 1;
                            user.value_sum = add_value(user.value_sum, w);
                            user.last_seen = user.last_seen.max(tz.local(w.occurred_at));
                        }
                        // Someone outside: by how much they now lead is unknown, so the bound
                        // on everyone outside rises by one (whatever order creates arrive in).
                        None => *outside_at_most += 1,
                    }
                }
                kept.sort_by(|a, b| b.events.cmp(&a.events).then(a.user_id.cmp(&b.user_id)));
                // The shown list is exact while its last user has more events than anyone
                // outside could (ties go by user id, so equal is not enough).
                let provable = match kept.get(limit.saturating_sub(1)) {
                    Some(last) if kept.len() >= *limit => last.events > *outside_at_most,
                    _ => *outside_at_most == 0,
                };
                if !provable {
                    return Err(Unprovable);
                }
                serde_json::to_vec(&self.top_users_body())?
            }
        })
    }
}

fn summary(
    answer: &mut Summary,
    action: Option<&str>,
    duration_sum: &mut f64,
    duration_count: &mut i64,
    w: &LiveWrite,
) {
    let (from, to) = (answer.from.utc(), answer.to.utc());
    if !w.falls_in(from, to, action) {
        return;
    }
    answer.events += 1;
    answer.value_sum = add_value(answer.value_sum, w);
    if let Some(d) = w.duration_ms {
        *duration_sum += d as f64;
        *duration_count += 1;
    }
    answer.avg_duration_ms = average(*duration_sum, *duration_count);
    if !w.user_already_in(from, to, action.is_some()) {
        answer.unique_users += 1;
    }
    count_action(&mut answer.by_action, w, w.user_already_in(from, to, true));
}

/// A time series as stored, its points left unparsed: a create changes one point, and an hourly
/// series over a month has 720 of them, so only the points a create needs are parsed (a binary
/// search reads a few starts) and the rest are copied as they were.
#[derive(Deserialize)]
struct StoredSeries<'a> {
    #[serde(borrow)]
    from: &'a RawValue,
    #[serde(borrow)]
    to: &'a RawValue,
    #[serde(borrow)]
    bucket: &'a RawValue,
    #[serde(borrow)]
    points: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct PointStart {
    start: DateTime<Utc>,
}

fn timeseries(
    body: &[u8],
    action: Option<&str>,
    writes: &[LiveWrite],
) -> Result<Vec<u8>, Unprovable> {
    let series: StoredSeries<'_> = serde_json::from_slice(body)?;
    let from: DateTime<Utc> = serde_json::from_str(series.from.get())?;
    let to: DateTime<Utc> = serde_json::from_str(series.to.get())?;
    let start_of = |i: usize| -> Result<DateTime<Utc>, Unprovable> {
        Ok(serde_json::from_str::<PointStart>(series.points[i].get())?.start)
    };
    let mut changed: BTreeMap<usize, Point> = BTreeMap::new();
    for w in writes {
        if !w.falls_in(from, to, action) {
            continue;
        }
        // Points are in order and cover the range: the create's bucket is the last one starting
        // at or before it, and ends where the next begins (or the range does).
        let (mut lo, mut hi) = (0, series.points.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if start_of(mid)? <= w.occurred_at {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let i = lo.checked_sub(1).ok_or(Unprovable)?;
        let end = match series.points.get(i + 1) {
            Some(_) => start_of(i + 1)?.min(to),
            None => to,
        };
        let point = match changed.entry(i) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(serde_json::from_str(series.points[i].get())?)
            }
        };
        let start = point.start.utc().max(from);
        point.events += 1;
        point.value_sum = add_value(point.value_sum, w);
        if !w.user_already_in(start, end, action.is_some()) {
            point.unique_users += 1;
        }
    }
    // The same bytes serde would write for a `Timeseries`, field for field.
    let mut out = Vec::with_capacity(body.len() + 64);
    out.extend_from_slice(b"{\"from\":");
    out.extend_from_slice(series.from.get().as_bytes());
    out.extend_from_slice(b",\"to\":");
    out.extend_from_slice(series.to.get().as_bytes());
    out.extend_from_slice(b",\"bucket\":");
    out.extend_from_slice(series.bucket.get().as_bytes());
    out.extend_from_slice(b",\"points\":[");
    for (i, raw) in series.points.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match changed.get(&i) {
            Some(point) => serde_json::to_writer(&mut out, point)?,
            None => out.extend_from_slice(raw.get().as_bytes()),
        }
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

fn active_users(answer: &mut ActiveUsers, action: Option<&str>, tz: Zone, w: &LiveWrite) {
    // The windows the query counted over.
    let day = ActiveUsersDay {
        date: answer.date,
        zone: tz,
    };
    for (days, count) in [
        (1, &mut answer.dau),
        (7, &mut answer.wau),
        (30, &mut answer.mau),
    ] {
        let (start, end) = day.window(days);
        if w.falls_in(start, end, action) && !w.user_already_in(start, end, action.is_some()) {
            *count += 1;
        }
    }
    answer.stickiness = if answer.mau == 0 {
        0.0
    } else {
        answer.dau as f64 / answer.mau as f64
    };
}

fn user_stats(answer: &mut UserStats, action: Option<&str>, tz: Zone, w: &LiveWrite) {
    let (from, to) = (answer.from.utc(), answer.to.utc());
    if w.user_id != answer.user_id || !w.falls_in(from, to, action) {
        return;
    }
    answer.events += 1;
    answer.value_sum = add_value(answer.value_sum, w);
    let at = tz.local(w.occurred_at);
    answer.first_seen = Some(answer.first_seen.map_or(at, |f| f.min(at)));
    answer.last_seen = Some(answer.last_seen.map_or(at, |l| l.max(at)));
    let day = tz.date_of(w.occurred_at);
    let (day_start, day_end) = (
        tz.midnight(day).max(from),
        tz.midnight(day + Duration::days(1)).min(to),
    );
    if !w.user_already_in(day_start, day_end, action.is_some()) {
        answer.active_days += 1;
    }
    count_action(&mut answer.by_action, w, w.user_already_in(from, to, true));
}

/// A sum of values plus the create's, saturating like the queries do (`activity_float8`): rows
/// stored before `value` was bounded may hold values near the largest double.
fn add_value(sum: f64, w: &LiveWrite) -> f64 {
    (sum + w.value.unwrap_or(0.0)).clamp(-f64::MAX, f64::MAX)
}

/// Counts the create in its action's row, which stays in the order the queries give: most
/// events first, then by action name.
fn count_action(by_action: &mut Vec<ActionCount>, w: &LiveWrite, user_already_counted: bool) {
    match by_action.iter_mut().find(|a| a.action == w.action) {
        Some(row) => {
            row.events += 1;
            if !user_already_counted {
                row.unique_users += 1;
            }
        }
        None => by_action.push(ActionCount {
            action: w.action.clone(),
            events: 1,
            unique_users: 1,
        }),
    }
    by_action.sort_by(|a, b| {
        b.events
            .cmp(&a.events)
            .then_with(|| a.action.cmp(&b.action))
    });
}

/// The cache's way into this module: states travel as JSON.
pub(crate) struct Applier;

impl LiveApplier for Applier {
    fn apply(&self, body: &[u8], state: &[u8], writes: &[LiveWrite]) -> Option<(Vec<u8>, Vec<u8>)> {
        let mut state: LiveState = serde_json::from_slice(state).ok()?;
        let body = state.apply(body, writes).ok()?;
        Some((body, serde_json::to_vec(&state).ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::stats::Timeseries;
    use crate::domain::{Bucket, Neighbours, parse_instant};
    use uuid::Uuid;

    fn at(raw: &str) -> DateTime<Utc> {
        parse_instant(raw).expect(raw)
    }

    #[test]
    fn a_series_updated_in_place_is_what_serde_would_write() {
        let point = |day: &str, events| Point {
            start: Zone::UTC.local(at(day)),
            events,
            unique_users: events,
            value_sum: 0.5 * events as f64,
        };
        let mut series = Timeseries {
            from: Zone::UTC.local(at("2026-11-01T06:00:00Z")),
            to: Zone::UTC.local(at("2026-11-04T00:00:00Z")),
            bucket: Bucket::Day,
            points: vec![
                point("2026-11-01", 3),
                point("2026-11-02", 0),
                point("2026-11-03", 7),
            ],
        };
        let body = serde_json::to_vec(&series).expect("json");
        let write = |occurred: &str, prev: Option<&str>| LiveWrite {
            seq: 1,
            xid: 1,
            user_id: Uuid::nil(),
            action: "view".into(),
            occurred_at: at(occurred),
            duration_ms: None,
            value: Some(0.25),
            neighbours: Neighbours {
                prev_any: prev.map(at),
                ..Neighbours::default()
            },
        };
        let writes = [
            write("2026-11-02T10:00:00Z", None),
            write("2026-11-02T11:00:00Z", Some("2026-11-02T10:00:00Z")),
            write("2026-11-01T05:00:00Z", None), // before `from`: not counted
            write("2026-11-03T23:59:59.999999Z", Some("2026-11-01T12:00:00Z")),
        ];
        let updated = timeseries(&body, None, &writes).expect("applied");
        series.points[1] = Point {
            start: Zone::UTC.local(at("2026-11-02")),
            events: 2,
            unique_users: 1,
            value_sum: 0.5,
        };
        series.points[2].events += 1;
        series.points[2].unique_users += 1;
        series.points[2].value_sum += 0.25;
        assert_eq!(
            String::from_utf8(updated).expect("utf-8"),
            String::from_utf8(serde_json::to_vec(&series).expect("json")).expect("utf-8")
        );
    }
}
