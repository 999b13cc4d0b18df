//! Statistics answered through the cache: one function per endpoint that names its cache
//! key and its query. Handlers and the prewarm job both come here, so a prewarmed entry is
//! exactly the one a request will find.

pub(crate) mod live;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::cache::{CacheKey, CacheStatus, Endpoint, Fresh, Freshness, Payload};
use crate::db;
use crate::domain::stats_query::{ActiveUsersDay, StatsParams, zone_suffix};
use crate::domain::{Action, Bucket, DayPart, Snapshot, StatsQuery, TopUsersLimit};
use crate::error::{ApiError, ApiResult, to_json};
use crate::state::AppState;
use live::LiveState;

pub(crate) type Answer = (Arc<Payload>, CacheStatus);

/// Runs a read in one repeatable-read snapshot (`db::stats::in_snapshot`), on the replica when it
/// has replayed every write the answer must reflect, else on the primary (`read_routing.rs`).
macro_rules! snapshot_read {
    ($state:expr, $read:expr) => {
        crate::read_routing::routed_read!($state.reads, |pool| db::stats::in_snapshot(pool, $read))
    };
}

/// What a miss hands the cache: the answer, and the state and snapshot live updates start from.
fn fresh(snapshot: Snapshot, answer: &impl serde::Serialize, state: LiveState) -> ApiResult<Fresh> {
    Ok(Fresh {
        body: to_json(answer)?,
        live: Some((snapshot, to_json(&state)?)),
    })
}

fn action_name(action: Option<&Action>) -> Option<String> {
    action.map(|a| a.as_str().to_owned())
}

pub(crate) async fn summary(
    state: &AppState,
    q: StatsQuery,
    freshness: Freshness,
) -> ApiResult<Answer> {
    let key = CacheKey::new(
        Endpoint::Summary,
        q.canonical(),
        &q.range,
        q.action.as_ref(),
        None,
    );
    let q = &q;
    state
        .cache
        .get_or_compute(&key, freshness, || async move {
            let (snapshot, totals) =
                snapshot_read!(state, async |tx| db::stats::summary_totals(tx, q).await)?;
            store_parts_later(state, db::stats::summary_parts(q));
            fresh(
                snapshot,
                &totals.summary,
                LiveState::Summary {
                    action: action_name(q.action.as_ref()),
                    duration_sum: totals.duration_sum,
                    duration_count: totals.duration_count,
                },
            )
        })
        .await
        .map_err(unshare)
}

pub(crate) async fn timeseries(
    state: &AppState,
    q: StatsQuery,
    bucket: Bucket,
    freshness: Freshness,
) -> ApiResult<Answer> {
    let canonical = format!("{}&bucket={}", q.canonical(), bucket.as_str());
    let key = CacheKey::new(
        Endpoint::Timeseries,
        canonical,
        &q.range,
        q.action.as_ref(),
        None,
    );
    let q = &q;
    state
        .cache
        .get_or_compute(&key, freshness, || async move {
            let (snapshot, answer) =
                snapshot_read!(state, async |tx| db::stats::timeseries(tx, q, bucket).await)?;
            store_parts_later(state, db::stats::timeseries_parts(q, bucket));
            fresh(
                snapshot,
                &answer,
                LiveState::Timeseries {
                    action: action_name(q.action.as_ref()),
                },
            )
        })
        .await
        .map_err(unshare)
}

pub(crate) async fn active_users(
    state: &AppState,
    day: ActiveUsersDay,
    action: Option<Action>,
    freshness: Freshness,
) -> ApiResult<Answer> {
    let canonical = format!(
        "date={}&action={}{}",
        day.date,
        action.as_ref().map_or("", |a| a.as_str()),
        zone_suffix(day.zone)
    );
    let key = CacheKey::new(
        Endpoint::ActiveUsers,
        canonical,
        &day.month_range(),
        action.as_ref(),
        None,
    );
    let action = &action;
    state
        .cache
        .get_or_compute(&key, freshness, || async move {
            let name = action_name(action.as_ref());
            let (snapshot, answer) = snapshot_read!(state, async |tx| {
                db::stats::active_users(tx, day, name.as_deref()).await
            })?;
            store_parts_later(state, db::stats::active_users_parts(day));
            fresh(
                snapshot,
                &answer,
                LiveState::ActiveUsers {
                    action: name,
                    tz: day.zone,
                },
            )
        })
        .await
        .map_err(unshare)
}

