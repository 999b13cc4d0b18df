//! Live ingest (promise 6): a create brings the cached answers it falls in up to date, exactly,
//! so the dashboard keeps answering HIT while events stream in; a create whose cache update
//! cannot be made leaves no wrong entry behind.

use std::sync::Arc;
use std::time::Duration;

use activity_analytics::cache::{Committed, WriteHook};
use activity_analytics::db::activities::insert_activity;
use activity_analytics::domain::{NewActivity, WriteWindow};
use chrono::{SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{AppOptions, Backend, OwnRedis, pause_once, spawn_app_on, spawn_app_with};
use crate::rollups::assert_same;

const RANGE: &str = "from=2026-10-01&to=2026-11-01";

/// Every kind of entry a create can update: each endpoint and bucket, with and without an
/// action, aligned and unaligned ranges, and two users' profiles.
fn paths(users: &[Uuid]) -> Vec<String> {
    let mut paths = vec![
        format!("summary?{RANGE}"),
        format!("summary?{RANGE}&action=view"),
        "summary?from=2026-10-12T06:30:00Z&to=2026-10-16T18:00:00Z".to_owned(),
        format!("active-users?date=2026-10-15"),
        format!("active-users?date=2026-10-18&action=buy"),
        format!("top-users?{RANGE}&limit=3"),
        format!("top-users?{RANGE}&action=view"),
    ];
    for bucket in ["hour", "day", "week", "month"] {
        paths.push(format!("timeseries?{RANGE}&bucket={bucket}"));
    }
    paths.push("timeseries?from=2026-10-14T05:00:00Z&to=2026-10-17&bucket=day&action=click".into());
    for user in &users[..2] {
        paths.push(format!("users/{user}?{RANGE}"));
        paths.push(format!("users/{user}?{RANGE}&action=view"));
    }
    // The same kinds of entry in zones whose days start at :15 and :00 past a UTC hour, and
    // whose hour buckets are (Kathmandu) and are not (Berlin) read from the hourly rollups.
    for tz in ["Asia/Kathmandu", "Europe/Berlin"] {
        paths.push(format!("summary?{RANGE}&tz={tz}"));
        paths.push(format!("active-users?date=2026-10-15&tz={tz}"));
        paths.push(format!("top-users?{RANGE}&limit=3&tz={tz}"));
        paths.push(format!("users/{}?{RANGE}&tz={tz}", users[0]));
        for bucket in ["hour", "day", "week"] {
            paths.push(format!("timeseries?{RANGE}&bucket={bucket}&tz={tz}"));
        }
    }
    paths
}

fn random_activity(rng: &mut StdRng, users: &[Uuid]) -> Value {
    let at = format!(
        "2026-10-{:02}T{:02}:{:02}:00Z",
        rng.random_range(8..22),
        rng.random_range(0..24),
        rng.random_range(0..60)
    );
    let action = ["view", "buy", "click"][rng.random_range(0..3)];
    let mut body = json!({
        "user_id": users[rng.random_range(0..users.len())],
        "action": action,
        "occurred_at": at,
    });
    if rng.random_bool(0.7) {
        body["value"] = json!(f64::from(rng.random_range(0..10_000)) / 100.0);
    }
    if rng.random_bool(0.5) {
        body["duration_ms"] = json!(rng.random_range(0..5_000));
    }
    body
}

async fn check_exact_under_concurrent_creates(backend: Backend) {
    let app = Arc::new(spawn_app_on(backend.clone()).await);
    let users: Vec<Uuid> = (0..6).map(|_| Uuid::new_v4()).collect();
    let mut rng = StdRng::seed_from_u64(11);
    let seed: Vec<Value> = (0..60).map(|_| random_activity(&mut rng, &users)).collect();
    let response = app.post_batch(&json!({ "activities": seed })).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let paths = paths(&users);
    for path in &paths {
        app.stats(path).await;
    }

    // Writers create from few users (so most creates find their user already counted) while
    // readers keep missing and hitting the same entries.
    let mut tasks = Vec::new();
    for w in 0..4u64 {
        let (app, users) = (app.clone(), users.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(100 + w);
            for _ in 0..40 {
                let body = random_activity(&mut rng, &users);
                let response = app.post_activity(&body).await;
                assert_eq!(response.status(), StatusCode::CREATED, "{body}");
            }
        }));
    }
    for r in 0..2 {
        let (app, paths) = (app.clone(), paths.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..60 {
                app.stats(&paths[(i * 7 + r) % paths.len()]).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }

    let mut hits = 0;
    for path in &paths {
        let (status, cached) = app.stats(path).await;
        hits += usize::from(status == "HIT");
        assert_same(
            &cached,
            &app.stats_fresh(path).await,
            &format!("{backend:?} {path} ({status})"),
        );
    }
    let (status, _) = app.stats(&paths[0]).await;
    assert_eq!(
        status,
        "HIT",
        "{backend:?}: creates kept the summary cached ({hits} of {} paths answered HIT)",
        paths.len()
    );
    assert!(
        app.metric("analytics_cache_updated_entries_total").await > 100.0,
        "{backend:?}: creates updated entries instead of removing them"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_answers_equal_a_recomputation_after_concurrent_creates_on_redis() {
    check_exact_under_concurrent_creates(Backend::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_answers_equal_a_recomputation_after_concurrent_creates_in_memory() {
    check_exact_under_concurrent_creates(Backend::Memory).await;
}

#[tokio::test]
async fn the_default_dashboard_keeps_answering_hit_while_creates_land_on_today() {
    for backend in Backend::all() {
        let app = spawn_app_on(backend.clone()).await;
        let users: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
        let now = || Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        app.create(users[0], "view", &now(), Some(1.0)).await;
        let defaults = [
            "summary",
            "timeseries?bucket=day",
            "timeseries?bucket=hour",
            "active-users",
            format!("users/{}", users[0]).leak(),
            // A dashboard in another zone: its today is not UTC's.
            "summary?tz=Asia/Kathmandu",
            "timeseries?bucket=hour&tz=Asia/Kolkata",
            "timeseries?bucket=day&tz=America/St_Johns",
            "active-users?tz=Pacific/Chatham",
            format!("users/{}?tz=Australia/Lord_Howe", users[0]).leak(),
        ];
        for path in defaults {
            assert_eq!(app.stats(path).await.0, "MISS", "{backend:?} {path}");
        }
        for i in 0..12 {
            app.create(
                users[i % users.len()],
                ["view", "buy"][i % 2],
                &now(),
                Some(0.5),
            )
            .await;
            for path in defaults {
                let (status, cached) = app.stats(path).await;
                assert_eq!(status, "HIT", "{backend:?} {path} after create {i}");
                assert_same(
                    &cached,
                    &app.stats_fresh(path).await,
                    &format!("{backend:?} {path} {i}"),
                );
            }
        }
        let (_, summary) = app.stats("summary").await;
        assert_eq!(
            (summary["events"].as_i64(), summary["unique_users"].as_i64()),
            (Some(13), Some(4))
        );
    }
}

#[tokio::test]
async fn a_create_an_answer_already_saw_is_not_counted_twice() {
    for backend in Backend::all() {
        let app = Arc::new(spawn_app_on(backend.clone()).await);
        let path = format!("summary?{RANGE}");
        let (hook, committed, release) = pause_once();
        app.state.cache.set_before_update_hook(Some(hook));
        // A create commits, then stalls before updating the cache...
        let writer = {
            let app = app.clone();
            tokio::spawn(async move {
                app.create(Uuid::new_v4(), "view", "2026-10-15T12:00:00Z", Some(2.0))
                    .await
            })
        };
        committed.await.expect("the create committed");
        // ...a reader computes an answer that already includes it and stores it...
        let (status, body) = app.stats(&path).await;
        assert_eq!(
            (status.as_str(), body["events"].as_i64()),
            ("MISS", Some(1))
        );
        // ...and then the create's update reaches the cache: it must leave that entry alone.
        release.send(()).expect("release");
        writer.await.expect("writer");
        let (status, body) = app.stats(&path).await;
        assert_eq!(
            (
                status.as_str(),
                body["events"].as_i64(),
                body["value_sum"].as_f64()
            ),
            ("HIT", Some(1), Some(2.0)),
            "{backend:?}: the create was applied to an answer that had seen it"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_create_whose_cache_update_times_out_leaves_no_wrong_entry() {
    let redis = Arc::new(OwnRedis::start().await);
    let app = spawn_app_with(AppOptions {
        backend: Backend::Redis(redis.url()),
        cache_op_timeout: Duration::from_millis(50),
        ..AppOptions::default()
    })
    .await;
    let path = format!("summary?{RANGE}");
    app.create(Uuid::new_v4(), "view", "2026-10-10T12:00:00Z", None)
        .await;
    assert_eq!(app.stats(&path).await.0, "MISS");
    assert_eq!(app.stats(&path).await.0, "HIT");
    // Redis stops answering right after the next create commits: its update times out.
    let paused = redis.clone();
    let hook: WriteHook = Arc::new(move || {
        paused.pause(Duration::from_millis(400));
        Box::pin(async {})
    });
    app.state.cache.set_before_update_hook(Some(hook));
    app.create(Uuid::new_v4(), "view", "2026-10-11T12:00:00Z", None)
        .await;
    app.state.cache.set_before_update_hook(None);
    // Whatever is answered meanwhile includes the create, and so does everything after.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = app.stats(&path).await;
        assert_eq!(
            body["events"].as_i64(),
            Some(2),
            "{status}: the create is missing"
        );
        if status == "HIT" || tokio::time::Instant::now() > deadline {
            assert_eq!(status, "HIT", "the cache came back");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sibling = app.spawn_sibling().await;
    assert_eq!(sibling.stats(&path).await.1["events"].as_i64(), Some(2));
}

#[tokio::test]
async fn index_walks_keep_only_entries_alive() {
    // Entries that expired are dropped from the index by the next write that walks it, so a
    // write's work follows the entries alive, not every range ever asked for.
    let app = spawn_app_on(Backend::redis()).await;
    let client = redis::Client::open(crate::helpers::redis_url()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    for hour in 0..20 {
        app.stats(&format!(
            "summary?from=2026-10-15T{hour:02}:00:00Z&to=2026-10-15T{:02}:30:00Z",
            hour
        ))
        .await;
    }
    let index = format!("{{{}}}:ix:d:2026-10-15", app.prefix);
    let expiry = format!("{index}:exp");
    let fields: usize = redis::cmd("HLEN")
        .arg(&index)
        .query_async(&mut conn)
        .await
        .expect("hlen");
    assert_eq!(fields, 20);
    // Make fifteen of them expire now, as their TTL would.
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(&expiry)
        .arg(0)
        .arg(14)
        .query_async(&mut conn)
        .await
        .expect("zrange");
    for member in &members {
        let _: () = redis::cmd("ZADD")
            .arg(&expiry)
            .arg(0)
            .arg(member)
            .query_async(&mut conn)
            .await
            .expect("zadd");
        let _: () = redis::cmd("DEL")
            .arg(member)
            .query_async(&mut conn)
            .await
            .expect("del");
    }
    app.create(Uuid::new_v4(), "view", "2026-10-15T23:50:00Z", None)
        .await;
    let fields: usize = redis::cmd("HLEN")
        .arg(&index)
        .query_async(&mut conn)
        .await
        .expect("hlen");
    assert_eq!(fields, 5, "expired entries left the index");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_first_creates_of_one_user_in_a_range_count_the_user_once() {
    for backend in Backend::all() {
        let app = Arc::new(spawn_app_on(backend.clone()).await);
        let path = format!("summary?{RANGE}");
        assert_eq!(app.stats(&path).await.1["unique_users"].as_i64(), Some(0));
        let user = Uuid::new_v4();
        // The user is known (so nothing else makes the two creates wait for each other), but
        // not active in the range.
        app.create(user, "view", "2026-08-01T10:00:00Z", None).await;
        // One writer has inserted the user's first activity of the range, not committed yet...
        let mut tx = app.pool.begin().await.expect("begin");
        let first = NewActivity::parse(
            &json!({"user_id": user, "action": "view", "occurred_at": "2026-10-03T10:00:00Z"}),
            "",
            WriteWindow::at(Utc::now()),
        )
        .expect("valid");
        app.state
            .partitions
            .ensure_for(&app.pool, [first.occurred_at])
            .await
            .expect("partition");
        let (_, write, _) = insert_activity(&mut tx, &first).await.expect("insert");
        // ...when another create of the same user arrives: it must wait for the first to commit
        // before it decides whether the user is new.
        let second = {
            let app = app.clone();
            tokio::spawn(async move { app.create(user, "buy", "2026-10-20T10:00:00Z", None).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        tx.commit().await.expect("commit");
        app.state.cache.after_commit(Committed::Create(write)).await;
        second.await.expect("second create");
        let (status, body) = app.stats(&path).await;
        assert_eq!(
            (
                status.as_str(),
                body["events"].as_i64(),
                body["unique_users"].as_i64()
            ),
            ("HIT", Some(2), Some(1)),
            "{backend:?}: one user counted as two"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_whose_process_dies_before_its_cache_update_is_swept_into_an_invalidation() {
    for backend in Backend::all() {
        let app = Arc::new(spawn_app_on(backend.clone()).await);
        app.state.pending.set_orphan_age(Duration::from_millis(300));
        let path = format!("summary?{RANGE}");
        assert_eq!(app.stats(&path).await.1["events"].as_i64(), Some(0));
        // The create commits, and its cache update never comes: as if the process had died.
        let dead: WriteHook = Arc::new(|| Box::pin(std::future::pending::<()>()));
        app.state.cache.set_before_update_hook(Some(dead));
        let writer = {
            let app = app.clone();
            tokio::spawn(async move {
                app.create(Uuid::new_v4(), "view", "2026-10-15T12:00:00Z", None)
                    .await
            })
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while sqlx::query_scalar::<_, i64>("select count(*) from activities")
            .fetch_one(&app.pool)
            .await
            .expect("count")
            == 0
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the create never committed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        app.state.cache.set_before_update_hook(None);
        // The cached answer without the write is found and removed by the sweep.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while app.stats(&path).await.1["events"].as_i64() != Some(1) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{backend:?}: the committed write never reached the cached answer"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        writer.abort();
    }
}
