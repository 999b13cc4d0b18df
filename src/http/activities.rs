//! `/api/v1/activities`: create (one or a batch), list, get, patch and delete. Every write
//! commits first and then invalidates the statistics it can change.

use super::openapi::{CreateActivities, CreateActivity, PatchActivity};
use super::responses::{BadBody, BadQuery, Forbidden, Guarded, UnknownId};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::body::{BATCH_LIMIT, SINGLE_LIMIT, read_json};
use super::idempotency::{self, Idempotent};
use crate::auth::{Authorized, ReadRole, WriteRole};
use crate::cache::{Committed, Touch};
use crate::db;
use crate::domain::pagination::ListActivitiesParams;
use crate::domain::{
    Activity, ActivityPatch, Cursor, ListActivitiesQuery, NewActivity, WriteWindow,
};
use crate::error::{ApiError, ApiResult, FieldError, to_json};
use crate::state::AppState;

pub(crate) const MAX_BATCH: usize = 5000;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
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
            through: None,
        }
    }
}

impl From<&NewActivity> for Touch {
    fn from(a: &NewActivity) -> Self {
        Self {
            user_id: a.user_id,
            action: a.action.as_str().to_owned(),
            occurred_at: a.occurred_at,
            through: None,
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

#[utoipa::path(post, path = "/api/v1/activities", tag = "activities", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the first response instead of storing twice (kept 24 hours)")),
    request_body(content = CreateActivity, content_type = "application/json"),
    responses((status = 201, description = "Stored", body = Activity, headers(("Location" = String))), BadBody, Guarded, Forbidden))]
pub(crate) async fn create_activity(
    auth: Authorized<WriteRole>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let key = idempotency::key_of(&req)?;
    let body = read_json(&req, payload, SINGLE_LIMIT).await?;
    let new = NewActivity::parse(&body, "", state.write_window()).map_err(ApiError::Validation)?;
    state
        .partitions
        .ensure_for(&state.pool, [new.occurred_at])
        .await?;
    let claim = match idempotency::begin(&state.pool, auth.principal, key, &body).await? {
        Idempotent::Replay(response) => return Ok(response),
        Idempotent::Proceed(claim) => claim,
    };
    let (stored, live, pending) = match claim {
        None => {
            let mut tx = db::begin_write(&state.pool).await?;
            let created = db::activities::insert_activity(&mut tx, &new).await?;
            tx.commit().await?;
            created
        }
        Some(mut claim) => {
            let (stored, live, pending) =
                db::activities::insert_activity(claim.connection(), &new).await?;
            claim
                .finish(
                    StatusCode::CREATED,
                    &to_json(&stored)?,
                    Some(&location(&stored)),
                )
                .await?;
            (stored, live, pending)
        }
    };
    state.pending.settle(pending, Committed::Create(live)).await;
    tracing::info!(id = %stored.id, action = %stored.action, "activity recorded");
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, location(&stored)))
        .json(stored))
}

fn location(a: &Activity) -> String {
    format!("/api/v1/activities/{}", a.id)
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct BatchCreated {
    pub(crate) inserted: u64,
    pub(crate) ids: Vec<Uuid>,
}

/// Parses every item, naming each broken rule by its index (`activities[17].action`).
fn parse_batch(body: &Value, window: WriteWindow) -> ApiResult<Vec<NewActivity>> {
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
    let mut errors: Vec<FieldError> = Vec::new();
    let mut parsed = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match NewActivity::parse(item, &format!("activities[{i}]."), window) {
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

#[utoipa::path(post, path = "/api/v1/activities/batch", tag = "activities", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the first response instead of storing twice (kept 24 hours)")),
    request_body(content = CreateActivities, content_type = "application/json"),
    responses((status = 201, description = "All stored", body = BatchCreated), BadBody, Guarded, Forbidden))]
pub(crate) async fn create_activities(
    auth: Authorized<WriteRole>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let key = idempotency::key_of(&req)?;
    let body = read_json(&req, payload, BATCH_LIMIT).await?;
    let batch = parse_batch(&body, state.write_window())?;
    state
        .partitions
        .ensure_for(&state.pool, batch.iter().map(|a| a.occurred_at))
        .await?;
    let claim = match idempotency::begin(&state.pool, auth.principal, key, &body).await? {
        Idempotent::Replay(response) => return Ok(response),
        Idempotent::Proceed(claim) => claim,
    };
    let ids = batch.iter().map(|a| a.id).collect();
    let touches: Vec<Touch> = batch.iter().map(Touch::from).collect();
    let (created, pending) = match claim {
        None => {
            let mut tx = db::begin_write(&state.pool).await?;
            let created = BatchCreated {
                inserted: db::activities::insert_activities(&mut *tx, &batch).await?,
                ids,
            };
            let pending = db::pending::insert_pending(&mut tx, &touches).await?;
            tx.commit().await?;
            (created, pending)
        }
        Some(mut claim) => {
            let created = BatchCreated {
                inserted: db::activities::insert_activities(claim.connection(), &batch).await?,
                ids,
            };
            let pending = db::pending::insert_pending(claim.connection(), &touches).await?;
            claim
                .finish(StatusCode::CREATED, &to_json(&created)?, None)
                .await?;
            (created, pending)
        }
    };
    state
        .pending
        .settle(pending, Committed::Touched(touches))
        .await;
    tracing::info!(inserted = created.inserted, "activity batch recorded");
    Ok(HttpResponse::Created().json(created))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Page {
    pub(crate) items: Vec<Activity>,
    pub(crate) next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/activities", tag = "activities", security(("bearer" = [])),
    params(
        ("user_id" = Option<Uuid>, Query, description = "Only this user's activities"),
        ("action" = Option<String>, Query, description = "Only this action"),
        ("from" = Option<String>, Query, description = "Earliest occurred_at (RFC 3339 or YYYY-MM-DD), inclusive"),
        ("to" = Option<String>, Query, description = "Latest occurred_at, exclusive"),
        ("limit" = Option<i64>, Query, description = "1 to 1000, default 100", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "A page, newest first", body = Page), BadQuery, Guarded))]
pub(crate) async fn list_activities(
    _: Authorized<ReadRole>,
    params: web::Query<ListActivitiesParams>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let q = ListActivitiesQuery::parse(&params).map_err(ApiError::Validation)?;
    let mut items =
        crate::read_routing::routed_read!(state.reads, |pool| db::activities::list_activities(
            pool, &q
        ))?;
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

#[utoipa::path(get, path = "/api/v1/activities/{id}", tag = "activities", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Activity id")),
    responses((status = 200, description = "The activity", body = Activity), Guarded, UnknownId))]
