//! `/api/v1/users/{user_id}`: erasure of everything stored about one user (the right to
//! erasure). What is kept afterwards is listed in the README ("Erasure").

use super::responses::Guarded;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use uuid::Uuid;

use super::activities::commit_touching;
use crate::auth::{AdminRole, Authorized};
use crate::db;
use crate::error::Problem;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/users/{user_id}").route(web::delete().to(erase_user)));
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Erased {
    /// Activities removed; 0 when the user had none (a repeat is harmless).
    pub(crate) deleted: u64,
}

#[utoipa::path(delete, path = "/api/v1/users/{user_id}", tag = "users", security(("bearer" = [])),
    params(("user_id" = Uuid, Path, description = "The user to erase")),
    responses((status = 200, description = "Every activity of the user removed, with every statistic and cached answer", body = Erased),
        (status = 403, description = "Role too low (admin only)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not a user id", body = Problem, content_type = "application/problem+json"), Guarded))]
pub(crate) async fn erase_user(
    _: Authorized<AdminRole>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let user = Uuid::parse_str(&path)
        .map_err(|_| ApiError::NotFound(format!("no user has the id {:?}", path.as_str())))?;
    let mut tx = db::begin_write(&state.pool).await?;
    let erased = db::activities::erase_user(&mut tx, user).await?;
    // One transaction: the activities, their rollups and the stored responses go together, and
    // the cache forgets every answer they were part of before this returns (promise 1).
    commit_touching(&state, tx, erased.touches).await?;
    state.cache.forget_write_log().await;
    tracing::info!(deleted = erased.deleted, "user erased");
    Ok(HttpResponse::Ok().json(Erased {
        deleted: erased.deleted,
    }))
}
