//! Cache semantics: hits, shared entries for equivalent requests, read-your-writes after every
//! kind of write, precise invalidation, counters, ETags and the admin routes. Tests that
//! describe cache behaviour run against both backends.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Backend, TestApp, header, spawn_app, spawn_app_on};

/// Every statistics endpoint over October 2026, for one user's profile, in UTC and in two zones
/// whose days start off the UTC hour (Kathmandu) and on it (New York).
fn all_endpoints(user: Uuid) -> Vec<String> {
    let mut paths = Vec::new();
    for tz in ["", "&tz=Asia/Kathmandu", "&tz=America/New_York"] {
        let range = format!("from=2026-10-01&to=2026-11-01{tz}");
        paths.extend([
            format!("summary?{range}"),
            format!("timeseries?{range}&bucket=day"),
            format!("active-users?date=2026-10-20{tz}"),
            format!("top-users?{range}"),
            format!("users/{user}?{range}"),
        ]);
    }
    paths
}

#[tokio::test]
async fn a_repeated_request_is_a_hit_with_the_same_answer() {
    for backend in Backend::all() {
        let app = spawn_app_on(backend.clone()).await;
        app.create(Uuid::new_v4(), "view", "2026-10-05T10:00:00Z", None)
            .await;
        for path in all_endpoints(Uuid::new_v4()) {
            let (first, a) = app.stats(&path).await;
            let (second, b) = app.stats(&path).await;
            assert_eq!(
                (first.as_str(), second.as_str()),
                ("MISS", "HIT"),
                "{backend:?} {path}"
            );
            assert_eq!(a, b, "{backend:?} {path}");
        }
    }
}

#[tokio::test]
async fn equivalent_requests_share_one_entry() {
    let app = spawn_app().await;
    let groups = [
        vec![
            "summary?from=2026-10-10&to=2026-10-20",
            "summary?to=2026-10-20&from=2026-10-10",
            "summary?from=2026-10-10T00:00:00Z&to=2026-10-20T02:00:00%2B02:00",
        ],
        vec![
            "timeseries?from=2026-10-10&to=2026-10-20",
            "timeseries?bucket=day&to=2026-10-20&from=2026-10-10",
        ],
        vec![
            "top-users?from=2026-10-10&to=2026-10-20",
            "top-users?limit=10&from=2026-10-10&to=2026-10-20",
        ],
    ];
    for group in groups {
        let (first, _) = app.stats(group[0]).await;
        assert_eq!(first, "MISS", "{}", group[0]);
        for path in &group[1..] {
            let (status, _) = app.stats(path).await;
            assert_eq!(
                status, "HIT",
                "{path} should share the entry of {}",
                group[0]
            );
        }
    }
}

/// Reads every endpoint and checks the answer equals a freshly computed one.
async fn assert_all_fresh(app: &TestApp, user: Uuid, after: &str) {
    for path in all_endpoints(user) {
        let (_, cached) = app.stats(&path).await;
        let fresh = app
            .client
            .get(app.url(&format!("/api/v1/stats/{path}")))
            .bearer_auth(&app.read_token)
            .header("cache-control", "no-cache")
            .send()
            .await
            .expect("send");
        assert_eq!(header(&fresh, "x-cache"), "MISS", "no-cache recomputes");
        let fresh: Value = fresh.json().await.expect("json");
        assert_eq!(cached, fresh, "{path} is stale after {after}");
    }
}

async fn warm(app: &TestApp, user: Uuid) {
    for path in all_endpoints(user) {
        app.stats(&path).await;
        let (status, _) = app.stats(&path).await;
        assert_eq!(status, "HIT", "{path} warmed");
    }
}

