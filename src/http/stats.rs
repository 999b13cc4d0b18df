//! `/api/v1/stats/*`: parse the query, ask `statistics` (which goes through the cache), and
//! answer with `X-Cache`, `ETag` and 304 for a matching `If-None-Match`.

use super::responses::{BadQuery, Guarded, NotModified};
use crate::db::stats::{ActiveUsers, Summary, Timeseries, TopUsers, UserStats};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use utoipa::IntoParams;

use crate::auth::{Authorized, ReadRole};
use crate::cache::Freshness;
use crate::domain::stats_query::{ActiveUsersDay, StatsParams, parse_user_id};
use crate::domain::{Bucket, StatsQuery, TopUsersLimit};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::state::AppState;
use crate::statistics::{self, Answer};

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/stats")
            .route("/summary", web::get().to(summary))
            .route("/timeseries", web::get().to(timeseries))
            .route("/active-users", web::get().to(active_users))
            .route("/top-users", web::get().to(top_users))
            .route("/users/{user_id}", web::get().to(user_stats)),
    );
}

/// `Cache-Control: no-cache` (or the older `Pragma: no-cache`) asks for a fresh answer.
fn freshness(req: &HttpRequest) -> Freshness {
    let asks_fresh = |name| {
        req.headers()
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
            })
    };
    if asks_fresh(header::CACHE_CONTROL) || asks_fresh(header::PRAGMA) {
        Freshness::Recompute
    } else {
        Freshness::AcceptCached
    }
}

fn etag_matches(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/").trim_matches('"'))
        .any(|t| t == "*" || t == etag)
}

fn respond(req: &HttpRequest, (payload, status): Answer) -> HttpResponse {
    let not_modified = etag_matches(req, &payload.etag);
    let mut response = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header(("X-Cache", status.as_str()))
        .insert_header((header::ETAG, format!("\"{}\"", payload.etag)))
        // Clients may keep the answer but must revalidate it (with If-None-Match) before use.
        .insert_header((header::CACHE_CONTROL, "private, no-cache"));
    if not_modified {
        response.finish()
    } else {
        response
            .content_type("application/json")
            .body(payload.body.clone())
    }
}

/// The range and filter every range statistic takes (described here; parsed by `StatsQuery`).
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
struct RangeParams {
    /// Start, inclusive: RFC 3339 or YYYY-MM-DD (midnight in `tz`); default `to` minus 30 days
    from: Option<String>,
    /// End, exclusive; default the next midnight in `tz`
    to: Option<String>,
    /// Only this action
    action: Option<String>,
    /// IANA time zone whose midnights start days, weeks, months and bounds (e.g. Europe/Berlin,
    /// Asia/Kathmandu); times in the answer carry its offset. Default UTC
    tz: Option<String>,
}

/// The headers every statistic honours.
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
struct Revalidation {
    /// ETag of an answer you hold
    #[param(rename = "If-None-Match")]
    if_none_match: Option<String>,
    /// no-cache recomputes and refreshes the cache
    #[param(rename = "Cache-Control")]
    cache_control: Option<String>,
}

fn common(params: &StatsParams) -> ApiResult<StatsQuery> {
    StatsQuery::parse(params, Utc::now()).map_err(ApiError::Validation)
}

/// Collects a second parameter's error alongside the common ones, so both are reported.
fn with<T>(q: ApiResult<StatsQuery>, extra: Result<T, FieldError>) -> ApiResult<(StatsQuery, T)> {
    match (q, extra) {
        (Ok(q), Ok(t)) => Ok((q, t)),
        (Err(ApiError::Validation(mut errors)), Err(e)) => {
            errors.push(e);
            Err(ApiError::Validation(errors))
        }
        (Err(e), _) => Err(e),
        (_, Err(e)) => Err(ApiError::Validation(vec![e])),
    }
}

