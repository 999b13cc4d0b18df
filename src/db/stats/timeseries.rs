//! Time series from the rollups. Day, week and month buckets are made of whole UTC days, and the
//! partial days at the range's edges of whole hours; hour buckets read the hourly rollups. Only
//! what is left, under an hour at either end, is read from `activities`.

use sqlx::PgConnection;

use super::{PieceArgs, Timeseries, bind_pieces};
use crate::domain::{Bucket, StatsQuery};

/// Both shapes share their frame: the bucket starts (`$unit` is how they are truncated), the
/// raw spans' events in `raw`, the totals of the whole hours and raw spans in `partial_counts`,
/// and the answer joining `counts` and `users` to every bucket.
macro_rules! series_sql {
    ($unit:literal, $body:literal) => {
        concat!(
            "
with buckets as (
    select generate_series(
        date_trunc(",
            $unit,
            ", $1 at time zone 'UTC'),
        ($2 at time zone 'UTC') - interval '1 microsecond',
        ('1 ' || ",
            $unit,
            ")::interval) as start
), raw as materialized (
    select date_trunc(",
            $unit,
            ", e.occurred_at at time zone 'UTC') as start, e.user_id, e.value
    from unnest($8::timestamptz[], $9::timestamptz[]) r(lo, hi)
    join activities e on e.occurred_at >= r.lo and e.occurred_at < r.hi
    where ($3::text is null or e.action = $3)
), partial_counts as (
    select date_trunc(",
            $unit,
            ", h.hour at time zone 'UTC') as start, h.events, h.value_sum
    from unnest($6::timestamptz[], $7::timestamptz[]) r(lo, hi)
    join activity_hourly h on h.hour >= r.lo and h.hour < r.hi
    where ($3::text is null or h.action = $3)
    union all
    select start, 1, coalesce(value::numeric, 0) from raw
), ",
            $body,
            "
)
select b.start at time zone 'UTC' as start,
       coalesce(c.events, 0) as events,
       coalesce(u.n, 0) as unique_users,
       activity_float8(coalesce(c.value_sum, 0)) as value_sum
from buckets b left join counts c using (start) left join users u using (start)
order by b.start"
        )
    };
}

// Bucket starts come from generate_series so that empty buckets are present as zeros; the
// series stops 1 µs before `to` because generate_series includes its end point. The users of a
// bucket's partial days (hour masks, raw spans) become bitmaps like its days' own, as in the
// summary; distinct users are the popcount of the OR of both.
const DAYS_SQL: &str = series_sql!(
    "$12",
    "edge_bits as (
    select x.start, activity_user_chunk(u.ordinal) as chunk,
           bit_or(set_bit(B'0'::bit(1024), activity_user_bit(u.ordinal), 1)) as users
    from (
        select date_trunc($12, m.day::timestamp) as start, a.user_id
        from unnest($10::date[], $11::text[]) m(day, mask)
        join activity_user_daily a on a.day = m.day
        where $3::text is null and (a.hours & m.mask::bit(24)) <> B'0'::bit(24)
        union all
        select date_trunc($12, m.day::timestamp), a.user_id
        from unnest($10::date[], $11::text[]) m(day, mask)
        join activity_user_action_daily a on a.day = m.day
        where a.action = $3 and (a.hours & m.mask::bit(24)) <> B'0'::bit(24)
        union all
        select start, user_id from raw
    ) x
    join activity_users u using (user_id)
    group by 1, 2
), counts as (
    select start, sum(events)::int8 as events, sum(value_sum) as value_sum
    from (
        select date_trunc($12, day::timestamp) as start, events, value_sum
        from activity_daily
        where day >= $4 and day < $5 and ($3::text is null or action = $3)
        union all
        select start, events, value_sum from partial_counts
    ) t
    group by start
), bitmaps as (
    select start, chunk, bit_or(users) as users
    from (
        select date_trunc($12, day::timestamp) as start, chunk, users
        from activity_day_users
        where day >= $4 and day < $5 and ($3::text is null or action = $3)
        union all
        select start, chunk, users from edge_bits
    ) b
    group by 1, 2
), users as (
    select start, sum(bit_count(users))::int8 as n from bitmaps group by start"
);

// Hour buckets: a whole hour reads its totals from `activity_hourly` and its distinct users from
// `activity_hour_users` (action '' counts every action); a partial hour at either end of the
// range is read from `activities`. No hour is both.
const HOURS_SQL: &str = series_sql!(
    "'hour'",
    "counts as (
    select start, sum(events)::int8 as events, sum(value_sum) as value_sum
    from partial_counts
    group by start
), users as (
    select start, sum(n)::int8 as n from (
        select h.hour at time zone 'UTC' as start, h.users as n
        from unnest($6::timestamptz[], $7::timestamptz[]) r(lo, hi)
        join activity_hour_users h on h.hour >= r.lo and h.hour < r.hi
        where h.action = coalesce($3::text, '')
        union all
        select start, count(distinct user_id) from raw group by start
    ) t group by start"
);

pub async fn timeseries(
    db: &mut PgConnection,
    q: &StatsQuery,
    bucket: Bucket,
) -> sqlx::Result<Timeseries> {
    let points = if bucket == Bucket::Hour {
        let pieces = q.range.hour_pieces();
        bind_pieces(sqlx::query_as(HOURS_SQL), PieceArgs::new(q, &pieces))
            .fetch_all(db)
            .await?
    } else {
        let pieces = q.range.pieces();
        bind_pieces(sqlx::query_as(DAYS_SQL), PieceArgs::new(q, &pieces))
            .bind(bucket.as_str())
            .fetch_all(db)
            .await?
    };
    Ok(Timeseries {
        from: q.range.from(),
        to: q.range.to(),
        bucket,
        points,
    })
}