#[tokio::test]
async fn every_kind_of_write_is_reflected_by_the_next_read() {
    for backend in Backend::all() {
        let app = spawn_app_on(backend.clone()).await;
        let user = Uuid::new_v4();
        let first = app
            .create(user, "view", "2026-10-20T10:00:00Z", Some(2.0))
            .await;
        let id = first["id"].as_str().expect("id").to_owned();

        warm(&app, user).await;
        app.create(user, "buy", "2026-10-20T11:00:00Z", Some(9.5))
            .await;
        assert_all_fresh(&app, user, &format!("{backend:?} create")).await;

        warm(&app, user).await;
        let batch = json!({"activities": [
            {"user_id": user, "action": "view", "occurred_at": "2026-10-19T08:00:00Z"},
            {"user_id": Uuid::new_v4(), "action": "share", "occurred_at": "2026-10-02T08:00:00Z"}
        ]});
        assert_eq!(app.post_batch(&batch).await.status(), StatusCode::CREATED);
        assert_all_fresh(&app, user, &format!("{backend:?} batch")).await;

        warm(&app, user).await;
        assert_eq!(
            app.patch(&id, &json!({"value": 100.0})).await.status(),
            StatusCode::OK
        );
        assert_all_fresh(&app, user, &format!("{backend:?} patch of a value")).await;

        warm(&app, user).await;
        let other = Uuid::new_v4();
        let moved = app
            .patch(
                &id,
                &json!({"occurred_at": "2026-10-03T10:00:00Z", "user_id": other}),
            )
            .await;
        assert_eq!(moved.status(), StatusCode::OK);
        assert_all_fresh(
            &app,
            user,
            &format!("{backend:?} patch moving day and user"),
        )
        .await;
        assert_all_fresh(
            &app,
            other,
            &format!("{backend:?} patch moving day and user"),
        )
        .await;

        warm(&app, other).await;
        assert_eq!(app.delete(&id).await.status(), StatusCode::NO_CONTENT);
        assert_all_fresh(&app, other, &format!("{backend:?} delete")).await;
    }
}

#[tokio::test]
async fn a_write_keeps_entries_it_cannot_change() {
    for backend in Backend::all() {
        let app = spawn_app_on(backend.clone()).await;
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let written = app
            .create(alice, "view", "2026-10-11T12:00:00Z", None)
            .await;
        let id = written["id"].as_str().expect("id").to_owned();
        let untouched = [
            "summary?from=2026-10-01&to=2026-10-05".to_owned(),
            "summary?from=2026-10-11T00:00:00Z&to=2026-10-11T06:00:00Z".to_owned(),
            "summary?from=2026-10-01&to=2026-10-20&action=buy".to_owned(),
            "active-users?date=2026-10-05".to_owned(),
            format!("users/{bob}?from=2026-10-01&to=2026-11-01"),
        ];
        let touched = [
            "summary?from=2026-10-10&to=2026-10-12".to_owned(),
            "summary?from=2026-10-01&to=2026-10-20&action=view".to_owned(),
            "timeseries?from=2026-10-01&to=2026-11-01&bucket=week".to_owned(),
            "active-users?date=2026-10-11".to_owned(),
            format!("users/{alice}?from=2026-10-01&to=2026-11-01"),
        ];
        for path in untouched.iter().chain(&touched) {
            app.stats(path).await;
        }
        let invalidated_before = app.state.cache.stats().invalidated_keys;

        // Same user, same day, same action; only the time of day moves (still outside 00-06).
        let patched = app
            .patch(&id, &json!({"occurred_at": "2026-10-11T18:00:00Z"}))
            .await;
        assert_eq!(patched.status(), StatusCode::OK);
        for path in &untouched {
            assert_eq!(
                app.stats(path).await.0,
                "HIT",
                "{backend:?}: {path} must survive the write"
            );
        }
        for path in &touched {
            assert_eq!(
                app.stats(path).await.0,
                "MISS",
                "{backend:?}: {path} must be invalidated"
            );
        }
        let removed = app.state.cache.stats().invalidated_keys - invalidated_before;
        assert_eq!(
            removed,
            touched.len() as u64,
            "{backend:?}: exactly the touched entries were removed"
        );
    }
}

