//! Events, value sums and distinct users per bucket, where a bucket is any span of instants: the
//! local days, weeks and months of any zone, hour buckets cut short by the range or by a change
//! of the clocks, the windows of active users. Each bucket is cut like a summary's range
//! (`TimeRange::pieces`): whole UTC days from the daily rollups, whole UTC quarter hours from the
//! quarter-hour ones and the quarter masks of the per-user day rows, and only spans under a
//! quarter hour from `activities`. A UTC day bucket is one whole day; a Berlin one is 23 hours of
//! one UTC day and one of the day before, a Kathmandu one 23 h 15 min and 45 min.

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
    pub(crate) quarters_from: Vec<DateTime<Utc>>,
    pub(crate) quarters_to: Vec<DateTime<Utc>>,
    pub(crate) quarter_bucket: Vec<i32>,
    pub(crate) raw_from: Vec<DateTime<Utc>>,
    pub(crate) raw_to: Vec<DateTime<Utc>>,
    pub(crate) raw_bucket: Vec<i32>,
    pub(crate) mask_days: Vec<NaiveDate>,
    pub(crate) masks: Vec<String>,
    pub(crate) mask_bucket: Vec<i32>,
    /// Buckets whose edge (the part that is not whole UTC days) may be stored once computed:
    /// those with an edge, ending before `stored_until`.
    pub(crate) stored_from: Vec<DateTime<Utc>>,
    pub(crate) stored_to: Vec<DateTime<Utc>>,
    pub(crate) stored_bucket: Vec<i32>,
}

impl BucketPieces {
    /// `spans[i]` is bucket `i`; empty spans have no pieces (and count zero). Edges of buckets
    /// ending by `stored_until` may be stored (migration 10).
    pub(crate) fn new(
        spans: &[(DateTime<Utc>, DateTime<Utc>)],
        stored_until: DateTime<Utc>,
    ) -> Self {
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
            for &(lo, hi) in &pieces.quarters {
                all.quarters_from.push(lo);
                all.quarters_to.push(hi);
                all.quarter_bucket.push(b);
            }
            for &(lo, hi) in &pieces.raw {
                all.raw_from.push(lo);
                all.raw_to.push(hi);
                all.raw_bucket.push(b);
            }
            for (day, mask) in pieces.quarter_masks() {
                all.mask_days.push(day);
                all.masks.push(mask);
                all.mask_bucket.push(b);
            }
            let has_edge = !pieces.quarters.is_empty() || !pieces.raw.is_empty();
            if has_edge && to <= stored_until {
                all.stored_from.push(from);
                all.stored_to.push(to);
                all.stored_bucket.push(b);
            }
        }
        all
    }
}

