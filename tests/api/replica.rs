//! `DATABASE_REPLICA_URL` against a real hot standby of a private primary
//! (`scripts/pg-standby.sh`): reads use the replica when it has every acknowledged write, go to
//! the primary while its replay is paused (and no read ever misses a write), and go on from the
//! primary when the replica dies.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use uuid::Uuid;

use crate::helpers::{
    AppOptions, Backend, OwnStandby, TestApp, TestDatabase, metric_value, spawn_app_with,
};

const RANGE: &str = "from=2026-10-01&to=2026-11-01";

/// `analytics_db_reads_total` for one target and reason.
async fn reads(app: &TestApp, target: &str, reason: &str) -> f64 {
    metric_value(
        &app.metrics().await,
        &format!("analytics_db_reads_total{{target=\"{target}\",reason=\"{reason}\"}}"),
    )
}

/// Reads that must reach a database (a statistic recomputed, a list, a get) until one is served
/// by the replica, or `limit` passes; answers whether one was.
async fn until_the_replica_serves(app: &TestApp, id: &str, limit: Duration) -> bool {
    let started = Instant::now();
    let before = reads(app, "replica", "replayed").await;
    while started.elapsed() < limit {
        app.stats_fresh(&format!("summary?{RANGE}")).await;
        assert_eq!(app.list("limit=5").await.status(), StatusCode::OK);
        assert_eq!(app.get_activity(id).await.status(), StatusCode::OK);
        if reads(app, "replica", "replayed").await > before {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A writer and readers at once for `length`: every statistic counts at least the creates
/// acknowledged before it was asked for, and the last acknowledged create can be fetched (a
/// replica without it would answer 404); returns the reads made.
async fn check_read_your_writes(app: &Arc<TestApp>, length: Duration) -> u64 {
    let base = app.stats_fresh(&format!("summary?{RANGE}")).await["events"]
        .as_i64()
        .expect("events");
    let acked = Arc::new(AtomicU64::new(base as u64));
    let last = Arc::new(std::sync::Mutex::new(None::<String>));
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reads_made = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    {
        let (app, acked, last, stop) = (app.clone(), acked.clone(), last.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let at = format!("2026-10-{:02}T12:00:00Z", 1 + i % 28);
                let created = app.create(Uuid::new_v4(), "view", &at, None).await;
                let id = created["id"].as_str().map(str::to_owned);
                *last.lock().expect("last") = id;
                acked.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        }));
    }
    for reader in 0..3 {
        let (app, acked, last, stop, failures, reads_made) = (
            app.clone(),
            acked.clone(),
            last.clone(),
            stop.clone(),
            failures.clone(),
            reads_made.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let path = format!("summary?{RANGE}");
            while !stop.load(Ordering::Relaxed) {
                let floor = acked.load(Ordering::SeqCst) as i64;
                let id = last.lock().expect("last").clone();
                let failure = match reader {
                    // The cached path (a miss after each create's update or invalidation)...
                    0 => {
                        let seen = app.stats(&path).await.1["events"].as_i64().unwrap_or(-1);
                        (seen < floor).then(|| format!("cached: {seen} after {floor} acknowledged"))
                    }
                    // ...a recomputation every time...
                    1 => {
                        let seen = app.stats_fresh(&path).await["events"]
                            .as_i64()
                            .unwrap_or(-1);
                        (seen < floor).then(|| format!("fresh: {seen} after {floor} acknowledged"))
                    }
                    // ...and the last acknowledged create, by id.
                    _ => match id {
                        None => None,
                        Some(id) => {
                            let status = app.get_activity(&id).await.status();
                            (status != StatusCode::OK).then(|| format!("get {id}: {status}"))
                        }
                    },
                };
                reads_made.fetch_add(1, Ordering::Relaxed);
                if let Some(failure) = failure {
                    failures.lock().expect("failures").push(failure);
                }
            }
        }));
    }
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("task");
    }
    let failures = failures.lock().expect("failures");
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    reads_made.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_use_the_replica_only_when_it_has_every_acknowledged_write() {
    let pg = OwnStandby::start();
    let name = format!("aa_replica_{}", Uuid::new_v4().simple());
    {
        let mut admin =
            <sqlx::PgConnection as sqlx::Connection>::connect(&pg.primary_url("postgres"))
                .await
                .expect("connect to the private primary");
        sqlx::Executor::execute(
            &mut admin,
            sqlx::AssertSqlSafe(format!("create database {name}")),
        )
        .await
        .expect("create database");
        let pool = sqlx::PgPool::connect(&pg.primary_url(&name))
            .await
            .expect("pool");
        activity_analytics::db::migrate(&pool)
            .await
            .expect("migrate");
    }
    let database = Arc::new(TestDatabase {
        name: name.clone(),
        url: pg.primary_url(&name),
    });
    let app = Arc::new(
        spawn_app_with(AppOptions {
            backend: Backend::redis(),
            database: Some(database),
            database_replica_url: Some(pg.standby_url(&name)),
            ..AppOptions::default()
        })
        .await,
    );
    app.ensure_partitions("2026-10-01T00:00:00Z", "2026-10-31T00:00:00Z")
        .await;
    let created = app
        .create(Uuid::new_v4(), "view", "2026-10-02T12:00:00Z", None)
        .await;
    let id = created["id"].as_str().expect("id").to_owned();

    // A replica that keeps up serves the reads.
    assert!(
        until_the_replica_serves(&app, &id, Duration::from_secs(10)).await,
        "the replica never served a read"
    );

    // Replay paused: every read still reflects every acknowledged write, from the primary.
    pg.on_standby("select pg_wal_replay_pause()").await;
    let lagging = reads(&app, "primary", "lagging").await;
    let made = check_read_your_writes(&app, Duration::from_secs(3)).await;
    assert!(made > 30, "only {made} reads ran");
    assert!(
        reads(&app, "primary", "lagging").await > lagging,
        "reads went to the primary because the replica lagged"
    );

    // Replay resumed: the replica catches up and serves again.
    pg.on_standby("select pg_wal_replay_resume()").await;
    assert!(
        until_the_replica_serves(&app, &id, Duration::from_secs(10)).await,
        "the replica did not serve again after catching up"
    );

    // The replica dies: no read fails, and none misses a write.
    pg.stop_standby();
    let made = check_read_your_writes(&app, Duration::from_secs(3)).await;
    assert!(made > 30, "only {made} reads ran");
    let away = reads(&app, "primary", "unavailable").await + reads(&app, "primary", "failed").await;
    assert!(away > 0.0, "reads fell back to the primary");
}
