//! The responses the handlers' OpenAPI annotations share, each written once: a route lists the
//! groups it can answer (`responses((status = 200, ..), BadQuery, Guarded)`). These types only
//! describe; nothing builds them (hence `allow(dead_code)`): every error body is made by
//! `error::problem_response`, whose `Problem` is the schema they name.

use utoipa::IntoResponses;

use crate::error::Problem;

/// What any route behind a token may answer, whatever it does.
#[allow(dead_code)]
#[derive(IntoResponses)]
pub(crate) enum Guarded {
    #[response(
        status = 401,
        description = "Missing or unknown token",
        content_type = "application/problem+json"
    )]
    Unauthorized(Problem<'static>),
    #[response(
        status = 429,
        description = "Too many requests",
        content_type = "application/problem+json"
    )]
    TooManyRequests(Problem<'static>),
    #[response(
        status = 503,
        description = "Database unavailable",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem<'static>),
}

/// A query string that cannot be read, or a parameter that breaks a rule.
#[allow(dead_code)]
#[derive(IntoResponses)]
pub(crate) enum BadQuery {
    #[response(
        status = 400,
        description = "Malformed query string (a parameter given twice)",
        content_type = "application/problem+json"
    )]
    Malformed(Problem<'static>),
    #[response(
        status = 422,
        description = "A field breaks a rule",
        content_type = "application/problem+json"
    )]
    Invalid(Problem<'static>),
}

/// A JSON body that cannot be read, is too large, or has a field that breaks a rule.
#[allow(dead_code)]
#[derive(IntoResponses)]
pub(crate) enum BadBody {
    #[response(
        status = 400,
        description = "Malformed JSON or wrong content type",
        content_type = "application/problem+json"
    )]
    Malformed(Problem<'static>),
    #[response(
        status = 413,
        description = "Body too large",
        content_type = "application/problem+json"
    )]
    TooLarge(Problem<'static>),
    #[response(
        status = 422,
        description = "A field breaks a rule",
        content_type = "application/problem+json"
    )]
    Invalid(Problem<'static>),
}

/// The token's role is below the route's.
#[allow(dead_code)]
#[derive(IntoResponses)]
#[response(
    status = 403,
    description = "Role too low",
    content_type = "application/problem+json"
)]
pub(crate) struct Forbidden(Problem<'static>);

/// No activity has the id in the path.
#[allow(dead_code)]
#[derive(IntoResponses)]
#[response(
    status = 404,
    description = "Unknown id",
    content_type = "application/problem+json"
)]
pub(crate) struct UnknownId(Problem<'static>);

/// The client's `If-None-Match` names the current answer.
#[allow(dead_code)]
#[derive(IntoResponses)]
#[response(status = 304, description = "Matches If-None-Match", headers(("X-Cache" = String), ("ETag" = String)))]
pub(crate) struct NotModified;
