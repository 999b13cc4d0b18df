//! Time series from the rollups. Day, week and month buckets are made of whole UTC days, so
//! only the partial days at the range's edges are read from `activities`; an hour bucket is
//! smaller than a rollup row and is always computed from the activities themselves.

use sqlx::PgConnection;

use super::{Timeseries, bind_range, reference};
use crate::domain::{Bucket, StatsQuery};

// Bucket starts come from generate_series so that empty buckets are present as zeros; the
// series stops 1 µs before `to` because generate_series includes its end point. Distinct users
// per bucket are the popcount of the OR of its days' bitmaps, plus edge users whose bit is unset.
const SQL: &str = "
with buckets as (
    select generate_series(
        date_trunc($8, $1 at time zone 'UTC'),
        ($2 at time zone 'UTC') - interval '1 microsecond',
        ('1 ' || $8)::interval) as start
), edge as materialized (
    select date_trunc($8, e.occurred_at at time zone 'UTC') as start, e.user_id, e.value, u.ordinal
    from activities e join activity_users u using (user_id)
    where ((e.occurred_at >= $1 and e.occurred_at < $3) or (e.occurred_at >= $4 and e.occurred_at < $2))
      and ($5::text is null or e.action = $5)
), counts as (
    select start, sum(events)::int8 as events, sum(value_sum) as value_sum
    from (
        select date_trunc($8, day::timestamp) as start, events, value_sum
        from activity_daily
        where day >= $6 and day < $7 and ($5::text is null or action = $5)
        union all
        select start, 1, coalesce(value::numeric, 0) from edge
    ) t
    group by start
), bitmaps as (
    select date_trunc($8, day::timestamp) as start, chunk, bit_or(users) as users
    from activity_day_users
    where day >= $6 and day < $7 and ($5::text is null or action = $5)
    group by 1, 2
), users as (
    select start, sum(n)::int8 as n from (
        select start, bit_count(users) as n from bitmaps
        union all
        select e.start, count(distinct e.user_id)
        from edge e left join bitmaps b on b.start = e.start and b.chunk = activity_user_chunk(e.ordinal)
        where b.users is null or get_bit(b.users, activity_user_bit(e.ordinal)) = 0
        group by e.start
    ) t group by start
)
select b.start at time zone 'UTC' as start,
       coalesce(c.events, 0) as events,
       coalesce(u.n, 0) as unique_users,
       activity_float8(coalesce(c.value_sum, 0)) as value_sum
from buckets b left join counts c using (start) left join users u using (start)
order by b.start";

pub async fn timeseries(
    db: &mut PgConnection,
    q: &StatsQuery,
    bucket: Bucket,
) -> sqlx::Result<Timeseries> {
    if bucket == Bucket::Hour {
        return reference::timeseries(db, q, bucket).await;
    }
    let points = bind_range(sqlx::query_as(SQL), q)
        .bind(bucket.as_str())
        .fetch_all(db)
        .await?;
    Ok(Timeseries {
        from: q.range.from(),
        to: q.range.to(),
        bucket,
        points,
    })
}
