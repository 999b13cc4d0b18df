//! Summary from the rollups: totals per action from `activity_daily`, distinct users from the
//! OR of the day bitmaps, the partial days from the quarter-hour rollups and the quarter masks of
//! the per-user rows, and under a quarter hour at either end from `activities`.

use sqlx::PgExecutor;

use super::buckets::storable_bucket_parts;
use super::parts::Storable;
use super::{ActionCount, PieceArgs, Summary};
use crate::domain::{DayPart, StatsQuery};

/// One row per action, then one row with a null action for the whole range.
struct Row {
    action: Option<String>,
    events: i64,
    unique_users: i64,
    value_sum: f64,
    duration_sum: f64,
    duration_count: i64,
}

/// A summary with the sum and count behind its average duration, which live updates need.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryTotals {
    pub(crate) summary: Summary,
    pub(crate) duration_sum: f64,
    pub(crate) duration_count: i64,
}

/// The average the summary reports: computed the same way whether the sums come from a query or
/// from live updates, so both give the same number.
pub fn average(sum: f64, count: i64) -> Option<f64> {
    (count > 0).then(|| sum / count as f64)
}

pub async fn summary(db: impl PgExecutor<'_>, q: &StatsQuery) -> sqlx::Result<Summary> {
    summary_totals(db, q).await.map(|t| t.summary)
}

/// The parts of the range that may be stored (migration 12): a summary from a local midnight
/// reads its first day's part instead of every per-user row of that UTC day.
pub fn summary_parts(q: &StatsQuery) -> Vec<DayPart> {
    storable_bucket_parts(q.zone, &[(q.range.from(), q.range.to())])
}

