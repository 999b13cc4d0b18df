//! The rollup side of retention: when a month of activities is dropped, its rollup rows go
//! too, and the cache is told which answers they were part of.

use chrono::{Duration, NaiveDate};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::partitions::midnight;
use crate::domain::Touch;

/// What forgetting the rollups of a range of days removed.
pub(crate) struct Forgotten {
    /// Activities the rollups counted in the range (the partition's rows).
    pub(crate) events: i64,
    /// Every cached answer the range was part of: one touch per action and day (global
    /// statistics), one per user and action (profiles).
    pub(crate) touches: Vec<Touch>,
}

/// Deletes the rollup rows of the UTC days `[first, end)` and says what they covered. Runs in
/// the transaction that drops the partition, so rows and rollups go together.
pub(crate) async fn forget_rollups(
    tx: &mut PgConnection,
    first: NaiveDate,
    end: NaiveDate,
) -> sqlx::Result<Forgotten> {
    let last_instant =
        |day: NaiveDate| midnight(day) + Duration::days(1) - Duration::microseconds(1);
    let days = sqlx::query!(
        r#"select action, day, sum(events)::int8 as "events!" from activity_daily
         where day >= $1 and day < $2 group by 1, 2 order by 2, 1"#,
        first,
        end,
    )
    .fetch_all(&mut *tx)
    .await?;
    let users = sqlx::query!(
        r#"select user_id, action, min(day) as "first!", max(day) as "last!"
         from activity_user_action_daily where day >= $1 and day < $2 group by 1, 2"#,
        first,
        end,
    )
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query!(
        "with daily as (delete from activity_daily where day >= $1 and day < $2),
              user_daily as (delete from activity_user_daily where day >= $1 and day < $2),
              user_action_daily as (delete from activity_user_action_daily where day >= $1 and day < $2),
              day_users as (delete from activity_day_users where day >= $1 and day < $2),
              quarters as (delete from activity_quarter_hours where quarter >= $3 and quarter < $4),
              -- Stored parts of other zones' days (their rows go with them, on delete cascade).
              parts as (delete from activity_parts where day < $2),
              -- Unions of days that include forgotten ones (their bitmaps go with them).
              blocks as (delete from activity_blocks where first_day < $2),
              versions as (delete from activity_day_versions where day >= $1 and day < $2),
              recent as (delete from activity_recent_quarter_users where day >= $1 and day < $2)
         delete from activity_hour_users where hour >= $3 and hour < $4",
        first,
        end,
        midnight(first),
        midnight(end),
    )
    .execute(&mut *tx)
    .await?;
    // The hour windows starting in the last three quarters of the last day reach into the first
    // day kept: counted again from that day's masks alone.
    sqlx::query!(
        "select activity_hour_users_rebuild($1, $1)",
        end - Duration::days(1)
    )
    .execute(&mut *tx)
    .await?;
    let events = days.iter().map(|d| d.events).sum();
    let mut touches: Vec<Touch> = days
        .into_iter()
        .map(|d| Touch {
            user_id: Uuid::nil(),
            action: d.action,
            occurred_at: midnight(d.day),
            through: Some(last_instant(d.day)),
        })
        .collect();
    touches.extend(users.into_iter().map(|u| Touch {
        user_id: u.user_id,
        action: u.action,
        occurred_at: midnight(u.first),
        through: Some(last_instant(u.last)),
    }));
    Ok(Forgotten { events, touches })
}

/// Deletes the quarter-hour user bitmaps of days before yesterday: no reader uses them (they
/// are kept for today and yesterday only, migration 11) and no writer keeps them up to date. With
/// them go the quarter-hour write counts of those days: only parts of today are checked against
/// them (migration 16), and writers count them from their own yesterday on.
pub(crate) async fn prune_recent_quarters(db: impl sqlx::PgExecutor<'_>) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "with counts as (
            delete from activity_quarter_versions
            where quarter < activity_quarter_start(activity_recent_first_day(), 0)
        )
        delete from activity_recent_quarter_users where day < activity_recent_first_day()"
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