pub(crate) async fn top_users(
    state: &AppState,
    q: StatsQuery,
    limit: TopUsersLimit,
    freshness: Freshness,
) -> ApiResult<Answer> {
    let canonical = format!("{}&limit={}", q.canonical(), limit.0);
    let key = CacheKey::new(
        Endpoint::TopUsers,
        canonical,
        &q.range,
        q.action.as_ref(),
        None,
    );
    let q = &q;
    state
        .cache
        .get_or_compute(&key, freshness, || async move {
            // More users than asked, so that creates by those just below the list keep it cached.
            let kept = TopUsersLimit(live::top_users_kept(limit.0));
            let (snapshot, items) =
                snapshot_read!(state, async |tx| db::stats::top_users_in(tx, q, kept).await)?;
            let answer = db::stats::TopUsers {
                from: q.zone.local(q.range.from()),
                to: q.zone.local(q.range.to()),
                items,
            };
            let state =
                LiveState::top_users(answer, action_name(q.action.as_ref()), limit.0, q.zone);
            fresh(snapshot, &state.top_users_body(), state)
        })
        .await
        .map_err(unshare)
}

pub(crate) async fn user_stats(
    state: &AppState,
    user_id: Uuid,
    q: StatsQuery,
    freshness: Freshness,
) -> ApiResult<Answer> {
    let key = CacheKey::new(
        Endpoint::UserStats,
        q.canonical(),
        &q.range,
        q.action.as_ref(),
        Some(user_id),
    );
    let q = &q;
    state
        .cache
        .get_or_compute(&key, freshness, || async move {
            let (snapshot, answer) = snapshot_read!(state, async |tx| {
                db::stats::user_stats(tx, user_id, q).await
            })?;
            fresh(
                snapshot,
                &answer,
                LiveState::UserStats {
                    action: action_name(q.action.as_ref()),
                    tz: q.zone,
                },
            )
        })
        .await
        .map_err(unshare)
}

/// Computes and caches what the dashboard asks for first: the default summary, daily time
/// series, active users today and top users. Returns how many answers were computed.
pub(crate) async fn prewarm(state: &AppState, now: DateTime<Utc>) -> ApiResult<usize> {
    let defaults = StatsParams::default();
    let q = StatsQuery::parse(&defaults, now).map_err(ApiError::Validation)?;
    let today =
        ActiveUsersDay::parse(None, q.zone, now).map_err(|e| ApiError::Validation(vec![e]))?;
    let answers = [
        summary(state, q.clone(), Freshness::Recompute).await?,
        timeseries(state, q.clone(), Bucket::Day, Freshness::Recompute).await?,
        active_users(state, today, None, Freshness::Recompute).await?,
        top_users(state, q, TopUsersLimit(10), Freshness::Recompute).await?,
    ];
    Ok(answers.len())
}

/// Day parts being stored in the background: one store at a time, at most `MAX_WAITING` in line.
#[derive(Debug)]
pub(crate) struct PartStores {
    running: Arc<tokio::sync::Semaphore>,
    queued: AtomicUsize,
}

impl Default for PartStores {
    fn default() -> Self {
        Self {
            running: Arc::new(tokio::sync::Semaphore::new(1)),
            queued: AtomicUsize::new(0),
        }
    }
}

impl PartStores {
    const MAX_WAITING: usize = 16;
}

/// Stores `parts` after the answer (migration 12, docs/rollups.md "Time zones"): the miss that
/// needed them reads them from the rollups, and later misses read them stored. Stores run one at
/// a time, so a burst of first requests in new zones does not take every database connection; a
/// store that finds the line full is dropped, and a later miss or the hourly refresh makes it.
fn store_parts_later(state: &AppState, parts: Vec<DayPart>) {
    let stores = state.part_stores.clone();
    if parts.is_empty() {
        return;
    }
    if stores.queued.fetch_add(1, Ordering::AcqRel) >= PartStores::MAX_WAITING {
        stores.queued.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let pool = state.pool.clone();
    tokio::spawn(async move {
        if let Ok(_running) = stores.running.clone().acquire_owned().await {
            kept_or_logged(db::stats::store_parts(&pool, &parts).await);
        }
        stores.queued.fetch_sub(1, Ordering::AcqRel);
    });
}

/// Storing the parts of other zones' days only speeds up later computations: when it fails (a
/// lock timeout, a database going away) answers are computed from the rollups all the same.
fn kept_or_logged(stored: sqlx::Result<u64>) {
    match stored {
        Ok(0) => {}
        Ok(parts) => tracing::debug!(parts, "stored parts of local days"),
        Err(error) => tracing::warn!(%error, "could not store parts of local days"),
    }
}

/// The cache hands a computation's error to every request that joined it; a request that
/// computed alone gets it back as it was.
fn unshare(error: Arc<ApiError>) -> ApiError {
    Arc::try_unwrap(error).unwrap_or_else(ApiError::Shared)
}
