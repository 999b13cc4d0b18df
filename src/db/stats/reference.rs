//! Every statistic computed from the raw `activities` rows alone: the definition of what each
//! endpoint answers. The rollup queries must give the same numbers (tests compare them after
//! random writes). Local days of a user's profile follow Postgres' own zone rules, so a test
//! holds the compiled-in zone database to them too.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::{ActiveUsers, Point, Summary, Timeseries, TopUser, TopUsers, UserStats, action};
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
        from: q.zone.local(q.range.from()),
        to: q.zone.local(q.range.to()),
        events,
        unique_users,
        value_sum,
        avg_duration_ms,
        by_action,
    })
}

/// Bucket boundaries are the zone's (`Zone::bucket_starts`, checked against Postgres' own zone
/// rules by the tests); what falls in each is counted from the raw rows.
pub async fn timeseries(
    db: impl PgExecutor<'_>,
    q: &StatsQuery,
    bucket: Bucket,
) -> sqlx::Result<Timeseries> {
    let (from, to) = (q.range.from(), q.range.to());
    let starts = q.zone.bucket_starts(from, to, bucket);
    let ends: Vec<DateTime<Utc>> = starts.iter().skip(1).copied().chain([to]).collect();
    type Row = (i64, i64, f64);
    let rows: Vec<Row> = sqlx::query_as(
        "select count(e.occurred_at), count(distinct e.user_id),
                activity_float8(coalesce(sum(e.value::numeric), 0))
         from unnest($1::timestamptz[], $2::timestamptz[]) with ordinality b(lo, hi, i)
         left join activities e
           on e.occurred_at >= greatest(b.lo, $3) and e.occurred_at < least(b.hi, $4)
          and ($5::text is null or e.action = $5)
         group by b.i
         order by b.i",
    )
    .bind(&starts)
    .bind(&ends)
    .bind(from)
    .bind(to)
    .bind(action(q))
    .fetch_all(db)
    .await?;
    let points = starts
        .iter()
        .zip(rows)
        .map(|(s, (events, unique_users, value_sum))| Point {
            start: q.zone.local(*s),
            events,
            unique_users,
            value_sum,
        })
        .collect();
    Ok(Timeseries {
        from: q.zone.local(from),
        to: q.zone.local(to),
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
    let rows: Vec<(Uuid, i64, f64, DateTime<Utc>)> = sqlx::query_as(
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
    let items = rows
        .into_iter()
        .map(|(user_id, events, value_sum, last_seen)| TopUser {
            user_id,
            events,
            value_sum,
            last_seen: q.zone.local(last_seen),
        })
        .collect();
    Ok(TopUsers {
        from: q.zone.local(q.range.from()),
        to: q.zone.local(q.range.to()),
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
                count(distinct (occurred_at at time zone $5)::date)
         from activities
         where user_id = $1 and occurred_at >= $2 and occurred_at < $3 and ($4::text is null or action = $4)",
    )
    .bind(user_id)
    .bind(q.range.from())
    .bind(q.range.to())
    .bind(action(q))
    .bind(q.zone.name())
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
        from: q.zone.local(q.range.from()),
        to: q.zone.local(q.range.to()),
        events,
        value_sum,
        first_seen: first_seen.map(|t| q.zone.local(t)),
        last_seen: last_seen.map(|t| q.zone.local(t)),
        active_days,
        by_action,
    })
}