pub async fn summary_totals(
    db: impl PgExecutor<'_>,
    q: &StatsQuery,
) -> sqlx::Result<SummaryTotals> {
    let a = PieceArgs::new(q, &q.range.pieces(), Storable::now(q.zone));
    // `parts` knows for each part whether it is stored under its day's current count (`valid`):
    // a stored part gives its totals and users per action; the others are read from the
    // quarter-hour rollups and, for their users, on days before yesterday the per-user rows
    // whose quarter mask meets them, on today and yesterday the bitmaps of their quarters.
    // `raw` (the spans under a quarter hour) is materialised so it is scanned once; each span is
    // a lateral, fenced index range, so that the planner expects a span's rows rather than a
    // tenth of the table (which made it sort every bitmap: 45 against 75-100 ms for Berlin's 30
    // days). Distinct users are the popcount of the OR of all the bitmaps.
    let rows = sqlx::query_as!(
        Row,
        r#"with parts as materialized (
            select p.day, p.lo, p.hi, p.qfrom, p.qto, p.mask::bit(96) as mask, v.version,
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
            from unnest($4::date[], $5::int2[], $6::int2[], $7::timestamptz[], $8::timestamptz[],
                        $9::text[], $10::bool[]) p(day, lo, hi, qfrom, qto, mask, stored)
            left join lateral (
                select x.version from activity_parts x
                where p.stored and x.day = p.day and x.lo = p.lo and x.hi = p.hi
                  and x.version = activity_part_version(p.day, p.lo, p.hi)
            ) v on true
        ), blocks as materialized (
            select k.first, k.days, v.version, v.version is not null as valid
            from unnest($13::date[], $14::int2[], $15::bool[]) k(first, days, stored)
            left join lateral (
                select x.version from activity_blocks x
                where k.stored and x.first_day = k.first and x.days = k.days
                  and x.version = activity_days_version(k.first, k.days)
            ) v on true
        ), raw as materialized (
            select e.user_id, e.action, e.value, e.duration_ms
            from unnest($11::timestamptz[], $12::timestamptz[]) r(lo, hi)
            cross join lateral (
                select e.user_id, e.action, e.value, e.duration_ms from activities e
                where e.occurred_at >= r.lo and e.occurred_at < r.hi and ($1::text is null or e.action = $1)
                offset 0
            ) e
        ), edge_bits as (
            -- The per-user rows carry their user's number (migration 14); only the raw spans'
            -- few users are looked up.
            select x.action, activity_user_chunk(x.ordinal) as chunk,
                   bit_or(set_bit(B'0'::bit(1024), activity_user_bit(x.ordinal), 1)) as users
            from (
                select a.ordinal, a.action
                from parts p
                join activity_user_action_daily a on a.day = p.day
                where (a.quarters & p.mask) <> B'0'::bit(96) and ($1::text is null or a.action = $1)
                  and p.day < activity_recent_first_day() and not p.valid
                union all
                select u.ordinal, r.action from raw r join activity_users u using (user_id)
            ) x
            group by 1, 2
        ), totals as (
            select action, sum(events)::int8 as events, sum(value_sum) as value_sum,
                   sum(duration_sum) as duration_sum, sum(duration_count) as duration_count
            from (
                select action, events, value_sum, duration_sum, duration_count
                from activity_daily
                where day >= $2 and day < $3 and ($1::text is null or action = $1)
                union all
                select h.action, h.events, h.value_sum, h.duration_sum, h.duration_count
                from parts p
                join activity_quarter_hours h on h.quarter >= p.qfrom and h.quarter < p.qto
                where ($1::text is null or h.action = $1) and not p.valid
                union all
                select t.action, t.events, t.value_sum, t.duration_sum, t.duration_count
                from parts p
                join activity_part_totals t
                  on t.day = p.day and t.lo = p.lo and t.hi = p.hi and t.version = p.version
                where ($1::text is null or t.action = $1) and p.valid
                union all
                select action, count(*), coalesce(sum(value::numeric), 0), coalesce(sum(duration_ms), 0),
                       count(duration_ms)
                from raw group by action
            ) t
            group by action
            having sum(events) > 0
        ), bitmaps as (
            select action, chunk, bit_or(users) as users
            from (
                -- Whole days: blocks stored under their days' current counts (migration 13),
                -- else the days' own bitmaps.
                select u.action, u.chunk, u.users
                from blocks k
                cross join lateral (
                    select u.action, u.chunk, u.users from activity_block_users u
                    where u.first_day = k.first and u.days = k.days and u.version = k.version
                      and u.action <> '' and ($1::text is null or u.action = $1)
                    offset 0
                ) u
                where k.valid
                union all
                select u.action, u.chunk, u.users
                from blocks k
                cross join lateral (
                    select u.action, u.chunk, u.users from activity_day_users u
                    where u.day >= k.first and u.day < k.first + k.days
                      and ($1::text is null or u.action = $1)
                    offset 0
                ) u
                where not k.valid
                union all
                select action, chunk, users from edge_bits
                union all
                -- Today and yesterday: the bitmaps of their quarters (migration 11), or the day's
                -- own when nobody was active in the rest of the day (today's later hours). A
                -- part's quarters are one index range: joined on a mask, the planner hashed every
                -- recent bitmap (59,000 rows, 39 ms with a million users).
                select r.action, r.chunk, r.users
                from parts p
                cross join lateral (
                    select r.action, r.chunk, r.users from activity_recent_quarter_users r
                    where r.day = p.day and r.action > '' and r.quarter >= p.lo and r.quarter < p.hi
                      and ($1::text is null or r.action = $1)
                    offset 0
                ) r
                where p.day >= activity_recent_first_day() and not p.valid and not p.whole
                union all
                select u.action, u.chunk, u.users
                from parts p
                cross join lateral (
                    select u.action, u.chunk, u.users from activity_day_users u
                    where u.day = p.day and ($1::text is null or u.action = $1)
                    offset 0
                ) u
                where p.whole and not p.valid
                union all
                -- Stored parts: one index range each (joined, the planner guessed one row
                -- per part and, its statistics stale after a refill, scanned the whole table).
                select u.action, u.chunk, u.users
                from parts p
                cross join lateral (
                    select u.action, u.chunk, u.users from activity_part_users u
                    where u.day = p.day and u.lo = p.lo and u.hi = p.hi and u.version = p.version
                      and u.action > '' and ($1::text is null or u.action = $1)
                    offset 0
                ) u
                where p.valid
            ) b
            group by action, chunk
        ), all_bitmaps as (
            select chunk, bit_or(users) as users from bitmaps group by chunk
        ), action_users as (
            select action, sum(bit_count(users))::int8 as n from bitmaps group by action
        ), all_users as (
            select coalesce(sum(bit_count(users)), 0)::int8 as n from all_bitmaps
        )
        select t.action as "action?", t.events as "events!", coalesce(a.n, 0) as "unique_users!",
               activity_float8(t.value_sum) as "value_sum!", t.duration_sum::float8 as "duration_sum!",
               t.duration_count::int8 as "duration_count!"
        from totals t left join action_users a using (action)
        union all
        select null, coalesce(sum(events), 0)::int8, (select n from all_users),
               activity_float8(coalesce(sum(value_sum), 0)),
               coalesce(sum(duration_sum), 0)::float8, coalesce(sum(duration_count), 0)::int8
        from totals"#,
        a.action,
        a.first_day,
        a.end_day,
        &a.parts.days,
        &a.parts.lo,
        &a.parts.hi,
        &a.parts.from,
        &a.parts.to,
        &a.parts.masks,
        &a.parts.stored,
        &a.raw_from,
        &a.raw_to,
        &a.blocks.first,
        &a.blocks.days,
        &a.blocks.stored,
    )
    .fetch_all(db)
    .await?;
    let mut summary = Summary {
        from: q.zone.local(q.range.from()),
        to: q.zone.local(q.range.to()),
        events: 0,
        unique_users: 0,
        value_sum: 0.0,
        avg_duration_ms: None,
        by_action: Vec::with_capacity(rows.len()),
    };
    let (mut duration_sum, mut duration_count) = (0.0, 0);
    for row in rows {
        match row.action {
            Some(action) => summary.by_action.push(ActionCount {
                action,
                events: row.events,
                unique_users: row.unique_users,
            }),
            None => {
                summary.events = row.events;
                summary.unique_users = row.unique_users;
                summary.value_sum = row.value_sum;
                summary.avg_duration_ms = average(row.duration_sum, row.duration_count);
                (duration_sum, duration_count) = (row.duration_sum, row.duration_count);
            }
        }
    }
    summary.by_action.sort_by(|a, b| {
        b.events
            .cmp(&a.events)
            .then_with(|| a.action.cmp(&b.action))
    });
    Ok(SummaryTotals {
        summary,
        duration_sum,
        duration_count,
    })
}
