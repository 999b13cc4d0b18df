//! Middleware every response passes through: request metrics labelled by route template,
//! the `X-Request-Id` header, and problem+json for errors actix-web answers on its own
//! (unmatched routes, 405s, extractor failures).

use std::time::Instant;

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, Next};
use actix_web::{HttpMessage, web};
use tracing_actix_web::RequestId;

use crate::error::{PROBLEM_JSON, problem_response};
use crate::metrics::{RequestLabels, RouteLabels};
use crate::state::AppState;

/// Counts and times each request under its route pattern (`/api/v1/activities/{id}`), never
/// the raw path, so the label set stays bounded whatever clients send.
pub(crate) async fn record_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let method = req.method().to_string();
    let res = next.call(req).await?;
    if let Some(state) = state {
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".into());
        let status = res.status().as_u16();
        state
            .metrics
            .http_requests
            .get_or_create(&RequestLabels {
                method: method.clone(),
                route: route.clone(),
                status,
            })
            .inc();
        state
            .metrics
            .http_request_duration
            .get_or_create(&RouteLabels { method, route })
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(res)
}

/// Puts the id tracing-actix-web gave the request (and wrote in its log lines) on the response.
pub(crate) async fn request_id_header(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req.extensions().get::<RequestId>().map(|id| id.to_string());
    let mut res = next.call(req).await?;
    if let Some(id) = id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        res.headers_mut()
            .insert(header::HeaderName::from_static("x-request-id"), id);
    }
    Ok(res)
}

/// What every response says about how a browser may use it. The dashboard holds an admin token
/// in localStorage, so one injected script would be enough to steal it: scripts come from this
/// origin only (no inline script, no eval), and no other site may frame a page. Inline styles stay
/// allowed for Swagger UI at `/docs`; they cannot run code.
const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
];

pub(crate) async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(
            header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    Ok(res)
}

/// Answers `HEAD` wherever `GET` is served (RFC 9110): load balancers and uptime checkers use
/// it. The request is routed as a `GET`; actix-web's HTTP/1 encoder, which saw the `HEAD`, sends
/// the headers (with the length the body would have) and no body.
pub(crate) async fn head_as_get(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.method() == Method::HEAD {
        req.head_mut().method = Method::GET;
    }
    next.call(req).await
}

/// Rewrites an error response that is not problem+json yet into one, keeping its status and
/// headers (`Allow`, `WWW-Authenticate` ...).
pub(crate) fn problem_for_other_errors<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    if is_problem {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let detail = match res.response().error() {
        Some(e) => e.to_string(),
        None if status == actix_web::http::StatusCode::NOT_FOUND => {
            format!("no route matches {}", res.request().path())
        }
        None => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let (req, old) = res.into_parts();
    let mut new = problem_response(status, detail, None);
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            new.headers_mut().insert(name.clone(), value.clone());
        }
    }
    let res: ServiceResponse<BoxBody> = ServiceResponse::new(req, new);
    Ok(ErrorHandlerResponse::Response(
        res.map_body(|_, b| EitherBody::right(b)),
    ))
}
