//! `/api/v1/activities`: create (one or a batch), list, get, patch and delete. Every write
//! commits first and then invalidates the statistics it can change.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::body::{BATCH_LIMIT, SINGLE_LIMIT, read_json};
use crate::auth::{Authorized, ReadRole, WriteRole};
use crate::cache::Touch;
use crate::db;
use crate::domain::pagination::ListActivitiesParams;
use crate::domain::{Activity, ActivityPatch, Cursor, ListActivitiesQuery, NewActivity};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::startup::AppState;

pub const MAX_BATCH: usize = 5000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/activities")
            .route(web::post().to(create_activity))
            .route(web::get().to(list_activities)),
    )
    .service(web::resource("/activities/batch").route(web::post().to(create_activities)))
    .service(
        web::resource("/activities/{id}")
            .route(web::get().to(get_activity))
            .route(web::patch().to(patch_activity))
            .route(web::delete().to(delete_activity)),
    );
}

impl From<&Activity> for Touch {
    fn from(a: &Activity) -> Self {
        Self {
            user_id: a.user_id,
            action: a.action.clone(),
            occurred_at: a.occurred_at,
        }
    }
}

impl From<&NewActivity> for Touch {
    fn from(a: &NewActivity) -> Self {
        Self {
            user_id: a.user_id,
            action: a.action.as_str().to_owned(),
            occurred_at: a.occurred_at,
        }
    }
}

/// An id in the path that is not a UUID names no activity.
fn parse_id(raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(format!("no activity has the id {raw:?}")))
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("no activity has the id {id}"))
}

pub async fn create_activity(
    _: Authorized<WriteRole>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let body = read_json(&req, payload, SINGLE_LIMIT).await?;
    let new = NewActivity::parse(&body, "", Utc::now()).map_err(ApiError::Validation)?;
    let stored = db::activities::insert_activity(&state.pool, &new).await?;
    state.cache.invalidate(&[Touch::from(&stored)]).await;
    tracing::info!(id = %stored.id, action = %stored.action, "activity recorded");
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/api/v1/activities/{}", stored.id),
        ))
        .json(stored))
}

#[derive(Serialize)]
struct BatchCreated {
    inserted: u64,
    ids: Vec<Uuid>,
}

/// Parses every item, naming each broken rule by its index (`activities[17].action`).
fn parse_batch(body: &Value) -> ApiResult<Vec<NewActivity>> {
    let items = match body.get("activities") {
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ApiError::field("activities", "must be an array")),
        None if body.is_object() => return Err(ApiError::field("activities", "is required")),
        None => return Err(ApiError::field("body", "must be a JSON object")),
    };
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(ApiError::field(
            "activities",
            format!(
                "must hold 1 to {MAX_BATCH} activities (got {})",
                items.len()
            ),
        ));
    }
    if let Some(extra) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "activities"))
    {
        return Err(ApiError::field(extra.clone(), "is not a field of a batch"));
    }
    let now = Utc::now();
    let mut errors: Vec<FieldError> = Vec::new();
    let mut parsed = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match NewActivity::parse(item, &format!("activities[{i}]."), now) {
            Ok(a) => parsed.push(a),
            // Enough errors to fix a typical request in one round trip, not thousands.
            Err(e) => errors.extend(e.into_iter().take(100usize.saturating_sub(errors.len()))),
        }
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(ApiError::Validation(errors))
    }
}

pub async fn create_activities(
    _: Authorized<WriteRole>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let body = read_json(&req, payload, BATCH_LIMIT).await?;
    let batch = parse_batch(&body)?;
    let inserted = db::activities::insert_activities(&state.pool, &batch).await?;
    let touches: Vec<Touch> = batch.iter().map(Touch::from).collect();
    state.cache.invalidate(&touches).await;
    tracing::info!(inserted, "activity batch recorded");
    Ok(HttpResponse::Created().json(BatchCreated {
        inserted,
        ids: batch.iter().map(|a| a.id).collect(),
    }))
}

#[derive(Serialize)]
struct Page {
    items: Vec<Activity>,
    next_cursor: Option<String>,
}

pub async fn list_activities(
    _: Authorized<ReadRole>,
    params: web::Query<ListActivitiesParams>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let q = ListActivitiesQuery::parse(&params).map_err(ApiError::Validation)?;
    let mut items = db::activities::list_activities(&state.pool, &q).await?;
    let next_cursor = if items.len() as i64 > q.limit {
        items.truncate(q.limit as usize);
        items.last().map(|a| {
            Cursor {
                occurred_at: a.occurred_at,
                id: a.id,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
}

pub async fn get_activity(
    _: Authorized<ReadRole>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let id = parse_id(&path)?;
    let activity = db::activities::find_activity(&state.pool, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(HttpResponse::Ok().json(activity))
}

pub async fn patch_activity(
    _: Authorized<WriteRole>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let id = parse_id(&path)?;
    let body = read_json(&req, payload, SINGLE_LIMIT).await?;
    let patch = ActivityPatch::parse(&body, Utc::now()).map_err(ApiError::Validation)?;
    let mut tx = state.pool.begin().await?;
    let old = db::activities::find_activity_for_update(&mut tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let new = db::activities::update_activity(&mut tx, &old, &patch).await?;
    tx.commit().await?;
    // Both the old and the new values: moving an activity to another day or user changes
    // the statistics of both.
    state
        .cache
        .invalidate(&[Touch::from(&old), Touch::from(&new)])
        .await;
    Ok(HttpResponse::Ok().json(new))
}

pub async fn delete_activity(
    _: Authorized<WriteRole>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let id = parse_id(&path)?;
    let removed = db::activities::delete_activity(&state.pool, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    state.cache.invalidate(&[Touch::from(&removed)]).await;
    Ok(HttpResponse::NoContent().finish())
}
