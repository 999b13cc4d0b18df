//! The monthly partitions of `activities` (migration 8): making sure the ones a write needs
//! exist before it is written, listing them, and removing expired ones.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeZone, Utc};
use sqlx::{PgConnection, PgExecutor, PgPool};

/// How long a partition seen to exist is trusted without asking again. Another instance's
/// retention may drop a month; a write that then finds no partition fails once with 503 and its
/// retry, after this long at most, creates the month again.
const TRUSTED_FOR: Duration = Duration::from_secs(60);

/// The first day of the month holding `t` (partitions are cut at UTC month starts).
pub fn month_of(t: DateTime<Utc>) -> NaiveDate {
    let d = t.date_naive();
    NaiveDate::from_ymd_opt(d.year(), d.month(), 1).unwrap_or(d)
}

/// The first instant (UTC midnight) of `day`.
pub(crate) fn midnight(day: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_time(chrono::NaiveTime::MIN))
}

/// Months whose partitions this process has seen, so that a write needs no extra round trip
/// in the usual case (it is dated this month, whose partition has long existed).
#[derive(Default)]
pub struct KnownPartitions {
    seen: Mutex<HashMap<NaiveDate, Instant>>,
}

impl KnownPartitions {
    /// Makes sure a partition exists for each of `times` before a write dated at them.
    pub async fn ensure_for(
        &self,
        pool: &PgPool,
        times: impl IntoIterator<Item = DateTime<Utc>>,
    ) -> sqlx::Result<()> {
        let mut missing: Vec<NaiveDate> = {
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            times
                .into_iter()
                .map(month_of)
                .filter(|m| seen.get(m).is_none_or(|at| at.elapsed() > TRUSTED_FOR))
                .collect()
        };
        missing.sort_unstable();
        missing.dedup();
        for month in missing {
            let start = midnight(month);
            ensure(pool, start, start).await?;
            self.seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(month, Instant::now());
        }
        Ok(())
    }

    /// Forgets what was seen (after partitions were dropped).
    pub(crate) fn forget(&self) {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Creates the partitions for every month in `[first, last]` that has none; returns how many.
pub async fn ensure(
    db: impl PgExecutor<'_>,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
) -> sqlx::Result<i32> {
    sqlx::query_scalar!(
        r#"select activity_partitions_ensure($1, $2) as "created!""#,
        first,
        last,
    )
    .fetch_one(db)
    .await
}

/// This month and the next: created ahead, so that no write dated now (or up to five minutes
/// ahead, across a month's end) ever waits for a partition.
pub async fn ensure_ahead(db: impl PgExecutor<'_>, now: DateTime<Utc>) -> sqlx::Result<i32> {
    let next = midnight(month_of(now))
        .checked_add_months(Months::new(1))
        .unwrap_or(now);
    ensure(db, now, next).await
}

/// One monthly partition: its table and the instants it holds, `[first, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub(crate) first_instant: DateTime<Utc>,
    pub(crate) end_instant: DateTime<Utc>,
}

/// The attached partitions, oldest first.
pub async fn list(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<Partition>> {
    sqlx::query_as!(
        Partition,
        r#"select name as "name!", first_instant as "first_instant!", end_instant as "end_instant!"
         from activity_partitions()"#,
    )
    .fetch_all(db)
    .await
}

/// Tables a retention run detached but did not drop (it was interrupted): their rows are no
/// longer part of `activities`, but their rollups may still be. Also finishes detaching any
/// partition an interrupted `detach ... concurrently` left pending.
pub(crate) async fn detached_leftovers(conn: &mut PgConnection) -> sqlx::Result<Vec<Partition>> {
    let pending = sqlx::query_scalar!(
        r#"select c.relname::text as "name!" from pg_inherits i join pg_class c on c.oid = i.inhrelid
         where i.inhparent = 'activities'::regclass and i.inhdetachpending"#,
    )
    .fetch_all(&mut *conn)
    .await?;
    for name in pending {
        on_table(
            &mut *conn,
            "alter table activities detach partition {table} finalize",
            &name,
        )
        .await?;
    }
    sqlx::query_as!(
        Partition,
        r#"select c.relname::text as "name!",
                to_date(substr(c.relname, 12), 'YYYY_MM')::timestamp at time zone 'UTC' as "first_instant!",
                (to_date(substr(c.relname, 12), 'YYYY_MM') + interval '1 month')::timestamp at time zone 'UTC' as "end_instant!"
         from pg_class c
         where c.relkind = 'r' and c.relnamespace = 'public'::regnamespace
           and c.relname ~ '^activities_[0-9]{4}_[0-9]{2}$'
           and not exists (select 1 from pg_inherits i where i.inhrelid = c.oid)
         order by 2"#,
    )
    .fetch_all(&mut *conn)
    .await
}

/// Detaches a partition without blocking readers or writers: Postgres waits for every query
/// that may still use it to finish (a long export included), then takes it out. Cannot run in
/// a transaction.
pub(crate) async fn detach(conn: &mut PgConnection, p: &Partition) -> sqlx::Result<()> {
    on_table(
        conn,
        "alter table activities detach partition {table} concurrently",
        &p.name,
    )
    .await
}

/// Drops a detached partition's table.
pub(crate) async fn drop_detached(conn: &mut PgConnection, p: &Partition) -> sqlx::Result<()> {
    on_table(conn, "drop table if exists {table}", &p.name).await
}

/// Runs `statement` with `{table}` replaced by the quoted `table`. Identifiers cannot be bound
/// as parameters; these names come from the catalogue and match `activities_YYYY_MM`, never
/// from a client, and are quoted anyway, as Postgres quotes identifiers.
async fn on_table(conn: &mut PgConnection, statement: &str, table: &str) -> sqlx::Result<()> {
    let quoted = format!("\"{}\"", table.replace('"', "\"\""));
    sqlx::query(sqlx::AssertSqlSafe(statement.replace("{table}", &quoted)))
        .execute(conn)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_start_at_utc_midnight_of_the_first() {
        let t = Utc
            .with_ymd_and_hms(2026, 12, 31, 23, 59, 59)
            .single()
            .expect("instant");
        assert_eq!(
            month_of(t),
            NaiveDate::from_ymd_opt(2026, 12, 1).expect("date")
        );
        assert_eq!(
            midnight(month_of(t)),
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
                .single()
                .expect("instant")
        );
    }
}