/// Edges of buckets ending before this may be stored: the UTC midnight that starts yesterday, so
/// that only days two or more days old are stored (migration 10 says why).
pub(crate) fn stored_until(now: DateTime<Utc>) -> DateTime<Utc> {
    (now.date_naive() - chrono::Days::new(1))
        .and_time(chrono::NaiveTime::MIN)
        .and_utc()
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

/// The numbers of each of `spans`, in their order (zeros where nothing happened). A bucket whose
/// edge was stored (`store_edges`) under the current versions reads it instead of its pieces.
pub(crate) async fn bucket_counts(
    db: impl PgExecutor<'_>,
    action: Option<&str>,
    spans: &[(DateTime<Utc>, DateTime<Utc>)],
) -> sqlx::Result<Vec<BucketCounts>> {
    let p = BucketPieces::new(spans, stored_until(Utc::now()));
    // `raw` is materialised so that it is scanned once for the totals and once for the users.
    // The users of the quarter pieces are those whose day row's quarter mask meets the bucket's
    // quarters; with the raw spans' users they become bitmaps like the days' own, and a bucket's
    // distinct users are the popcount of the OR of all its bitmaps.
    let rows = sqlx::query!(
        r#"with valid as (
            select c.b, p.lo, p.hi, p.version, p.events, p.value_sum
            from unnest($14::timestamptz[], $15::timestamptz[], $16::int4[]) c(lo, hi, b)
            join activity_spans p
              on p.lo = c.lo and p.hi = c.hi and p.action = coalesce($1::text, '')
             and p.version = activity_span_version(c.lo, c.hi)
        ), raw as materialized (
            select r.b, e.user_id, e.value
            from unnest($8::timestamptz[], $9::timestamptz[], $10::int4[]) r(lo, hi, b)
            cross join lateral (
                select e.user_id, e.value from activities e
                where e.occurred_at >= r.lo and e.occurred_at < r.hi and ($1::text is null or e.action = $1)
                offset 0
            ) e
            where r.b not in (select b from valid)
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
                join activity_quarter_hours h on h.quarter >= r.lo and h.quarter < r.hi
                where ($1::text is null or h.action = $1) and r.b not in (select b from valid)
                union all
                select b, 1, coalesce(value::numeric, 0) from raw
                union all
                select b, events, value_sum from valid
            ) t
            group by b
        ), masks as (
            select day, mask::bit(96) as mask, b
            from unnest($11::date[], $12::text[], $13::int4[]) m(day, mask, b)
            where b not in (select b from valid)
        ), edge_rows as (
            -- Each closed edge day's rows once, however many buckets share the day. Each day is
            -- an index range (lateral, fenced by `offset 0`): guessing thirty days where there
            -- are three, the planner would scan the whole table.
            select a.day, a.user_id, a.quarters
            from (select distinct day from masks where day < activity_recent_first_day()) d,
                 lateral (select * from activity_user_daily a where a.day = d.day offset 0) a
            where $1::text is null
            union all
            select a.day, a.user_id, a.quarters
            from (select distinct day from masks where day < activity_recent_first_day()) d,
                 lateral (select * from activity_user_action_daily a
                          where a.day = d.day and a.action = $1 offset 0) a
        ), edge_users as (
            select m.b, r.user_id
            from edge_rows r join masks m on m.day = r.day and (r.quarters & m.mask) <> B'0'::bit(96)
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
                union all
                -- Today and yesterday: the bitmaps of their quarters (migration 11).
                select m.b, r.chunk, r.users
                from masks m
                join activity_recent_quarter_users r
                  on r.day = m.day and r.action = coalesce($1::text, '') and get_bit(m.mask, r.quarter) = 1
                where m.day >= activity_recent_first_day()
                union all
                select v.b, s.chunk, s.users
                from valid v join activity_span_users s
                  on s.lo = v.lo and s.hi = v.hi and s.action = coalesce($1::text, '') and s.version = v.version
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
        &p.quarters_from,
        &p.quarters_to,
        &p.quarter_bucket,
        &p.raw_from,
        &p.raw_to,
        &p.raw_bucket,
        &p.mask_days,
        &p.masks,
        &p.mask_bucket,
        &p.stored_from,
        &p.stored_to,
        &p.stored_bucket,
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

/// Computes and stores the edges of `spans` that may be stored and are not stored under the
/// current versions (migration 10): one statement, so the edges and the versions they are
/// stored under come from one snapshot. Returns how many edges it stored.
pub(crate) async fn store_edges(
    db: impl PgExecutor<'_>,
    action: Option<&str>,
    spans: &[(DateTime<Utc>, DateTime<Utc>)],
) -> sqlx::Result<u64> {
    let p = BucketPieces::new(spans, stored_until(Utc::now()));
    if p.stored_bucket.is_empty() {
        return Ok(0);
    }
    let stored = sqlx::query!(
        r#"with missing as (
            select c.lo, c.hi, c.b, c.version
            from (select lo, hi, b, activity_span_version(lo, hi) as version
                  from unnest($11::timestamptz[], $12::timestamptz[], $13::int4[]) c(lo, hi, b)) c
            where not exists (select 1 from activity_spans p
                              where p.lo = c.lo and p.hi = c.hi and p.action = coalesce($1::text, '')
                                and p.version = c.version)
        ), raw as materialized (
            select r.b, e.user_id, e.value
            from unnest($5::timestamptz[], $6::timestamptz[], $7::int4[]) r(lo, hi, b)
            cross join lateral (
                select e.user_id, e.value from activities e
                where e.occurred_at >= r.lo and e.occurred_at < r.hi and ($1::text is null or e.action = $1)
                offset 0
            ) e
            where r.b in (select b from missing)
        ), counts as (
            select b, sum(events)::int8 as events, sum(value_sum) as value_sum
            from (
                select r.b, h.events, h.value_sum
                from unnest($2::timestamptz[], $3::timestamptz[], $4::int4[]) r(lo, hi, b)
                join activity_quarter_hours h on h.quarter >= r.lo and h.quarter < r.hi
                where ($1::text is null or h.action = $1) and r.b in (select b from missing)
                union all
                select b, 1, coalesce(value::numeric, 0) from raw
            ) t
            group by b
        ), masks as (
            select day, mask::bit(96) as mask, b
            from unnest($8::date[], $9::text[], $10::int4[]) m(day, mask, b)
            where b in (select b from missing)
        ), edge_rows as (
            select a.day, a.user_id, a.quarters
            from (select distinct day from masks) d,
                 lateral (select * from activity_user_daily a where a.day = d.day offset 0) a
            where $1::text is null
            union all
            select a.day, a.user_id, a.quarters
            from (select distinct day from masks) d,
                 lateral (select * from activity_user_action_daily a
                          where a.day = d.day and a.action = $1 offset 0) a
        ), edge_users as (
            select m.b, r.user_id
            from edge_rows r join masks m on m.day = r.day and (r.quarters & m.mask) <> B'0'::bit(96)
            union all
            select b, user_id from raw
        ), bits as (
            select x.b, activity_user_chunk(u.ordinal) as chunk,
                   bit_or(set_bit(B'0'::bit(1024), activity_user_bit(u.ordinal), 1)) as users
            from edge_users x join activity_users u using (user_id)
            group by 1, 2
        ), stale as (
            delete from activity_spans p using missing m
            where p.lo = m.lo and p.hi = m.hi and p.action = coalesce($1::text, '')
              and p.version <> m.version
        ), header as (
            insert into activity_spans (lo, hi, action, version, events, value_sum)
            select m.lo, m.hi, coalesce($1::text, ''), m.version, c.events, c.value_sum
            from missing m join counts c using (b)
            -- Nothing happened (an action nobody did): nothing to store, and nothing to read.
            where c.events <> 0
            on conflict do nothing
            returning lo, hi, version
        )
        insert into activity_span_users (lo, hi, action, version, chunk, users)
        select m.lo, m.hi, coalesce($1::text, ''), m.version, x.chunk, x.users
        from bits x
        join missing m using (b)
        join header h on h.lo = m.lo and h.hi = m.hi and h.version = m.version"#,
        action,
        &p.quarters_from,
        &p.quarters_to,
        &p.quarter_bucket,
        &p.raw_from,
        &p.raw_to,
        &p.raw_bucket,
        &p.mask_days,
        &p.masks,
        &p.mask_bucket,
        &p.stored_from,
        &p.stored_to,
        &p.stored_bucket,
    )
    .execute(db)
    .await?;
    Ok(stored.rows_affected())
}
