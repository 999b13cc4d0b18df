//! `ApiError`, the one error type handlers return, and its `application/problem+json`
//! response (RFC 9457). A 5xx tells the client nothing but "internal error" or
//! "service unavailable"; the cause chain goes to the log through `Debug`, where
//! tracing-actix-web records it with the request id. Cache errors never become an
//! `ApiError`: the cache module absorbs them.

use actix_web::body::BoxBody;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

pub(crate) use crate::domain::FieldError;

#[derive(thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("the request breaks {} rule(s)", .0.len())]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    NotFound(String),
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("missing or unknown API token")]
    Unauthorized,
    #[error("this API key's role may not do this")]
    Forbidden,
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("the database is unavailable")]
    DatabaseUnavailable(#[source] sqlx::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    /// One error answered to every request that shared a computation (single flight).
    #[error(transparent)]
    Shared(std::sync::Arc<ApiError>),
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// Serializes a response body; failing to is the server's own fault.
pub(crate) fn to_json(value: &impl Serialize) -> ApiResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| ApiError::Internal(e.into()))
}

impl ApiError {
    pub(crate) fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        // A pool that cannot hand out a connection, or a connection that broke, is the
        // database being away: 503 so clients and load balancers retry, not a 500.
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => Self::DatabaseUnavailable(e),
            sqlx::Error::Database(db)
                if db
                    .code()
                    .is_some_and(|c| c.starts_with("57") || c.starts_with("08")) =>
            {
                Self::DatabaseUnavailable(e)
            }
            // A write dated in a month another instance's retention has just dropped: the
            // retry (after `db::partitions::TRUSTED_FOR` at most) creates the month again.
            sqlx::Error::Database(db)
                if db.code().as_deref() == Some("23514")
                    && db.message().starts_with("no partition of relation") =>
            {
                Self::DatabaseUnavailable(e)
            }
            _ => Self::Internal(e.into()),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::Internal(e)
    }
}

// Debug prints the whole cause chain: it is what tracing-actix-web writes to the log.
impl std::fmt::Debug for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(f, "\n  caused by: {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// An RFC 9457 problem: the body of every error response (`application/problem+json`).
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: String,
    /// Each field that broke a rule, when the problem is a 422.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<FieldError>>)]
    errors: Option<&'a [FieldError]>,
}

/// Builds a problem+json response; used by `ApiError` and by the handlers that turn
/// actix-web's own errors (405, unmatched routes) into the same shape.
pub(crate) fn problem_response(
    status: StatusCode,
    detail: String,
    errors: Option<&[FieldError]>,
) -> HttpResponse {
    let title = status.canonical_reason().unwrap_or("Error");
    let kind = format!("https://httpstatuses.io/{}", status.as_u16());
    let body = Problem {
        kind: &kind,
        title,
        status: status.as_u16(),
        detail,
        errors,
    };
    let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)))
        .body(json)
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::DatabaseUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Shared(inner) => inner.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        if let Self::Shared(inner) = self {
            return inner.error_response();
        }
        let status = self.status_code();
        let detail = match self {
            Self::Validation(errors) => errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        };
        let errors = match self {
            Self::Validation(errors) => Some(errors.as_slice()),
            _ => None,
        };
        let mut response = problem_response(status, detail, errors);
        let headers = response.headers_mut();
        match self {
            Self::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::TooManyRequests { retry_after_secs } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    headers.insert(header::RETRY_AFTER, v);
                }
            }
            Self::DatabaseUnavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}
