//! The aggregate queries behind the statistics endpoints, and the JSON shapes they answer with.
//!
//! Each endpoint has its own module that reads the rollups (migrations 4, 9 and 11,
//! docs/rollups.md): whole UTC days and whole quarter hours come from a few small rows kept exact
//! by triggers, and only the minutes before the first whole quarter and after the last come from
//! `activities`. `reference` computes every statistic from the raw rows alone; it is the
//! definition the rollup queries must equal, and tests hold them to it.
//! Ranges are half-open `[from, to)` instants; buckets and days are those of the request's zone
//! (`domain::zone`), and every time in an answer is shown with that zone's offset.
//!
//! Every query but top users is a `query!` macro, checked against the schema at build time. Top
//! users is not: its texts are composed from shared frames (`totals_sql!`) and chosen at run time
//! by action, and sqlx's macros take only a literal, so each variant would have to be written out
//! whole, the repetition the frames removed. `bind_range` binds them in one place, and the tests
//! run every variant against `reference`.

mod active_users;
mod blocks;
mod buckets;
mod parts;
pub mod reference;
mod summary;
mod timeseries;
mod top_users;
mod user_stats;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{PgConnection, PgPool, Postgres};
use uuid::Uuid;

pub use active_users::{active_users, active_users_parts};
pub use blocks::refresh_blocks;
pub use parts::{refresh_parts, store_parts};
pub use summary::{SummaryTotals, average, summary, summary_parts, summary_totals};
pub use timeseries::{timeseries, timeseries_parts};
pub use top_users::{top_users, top_users_in};
/// A user's profile reads that user's own rows through the `(user_id, occurred_at)` index, so
/// it needs no rollup.
pub use user_stats::user_stats;

