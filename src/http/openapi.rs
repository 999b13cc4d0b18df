//! The OpenAPI 3.1 document, generated from the handlers' annotations and the response types,
//! served at `/openapi.json` and rendered at `/docs` by Swagger UI (vendored in the binary).
//!
//! The request types here exist only to describe bodies: handlers parse JSON themselves so
//! that every broken rule is reported with its field name.

use actix_web::{HttpResponse, web};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

use super::{activities, cache_admin, export, health, stats, users};

/// One activity to record.
#[allow(dead_code)]
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateActivity {
    user_id: uuid::Uuid,
    /// 1 to 64 characters of a-z 0-9 _ . : -
    #[schema(pattern = "^[a-z0-9_.:-]{1,64}$", examples("page_view"))]
    action: String,
    /// RFC 3339; default now; at most 5 minutes in the future, and not older than RETENTION_DAYS when that is set
    occurred_at: Option<chrono::DateTime<chrono::Utc>>,
    /// 0 to 2592000000 (30 days), so sums of durations stay exact
    #[schema(minimum = 0, maximum = 2_592_000_000_i64)]
    duration_ms: Option<i64>,
    /// a finite number from -1e12 to 1e12, so sums stay exact and finite
    #[schema(minimum = -1e12, maximum = 1e12)]
    value: Option<f64>,
    /// a JSON object of at most 16 KiB; numbers in it are kept exactly as written (any number
    /// of digits, powers of ten from -1000 to 1000), strings may not contain U+0000
    #[schema(value_type = Option<std::collections::HashMap<String, serde_json::Value>>)]
    properties: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Any subset of the writable fields; `null` clears an optional one.
#[allow(dead_code)]
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchActivity {
    user_id: Option<uuid::Uuid>,
    #[schema(pattern = "^[a-z0-9_.:-]{1,64}$")]
    action: Option<String>,
    occurred_at: Option<chrono::DateTime<chrono::Utc>>,
    #[schema(minimum = 0, maximum = 2_592_000_000_i64)]
    duration_ms: Option<i64>,
    #[schema(minimum = -1e12, maximum = 1e12)]
    value: Option<f64>,
    #[schema(value_type = Option<std::collections::HashMap<String, serde_json::Value>>)]
    properties: Option<serde_json::Map<String, serde_json::Value>>,
}

/// 1 to 5000 activities, stored all or nothing.
#[allow(dead_code)]
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateActivities {
    #[schema(min_items = 1, max_items = 5000)]
    activities: Vec<CreateActivity>,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "activity-analytics", description = "Records user activity and serves cached analytics."),
    paths(
        activities::create_activity, activities::create_activities, activities::list_activities,
        activities::get_activity, activities::patch_activity, activities::delete_activity,
        export::export_activities,
        stats::summary, stats::timeseries, stats::active_users, stats::top_users, stats::user_stats,
        users::erase_user,
        cache_admin::cache_stats, cache_admin::clear_cache, cache_admin::prewarm_cache,
        health::healthz, health::readyz, health::metrics,
    ),
    components(schemas(crate::error::Problem)),
    modifiers(&BearerAuth),
    tags(
        (name = "activities", description = "What users did"),
        (name = "statistics", description = "Cached aggregates"),
        (name = "users", description = "Erasure of a user's data"),
        (name = "cache", description = "Cache administration"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
pub(crate) struct ApiDoc;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    let document = ApiDoc::openapi();
    let json = document.to_json().unwrap_or_else(|_| "{}".into());
    cfg.route(
        "/openapi.json",
        web::get().to(move || {
            let json = json.clone();
            async move {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(json)
            }
        }),
    )
    .service(web::redirect("/docs", "/docs/"))
    .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", document));
}
