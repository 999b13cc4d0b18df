use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{assert_problem, header, problem_fields, spawn_app};

fn user() -> Uuid {
    Uuid::new_v4()
}

#[tokio::test]
async fn a_created_activity_can_be_read_listed_patched_and_deleted() {
    let app = spawn_app().await;
    let u = user();
    let response = app
        .post_activity(&json!({
            "user_id": u, "action": "page_view", "occurred_at": "2026-11-01T10:15:00Z",
            "duration_ms": 1200, "value": 19.99, "properties": {"path": "/pricing"}
        }))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = header(&response, "location");
    let created: Value = response.json().await.expect("json");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(location, format!("/api/v1/activities/{id}"));
    assert_eq!(created["user_id"], json!(u));
    assert_eq!(created["duration_ms"], 1200);
    assert_eq!(created["value"], 19.99);
    assert_eq!(created["properties"]["path"], "/pricing");
    assert_eq!(created["occurred_at"], "2026-11-01T10:15:00Z");
    assert!(created["created_at"].is_string() && created["updated_at"].is_string());

    let fetched: Value = app.get_activity(&id).await.json().await.expect("json");
    assert_eq!(fetched, created);

    let page: Value = app
        .list(&format!("user_id={u}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["next_cursor"], Value::Null);

    let patched = app
        .patch(&id, &json!({"action": "click", "value": null}))
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    let patched: Value = patched.json().await.expect("json");
    assert_eq!(patched["action"], "click");
    assert_eq!(patched["value"], Value::Null);
    assert_eq!(patched["duration_ms"], 1200, "untouched fields stay");

    assert_eq!(app.delete(&id).await.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.get_activity(&id).await,
        StatusCode::NOT_FOUND,
        "deleted",
    )
    .await;
    assert_problem(
        app.delete(&id).await,
        StatusCode::NOT_FOUND,
        "deleted twice",
    )
    .await;
}

#[tokio::test]
async fn occurred_at_defaults_to_now() {
    let app = spawn_app().await;
    let before = chrono::Utc::now();
    let response = app
        .post_activity(&json!({"user_id": user(), "action": "signup"}))
        .await;
    let body: Value = response.json().await.expect("json");
    let at: chrono::DateTime<chrono::Utc> = body["occurred_at"]
        .as_str()
        .expect("occurred_at")
        .parse()
        .expect("time");
    assert!(at >= before && at <= chrono::Utc::now(), "{at}");
}

#[tokio::test]
async fn invalid_activities_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let u = user();
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let big = "x".repeat(17 * 1024);
    let cases = [
        (json!({"action": "x"}), "user_id", "missing user_id"),
        (json!({"user_id": u}), "action", "missing action"),
        (
            json!({"user_id": 42, "action": "x"}),
            "user_id",
            "user_id of the wrong type",
        ),
        (
            json!({"user_id": "not-a-uuid", "action": "x"}),
            "user_id",
            "user_id not a UUID",
        ),
        (
            json!({"user_id": u, "action": "a".repeat(65)}),
            "action",
            "action of 65 characters",
        ),
        (
            json!({"user_id": u, "action": "PageView"}),
            "action",
            "action with a capital letter",
        ),
        (
            json!({"user_id": u, "action": ""}),
            "action",
            "empty action",
        ),
        (
            json!({"user_id": u, "action": "x", "occurred_at": future}),
            "occurred_at",
            "an hour in the future",
        ),
        (
            json!({"user_id": u, "action": "x", "occurred_at": "2026-13-01"}),
            "occurred_at",
            "not RFC 3339",
        ),
        (
            json!({"user_id": u, "action": "x", "properties": {"blob": big}}),
            "properties",
            "properties over 16 KiB",
        ),
        (
            json!({"user_id": u, "action": "x", "properties": "text"}),
            "properties",
            "properties not an object",
        ),
        (
            json!({"user_id": u, "action": "x", "value": "19.99"}),
            "value",
            "non-numeric value",
        ),
        (
            json!({"user_id": u, "action": "x", "duration_ms": -5}),
            "duration_ms",
            "negative duration",
        ),
        (
            json!({"user_id": u, "action": "x", "duration_ms": "long"}),
            "duration_ms",
            "duration not a number",
        ),
        (
            json!({"user_id": u, "action": "x", "colour": "red"}),
            "colour",
            "unknown field",
        ),
        (json!([1, 2]), "body", "body not an object"),
    ];
    for (body, field, case) in cases {
        let problem = assert_problem(
            app.post_activity(&body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            case,
        )
        .await;
        assert_eq!(problem_fields(&problem), vec![field.to_owned()], "{case}");
    }
    let stored: i64 = sqlx::query_scalar("select count(*) from activities")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(stored, 0, "nothing invalid was stored");
}

#[tokio::test]
async fn malformed_bodies_are_400_and_oversized_ones_413() {
    let app = spawn_app().await;
    let post = |body: &'static str, content_type: &'static str| {
        app.client
            .post(app.url("/api/v1/activities"))
            .bearer_auth(&app.write_token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let cases = [
        (
            post("{\"user_id\": ", "application/json")
                .await
                .expect("send"),
            "truncated JSON",
        ),
        (
            post("not json", "application/json").await.expect("send"),
            "not JSON",
        ),
        (
            post("{}", "text/plain").await.expect("send"),
            "wrong content type",
        ),
        (
            post("", "application/json").await.expect("send"),
            "empty body",
        ),
    ];
    for (response, case) in cases {
        assert_problem(response, StatusCode::BAD_REQUEST, case).await;
    }
    let huge = format!(
        "{{\"user_id\": \"{}\", \"action\": \"x\", \"pad\": \"{}\"}}",
        user(),
        "x".repeat(200 * 1024)
    );
    let response = app
        .client
        .post(app.url("/api/v1/activities"))
        .bearer_auth(&app.write_token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("send");
    assert_problem(
        response,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body over the limit",
    )
    .await;
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_404() {
    let app = spawn_app().await;
    let unknown = Uuid::new_v4().to_string();
    for id in [unknown.as_str(), "not-a-uuid", "123"] {
        assert_problem(app.get_activity(id).await, StatusCode::NOT_FOUND, id).await;
        assert_problem(
            app.patch(id, &json!({"action": "x"})).await,
            StatusCode::NOT_FOUND,
            id,
        )
        .await;
        assert_problem(app.delete(id).await, StatusCode::NOT_FOUND, id).await;
    }
}

#[tokio::test]
async fn a_patch_is_validated_like_a_create() {
    let app = spawn_app().await;
    let created = app
        .create(user(), "view", "2026-11-01T10:00:00Z", None)
        .await;
    let id = created["id"].as_str().expect("id");
    let cases = [
        (json!({"action": "Bad"}), "action"),
        (json!({"action": null}), "action"),
        (
            json!({"occurred_at": "2099-01-01T00:00:00Z"}),
            "occurred_at",
        ),
        (json!({"id": Uuid::new_v4()}), "id"),
    ];
    for (body, field) in cases {
        let problem = assert_problem(
            app.patch(id, &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            field,
        )
        .await;
        assert_eq!(problem_fields(&problem), vec![field.to_owned()], "{body}");
    }
    let unchanged: Value = app.get_activity(id).await.json().await.expect("json");
    assert_eq!(unchanged["action"], "view");
}

#[tokio::test]
async fn a_batch_is_stored_whole() {
    let app = spawn_app().await;
    let items: Vec<Value> = (0..50)
        .map(|i| json!({"user_id": user(), "action": "view", "occurred_at": format!("2026-11-01T10:{:02}:00Z", i)}))
        .collect();
    let response = app.post_batch(&json!({"activities": items})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["inserted"], 50);
    let ids: HashSet<String> = body["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), 50);
    let first = ids.iter().next().expect("an id");
    assert_eq!(app.get_activity(first).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_batch_with_one_bad_item_stores_nothing_and_names_the_index() {
    let app = spawn_app().await;
    let mut items: Vec<Value> = (0..20)
        .map(|_| json!({"user_id": user(), "action": "view"}))
        .collect();
    items[17]["action"] = json!("Not Valid");
    let problem = assert_problem(
        app.post_batch(&json!({"activities": items})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "one bad item",
    )
    .await;
    assert_eq!(problem_fields(&problem), vec!["activities[17].action"]);
    let stored: i64 = sqlx::query_scalar("select count(*) from activities")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn batch_size_limits_are_enforced() {
    let app = spawn_app().await;
    let item = json!({"user_id": user(), "action": "view"});
    let too_many: Vec<Value> = (0..5001).map(|_| item.clone()).collect();
    for (body, case) in [
        (json!({"activities": too_many}), "5001 items"),
        (json!({"activities": []}), "no items"),
        (json!({"activities": "nope"}), "not an array"),
        (json!({}), "missing"),
    ] {
        let problem = assert_problem(
            app.post_batch(&body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            case,
        )
        .await;
        assert_eq!(problem_fields(&problem), vec!["activities"], "{case}");
    }
}

#[tokio::test]
async fn listing_filters_and_validates_its_parameters() {
    let app = spawn_app().await;
    let (a, b) = (user(), user());
    app.create(a, "view", "2026-11-01T10:00:00Z", None).await;
    app.create(a, "buy", "2026-11-02T10:00:00Z", Some(5.0))
        .await;
    app.create(b, "view", "2026-11-03T10:00:00Z", None).await;
    let app = &app;
    let count = |query: String| async move {
        let page: Value = app.list(&query).await.json().await.expect("json");
        page["items"].as_array().map(Vec::len).unwrap_or(0)
    };
    assert_eq!(count(format!("user_id={a}")).await, 2);
    assert_eq!(count("action=view".into()).await, 2);
    assert_eq!(count("from=2026-11-02&to=2026-11-03".into()).await, 1);
    assert_eq!(count(format!("user_id={a}&action=view")).await, 1);

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("cursor=forged", "cursor"),
        ("cursor=MTIzfG5vdC1hLXV1aWQ", "cursor"),
        ("user_id=nope", "user_id"),
        ("action=NOPE", "action"),
        ("from=yesterday", "from"),
        ("from=2026-11-03&to=2026-11-01", "from"),
    ] {
        let problem = assert_problem(
            app.list(query).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            query,
        )
        .await;
        assert_eq!(problem_fields(&problem), vec![field.to_owned()], "{query}");
    }
}

#[tokio::test]
async fn walking_pages_during_inserts_never_repeats_or_skips_a_row() {
    let app = spawn_app().await;
    let items: Vec<Value> = (0..250)
        .map(|i| {
            // Some rows share a timestamp, so the id must break ties.
            json!({"user_id": user(), "action": "view", "occurred_at": format!("2026-11-01T10:{:02}:{:02}Z", i / 120, (i / 2) % 60)})
        })
        .collect();
    let body: Value = app
        .post_batch(&json!({"activities": items}))
        .await
        .json()
        .await
        .expect("json");
    let existing: HashSet<String> = body["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for page_number in 0.. {
        // Rows arrive while the walk goes on, some older and some newer than the cursor.
        app.create(
            user(),
            "view",
            &format!("2026-11-01T10:00:{:02}Z", page_number % 60),
            None,
        )
        .await;
        let query = match &cursor {
            Some(c) => format!("limit=7&cursor={c}"),
            None => "limit=7".into(),
        };
        let page: Value = app.list(&query).await.json().await.expect("json");
        for item in page["items"].as_array().expect("items") {
            seen.push(item["id"].as_str().expect("id").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a row was repeated");
    let missing: Vec<_> = existing.iter().filter(|id| !unique.contains(id)).collect();
    assert!(missing.is_empty(), "rows skipped: {missing:?}");
}

#[tokio::test]
async fn responses_carry_a_request_id_and_unknown_routes_are_problems() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/api/v1/nowhere"))
        .send()
        .await
        .expect("send");
    assert!(!header(&response, "x-request-id").is_empty());
    assert_problem(response, StatusCode::NOT_FOUND, "unknown route").await;
    let response = app
        .client
        .put(app.url("/api/v1/activities"))
        .send()
        .await
        .expect("send");
    assert_problem(response, StatusCode::METHOD_NOT_ALLOWED, "wrong method").await;
}
