//! Statistics answered through the cache: one function per endpoint that names its cache
//! key and its query. Handlers and the prewarm job both come here, so a prewarmed entry is
//! exactly the one a request will find.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::cache::{CacheKey, CacheStatus, Endpoint, Freshness, Payload};
use crate::db;
use crate::domain::stats_query::{ActiveUsersDay, StatsParams};
use crate::domain::{Action, Bucket, StatsQuery, TopUsersLimit};
use crate::error::{ApiError, ApiResult, to_json};
use crate::startup::AppState;

pub type Answer = (Arc<Payload>, CacheStatus);

pub async fn summary(state: &AppState, q: StatsQuery, freshness: Freshness) -> ApiResult<Answer> {
    let key = CacheKey::new(
        Endpoint::Summary,
        q.canonical(),
        &q.range,
        q.action.as_ref(),
        None,
    );
    let pool = state.pool.clone();
    state
        .cache
        .get_or_compute(&key, freshness, || async move {
            to_json(&db::stats::summary(&pool, &q).await?)
        })
        .await
}

pub async fn timeseries(
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
    let pool = state.pool.clone();
    state
        .cache
        .get_or_compute(&key, freshness, || async move {
            to_json(&db::stats::timeseries(&pool, &q, bucket).await?)
        })
        .await
}

pub async fn active_users(
    state: &AppState,
    day: ActiveUsersDay,
    action: Option<Action>,
    freshness: Freshness,
) -> ApiResult<Answer> {
    let canonical = format!(
        "date={}&action={}",
        day.0,
        action.as_ref().map_or("", |a| a.as_str())
    );
    let key = CacheKey::new(
        Endpoint::ActiveUsers,
        canonical,
        &day.month_range(),
        action.as_ref(),
        None,
    );
    let pool = state.pool.clone();
    state
        .cache
        .get_or_compute(&key, freshness, || async move {
            to_json(
                &db::stats::active_users(&pool, day, action.as_ref().map(|a| a.as_str())).await?,
            )
        })
        .await
}

pub async fn top_users(
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
    let pool = state.pool.clone();
    state
        .cache
        .get_or_compute(&key, freshness, || async move {
            to_json(&db::stats::top_users(&pool, &q, limit).await?)
        })
        .await
}

pub async fn user_stats(
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
    let pool = state.pool.clone();
    state
        .cache
        .get_or_compute(&key, freshness, || async move {
            to_json(&db::stats::user_stats(&pool, user_id, &q).await?)
        })
        .await
}

/// Computes and caches what the dashboard asks for first: the default summary, daily time
/// series, active users today and top users. Returns how many answers were computed.
pub async fn prewarm(state: &AppState, now: DateTime<Utc>) -> ApiResult<usize> {
    let defaults = StatsParams::default();
    let q = StatsQuery::parse(&defaults, now).map_err(ApiError::Validation)?;
    let today = ActiveUsersDay::parse(None, now).map_err(|e| ApiError::Validation(vec![e]))?;
    let answers = [
        summary(state, q.clone(), Freshness::Recompute).await?,
        timeseries(state, q.clone(), Bucket::Day, Freshness::Recompute).await?,
        active_users(state, today, None, Freshness::Recompute).await?,
        top_users(state, q, TopUsersLimit(10), Freshness::Recompute).await?,
    ];
    Ok(answers.len())
}