#[tokio::test]
async fn a_write_changes_the_entries_of_its_local_day_only() {
    // 18:00 UTC on 11 October is 23:45 on the 11th in Kathmandu (+05:45); 18:30 is 00:15 on the 12th.
    for backend in Backend::all() {
        let app = spawn_app_on(backend.clone()).await;
        let user = Uuid::new_v4();
        let written = app.create(user, "view", "2026-10-11T18:30:00Z", None).await;
        let id = written["id"].as_str().expect("id").to_owned();
        let (d11, d12) = (
            "summary?from=2026-10-11&to=2026-10-12&tz=Asia/Kathmandu",
            "summary?from=2026-10-12&to=2026-10-13&tz=Asia/Kathmandu",
        );
        let au12 = "active-users?date=2026-10-12&tz=Asia/Kathmandu";
        let au11 = "active-users?date=2026-10-11&tz=Asia/Kathmandu";
        for path in [d11, d12, au11, au12] {
            app.stats(path).await;
        }
        assert_eq!(app.stats(d12).await.1["events"], 1, "{backend:?}");
        assert_eq!(app.stats(d11).await.1["events"], 0, "{backend:?}");
        // Moving the event within the 12th (local) leaves the 11th's entries alone.
        let moved = app
            .patch(&id, &json!({"occurred_at": "2026-10-12T03:00:00Z"}))
            .await;
        assert_eq!(moved.status(), StatusCode::OK);
        assert_eq!(
            app.stats(d11).await.0,
            "HIT",
            "{backend:?}: the 11th is untouched"
        );
        assert_eq!(
            app.stats(au11).await.0,
            "HIT",
            "{backend:?}: so are its active users"
        );
        assert_eq!(
            app.stats(d12).await.0,
            "MISS",
            "{backend:?}: the 12th was written"
        );
        // Back to 23:45 on the 11th: now it is the 11th's.
        let moved = app
            .patch(&id, &json!({"occurred_at": "2026-10-11T18:00:00Z"}))
            .await;
        assert_eq!(moved.status(), StatusCode::OK);
        let (status, answer) = app.stats(d11).await;
        assert_eq!(
            (status.as_str(), &answer["events"]),
            ("MISS", &json!(1)),
            "{backend:?}"
        );
        assert_eq!(answer["from"], "2026-10-11T00:00:00+05:45", "{backend:?}");
        assert_eq!(app.stats(d12).await.1["events"], 0, "{backend:?}");
    }
}

#[tokio::test]
async fn counters_in_metrics_move_by_the_expected_amounts() {
    let app = spawn_app().await;
    let series = |kind: &str| format!("analytics_cache_{kind}_total{{endpoint=\"summary\"}}");
    let before_hits = app.metric(&series("hits")).await;
    let before_misses = app.metric(&series("misses")).await;
    let before_invalidated = app.metric("analytics_cache_invalidated_keys_total").await;
    let before_updated = app.metric("analytics_cache_updated_entries_total").await;
    app.stats("summary?from=2026-10-01&to=2026-10-05").await;
    app.stats("summary?from=2026-10-01&to=2026-10-05").await;
    app.stats("summary?from=2026-10-01&to=2026-10-05").await;
    app.stats("summary?from=2026-10-02&to=2026-10-05").await;
    // A create brings both entries up to date; a delete removes them.
    let created = app
        .create(Uuid::new_v4(), "view", "2026-10-03T00:00:00Z", None)
        .await;
    let text = app.metrics().await;
    assert_eq!(
        crate::helpers::metric_value(&text, "analytics_cache_updated_entries_total")
            - before_updated,
        2.0
    );
    let id = created["id"].as_str().expect("id");
    assert_eq!(app.delete(id).await.status(), StatusCode::NO_CONTENT);
    let text = app.metrics().await;
    let value = |s: &str| crate::helpers::metric_value(&text, s);
    assert_eq!(value(&series("hits")) - before_hits, 2.0);
    assert_eq!(value(&series("misses")) - before_misses, 2.0);
    assert_eq!(
        value("analytics_cache_invalidated_keys_total") - before_invalidated,
        2.0
    );
    for name in [
        "analytics_http_requests_total",
        "analytics_http_request_duration_seconds",
        "analytics_aggregate_duration_seconds",
        "analytics_db_pool_connections",
        "analytics_cache_bypasses_total",
        "analytics_cache_errors_total",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} has no series"
        );
    }
    assert!(
        text.contains(r#"route="/api/v1/stats/summary""#),
        "routes are labelled by template"
    );
    let stats: Value = app
        .get_json("/api/v1/cache/stats", Some(&app.read_token))
        .await;
    assert_eq!(stats["by_endpoint"]["summary"]["hits"], 2);
    assert_eq!(stats["misses"], 2);
    assert_eq!(stats["invalidated_keys"], 2);
    assert!((stats["hit_ratio"].as_f64().unwrap_or(0.0) - 0.5).abs() < 1e-9);
}