use crate::domain::stats_query::ActiveUsersDay;
use crate::domain::{Bucket, LocalTime, Pieces, Snapshot, StatsQuery};

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, PartialEq, utoipa::ToSchema)]
pub(crate) struct ActionCount {
    pub(crate) action: String,
    pub(crate) events: i64,
    pub(crate) unique_users: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Summary {
    #[schema(value_type = String, format = DateTime)]
    pub(crate) from: LocalTime,
    #[schema(value_type = String, format = DateTime)]
    pub(crate) to: LocalTime,
    pub(crate) events: i64,
    pub(crate) unique_users: i64,
    pub(crate) value_sum: f64,
    pub(crate) avg_duration_ms: Option<f64>,
    pub(crate) by_action: Vec<ActionCount>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub(crate) struct Point {
    #[schema(value_type = String, format = DateTime)]
    pub(crate) start: LocalTime,
    pub(crate) events: i64,
    pub(crate) unique_users: i64,
    pub(crate) value_sum: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Timeseries {
    #[schema(value_type = String, format = DateTime)]
    pub(crate) from: LocalTime,
    #[schema(value_type = String, format = DateTime)]
    pub(crate) to: LocalTime,
    #[schema(value_type = String, examples("day"))]
    pub(crate) bucket: Bucket,
    pub(crate) points: Vec<Point>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ActiveUsers {
    pub(crate) date: NaiveDate,
    pub(crate) dau: i64,
    pub(crate) wau: i64,
    pub(crate) mau: i64,
    pub(crate) stickiness: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct TopUser {
    pub(crate) user_id: Uuid,
    pub(crate) events: i64,
    pub(crate) value_sum: f64,
    #[schema(value_type = String, format = DateTime)]
    pub(crate) last_seen: LocalTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct TopUsers {
    #[schema(value_type = String, format = DateTime)]
    pub(crate) from: LocalTime,
    #[schema(value_type = String, format = DateTime)]
    pub(crate) to: LocalTime,
    pub items: Vec<TopUser>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct UserStats {
    pub(crate) user_id: Uuid,
    #[schema(value_type = String, format = DateTime)]
    pub(crate) from: LocalTime,
    #[schema(value_type = String, format = DateTime)]
    pub(crate) to: LocalTime,
    pub(crate) events: i64,
    pub(crate) value_sum: f64,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub(crate) first_seen: Option<LocalTime>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub(crate) last_seen: Option<LocalTime>,
    pub(crate) active_days: i64,
    pub(crate) by_action: Vec<ActionCount>,
}

impl ActiveUsers {
    fn new(day: ActiveUsersDay, dau: i64, wau: i64, mau: i64) -> Self {
        let stickiness = if mau == 0 {
            0.0
        } else {
            dau as f64 / mau as f64
        };
        Self {
            date: day.date,
            dau,
            wau,
            mau,
            stickiness,
        }
    }
}

/// Runs `read` in one read-only repeatable-read transaction, so that all its statements see one
/// snapshot, and returns that snapshot with the result: the cache uses it to tell which creates
/// the answer already includes (docs/cache.md, "Live ingest").
pub(crate) async fn in_snapshot<T>(
    pool: &PgPool,
    read: impl AsyncFnOnce(&mut PgConnection) -> sqlx::Result<T>,
) -> sqlx::Result<(Snapshot, T)> {
    let mut tx = pool
        .begin_with("begin isolation level repeatable read, read only")
        .await?;
    // The first statement takes the transaction's snapshot; this one only reports it.
    let raw = sqlx::query_scalar!(r#"select pg_current_snapshot()::text as "snapshot!""#)
        .fetch_one(&mut *tx)
        .await?;
    let snapshot = Snapshot::parse(&raw)
        .ok_or_else(|| sqlx::Error::Decode(format!("snapshot {raw:?}").into()))?;
    let value = read(&mut tx).await?;
    tx.commit().await?;
    Ok((snapshot, value))
}

fn action(q: &StatsQuery) -> Option<&str> {
    q.action.as_ref().map(|a| a.as_str())
}

/// What a query over `pieces` reads (docs/rollups.md, "Quarter hours"): the range, the action, the
/// whole days, the whole quarter hours per UTC day (parts, read stored where `storable` admits
/// them and they are stored) and the raw spans. Queries the macros check pass the fields by name.
struct PieceArgs<'q> {
    action: Option<&'q str>,
    first_day: NaiveDate,
    end_day: NaiveDate,
    parts: parts::PartArgs,
    /// The whole days as bitmap sources, per action (migration 13).
    blocks: blocks::PieceColumns,
    raw_from: Vec<DateTime<Utc>>,
    raw_to: Vec<DateTime<Utc>>,
}

impl<'q> PieceArgs<'q> {
    fn new(q: &'q StatsQuery, pieces: &Pieces, storable: parts::Storable) -> Self {
        let (raw_from, raw_to) = Pieces::unzip(&pieces.raw);
        let mut blocks = blocks::PieceColumns::default();
        blocks.push_days(pieces.days, 0, storable, true);
        Self {
            action: action(q),
            first_day: pieces.days.0,
            end_day: pieces.days.1,
            parts: parts::PartArgs::of(&pieces.day_parts(), storable),
            blocks,
            raw_from,
            raw_to,
        }
    }
}

/// Binds the parameters every rollup query over a range shares: `$1` from, `$2` to, `$3`..`$4`
/// the whole days as instants (the edges are `[$1, $3)` and `[$4, $2)`), `$5` the action, and
/// `$6`..`$7` the whole days as dates. A query's own parameters follow from `$8`.
fn bind_range<'q, O>(
    query: QueryAs<'q, Postgres, O, PgArguments>,
    q: &'q StatsQuery,
) -> QueryAs<'q, Postgres, O, PgArguments> {
    let split = q.range.split_days();
    let (first_day, end_day) = split.days();
    query
        .bind(q.range.from())
        .bind(q.range.to())
        .bind(split.whole_from)
        .bind(split.whole_to)
        .bind(action(q))
        .bind(first_day)
        .bind(end_day)
}
