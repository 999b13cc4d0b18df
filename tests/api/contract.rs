//! The API surface for real clients: responses match `/openapi.json`, rate limits answer 429
//! with Retry-After, and Idempotency-Key makes create retries safe.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{AppOptions, TestApp, assert_problem, header, spawn_app, spawn_app_with};

/// Checks one real response against what the document declares for its route and method.
async fn check(
    doc: &Value,
    template: &str,
    method: Method,
    response: reqwest::Response,
) -> Result<(), String> {
    let status = response.status().as_u16().to_string();
    let content_type = header(&response, "content-type");
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    let operation = &doc["paths"][template][method.as_str().to_lowercase()];
    if operation.is_null() {
        return Err(format!("{method} {template} is not documented"));
    }
    let declared = &operation["responses"][&status];
    if declared.is_null() {
        return Err(format!(
            "{method} {template} answered {status}, which is not documented"
        ));
    }
    let Some(content) = declared["content"].as_object() else {
        return if body.is_empty() {
            Ok(())
        } else {
            Err(format!("{method} {template} {status}: undocumented body"))
        };
    };
    let media = content_type.split(';').next().unwrap_or_default();
    let Some(entry) = content.get(media) else {
        return Err(format!(
            "{method} {template} {status}: content type {media} not documented"
        ));
    };
    // Text formats (metrics, the export's NDJSON and CSV) are documented as strings.
    if matches!(media, "text/plain" | "text/csv" | "application/x-ndjson") {
        return Ok(());
    }
    let instance: Value =
        serde_json::from_slice(&body).map_err(|e| format!("{method} {template}: {e}"))?;
    // The schema may refer to #/components/...: validate against a root that carries them.
    let mut schema = entry["schema"].clone();
    if let Some(object) = schema.as_object_mut() {
        object.insert("components".into(), doc["components"].clone());
    }
    let validator =
        jsonschema::validator_for(&schema).map_err(|e| format!("{template}: bad schema: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{method} {template} {status}: {errors:?}\n{instance}"
        ))
    }
}

/// (route template, method, path, token, body, the status it must answer).
type Call<'a> = (
    &'a str,
    Method,
    String,
    Option<&'a String>,
    Option<Value>,
    u16,
);

