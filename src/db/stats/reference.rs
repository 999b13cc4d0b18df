//! Every statistic computed from the raw `activities` rows alone: the definition of what each
//! endpoint answers. The rollup queries must give the same numbers (tests compare them after
//! random writes); the hour buckets of a time series and a user's profile are served from here.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::{ActiveUsers, Summary, Timeseries, TopUsers, UserStats, action};
use crate::domain::stats_query::ActiveUsersDay;
use crate::domain::{Bucket, StatsQuery, TopUsersLimit};

pub async fn summary(db: &mut PgConnection, q: &StatsQuery) -> sqlx::Result<Summary> {
    let (events, unique_users, value_sum, avg_duration_ms): (i64, i64, f64, Option<f64>) = sqlx::query_as(
        "select count(*), count(distinct user_id), activity_float8(coalesce(sum(value::numeric), 0)), avg(duration_ms)::float8
         from activities
         where occurred_at >= $1 and occurred_at < $2 and ($3::text is null or action = $3)",
    )
    .bind(q.range.from())
    .bind(q.range.to())
    .bind(action(q))
    .fetch_one(&mut *db)
    .await?;
    let by_action = sqlx::query_as(
        "select action, count(*) as events, count(distinct user_id) as unique_users
         from activities
         where occurred_at >= $1 and occurred_at < $2 and ($3::text is null or action = $3)
         group by action
         order by events desc, action collate \"C\"",
    )
    .bind(q.range.from())
    .bind(q.range.to())
    .bind(action(q))
    .fetch_all(db)
    .await?;
    Ok(Summary {
        from: q.range.from(),
        to: q.range.to(),
        events,
        unique_users,
        value_sum,
        avg_duration_ms,
        by_action,
    })
}

pub async fn timeseries(
    db: impl PgExecutor<'_>,
    q: &StatsQuery,
    bucket: Bucket,
) -> sqlx::Result<Timeseries> {
    // Bucket starts come from generate_series so that empty buckets are present as zeros;
    // the series stops 1 µs before `to` because generate_series includes its end point.
    let points = sqlx::query_as(
        "with buckets as (
             select generate_series(
                 date_trunc($3, $1 at time zone 'UTC'),
                 ($2 at time zone 'UTC') - interval '1 microsecond',
                 ('1 ' || $3)::interval) as start
         ), counts as (
             select date_trunc($3, occurred_at at time zone 'UTC') as start,
                    count(*) as events, count(distinct user_id) as unique_users,
                    coalesce(sum(value::numeric), 0) as value_sum
             from activities
             where occurred_at >= $1 and occurred_at < $2 and ($4::text is null or action = $4)
             group by 1
         )
         select b.start at time zone 'UTC' as start,
                coalesce(c.events, 0) as events,
                coalesce(c.unique_users, 0) as unique_users,
                activity_float8(coalesce(c.value_sum, 0)) as value_sum
         from buckets b left join counts c using (start)
         order by b.start",
    )
    .bind(q.range.from())
    .bind(q.range.to())
    .bind(bucket.as_str())
    .bind(action(q))
    .fetch_all(db)
    .await?;
    Ok(Timeseries {
        from: q.range.from(),
        to: q.range.to(),
        bucket,
        points,
    })
}

pub async fn active_users(
    db: impl PgExecutor<'_>,
    day: ActiveUsersDay,
    action: Option<&str>,
) -> sqlx::Result<ActiveUsers> {
    let (month_start, end) = day.window(30);
    let (week_start, _) = day.window(7);
    let (day_start, _) = day.window(1);
    let (dau, wau, mau): (i64, i64, i64) = sqlx::query_as(
        "select count(distinct user_id) filter (where occurred_at >= $3),
                count(distinct user_id) filter (where occurred_at >= $2),
                count(distinct user_id)
         from activities
         where occurred_at >= $1 and occurred_at < $4 and ($5::text is null or action = $5)",
    )
    .bind(month_start)
    .bind(week_start)
    .bind(day_start)
    .bind(end)
    .bind(action)
    .fetch_one(db)
    .await?;
    Ok(ActiveUsers::new(day, dau, wau, mau))
}

pub async fn top_users(
    db: impl PgExecutor<'_>,
    q: &StatsQuery,
    limit: TopUsersLimit,
) -> sqlx::Result<TopUsers> {
    let items = sqlx::query_as(
        "select user_id, count(*) as events, activity_float8(coalesce(sum(value::numeric), 0)) as value_sum, max(occurred_at) as last_seen
         from activities
         where occurred_at >= $1 and occurred_at < $2 and ($3::text is null or action = $3)
         group by user_id
         order by events desc, user_id
         limit $4",
    )
    .bind(q.range.from())
    .bind(q.range.to())
    .bind(action(q))
    .bind(limit.0)
    .fetch_all(db)
    .await?;
    Ok(TopUsers {
        from: q.range.from(),
        to: q.range.to(),
        items,
    })
}

pub async fn user_stats(
    db: &mut PgConnection,
    user_id: Uuid,
    q: &StatsQuery,
) -> sqlx::Result<UserStats> {
    type Totals = (i64, f64, Option<DateTime<Utc>>, Option<DateTime<Utc>>, i64);
    let (events, value_sum, first_seen, last_seen, active_days): Totals = sqlx::query_as(
        "select count(*), activity_float8(coalesce(sum(value::numeric), 0)), min(occurred_at), max(occurred_at),
                count(distinct (occurred_at at time zone 'UTC')::date)
         from activities
         where user_id = $1 and occurred_at >= $2 and occurred_at < $3 and ($4::text is null or action = $4)",
    )
    .bind(user_id)
    .bind(q.range.from())
    .bind(q.range.to())
    .bind(action(q))
    .fetch_one(&mut *db)
    .await?;
    let by_action = sqlx::query_as(
        "select action, count(*) as events, count(distinct user_id) as unique_users
         from activities
         where user_id = $1 and occurred_at >= $2 and occurred_at < $3 and ($4::text is null or action = $4)
         group by action
         order by events desc, action collate \"C\"",
    )
    .bind(user_id)
    .bind(q.range.from())
    .bind(q.range.to())
    .bind(action(q))
    .fetch_all(db)
    .await?;
    Ok(UserStats {
        user_id,
        from: q.range.from(),
        to: q.range.to(),
        events,
        value_sum,
        first_seen,
        last_seen,
        active_days,
        by_action,
    })
}
