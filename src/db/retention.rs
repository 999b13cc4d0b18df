//! The rollup side of retention: when a month of activities is dropped, its rollup rows go
//! too, and the cache is told which answers they were part of.

use chrono::{Duration, NaiveDate};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::partitions::midnight;
use crate::domain::Touch;

/// What forgetting the rollups of a range of days removed.
pub struct Forgotten {
    /// Activities the rollups counted in the range (the partition's rows).
    pub events: i64,
    /// Every cached answer the range was part of: one touch per action and day (global
    /// statistics), one per user and action (profiles).
    pub touches: Vec<Touch>,
}

/// Deletes the rollup rows of the UTC days `[first, end)` and says what they covered. Runs in
/// the transaction that drops the partition, so rows and rollups go together.
pub async fn forget_rollups(
    tx: &mut PgConnection,
    first: NaiveDate,
    end: NaiveDate,
) -> sqlx::Result<Forgotten> {
    let last_instant =
        |day: NaiveDate| midnight(day) + Duration::days(1) - Duration::microseconds(1);
    let days: Vec<(String, NaiveDate, i64)> = sqlx::query_as(
        "select action, day, sum(events)::int8 from activity_daily
         where day >= $1 and day < $2 group by 1, 2 order by 2, 1",
    )
    .bind(first)
    .bind(end)
    .fetch_all(&mut *tx)
    .await?;
    let users: Vec<(Uuid, String, NaiveDate, NaiveDate)> = sqlx::query_as(
        "select user_id, action, min(day), max(day) from activity_user_action_daily
         where day >= $1 and day < $2 group by 1, 2",
    )
    .bind(first)
    .bind(end)
    .fetch_all(&mut *tx)
    .await?;
    for table in [
        "activity_daily",
        "activity_user_daily",
        "activity_user_action_daily",
        "activity_day_users",
    ] {
        // The table names are the constants above, never input.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "delete from {table} where day >= $1 and day < $2"
        )))
        .bind(first)
        .bind(end)
        .execute(&mut *tx)
        .await?;
    }
    for table in ["activity_hourly", "activity_hour_users"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "delete from {table} where hour >= $1 and hour < $2"
        )))
        .bind(midnight(first))
        .bind(midnight(end))
        .execute(&mut *tx)
        .await?;
    }
    let events = days.iter().map(|d| d.2).sum();
    let mut touches: Vec<Touch> = days
        .into_iter()
        .map(|(action, day, _)| Touch {
            user_id: Uuid::nil(),
            action,
            occurred_at: midnight(day),
            through: Some(last_instant(day)),
        })
        .collect();
    touches.extend(
        users
            .into_iter()
            .map(|(user_id, action, first_day, last_day)| Touch {
                user_id,
                action,
                occurred_at: midnight(first_day),
                through: Some(last_instant(last_day)),
            }),
    );
    Ok(Forgotten { events, touches })
}
