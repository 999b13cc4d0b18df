//! The cache is never wrong and never down: concurrency, the stale-set race, single flight,
//! Redis and Postgres faults, and two instances sharing one database and Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use activity_analytics::cache::StoreHook;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::{Mutex, oneshot};
use uuid::Uuid;

use crate::helpers::{
    AppOptions, Backend, FaultyProxy, OwnRedis, TestApp, TestDatabase, assert_problem, header,
    pause_once, postgres_address, spawn_app, spawn_app_on, spawn_app_with,
};

const RANGE: &str = "from=2026-10-01&to=2026-11-01";

async fn events(app: &TestApp, path: &str) -> (String, i64) {
    let (cache, body) = app.stats(path).await;
    (cache, body["events"].as_i64().expect("events"))
}

/// Several writers and readers at once: every reader notes how many writes had been
/// acknowledged before it sent its request, and its answer may never count fewer.
async fn check_read_your_writes(backend: Backend) {
    let app = Arc::new(spawn_app_on(backend.clone()).await);
    let user = Uuid::new_v4();
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let violations = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..3 {
        let (app, acked, stop) = (app.clone(), acked.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let at = format!("2026-10-{:02}T{:02}:00:00Z", 1 + (i * 7 + w) % 28, i % 24);
                app.create(user, "view", &at, None).await;
                acked.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        }));
    }
    let paths = [
        format!("summary?{RANGE}"),
        format!("users/{user}?{RANGE}"),
        format!("summary?{RANGE}&action=view"),
    ];
    for r in 0..6 {
        let (app, acked, stop, violations, reads) = (
            app.clone(),
            acked.clone(),
            stop.clone(),
            violations.clone(),
            reads.clone(),
        );
        let path = paths[r % paths.len()].clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let floor = acked.load(Ordering::SeqCst) as i64;
                let (_, seen) = events(&app, &path).await;
                reads.fetch_add(1, Ordering::Relaxed);
                if seen < floor {
                    violations.fetch_add(1, Ordering::Relaxed);
                    eprintln!("{path}: saw {seen} events after {floor} acknowledged writes");
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("task");
    }
    let (writes, reads) = (acked.load(Ordering::SeqCst), reads.load(Ordering::Relaxed));
    assert!(
        writes + reads >= 1000,
        "{backend:?}: only {writes} writes and {reads} reads ran"
    );
    assert_eq!(
        violations.load(Ordering::Relaxed),
        0,
        "{backend:?}: stale reads over {reads} reads"
    );
    let hits = app.state.cache.stats().hits;
    assert!(
        hits > 0,
        "{backend:?}: the cache served nothing, so the check proved little"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_readers_never_see_fewer_writes_than_were_acknowledged_with_redis() {
    check_read_your_writes(Backend::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_readers_never_see_fewer_writes_than_were_acknowledged_in_memory() {
    check_read_your_writes(Backend::Memory).await;
}

/// Starts a reader of `path` that computes its answer, then stalls before storing it until the
/// returned sender releases it.
async fn stalled_reader(
    app: &Arc<TestApp>,
    path: &str,
) -> (tokio::task::JoinHandle<(String, i64)>, oneshot::Sender<()>) {
    let (hook, computed, release) = pause_once();
    app.state.cache.set_before_store_hook(Some(hook));
    let reader = {
        let (app, path) = (app.clone(), path.to_owned());
        tokio::spawn(async move { events(&app, &path).await })
    };
    computed.await.expect("the reader computed");
    (reader, release)
}

#[tokio::test]
async fn a_result_computed_before_a_create_is_stored_only_with_the_create_applied() {
    for backend in Backend::all() {
        let app = Arc::new(spawn_app_on(backend.clone()).await);
        let path = format!("summary?{RANGE}");
        // A reader misses and computes 0 events, then stalls before storing...
        let (reader, release) = stalled_reader(&app, &path).await;
        // ...while a create commits and is logged...
        app.create(Uuid::new_v4(), "view", "2026-10-15T12:00:00Z", None)
            .await;
        // ...and only then does the reader store: it must first catch up with the create.
        release.send(()).expect("release");
        let (status, answered) = reader.await.expect("reader");
        assert_eq!(status, "MISS", "{backend:?}");
        assert_eq!(
            answered, 1,
            "{backend:?}: the stored answer caught up with the create"
        );
        assert_eq!(
            events(&app, &path).await,
            ("HIT".to_owned(), 1),
            "{backend:?}: the old answer was stored over the create"
        );
    }
}

#[tokio::test]
async fn a_result_computed_before_a_delete_is_never_stored_over_its_invalidation() {
    for backend in Backend::all() {
        let app = Arc::new(spawn_app_on(backend.clone()).await);
        let path = format!("summary?{RANGE}");
        let created = app
            .create(Uuid::new_v4(), "view", "2026-10-15T12:00:00Z", None)
            .await;
        // A reader misses and computes 1 event, then stalls before storing...
        let (reader, release) = stalled_reader(&app, &path).await;
        // ...while a delete commits and invalidates...
        let id = created["id"].as_str().expect("id");
        assert_eq!(app.delete(id).await.status(), StatusCode::NO_CONTENT);
        // ...and only then does the reader try to store its old answer.
        release.send(()).expect("release");
        let (status, stale) = reader.await.expect("reader");
        assert_eq!(
            (status.as_str(), stale),
            ("MISS", 1),
            "{backend:?}: the racing reader saw the old rows"
        );
        let (status, now) = events(&app, &path).await;
        assert_eq!(
            now, 0,
            "{backend:?}: the old answer was stored over the delete ({status})"
        );
        assert_eq!(
            events(&app, &path).await.0,
            "HIT",
            "{backend:?}: the fresh answer is cached"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_identical_concurrent_misses_run_the_query_once() {
    for backend in Backend::all() {
        let app = Arc::new(spawn_app_on(backend.clone()).await);
        // Hold the first computation open long enough for every request to arrive.
        let hook: StoreHook = Arc::new(|| Box::pin(tokio::time::sleep(Duration::from_millis(300))));
        app.state.cache.set_before_store_hook(Some(hook));
        let series = "analytics_aggregate_duration_seconds_count{endpoint=\"top_users\"}";
        let before = app.metric(series).await;
        let requests: Vec<_> = (0..100)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(async move { app.stats(&format!("top-users?{RANGE}")).await })
            })
            .collect();
        let mut answers = Vec::new();
        for r in requests {
            answers.push(r.await.expect("request").1);
        }
        assert!(
            answers.windows(2).all(|w| w[0] == w[1]),
            "{backend:?}: every caller got the same answer"
        );
        assert_eq!(
            app.metric(series).await - before,
            1.0,
            "{backend:?}: the aggregate ran more than once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_go_on_while_redis_is_down_and_no_stale_answer_follows_its_return() {
    let mut redis = OwnRedis::start().await;
    let app = Arc::new(
        spawn_app_with(AppOptions {
            backend: Backend::Redis(redis.url()),
            cache_op_timeout: Duration::from_millis(50),
            ..AppOptions::default()
        })
        .await,
    );
    let path = format!("summary?{RANGE}");
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let bypasses = Arc::new(AtomicU64::new(0));
    let slowest = Arc::new(Mutex::new(Duration::ZERO));
    let mut tasks = Vec::new();
    {
        let (app, acked, stop) = (app.clone(), acked.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                app.create(
                    Uuid::new_v4(),
                    "view",
                    &format!("2026-10-{:02}T10:00:00Z", 1 + i % 28),
                    None,
                )
                .await;
                acked.fetch_add(1, Ordering::SeqCst);
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    for _ in 0..4 {
        let (app, acked, stop, failures, bypasses, slowest, path) = (
            app.clone(),
            acked.clone(),
            stop.clone(),
            failures.clone(),
            bypasses.clone(),
            slowest.clone(),
            path.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let floor = acked.load(Ordering::SeqCst) as i64;
                let started = Instant::now();
                let response = app.stats_response(&path).await;
                let took = started.elapsed();
                let status = response.status();
                let cache = header(&response, "x-cache");
                let seen = response
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|b| b["events"].as_i64());
                {
                    let mut slowest = slowest.lock().await;
                    *slowest = (*slowest).max(took);
                }
                if cache == "BYPASS" {
                    bypasses.fetch_add(1, Ordering::Relaxed);
                }
                if status != StatusCode::OK || seen.is_none_or(|s| s < floor) {
                    failures.lock().await.push(format!(
                        "{status} {cache} saw {seen:?} after {floor} writes"
                    ));
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.restart().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("task");
    }
    let failures = failures.lock().await;
    assert!(
        failures.is_empty(),
        "{} failed or stale requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        bypasses.load(Ordering::Relaxed) > 0,
        "requests during the outage should say BYPASS"
    );
    let slowest = *slowest.lock().await;
    assert!(
        slowest < Duration::from_secs(2),
        "a request took {slowest:?} while Redis was down"
    );

    // Back to normal: the cache serves again and counts every write.
    let total = acked.load(Ordering::SeqCst) as i64;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (cache, seen) = events(&app, &path).await;
        assert_eq!(seen, total, "after the outage");
        if cache == "HIT" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cache never came back into use ({cache})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_write_whose_invalidation_failed_is_applied_before_the_cache_is_trusted_again() {
    let mut redis = OwnRedis::start().await;
    let app = spawn_app_with(AppOptions {
        backend: Backend::Redis(redis.url()),
        cache_op_timeout: Duration::from_millis(50),
        ..AppOptions::default()
    })
    .await;
    let path = format!("summary?{RANGE}");
    events(&app, &path).await;
    assert_eq!(events(&app, &path).await, ("HIT".into(), 0));
    // Freeze Redis (it keeps its data) while a write happens: the invalidation cannot land.
    redis.pause(Duration::from_millis(1500));
    app.create(Uuid::new_v4(), "view", "2026-10-15T12:00:00Z", None)
        .await;
    assert_eq!(
        app.state.cache.stats().pending_invalidations,
        1,
        "the failed invalidation is remembered"
    );
    let (status, seen) = events(&app, &path).await;
    assert_eq!(
        (status.as_str(), seen),
        ("BYPASS", 1),
        "while it is pending, the cache is not trusted"
    );
    // Once Redis answers, the remembered invalidation goes first; the old entry never returns.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, seen) = events(&app, &path).await;
        assert_eq!(seen, 1, "stale answer ({status}) after Redis came back");
        if status == "HIT" {
            break;
        }
        assert!(Instant::now() < deadline, "cache not in use again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.state.cache.stats().pending_invalidations, 0);
    redis.kill();
}

#[tokio::test]
async fn a_write_through_one_instance_is_read_through_another() {
    let first = spawn_app().await;
    let second = first.spawn_sibling().await;
    let user = Uuid::new_v4();
    for i in 1..=5 {
        for app in [&first, &second] {
            app.stats(&format!("summary?{RANGE}")).await;
            app.stats(&format!("users/{user}?{RANGE}")).await;
        }
        let writer = if i % 2 == 0 { &first } else { &second };
        let reader = if i % 2 == 0 { &second } else { &first };
        writer
            .create(user, "view", &format!("2026-10-{:02}T10:00:00Z", i), None)
            .await;
        assert_eq!(
            events(reader, &format!("summary?{RANGE}")).await.1,
            i,
            "summary after write {i}"
        );
        assert_eq!(
            events(reader, &format!("users/{user}?{RANGE}")).await.1,
            i,
            "profile after write {i}"
        );
    }
}

#[tokio::test]
async fn with_the_database_down_requests_get_503_and_service_resumes_without_a_restart() {
    let database = TestDatabase::create().await;
    let proxy = FaultyProxy::start(&postgres_address()).await;
    let app = spawn_app_with(AppOptions {
        database: Some(database.clone()),
        database_url: Some(proxy.url_for(&database.url)),
        ..AppOptions::default()
    })
    .await;
    app.create(Uuid::new_v4(), "view", "2026-10-15T12:00:00Z", None)
        .await;

    proxy.set_up(false);
    // Let the key cache expire so authentication must reach the database too.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for case in ["list", "create", "stats"] {
        let started = Instant::now();
        let response = match case {
            "list" => app.list("limit=5").await,
            "create" => {
                app.post_activity(&json!({"user_id": Uuid::new_v4(), "action": "view"}))
                    .await
            }
            _ => {
                app.stats_response("summary?from=2026-09-01&to=2026-09-02")
                    .await
            }
        };
        assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, case).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{case} took {:?}",
            started.elapsed()
        );
    }
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("send");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let healthy = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("send");
    assert_eq!(healthy.status(), StatusCode::OK, "the process is alive");

    proxy.set_up(true);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = app.list("limit=5").await;
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after the database returned",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .expect("send")
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn another_instance_reflects_a_write_whose_invalidation_failed_within_the_documented_bound() {
    let redis = OwnRedis::start().await;
    let options = AppOptions {
        backend: Backend::Redis(redis.url()),
        cache_op_timeout: Duration::from_millis(50),
        ..AppOptions::default()
    };
    let writer = spawn_app_with(options).await;
    let reader = writer.spawn_sibling().await;
    let path = format!("summary?{RANGE}");
    events(&reader, &path).await;
    assert_eq!(events(&reader, &path).await, ("HIT".into(), 0));

    // Redis stops answering everyone (keeping its data) while the writer writes.
    redis.pause(Duration::from_millis(800));
    let paused_at = Instant::now();
    writer
        .create(Uuid::new_v4(), "view", "2026-10-15T12:00:00Z", None)
        .await;
    assert_eq!(writer.state.cache.stats().pending_invalidations, 1);
    tokio::time::sleep(Duration::from_millis(800).saturating_sub(paused_at.elapsed())).await;

    // docs/cache.md: the other instance may serve the old entry for at most the breaker's
    // cool-down plus one retry interval after Redis answers again.
    let back = Instant::now();
    loop {
        let (_, seen) = events(&reader, &path).await;
        if seen == 1 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_millis(2500),
            "still stale {:?} after Redis returned",
            back.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
