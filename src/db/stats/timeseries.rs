//! Time series from the rollups. Buckets are the zone's: local days, ISO weeks and months start
//! at local midnights, and an hour bucket wherever the local clocks show a whole hour.
//!
//! Where every hour bucket is a UTC hour (UTC, and every zone whose offset is a whole number of
//! hours, DST included), hour buckets read the hourly rollups: totals from `activity_hourly`,
//! distinct users from `activity_hour_users`, and only a partial hour at either end of the range
//! from `activities`. Every other series (days, weeks, months in any zone; the hours of Kolkata
//! or Kathmandu) is a list of spans of instants, each cut into rollup pieces by `bucket_counts`.

use std::collections::HashMap;

use chrono::{DateTime, Timelike, Utc};
use sqlx::PgConnection;

use super::buckets::{BucketCounts, bucket_counts, clip, store_edges};
use super::{PieceArgs, Point, Timeseries, action};
use crate::domain::{Bucket, StatsQuery};

pub async fn timeseries(
    db: &mut PgConnection,
    q: &StatsQuery,
    bucket: Bucket,
) -> sqlx::Result<Timeseries> {
    let (from, to) = (q.range.from(), q.range.to());
    let starts = q.zone.bucket_starts(from, to, bucket);
    let counts = if reads_utc_hours(bucket, &starts) {
        utc_hours(db, q, &starts).await?
    } else {
        bucket_counts(&mut *db, action(q), &clip(&starts, from, to)).await?
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

/// Stores the edges of this series' buckets that are closed (migration 10), so that the next
/// computation of a series in this zone reads them instead of every per-user row of its days.
/// UTC series have no edges but at the ends of an unaligned range: they store nothing.
pub async fn store_timeseries_edges(
    db: impl sqlx::PgExecutor<'_>,
    q: &StatsQuery,
    bucket: Bucket,
) -> sqlx::Result<u64> {
    let (from, to) = (q.range.from(), q.range.to());
    let starts = q.zone.bucket_starts(from, to, bucket);
    if q.zone.is_utc() || reads_utc_hours(bucket, &starts) {
        return Ok(0);
    }
    // Whole buckets only: a range cut anywhere would otherwise store two new edges per request,
    // and the table would grow with every range a client can think of.
    let whole: Vec<_> = clip(&starts, from, to)
        .into_iter()
        .filter(|&(lo, hi)| starts.contains(&lo) && hi == q.zone.next_bucket(lo, bucket))
        .collect();
    store_edges(db, action(q), &whole).await
}

/// Hour buckets that are all UTC hours read the hourly rollups directly.
fn reads_utc_hours(bucket: Bucket, starts: &[DateTime<Utc>]) -> bool {
    bucket == Bucket::Hour && starts.iter().all(|s| on_utc_hour(*s))
}

fn on_utc_hour(t: DateTime<Utc>) -> bool {
    t.minute() == 0 && t.second() == 0 && t.nanosecond() == 0
}

/// The counts of UTC hour buckets `starts`, in their order.
async fn utc_hours(
    db: &mut PgConnection,
    q: &StatsQuery,
    starts: &[DateTime<Utc>],
) -> sqlx::Result<Vec<BucketCounts>> {
    let a = PieceArgs::new(q, &q.range.hour_pieces());
    // A whole hour reads its totals from `activity_hourly` and its distinct users from
    // `activity_hour_users` (action '' counts every action); a partial hour at either end of the
    // range is read from `activities`. No hour is both.
    let rows = sqlx::query!(
        r#"with raw as materialized (
            select activity_hour(e.occurred_at) as start, e.user_id, e.value
            from unnest($4::timestamptz[], $5::timestamptz[]) r(lo, hi)
            join activities e on e.occurred_at >= r.lo and e.occurred_at < r.hi
            where ($1::text is null or e.action = $1)
        ), counts as (
            select start, sum(events)::int8 as events, sum(value_sum) as value_sum
            from (
                select h.hour as start, h.events, h.value_sum
                from unnest($2::timestamptz[], $3::timestamptz[]) r(lo, hi)
                join activity_hourly h on h.hour >= r.lo and h.hour < r.hi
                where ($1::text is null or h.action = $1)
                union all
                select start, 1, coalesce(value::numeric, 0) from raw
            ) t
            group by start
        ), users as (
            select start, sum(n)::int8 as n from (
                select h.hour as start, h.users as n
                from unnest($2::timestamptz[], $3::timestamptz[]) r(lo, hi)
                join activity_hour_users h on h.hour >= r.lo and h.hour < r.hi
                where h.action = coalesce($1::text, '')
                union all
                select start, count(distinct user_id) from raw group by start
            ) t group by start
        )
        select c.start as "start!", c.events as "events!", coalesce(u.n, 0)::int8 as "unique_users!",
               activity_float8(c.value_sum) as "value_sum!"
        from counts c left join users u using (start)"#,
        a.action,
        &a.hours_from,
        &a.hours_to,
        &a.raw_from,
        &a.raw_to,
    )
    .fetch_all(db)
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
    Ok(starts
        .iter()
        .map(|s| by_start.remove(s).unwrap_or_default())
        .collect())
}
