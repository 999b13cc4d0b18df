//! Time series from the rollups. Buckets are the zone's: local days, ISO weeks and months start
//! at local midnights, and an hour bucket wherever the local clocks show a whole hour.
//!
//! An hour bucket starts on a UTC quarter hour in every zone (migration 11): when it lasts an
//! hour, its totals are the four rows of `activity_quarter_hours` and its distinct users the
//! count `activity_hour_users` keeps for the window starting there, in Kathmandu as in UTC. The
//! other buckets (days, weeks, months; hours cut short by the range or by a change of the
//! clocks) are spans of instants, each cut into rollup pieces by `bucket_counts`.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use sqlx::PgConnection;

use super::buckets::{BucketCounts, bucket_counts, clip, storable_bucket_parts};
use super::parts::Storable;
use super::{Point, Timeseries, action};
use crate::domain::{Bucket, DayPart, StatsQuery, start_of_quarter};

pub async fn timeseries(
    db: &mut PgConnection,
    q: &StatsQuery,
    bucket: Bucket,
) -> sqlx::Result<Timeseries> {
    let (from, to) = (q.range.from(), q.range.to());
    let starts = q.zone.bucket_starts(from, to, bucket);
    let spans = clip(&starts, from, to);
    let counts = if bucket == Bucket::Hour {
        hours(db, q, &spans).await?
    } else {
        bucket_counts(&mut *db, action(q), &spans, Storable::now(q.zone)).await?
    };
    let points = starts
        .iter()
        .zip(counts)
        .map(|(s, c)| Point {
            start: q.zone.local(*s),
            events: c.events,
            unique_users: c.unique_users,
            value_sum: c.value_sum,
        })
        .collect();
    Ok(Timeseries {
        from: q.zone.local(from),
        to: q.zone.local(to),
        bucket,
        points,
    })
}

/// The parts of this series' buckets that may be stored (migration 12), so that the next
/// computation of a series, summary or window in this zone reads them instead of every per-user
/// row of their days. Hour buckets read windows: they need none.
pub fn timeseries_parts(q: &StatsQuery, bucket: Bucket) -> Vec<DayPart> {
    if bucket == Bucket::Hour {
        return Vec::new();
    }
    let (from, to) = (q.range.from(), q.range.to());
    let starts = q.zone.bucket_starts(from, to, bucket);
    storable_bucket_parts(q.zone, &clip(&starts, from, to))
}

/// A bucket that is a whole hour starting on a quarter hour: an hour window (migration 11).
fn is_window(&(lo, hi): &(DateTime<Utc>, DateTime<Utc>)) -> bool {
    hi - lo == Duration::hours(1) && start_of_quarter(lo) == lo
}

/// The counts of hour buckets `spans`, in their order: windows from the quarter-hour rollups
/// and the window counts, the others (at most one at each end of the range and around a change
/// of the clocks that is not a whole hour) cut into pieces.
async fn hours(
    db: &mut PgConnection,
    q: &StatsQuery,
    spans: &[(DateTime<Utc>, DateTime<Utc>)],
) -> sqlx::Result<Vec<BucketCounts>> {
    let (windows, others): (Vec<usize>, Vec<usize>) =
        (0..spans.len()).partition(|&i| is_window(&spans[i]));
    let mut counts = vec![BucketCounts::default(); spans.len()];
    if !others.is_empty() {
        let cut: Vec<_> = others.iter().map(|&i| spans[i]).collect();
        let found = bucket_counts(&mut *db, action(q), &cut, Storable::now(q.zone)).await?;
        for (i, c) in others.into_iter().zip(found) {
            counts[i] = c;
        }
    }
    if windows.is_empty() {
        return Ok(counts);
    }
    let starts: Vec<DateTime<Utc>> = windows.iter().map(|&i| spans[i].0).collect();
    // Each window is an index range of its four quarters and an index probe of its count (one
    // per writer slot; action '' counts every action). Lateral and fenced, so that the plan stays
    // one probe per window whatever the planner guesses about the tables.
    let rows = sqlx::query!(
        r#"select w.start as "start!", c.events as "events!", u.n as "unique_users!",
               activity_float8(c.value_sum) as "value_sum!"
        from unnest($2::timestamptz[]) w(start)
        cross join lateral (
            select coalesce(sum(h.events), 0)::int8 as events, coalesce(sum(h.value_sum), 0) as value_sum
            from activity_quarter_hours h
            where h.quarter >= w.start and h.quarter < w.start + interval '1 hour'
              and ($1::text is null or h.action = $1)
            offset 0
        ) c
        cross join lateral (
            select coalesce(sum(h.users), 0)::int8 as n
            from activity_hour_users h
            where h.hour = w.start and h.action = coalesce($1::text, '')
            offset 0
        ) u
        where c.events <> 0"#,
        action(q),
        &starts,
    )
    .fetch_all(&mut *db)
    .await?;
    let mut by_start: HashMap<DateTime<Utc>, BucketCounts> = rows
        .into_iter()
        .map(|r| {
            let counts = BucketCounts {
                events: r.events,
                unique_users: r.unique_users,
                value_sum: r.value_sum,
            };
            (r.start, counts)
        })
        .collect();
    for (i, start) in windows.into_iter().zip(starts) {
        counts[i] = by_start.remove(&start).unwrap_or_default();
    }
    Ok(counts)
}