#[utoipa::path(get, path = "/api/v1/stats/summary", tag = "statistics", security(("bearer" = [])),
    params(RangeParams, Revalidation),
    responses((status = 200, description = "Totals over the range", body = Summary, headers(("X-Cache" = String, description = "HIT, MISS or BYPASS"), ("ETag" = String))), NotModified, BadQuery, Guarded))]
pub(crate) async fn summary(
    _: Authorized<ReadRole>,
    req: HttpRequest,
    params: web::Query<StatsParams>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let q = common(&params)?;
    Ok(respond(
        &req,
        statistics::summary(&state, q, freshness(&req)).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/stats/timeseries", tag = "statistics", security(("bearer" = [])),
    params(RangeParams, ("bucket" = Option<String>, Query, description = "hour, day (default), week or month"), Revalidation),
    responses((status = 200, description = "One point per bucket, empty ones as zeros", body = Timeseries, headers(("X-Cache" = String, description = "HIT, MISS or BYPASS"), ("ETag" = String))), NotModified, BadQuery, Guarded))]
pub(crate) async fn timeseries(
    _: Authorized<ReadRole>,
    req: HttpRequest,
    params: web::Query<StatsParams>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let (q, bucket) = with(common(&params), Bucket::parse(params.bucket.as_deref()))?;
    Ok(respond(
        &req,
        statistics::timeseries(&state, q, bucket, freshness(&req)).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/stats/active-users", tag = "statistics", security(("bearer" = [])),
    params(("date" = Option<String>, Query, description = "YYYY-MM-DD, default today in `tz`"),
        ("action" = Option<String>, Query, description = "Only this action"),
        ("tz" = Option<String>, Query, description = "IANA time zone whose midnights bound the windows; default UTC"), Revalidation),
    responses((status = 200, description = "DAU, WAU, MAU and stickiness", body = ActiveUsers, headers(("X-Cache" = String, description = "HIT, MISS or BYPASS"), ("ETag" = String))), NotModified, BadQuery, Guarded))]
pub(crate) async fn active_users(
    _: Authorized<ReadRole>,
    req: HttpRequest,
    params: web::Query<StatsParams>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let (day, action) =
        ActiveUsersDay::parse_request(&params, Utc::now()).map_err(ApiError::Validation)?;
    Ok(respond(
        &req,
        statistics::active_users(&state, day, action, freshness(&req)).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/stats/top-users", tag = "statistics", security(("bearer" = [])),
    params(RangeParams, ("limit" = Option<i64>, Query, description = "1 to 100, default 10", minimum = 1, maximum = 100), Revalidation),
    responses((status = 200, description = "Most events first", body = TopUsers, headers(("X-Cache" = String, description = "HIT, MISS or BYPASS"), ("ETag" = String))), NotModified, BadQuery, Guarded))]
pub(crate) async fn top_users(
    _: Authorized<ReadRole>,
    req: HttpRequest,
    params: web::Query<StatsParams>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let (q, limit) = with(
        common(&params),
        TopUsersLimit::parse(params.limit.as_deref()),
    )?;
    Ok(respond(
        &req,
        statistics::top_users(&state, q, limit, freshness(&req)).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/stats/users/{user_id}", tag = "statistics", security(("bearer" = [])),
    params(("user_id" = Uuid, Path), RangeParams, Revalidation),
    responses((status = 200, description = "One user's profile (zeros when inactive)", body = UserStats, headers(("X-Cache" = String, description = "HIT, MISS or BYPASS"), ("ETag" = String))), NotModified, BadQuery, Guarded))]
pub(crate) async fn user_stats(
    _: Authorized<ReadRole>,
    req: HttpRequest,
    path: web::Path<String>,
    params: web::Query<StatsParams>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let (q, user_id) = with(common(&params), parse_user_id(&path))?;
    Ok(respond(
        &req,
        statistics::user_stats(&state, user_id, q, freshness(&req)).await?,
    ))
}
