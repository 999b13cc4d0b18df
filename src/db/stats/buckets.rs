//! Events, value sums and distinct users per bucket, where a bucket is any span of instants: the
//! local days, weeks and months of any zone, the hours of a zone whose offset is not a whole hour,
//! the windows of active users. Each bucket is cut like a summary's range (`TimeRange::pieces`):
//! whole UTC days from the daily rollups, whole UTC hours from the hourly ones and the hour masks
//! of the per-user day rows, and only spans under an hour from `activities`. A UTC day bucket is
//! one whole day; a Berlin one is 23 hours of one UTC day and one of the day before.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgExecutor;

use crate::domain::TimeRange;

/// The pieces of every bucket, flattened into the arrays the query takes, each element with the
/// index of its bucket.
#[derive(Debug, Default)]
pub(crate) struct BucketPieces {
    /// Each bucket's whole days, `[from, to)`.
    pub(crate) days_from: Vec<NaiveDate>,
    pub(crate) days_to: Vec<NaiveDate>,
    pub(crate) day_bucket: Vec<i32>,
    pub(crate) hours_from: Vec<DateTime<Utc>>,
    pub(crate) hours_to: Vec<DateTime<Utc>>,
    pub(crate) hour_bucket: Vec<i32>,
    pub(crate) raw_from: Vec<DateTime<Utc>>,
    pub(crate) raw_to: Vec<DateTime<Utc>>,
    pub(crate) raw_bucket: Vec<i32>,
    pub(crate) mask_days: Vec<NaiveDate>,
    pub(crate) masks: Vec<String>,
    pub(crate) mask_bucket: Vec<i32>,
}

impl BucketPieces {
    /// `spans[i]` is bucket `i`; empty spans have no pieces (and count zero).
    pub(crate) fn new(spans: &[(DateTime<Utc>, DateTime<Utc>)]) -> Self {
        let mut all = Self::default();
        for (i, &(from, to)) in spans.iter().enumerate() {
            let Ok(range) = TimeRange::new(from, to) else {
                continue;
            };
            let b = i32::try_from(i).unwrap_or(i32::MAX);
            let pieces = range.pieces();
            if pieces.days.0 < pieces.days.1 {
                all.days_from.push(pieces.days.0);
                all.days_to.push(pieces.days.1);
                all.day_bucket.push(b);
            }
            for &(lo, hi) in &pieces.hours {
                all.hours_from.push(lo);
                all.hours_to.push(hi);
                all.hour_bucket.push(b);
            }
            for &(lo, hi) in &pieces.raw {
                all.raw_from.push(lo);
                all.raw_to.push(hi);
                all.raw_bucket.push(b);
            }
            for (day, mask) in pieces.hour_masks() {
                all.mask_days.push(day);
                all.masks.push(mask);
                all.mask_bucket.push(b);
            }
        }
        all
    }
}

/// The part of `[from, to)` each bucket covers, the buckets starting at `starts` (the first at
/// or before `from`) and each ending where the next starts.
pub(crate) fn clip(
    starts: &[DateTime<Utc>],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    starts
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                (*s).max(from),
                starts.get(i + 1).map_or(to, |e| (*e).min(to)),
            )
        })
        .collect()
}

/// One bucket's numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct BucketCounts {
    pub(crate) events: i64,
    pub(crate) unique_users: i64,
    pub(crate) value_sum: f64,
}

/// The numbers of each of `spans`, in their order (zeros where nothing happened).
pub(crate) async fn bucket_counts(
    db: impl PgExecutor<'_>,
    action: Option<&str>,
    spans: &[(DateTime<Utc>, DateTime<Utc>)],
) -> sqlx::Result<Vec<BucketCounts>> {
    let p = BucketPieces::new(spans);
    // `raw` is materialised so that it is scanned once for the totals and once for the users.
    // The users of the hour pieces are those whose day row's hour mask meets the bucket's
    // hours; with the raw spans' users they become bitmaps like the days' own, and a bucket's
    // distinct users are the popcount of the OR of all its bitmaps.
    let rows = sqlx::query!(
        r#"with raw as materialized (
            select r.b, e.user_id, e.value
            from unnest($8::timestamptz[], $9::timestamptz[], $10::int4[]) r(lo, hi, b)
            join activities e on e.occurred_at >= r.lo and e.occurred_at < r.hi
            where ($1::text is null or e.action = $1)
        ), days as (
            select lo, hi, b from unnest($2::date[], $3::date[], $4::int4[]) d(lo, hi, b)
        ), counts as (
            select b, sum(events)::int8 as events, sum(value_sum) as value_sum
            from (
                select d.b, a.events, a.value_sum
                from days d join activity_daily a on a.day >= d.lo and a.day < d.hi
                where ($1::text is null or a.action = $1)
                union all
                select r.b, h.events, h.value_sum
                from unnest($5::timestamptz[], $6::timestamptz[], $7::int4[]) r(lo, hi, b)
                join activity_hourly h on h.hour >= r.lo and h.hour < r.hi
                where ($1::text is null or h.action = $1)
                union all
                select b, 1, coalesce(value::numeric, 0) from raw
            ) t
            group by b
        ), masks as (
            select day, mask::bit(24) as mask, b from unnest($11::date[], $12::text[], $13::int4[]) m(day, mask, b)
        ), edge_rows as (
            -- Each edge day's rows once, however many buckets share the day.
            select a.day, a.user_id, a.hours
            from (select distinct day from masks) d join activity_user_daily a on a.day = d.day
            where $1::text is null
            union all
            select a.day, a.user_id, a.hours
            from (select distinct day from masks) d join activity_user_action_daily a on a.day = d.day
            where a.action = $1
        ), edge_users as (
            select m.b, r.user_id
            from edge_rows r join masks m on m.day = r.day and (r.hours & m.mask) <> B'0'::bit(24)
            union all
            select b, user_id from raw
        ), bitmaps as (
            select b, chunk, bit_or(users) as users
            from (
                select d.b, u.chunk, u.users
                from days d join activity_day_users u on u.day >= d.lo and u.day < d.hi
                where ($1::text is null or u.action = $1)
                union all
                select x.b, activity_user_chunk(u.ordinal),
                       set_bit(B'0'::bit(1024), activity_user_bit(u.ordinal), 1)
                from edge_users x join activity_users u using (user_id)
            ) x
            group by 1, 2
        ), users as (
            select b, sum(bit_count(users))::int8 as n from bitmaps group by b
        )
        select c.b as "b!", c.events as "events!", coalesce(u.n, 0) as "unique_users!",
               activity_float8(c.value_sum) as "value_sum!"
        from counts c left join users u using (b)"#,
        action,
        &p.days_from,
        &p.days_to,
        &p.day_bucket,
        &p.hours_from,
        &p.hours_to,
        &p.hour_bucket,
        &p.raw_from,
        &p.raw_to,
        &p.raw_bucket,
        &p.mask_days,
        &p.masks,
        &p.mask_bucket,
    )
    .fetch_all(db)
    .await?;
    let mut counts = vec![BucketCounts::default(); spans.len()];
    for row in rows {
        if let Some(c) = usize::try_from(row.b).ok().and_then(|b| counts.get_mut(b)) {
            *c = BucketCounts {
                events: row.events,
                unique_users: row.unique_users,
                value_sum: row.value_sum,
            };
        }
    }
    Ok(counts)
}
