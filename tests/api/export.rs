//! `GET /api/v1/activities/export`: every matching activity, in `(occurred_at, id)` order, as
//! NDJSON or CSV, straight from a database cursor; a client that leaves releases its
//! connection at once.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, assert_problem, header, spawn_app};

async fn export(app: &TestApp, query: &str) -> reqwest::Response {
    app.send(
        Method::GET,
        &format!("/api/v1/activities/export?{query}"),
        &app.read_token,
        &[],
    )
    .await
}

/// The ids the database holds for a filter, in export order.
async fn expected_ids(app: &TestApp, user: Option<Uuid>, action: Option<&str>) -> Vec<String> {
    sqlx::query_scalar(
        "select id::text from activities
         where ($1::uuid is null or user_id = $1) and ($2::text is null or action = $2)
         order by occurred_at, id",
    )
    .bind(user)
    .bind(action)
    .fetch_all(&app.pool)
    .await
    .expect("ids")
}

async fn seed(app: &TestApp) -> (Uuid, Uuid) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let items: Vec<Value> = (0..60)
        .map(|i| {
            json!({
                "user_id": if i % 2 == 0 { a } else { b },
                "action": if i % 3 == 0 { "buy" } else { "view" },
                // Pairs share an instant, so the order must break ties by id.
                "occurred_at": format!("2026-11-{:02}T10:00:00Z", 1 + (i / 2) % 28),
                "value": i,
                "properties": {"note": format!("line one, \"quoted\"\nline {i}"), "n": 1.5e300},
            })
        })
        .collect();
    let response = app.post_batch(&json!({ "activities": items })).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    (a, b)
}

#[tokio::test]
async fn ndjson_holds_every_matching_activity_in_order_as_the_api_shows_it() {
    let app = spawn_app().await;
    let (a, _) = seed(&app).await;
    for (query, user, action) in [
        ("", None, None),
        ("format=ndjson&action=buy", None, Some("buy")),
        (&format!("user_id={a}")[..], Some(a), None),
    ] {
        let response = export(&app, query).await;
        assert_eq!(response.status(), StatusCode::OK, "{query}");
        assert_eq!(header(&response, "content-type"), "application/x-ndjson");
        let text = response.text().await.expect("body");
        let rows: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        let ids: Vec<String> = rows
            .iter()
            .map(|r| r["id"].as_str().expect("id").to_owned())
            .collect();
        assert_eq!(ids, expected_ids(&app, user, action).await, "{query}");
        // Each line is the activity exactly as GET /activities/{id} shows it.
        let one: Value = app.get_activity(&ids[0]).await.json().await.expect("json");
        assert_eq!(rows[0], one, "{query}");
    }
    let text = export(&app, "from=2026-11-05&to=2026-11-07")
        .await
        .text()
        .await
        .expect("body");
    let in_range: i64 = sqlx::query_scalar(
        "select count(*) from activities where occurred_at >= '2026-11-05' and occurred_at < '2026-11-07'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert!(in_range > 0);
    assert_eq!(
        text.lines().count() as i64,
        in_range,
        "from inclusive, to exclusive"
    );
}

#[tokio::test]
async fn csv_is_rfc_4180_with_properties_as_json_text() {
    let app = spawn_app().await;
    seed(&app).await;
    let response = export(&app, "format=csv").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "text/csv; charset=utf-8");
    let text = response.text().await.expect("body");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().expect("header row").clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        [
            "id",
            "user_id",
            "action",
            "occurred_at",
            "duration_ms",
            "value",
            "properties",
            "created_at",
            "updated_at"
        ]
    );
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("valid row")).collect();
    let ids: Vec<&str> = records.iter().map(|r| &r[0]).collect();
    assert_eq!(ids, expected_ids(&app, None, None).await);
    for record in &records {
        let shown: Value = app
            .get_activity(&record[0])
            .await
            .json()
            .await
            .expect("json");
        let properties: Value = serde_json::from_str(&record[6]).expect("properties as JSON text");
        assert_eq!(
            properties, shown["properties"],
            "commas, quotes and newlines survive"
        );
        assert_eq!(record[5].parse::<f64>().ok(), shown["value"].as_f64());
        assert_eq!(&record[3], shown["occurred_at"].as_str().expect("time"));
    }
}

#[tokio::test]
async fn broken_parameters_are_named() {
    let app = spawn_app().await;
    for (query, field) in [
        ("format=xml", "format"),
        ("user_id=nope", "user_id"),
        ("from=2026-11-02&to=2026-11-01", "from"),
    ] {
        let problem = assert_problem(
            export(&app, query).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            query,
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{query}");
    }
}

/// Connections the application's pool has lent out.
fn busy_connections(app: &TestApp) -> u32 {
    let pool = &app.state.pool;
    pool.size() - u32::try_from(pool.num_idle()).unwrap_or(0)
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_releases_its_connection_at_once() {
    let app = spawn_app().await;
    app.ensure_partitions_since(Duration::from_secs(200_000))
        .await;
    sqlx::query(
        "insert into activities (id, user_id, action, occurred_at)
         select gen_random_uuid(), gen_random_uuid(), 'view', now() - i * interval '1 second'
         from generate_series(1, 200000) as i",
    )
    .execute(&app.pool)
    .await
    .expect("insert");
    let mut response = export(&app, "format=csv").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.chunk().await.expect("a chunk").is_some());
    assert!(
        busy_connections(&app) >= 1,
        "the export holds a connection while it streams"
    );
    drop(response);
    let deadline = Instant::now() + Duration::from_secs(5);
    while busy_connections(&app) > 0 {
        assert!(
            Instant::now() < deadline,
            "the connection was not released after the client left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