#[tokio::test]
async fn every_route_answers_as_the_openapi_document_says() {
    let app = spawn_app().await;
    let doc: Value = app.get_json("/openapi.json", None).await;
    assert_eq!(
        doc["openapi"].as_str().map(|v| v.starts_with("3.1")),
        Some(true)
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    let user = Uuid::new_v4();
    let created = app
        .create(user, "view", "2026-10-05T10:00:00Z", Some(2.5))
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    let missing = Uuid::new_v4();
    let (r, w, a) = (&app.read_token, &app.write_token, &app.admin_token);
    let valid = json!({"user_id": user, "action": "view", "properties": {"a": 1}});
    let calls: Vec<Call> = vec![
        (
            "/api/v1/activities",
            Method::POST,
            "/api/v1/activities".into(),
            Some(w),
            Some(valid.clone()),
            201,
        ),
        (
            "/api/v1/activities",
            Method::POST,
            "/api/v1/activities".into(),
            Some(w),
            Some(json!({"action": 1})),
            422,
        ),
        (
            "/api/v1/activities",
            Method::POST,
            "/api/v1/activities".into(),
            Some(r),
            Some(valid.clone()),
            403,
        ),
        (
            "/api/v1/activities",
            Method::POST,
            "/api/v1/activities".into(),
            None,
            Some(valid.clone()),
            401,
        ),
        (
            "/api/v1/activities/batch",
            Method::POST,
            "/api/v1/activities/batch".into(),
            Some(w),
            Some(json!({"activities": [valid]})),
            201,
        ),
        (
            "/api/v1/activities/batch",
            Method::POST,
            "/api/v1/activities/batch".into(),
            Some(w),
            Some(json!({"activities": []})),
            422,
        ),
        (
            "/api/v1/activities",
            Method::GET,
            "/api/v1/activities?limit=1".into(),
            Some(r),
            None,
            200,
        ),
        (
            "/api/v1/activities",
            Method::GET,
            "/api/v1/activities?limit=0".into(),
            Some(r),
            None,
            422,
        ),
        (
            "/api/v1/activities/{id}",
            Method::GET,
            format!("/api/v1/activities/{id}"),
            Some(r),
            None,
            200,
        ),
        (
            "/api/v1/activities/{id}",
            Method::GET,
            format!("/api/v1/activities/{missing}"),
            Some(r),
            None,
            404,
        ),
        (
            "/api/v1/activities/{id}",
            Method::PATCH,
            format!("/api/v1/activities/{id}"),
            Some(w),
            Some(json!({"value": 3})),
            200,
        ),
        (
            "/api/v1/activities/{id}",
            Method::PATCH,
            format!("/api/v1/activities/{id}"),
            Some(w),
            Some(json!({"value": "x"})),
            422,
        ),
        (
            "/api/v1/stats/summary",
            Method::GET,
            "/api/v1/stats/summary".into(),
            Some(r),
            None,
            200,
        ),
        (
            "/api/v1/stats/summary",
            Method::GET,
            "/api/v1/stats/summary?from=x".into(),
            Some(r),
            None,
            422,
        ),
        (
            "/api/v1/stats/timeseries",
            Method::GET,
            "/api/v1/stats/timeseries?bucket=week".into(),
            Some(r),
            None,
            200,
        ),
        (
            "/api/v1/stats/active-users",
            Method::GET,
            "/api/v1/stats/active-users".into(),
            Some(r),
            None,
            200,
        ),
        (
            "/api/v1/stats/top-users",
            Method::GET,
            "/api/v1/stats/top-users".into(),
            Some(r),
            None,
            200,
        ),
        (
            "/api/v1/stats/users/{user_id}",
            Method::GET,
            format!("/api/v1/stats/users/{user}"),
            Some(r),
            None,
            200,
        ),
        (
            "/api/v1/cache/stats",
            Method::GET,
            "/api/v1/cache/stats".into(),
            Some(r),
            None,
            200,
        ),
        (
            "/api/v1/cache/prewarm",
            Method::POST,
            "/api/v1/cache/prewarm".into(),
            Some(a),
            None,
            202,
        ),
        (
            "/api/v1/cache",
            Method::DELETE,
            "/api/v1/cache".into(),
            Some(w),
            None,
            403,
        ),
        (
            "/api/v1/cache",
            Method::DELETE,
            "/api/v1/cache".into(),
            Some(a),
            None,
            204,
        ),
        (
            "/api/v1/activities/{id}",
            Method::DELETE,
            format!("/api/v1/activities/{id}"),
            Some(w),
            None,
            204,
        ),
        (
            "/api/v1/activities/{id}",
            Method::DELETE,
            format!("/api/v1/activities/{id}"),
            Some(w),
            None,
            404,
        ),
        ("/healthz", Method::GET, "/healthz".into(), None, None, 200),
        ("/readyz", Method::GET, "/readyz".into(), None, None, 200),
        ("/metrics", Method::GET, "/metrics".into(), None, None, 200),
        (
            "/api/v1/activities/export",
            Method::GET,
            "/api/v1/activities/export?format=csv".into(),
            Some(r),
            None,
            200,
        ),
        (
            "/api/v1/activities/export",
            Method::GET,
            "/api/v1/activities/export?format=xml".into(),
            Some(r),
            None,
            422,
        ),
        (
            "/api/v1/users/{user_id}",
            Method::DELETE,
            format!("/api/v1/users/{user}"),
            Some(w),
            None,
            403,
        ),
        (
            "/api/v1/users/{user_id}",
            Method::DELETE,
            format!("/api/v1/users/{user}"),
            Some(a),
            None,
            200,
        ),
    ];
    let mut failures = Vec::new();
    for (template, method, path, token, body, expected) in calls {
        let mut request = app.client.request(method.clone(), app.url(&path));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request.send().await.expect("send");
        // The documented status is not enough: a read token's POST answering 201 is documented.
        if response.status().as_u16() != expected {
            failures.push(format!(
                "{method} {path}: {} instead of {expected}",
                response.status()
            ));
            continue;
        }
        if let Err(e) = check(&doc, template, method, response).await {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let docs = app
        .client
        .get(app.url("/docs/"))
        .send()
        .await
        .expect("send");
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(header(&docs, "content-type").starts_with("text/html"));
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_retry_after() {
    let app = spawn_app_with(AppOptions {
        rate_limit: (1, 3),
        ..AppOptions::default()
    })
    .await;
    let get = |token: &String| {
        app.client
            .get(app.url("/api/v1/cache/stats"))
            .bearer_auth(token)
            .send()
    };
    for i in 0..3 {
        assert_eq!(
            get(&app.read_token).await.expect("send").status(),
            StatusCode::OK,
            "request {i} within the burst"
        );
    }
    let limited = get(&app.read_token).await.expect("send");
    let retry_after: u64 = header(&limited, "retry-after")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_problem(limited, StatusCode::TOO_MANY_REQUESTS, "over the limit").await;
    assert_eq!(
        get(&app.write_token).await.expect("send").status(),
        StatusCode::OK,
        "another key has its own bucket"
    );
}

async fn post_with_key(app: &TestApp, path: &str, key: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(&app.write_token)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .expect("send")
}

async fn count_rows(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from activities")
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_returns_the_first_response() {
    let app = spawn_app().await;
    let body = json!({"user_id": Uuid::new_v4(), "action": "buy", "value": 10, "occurred_at": "2026-10-05T10:00:00Z"});
    let first = post_with_key(&app, "/api/v1/activities", "order-1", &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let location = header(&first, "location");
    let first: Value = first.json().await.expect("json");
    let retry = post_with_key(&app, "/api/v1/activities", "order-1", &body).await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(header(&retry, "location"), location);
    assert_eq!(retry.json::<Value>().await.expect("json"), first);
    assert_eq!(count_rows(&app).await, 1);

    let other = json!({"user_id": Uuid::new_v4(), "action": "buy"});
    let conflict = post_with_key(&app, "/api/v1/activities", "order-1", &other).await;
    let problem = assert_problem(
        conflict,
        StatusCode::UNPROCESSABLE_ENTITY,
        "same key, other body",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");

    let batch = json!({"activities": [body, other]});
    let first: Value = post_with_key(&app, "/api/v1/activities/batch", "batch-1", &batch)
        .await
        .json()
        .await
        .expect("json");
    let retry: Value = post_with_key(&app, "/api/v1/activities/batch", "batch-1", &batch)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(first, retry);
    assert_eq!(count_rows(&app).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_idempotency_key_store_one_row() {
    let app = Arc::new(spawn_app().await);
    let body = json!({"user_id": Uuid::new_v4(), "action": "buy"});
    let requests: Vec<_> = (0..8)
        .map(|_| {
            let (app, body) = (app.clone(), body.clone());
            tokio::spawn(async move {
                let response = post_with_key(&app, "/api/v1/activities", "same-key", &body).await;
                (
                    response.status(),
                    response.json::<Value>().await.expect("json")["id"].clone(),
                )
            })
        })
        .collect();
    let mut ids = Vec::new();
    for r in requests {
        let (status, id) = r.await.expect("task");
        assert_eq!(status, StatusCode::CREATED);
        ids.push(id);
    }
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "every request got the same activity: {ids:?}"
    );
    assert_eq!(count_rows(&app).await, 1);
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_refused() {
    let app = spawn_app().await;
    let long = "k".repeat(256);
    for key in ["", long.as_str(), "has space"] {
        let response = post_with_key(
            &app,
            "/api/v1/activities",
            key,
            &json!({"user_id": Uuid::new_v4(), "action": "x"}),
        )
        .await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, key).await;
    }
}
