//! `DELETE /api/v1/users/{id}`: every activity of the user goes in one transaction, and every
//! statistic and cached answer reflects it at once, on every instance, for a user with one
//! event as for one with 100,000; stored idempotent responses that carry the user go too.

use chrono::{Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Backend, TestApp, spawn_app_on};
use crate::rollups::{assert_rollups_equal_a_rebuild, assert_same};

/// The default statistics, and the profiles of both users.
fn paths(erased: Uuid, kept: Uuid) -> Vec<String> {
    let mut paths: Vec<String> = [
        "summary",
        "timeseries?bucket=hour",
        "timeseries?bucket=day",
        "timeseries?bucket=month",
        "active-users",
        "top-users",
    ]
    .map(String::from)
    .to_vec();
    paths.push(format!("users/{erased}"));
    paths.push(format!("users/{kept}"));
    paths
}

/// `count` activities of `user`, every 7 hours back from now, in batches.
async fn write(app: &TestApp, user: Uuid, count: i64) {
    let now = Utc::now();
    let items: Vec<Value> = (0..count)
        .map(|i| {
            json!({
                "user_id": user,
                "action": if i % 3 == 0 { "buy" } else { "view" },
                "occurred_at": (now - Duration::hours(7 * i)).to_rfc3339(),
                "value": i,
                "duration_ms": 100 * i,
            })
        })
        .collect();
    for chunk in items.chunks(1000) {
        let response = app.post_batch(&json!({ "activities": chunk })).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
}

async fn erase(app: &TestApp, user: Uuid) -> Value {
    let response = app
        .send(
            Method::DELETE,
            &format!("/api/v1/users/{user}"),
            &app.admin_token,
            &[],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("json")
}

/// Every answer `app` gives now, cached or not, equals one computed fresh for this request.
async fn assert_answers_are_current(app: &TestApp, paths: &[String], case: &str) {
    for path in paths {
        let (_, served) = app.stats(path).await;
        let fresh = app.stats_fresh(path).await;
        assert_same(&served, &fresh, &format!("{case}: {path}"));
    }
}

async fn idempotent_create(app: &TestApp, user: Uuid, key: &str) {
    let response = app
        .client
        .post(app.url("/api/v1/activities"))
        .bearer_auth(&app.write_token)
        .header("Idempotency-Key", key)
        .json(&json!({"user_id": user, "action": "signup"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::CREATED);
}

async fn stored_responses_naming(app: &TestApp, user: Uuid) -> i64 {
    sqlx::query_scalar(
        "select count(*) from idempotency_keys where position(convert_to($1, 'UTF8') in response) > 0",
    )
    .bind(user.to_string())
    .fetch_one(&app.pool)
    .await
    .expect("count")
}

#[tokio::test]
async fn an_erased_user_is_gone_from_every_answer_on_every_instance() {
    for backend in Backend::all() {
        let app = spawn_app_on(backend.clone()).await;
        let (erased, kept) = (Uuid::new_v4(), Uuid::new_v4());
        write(&app, erased, 40).await;
        write(&app, kept, 25).await;
        idempotent_create(&app, erased, "erased-signup").await;
        idempotent_create(&app, kept, "kept-signup").await;
        let paths = paths(erased, kept);
        // Cached answers that include the user, here and (with Redis) on a second instance.
        let sibling = match backend.is_shared() {
            true => Some(app.spawn_sibling().await),
            false => None,
        };
        for path in &paths {
            app.stats(path).await;
            let (cache, _) = app.stats(path).await;
            assert_eq!(cache, "HIT", "{path} is cached before the erasure");
            if let Some(sibling) = &sibling {
                sibling.stats(path).await;
            }
        }
        let (_, before) = app.stats("summary").await;

        assert_eq!(erase(&app, erased).await, json!({"deleted": 41}));

        let case = format!("{backend:?}");
        assert_answers_are_current(&app, &paths, &case).await;
        if let Some(sibling) = &sibling {
            assert_answers_are_current(sibling, &paths, &format!("{case}, other instance")).await;
        }
        let (_, after) = app.stats("summary").await;
        assert_eq!(
            after["events"],
            json!(before["events"].as_i64().expect("n") - 41)
        );
        let (_, profile) = app.stats(&format!("users/{erased}")).await;
        assert_eq!(profile["events"], json!(0), "{case}");
        let (_, top) = app.stats("top-users").await;
        assert!(
            !top.to_string().contains(&erased.to_string()),
            "{case}: {top}"
        );
        let list: Value = app
            .get_json(
                &format!("/api/v1/activities?user_id={erased}"),
                Some(&app.read_token),
            )
            .await;
        assert_eq!(list["items"], json!([]));
        assert_rollups_equal_a_rebuild(&app.pool).await;

        assert_eq!(stored_responses_naming(&app, erased).await, 0, "{case}");
        assert_eq!(stored_responses_naming(&app, kept).await, 1, "{case}");
        let numbered: Vec<Uuid> =
            sqlx::query_scalar("select user_id from activity_users where user_id = any($1)")
                .bind([erased, kept])
                .fetch_all(&app.pool)
                .await
                .expect("activity_users");
        assert_eq!(
            numbered,
            vec![kept],
            "{case}: the erased user's bitmap number is gone"
        );
        // A repeat is harmless, and the same id may write again (under a new number).
        assert_eq!(erase(&app, erased).await, json!({"deleted": 0}));
        write(&app, erased, 1).await;
        assert_answers_are_current(&app, &paths, &format!("{case}, written again")).await;
        assert_rollups_equal_a_rebuild(&app.pool).await;
        assert_eq!(erase(&app, erased).await, json!({"deleted": 1}));
    }
}

#[tokio::test]
async fn a_user_with_100000_events_is_erased_in_one_go() {
    let app = spawn_app_on(Backend::redis()).await;
    let (heavy, other) = (Uuid::new_v4(), Uuid::new_v4());
    // Straight into the table (the rollup triggers run as for any insert): 100 batches
    // through the API would only make the test slower.
    app.ensure_partitions_since(std::time::Duration::from_secs(25 * 100_000))
        .await;
    sqlx::query(
        "insert into activities (id, user_id, action, occurred_at, value)
         select gen_random_uuid(), $1, case when i % 2 = 0 then 'view' else 'buy' end,
                now() - i * interval '25 seconds', i % 10
         from generate_series(0, 99999) as i",
    )
    .bind(heavy)
    .execute(&app.pool)
    .await
    .expect("insert");
    write(&app, other, 10).await;
    let paths = paths(heavy, other);
    for path in &paths {
        app.stats(path).await;
    }

    assert_eq!(erase(&app, heavy).await, json!({"deleted": 100000}));

    assert_answers_are_current(&app, &paths, "heavy user").await;
    let (_, summary) = app.stats("summary").await;
    assert_eq!(summary["events"], json!(10));
    assert_rollups_equal_a_rebuild(&app.pool).await;
}

#[tokio::test]
async fn only_an_admin_may_erase() {
    let app = spawn_app_on(Backend::Memory).await;
    let user = Uuid::new_v4();
    write(&app, user, 1).await;
    for token in [&app.read_token, &app.write_token] {
        let response = app
            .send(Method::DELETE, &format!("/api/v1/users/{user}"), token, &[])
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    let response = app
        .send(
            Method::DELETE,
            "/api/v1/users/not-a-uuid",
            &app.admin_token,
            &[],
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(erase(&app, user).await, json!({"deleted": 1}));
}
