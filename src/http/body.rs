//! Reading a JSON request body with our own limits and errors: actix's `Json` extractor
//! would answer 413 and content-type errors in plain text, and would fold wrong field types
//! into "malformed JSON" (400) where the contract wants 422 naming the field.

use actix_web::http::header;
use actix_web::{HttpRequest, web};
use futures_util::StreamExt;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// Body limit for one activity: 16 KiB of properties plus generous room for the rest.
pub(crate) const SINGLE_LIMIT: usize = 64 * 1024;
/// Body limit for a batch of up to 5000 activities.
pub(crate) const BATCH_LIMIT: usize = 16 * 1024 * 1024;

pub(crate) async fn read_json(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> ApiResult<Value> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/json" && !(mime.starts_with("application/") && mime.ends_with("+json"))
    {
        return Err(ApiError::BadRequest(format!(
            "Content-Type must be application/json, not {:?}",
            content_type
        )));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::BadRequest(format!("could not read the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
}
