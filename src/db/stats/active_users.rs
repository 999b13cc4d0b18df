//! DAU, WAU and MAU from the day bitmaps: the windows are whole UTC days, so no event row is read.

use sqlx::PgExecutor;

use super::ActiveUsers;
use crate::domain::stats_query::ActiveUsersDay;

pub async fn active_users(
    db: impl PgExecutor<'_>,
    day: ActiveUsersDay,
    action: Option<&str>,
) -> sqlx::Result<ActiveUsers> {
    let (month_start, end) = day.window(30);
    let (week_start, _) = day.window(7);
    let (day_start, _) = day.window(1);
    // The popcount of the OR of the bitmaps of the days in [$n, $4), chunk by chunk.
    let counts = sqlx::query!(
        r#"with windowed as (
            select chunk,
                   bit_or(users) filter (where day >= $3) as day_users,
                   bit_or(users) filter (where day >= $2) as week_users,
                   bit_or(users) as month_users
            from activity_day_users
            where day >= $1 and day < $4 and ($5::text is null or action = $5)
            group by chunk
        )
        select coalesce(sum(bit_count(day_users)), 0)::int8 as "dau!",
               coalesce(sum(bit_count(week_users)), 0)::int8 as "wau!",
               coalesce(sum(bit_count(month_users)), 0)::int8 as "mau!"
        from windowed"#,
        month_start.date_naive(),
        week_start.date_naive(),
        day_start.date_naive(),
        end.date_naive(),
        action,
    )
    .fetch_one(db)
    .await?;
    Ok(ActiveUsers::new(day, counts.dau, counts.wau, counts.mau))
}
