//! Events, value sums and distinct users per bucket, where a bucket is any span of instants: the
//! local days, weeks and months of any zone, hour buckets cut short by the range or by a change
//! of the clocks, the windows of active users. Each bucket is cut like a summary's range
//! (`TimeRange::pieces`): whole UTC days from the daily rollups, whole UTC quarter hours from the
//! quarter-hour ones and the quarter masks of the per-user day rows, and only spans under a
//! quarter hour from `activities`. A UTC day bucket is one whole day; a Berlin one is 23 hours of
//! one UTC day and one of the day before, a Kathmandu one 23 h 15 min and 45 min.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgExecutor;

use super::blocks::PieceColumns;
use super::parts::{PartArgs, Storable, storable_parts};
use crate::domain::{DayPart, TimeRange};

/// The pieces of every bucket, flattened into the arrays the query takes, each element with the
/// index of its bucket.
#[derive(Debug, Default)]
pub(crate) struct BucketPieces {
    /// Each bucket's whole days, `[from, to)`.
    pub(crate) days_from: Vec<NaiveDate>,
    pub(crate) days_to: Vec<NaiveDate>,
    pub(crate) day_bucket: Vec<i32>,
    /// The same days as bitmap sources: stored blocks where they may be, else days.
    pub(crate) blocks: PieceColumns,
    /// Each bucket's whole quarter hours outside its whole days, per UTC day.
    pub(crate) parts: PartArgs,
    pub(crate) part_bucket: Vec<i32>,
    pub(crate) raw_from: Vec<DateTime<Utc>>,
    pub(crate) raw_to: Vec<DateTime<Utc>>,
    pub(crate) raw_bucket: Vec<i32>,
}

impl BucketPieces {
    /// `spans[i]` is bucket `i`; empty spans have no pieces (and count zero). Parts `storable`
    /// admits are read stored when they are (migration 12), and blocks of closed days
    /// (migration 13), of one action's users when `action` is one.
    pub(crate) fn new(
        spans: &[(DateTime<Utc>, DateTime<Utc>)],
        storable: Storable,
        action: Option<&str>,
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
                all.blocks
                    .push_days(pieces.days, b, storable, action.is_some());
            }
            for part in pieces.day_parts() {
                all.parts.push(&part, storable);
                all.part_bucket.push(b);
            }
            for &(lo, hi) in &pieces.raw {
                all.raw_from.push(lo);
                all.raw_to.push(hi);
                all.raw_bucket.push(b);
            }
        }
        all
    }
}

/// The day parts of `spans` (at most two per bucket).
pub(crate) fn day_parts(spans: &[(DateTime<Utc>, DateTime<Utc>)]) -> Vec<DayPart> {
    spans
        .iter()
        .filter_map(|&(from, to)| TimeRange::new(from, to).ok())
        .flat_map(|r| r.pieces().day_parts())
        .collect()
}