pub(crate) async fn get_activity(
    _: Authorized<ReadRole>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let id = parse_id(&path)?;
    let activity =
        crate::read_routing::routed_read!(state.reads, |pool| db::activities::find_activity(
            pool, id
        ))?
        .ok_or_else(|| not_found(id))?;
    Ok(HttpResponse::Ok().json(activity))
}

#[utoipa::path(patch, path = "/api/v1/activities/{id}", tag = "activities", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Activity id")),
    request_body(content = PatchActivity, content_type = "application/json"),
    responses((status = 200, description = "The updated activity", body = Activity), BadBody, Guarded, Forbidden, UnknownId))]
pub(crate) async fn patch_activity(
    _: Authorized<WriteRole>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let id = parse_id(&path)?;
    let body = read_json(&req, payload, SINGLE_LIMIT).await?;
    let patch = ActivityPatch::parse(&body, state.write_window()).map_err(ApiError::Validation)?;
    state
        .partitions
        .ensure_for(&state.pool, patch.occurred_at)
        .await?;
    let mut tx = db::begin_write(&state.pool).await?;
    // The write locks of the users before and after (docs/cache.md, "Live ingest"), taken
    // before the row's own lock so that every writer takes its locks in the same order.
    let current = db::activities::find_activity(&mut *tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let mut locked = vec![current.user_id];
    locked.extend(patch.user_id);
    db::activities::lock_users(&mut tx, &locked).await?;
    let old = db::activities::find_activity_for_update(&mut tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if !locked.contains(&old.user_id) {
        // Another patch moved it to a third user meanwhile.
        db::activities::lock_users(&mut tx, &[old.user_id]).await?;
    }
    let new = db::activities::update_activity(&mut tx, &old, &patch).await?;
    // Both the old and the new values: moving an activity to another day or user changes
    // the statistics of both.
    commit_touching(&state, tx, vec![Touch::from(&old), Touch::from(&new)]).await?;
    Ok(HttpResponse::Ok().json(new))
}

#[utoipa::path(delete, path = "/api/v1/activities/{id}", tag = "activities", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Activity id")),
    responses((status = 204, description = "Deleted"), Guarded, Forbidden, UnknownId))]
pub(crate) async fn delete_activity(
    _: Authorized<WriteRole>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let id = parse_id(&path)?;
    let mut tx = db::begin_write(&state.pool).await?;
    let removed = db::activities::delete_activity(&mut *tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    commit_touching(&state, tx, vec![Touch::from(&removed)]).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Commits a write that removes the cached answers it touched: records the cache update it
/// owes in its own transaction (`cache_pending`), commits, then has the cache apply it.
pub(super) async fn commit_touching(
    state: &AppState,
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    touches: Vec<Touch>,
) -> ApiResult<()> {
    let pending = db::pending::insert_pending(&mut tx, &touches).await?;
    tx.commit().await?;
    state
        .pending
        .settle(pending, Committed::Touched(touches))
        .await;
    Ok(())
}
