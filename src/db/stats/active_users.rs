//! DAU, WAU and MAU: distinct users in the 1, 7 and 30 local days ending with the date, three
//! buckets of `bucket_counts`. In UTC the windows are whole days (bitmaps only, no event read);
//! in another zone their first and last days are cut at that zone's midnights.

use sqlx::PgExecutor;

use super::ActiveUsers;
use super::buckets::{bucket_counts, storable_bucket_parts};
use super::parts::Storable;
use crate::domain::DayPart;
use crate::domain::stats_query::ActiveUsersDay;

pub async fn active_users(
    db: impl PgExecutor<'_>,
    day: ActiveUsersDay,
    action: Option<&str>,
) -> sqlx::Result<ActiveUsers> {
    let windows = [day.window(1), day.window(7), day.window(30)];
    let counts = bucket_counts(db, action, &windows, Storable::now(day.zone)).await?;
    let users = |i: usize| counts.get(i).map_or(0, |c| c.unique_users);
    Ok(ActiveUsers::new(day, users(0), users(1), users(2)))
}

/// The parts of the windows of a date that may be stored (see `timeseries`).
pub fn active_users_parts(day: ActiveUsersDay) -> Vec<DayPart> {
    storable_bucket_parts(day.zone, &[day.window(1), day.window(7), day.window(30)])
}