/// The parts of `spans` that may be stored in `zone` (see `parts`).
pub(crate) fn storable_bucket_parts(
    zone: crate::domain::Zone,
    spans: &[(DateTime<Utc>, DateTime<Utc>)],
) -> Vec<DayPart> {
    if zone.is_utc() {
        return Vec::new();
    }
    storable_parts(&day_parts(spans), Storable::now(zone))
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

/// The numbers of each of `spans`, in their order (zeros where nothing happened). A part of a
/// bucket stored under its day's current write count (`parts`) is read instead of its rows.
pub(crate) async fn bucket_counts(
    db: impl PgExecutor<'_>,
    action: Option<&str>,
    spans: &[(DateTime<Utc>, DateTime<Utc>)],
    storable: Storable,
) -> sqlx::Result<Vec<BucketCounts>> {
    let p = BucketPieces::new(spans, storable, action);
    // `parts` knows for each part whether it is stored under its day's current count (`valid`).
    // `raw` is materialised so that it is scanned once for the totals and once for the users.
    // The users of a part not stored are those whose day row's quarter mask meets it; with the
    // raw spans' users they become bitmaps like the days' own, and a bucket's distinct users
    // are the popcount of the OR of all its bitmaps.
    let rows = sqlx::query!(
        r#"with parts as materialized (
            select p.day, p.lo, p.hi, p.qfrom, p.qto, p.mask::bit(96) as mask, p.b, v.version,
                   v.version is not null as valid, p.day >= activity_recent_first_day()
                   -- Index probes ordered like the index: as `not exists`, the planner expects
                   -- an early match and scans the whole table (5 ms a part) when there is none.
                   and (select r.quarter from activity_recent_quarter_users r
                        where r.day = p.day and r.action = '' and r.quarter < p.lo
                          and r.users <> B'0'::bit(1024)
                        order by r.day, r.action, r.quarter limit 1) is null
                   and (select r.quarter from activity_recent_quarter_users r
                        where r.day = p.day and r.action = '' and r.quarter >= p.hi
                          and r.users <> B'0'::bit(1024)
                        order by r.day, r.action, r.quarter limit 1) is null as whole
            from unnest($5::date[], $6::int2[], $7::int2[], $8::timestamptz[], $9::timestamptz[],
                        $10::text[], $11::bool[], $12::int4[]) p(day, lo, hi, qfrom, qto, mask, stored, b)
            left join lateral (
                select x.version from activity_parts x
                where p.stored and x.day = p.day and x.lo = p.lo and x.hi = p.hi
                  and x.version = activity_part_version(p.day, p.lo, p.hi)
            ) v on true
        ), raw as materialized (
            select r.b, e.user_id, e.value
            from unnest($13::timestamptz[], $14::timestamptz[], $15::int4[]) r(lo, hi, b)
            cross join lateral (
                select e.user_id, e.value from activities e
                where e.occurred_at >= r.lo and e.occurred_at < r.hi and ($1::text is null or e.action = $1)
                offset 0
            ) e
        ), blocks as materialized (
            select k.first, k.days, k.b, v.version, v.version is not null as valid
            from unnest($16::date[], $17::int2[], $18::bool[], $19::int4[]) k(first, days, stored, b)
            left join lateral (
                select x.version from activity_blocks x
                where k.stored and x.first_day = k.first and x.days = k.days
                  and x.version = activity_days_version(k.first, k.days)
            ) v on true
        ), days as (
            select lo, hi, b from unnest($2::date[], $3::date[], $4::int4[]) d(lo, hi, b)
        ), counts as (
            select b, sum(events)::int8 as events, sum(value_sum) as value_sum
            from (
                select d.b, a.events, a.value_sum
                from days d join activity_daily a on a.day >= d.lo and a.day < d.hi
                where ($1::text is null or a.action = $1)
                union all
                select p.b, h.events, h.value_sum
                from parts p
                join activity_quarter_hours h on h.quarter >= p.qfrom and h.quarter < p.qto
                where ($1::text is null or h.action = $1) and not p.valid
                union all
                select p.b, t.events, t.value_sum
                from parts p
                join activity_part_totals t
                  on t.day = p.day and t.lo = p.lo and t.hi = p.hi and t.version = p.version
                where ($1::text is null or t.action = $1) and p.valid
                union all
                select b, 1, coalesce(value::numeric, 0) from raw
            ) t
            group by b
        ), edge_days as (
            select distinct day from parts where not valid and day < activity_recent_first_day()
        ), edge_rows as (
            -- Each edge day's rows once, however many buckets share the day. Each day is an
            -- index range (lateral, fenced by `offset 0`): guessing thirty days where there are
            -- three, the planner would scan the whole table.
            -- The rows carry their user's number (migration 14): index-only scans.
            select a.day, a.ordinal, a.quarters
            from edge_days d,
                 lateral (select a.day, a.ordinal, a.quarters from activity_user_daily a
                          where a.day = d.day offset 0) a
            where $1::text is null
            union all
            select a.day, a.ordinal, a.quarters
            from edge_days d,
                 lateral (select a.day, a.ordinal, a.quarters from activity_user_action_daily a
                          where a.day = d.day and a.action = $1 offset 0) a
        ), edge_users as (
            select p.b, r.ordinal
            from edge_rows r
            join parts p on p.day = r.day and not p.valid and (r.quarters & p.mask) <> B'0'::bit(96)
            union all
            select r.b, u.ordinal from raw r join activity_users u using (user_id)
        ), bitmaps as (
            select b, chunk, bit_or(users) as users
            from (
                -- Whole days: blocks stored under their days' current counts (migration 13),
                -- else the days' own bitmaps; each an index range, lateral and fenced.
                select k.b, u.chunk, u.users
                from blocks k
                cross join lateral (
                    select u.chunk, u.users from activity_block_users u
                    where u.first_day = k.first and u.days = k.days and u.version = k.version
                      and u.action = coalesce($1::text, '')
                    offset 0
                ) u
                where k.valid
                union all
                select k.b, u.chunk, u.users
                from blocks k
                cross join lateral (
                    select u.chunk, u.users from activity_day_users u
                    where u.day >= k.first and u.day < k.first + k.days
                      and ($1::text is null or u.action = $1)
                    offset 0
                ) u
                where not k.valid
                union all
                select x.b, activity_user_chunk(x.ordinal),
                       set_bit(B'0'::bit(1024), activity_user_bit(x.ordinal), 1)
                from edge_users x
                union all
                -- Today and yesterday: the bitmaps of their quarters (migration 11), or the day's
                -- own when nobody was active in the rest of the day (today's later hours).
                -- A part's quarters are one index range: joined on a mask, the planner hashed
                -- every recent bitmap (59,000 rows, 39 ms with a million users).
                select p.b, r.chunk, r.users
                from parts p
                cross join lateral (
                    select r.chunk, r.users from activity_recent_quarter_users r
                    where r.day = p.day and r.action = coalesce($1::text, '')
                      and r.quarter >= p.lo and r.quarter < p.hi
                    offset 0
                ) r
                where p.day >= activity_recent_first_day() and not p.valid and not p.whole
                union all
                select p.b, u.chunk, u.users
                from parts p
                cross join lateral (
                    select u.chunk, u.users from activity_day_users u
                    where u.day = p.day and ($1::text is null or u.action = $1)
                    offset 0
                ) u
                where p.whole and not p.valid
                union all
                -- Stored parts: one index range each (joined, the planner guessed one row
                -- per part and, its statistics stale after a refill, scanned the whole table:
                -- 43 of Kathmandu's 101 ms with a million users).
                select p.b, u.chunk, u.users
                from parts p
                cross join lateral (
                    select u.chunk, u.users from activity_part_users u
                    where u.day = p.day and u.lo = p.lo and u.hi = p.hi and u.version = p.version
                      and u.action = coalesce($1::text, '')
                    offset 0
                ) u
                where p.valid
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
        &p.parts.days,
        &p.parts.lo,
        &p.parts.hi,
        &p.parts.from,
        &p.parts.to,
        &p.parts.masks,
        &p.parts.stored,
        &p.part_bucket,
        &p.raw_from,
        &p.raw_to,
        &p.raw_bucket,
        &p.blocks.first,
        &p.blocks.days,
        &p.blocks.stored,
        &p.blocks.bucket,
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