#[tokio::test]
async fn etags_answer_304_and_no_cache_recomputes() {
    let app = spawn_app().await;
    let path = "/api/v1/stats/summary?from=2026-10-01&to=2026-10-05";
    let first = app.send(Method::GET, path, &app.read_token, &[]).await;
    let etag = header(&first, "etag");
    assert!(etag.starts_with('"') && etag.len() > 2, "{etag}");
    let revalidated = app
        .send(
            Method::GET,
            path,
            &app.read_token,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&revalidated, "x-cache"), "HIT");
    assert!(revalidated.bytes().await.expect("body").is_empty());

    let other = app
        .send(
            Method::GET,
            path,
            &app.read_token,
            &[("if-none-match", "\"something-else\"")],
        )
        .await;
    assert_eq!(other.status(), StatusCode::OK);

    let refreshed = app
        .send(
            Method::GET,
            path,
            &app.read_token,
            &[("cache-control", "no-cache")],
        )
        .await;
    assert_eq!(header(&refreshed, "x-cache"), "MISS");
    assert_eq!(header(&refreshed, "etag"), etag, "same data, same tag");
    assert_eq!(
        app.stats("summary?from=2026-10-01&to=2026-10-05").await.0,
        "HIT"
    );

    app.create(Uuid::new_v4(), "view", "2026-10-02T00:00:00Z", None)
        .await;
    let changed = app
        .send(
            Method::GET,
            path,
            &app.read_token,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(changed.status(), StatusCode::OK, "new data, new tag");
    assert_ne!(header(&changed, "etag"), etag);
}

#[tokio::test]
async fn clearing_the_cache_removes_only_keys_under_the_prefix() {
    let app = spawn_app().await;
    let client = redis::Client::open(crate::helpers::redis_url()).expect("redis");
    let mut conn = client.get_connection().expect("connection");
    let outside = format!("{}-neighbour:keep", app.prefix);
    let _: () = redis::cmd("SET")
        .arg(&outside)
        .arg("1")
        .query(&mut conn)
        .expect("set");
    app.stats("summary?from=2026-10-01&to=2026-10-05").await;
    assert_eq!(
        app.stats("summary?from=2026-10-01&to=2026-10-05").await.0,
        "HIT"
    );

    let response = app
        .send(Method::DELETE, "/api/v1/cache", &app.admin_token, &[])
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.stats("summary?from=2026-10-01&to=2026-10-05").await.0,
        "MISS"
    );
    let kept: Option<String> = redis::cmd("GET")
        .arg(&outside)
        .query(&mut conn)
        .expect("get");
    assert_eq!(kept.as_deref(), Some("1"));
    let _: () = redis::cmd("DEL")
        .arg(&outside)
        .query(&mut conn)
        .expect("del");
}

#[tokio::test]
async fn prewarm_fills_the_default_dashboard_entries() {
    for backend in Backend::all() {
        let app = spawn_app_on(backend.clone()).await;
        let response = app
            .send(Method::POST, "/api/v1/cache/prewarm", &app.admin_token, &[])
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while app.state.cache.stats().misses < 4 {
            assert!(
                std::time::Instant::now() < deadline,
                "{backend:?}: prewarm did not finish"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        for path in [
            "summary",
            "timeseries",
            "active-users",
            "top-users",
            "timeseries?bucket=day&limit=3",
        ] {
            assert_eq!(
                app.stats(path).await.0,
                "HIT",
                "{backend:?}: {path} prewarmed"
            );
        }
    }
}
