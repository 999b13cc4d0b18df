//! The cache on a real Redis Cluster of its own: a deployment's keys spread over every master,
//! a master killed mid-run, a slot resharded under load. The promise tests of `cache`, `live`,
//! `faults` and `erasure` also run on a shared cluster (`scripts/cluster-tests.sh`, in
//! `make test`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::helpers::{AppOptions, Backend, OwnCluster, TestApp, header, spawn_app_with};

/// Summary ranges that all contain October, where the traffic writes: every write changes
/// every one of them.
fn ranges(count: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|i| {
            let from = chrono::NaiveDate::from_ymd_opt(2026, 8, 1).expect("date")
                + chrono::Duration::days(i as i64);
            (
                format!("{from}T00:00:00Z"),
                "2026-11-01T00:00:00Z".to_owned(),
            )
        })
        .collect()
}

fn path((from, to): &(String, String)) -> String {
    format!("summary?from={from}&to={to}")
}

/// The glob matching a summary range's entry key in any shard.
fn entry_pattern((from, to): &(String, String)) -> String {
    let us = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .expect("instant")
            .timestamp_micros()
    };
    format!("*:e:summary:from={}&to={}&action=", us(from), us(to))
}

/// Which master holds each range's entry (by port), `None` where none does.
fn homes(cluster: &OwnCluster, ranges: &[(String, String)]) -> Vec<Option<u16>> {
    let masters = cluster.masters();
    ranges
        .iter()
        .map(|r| {
            let pattern = entry_pattern(r);
            masters
                .iter()
                .copied()
                .find(|m| !OwnCluster::keys(*m, &pattern).is_empty())
        })
        .collect()
}

async fn app_on(cluster: &OwnCluster, op_timeout: Duration) -> Arc<TestApp> {
    Arc::new(
        spawn_app_with(AppOptions {
            backend: Backend::Cluster(cluster.urls.clone()),
            cache_op_timeout: op_timeout,
            ..AppOptions::default()
        })
        .await,
    )
}

/// A cluster of `masters` (each with `replicas`), an app on it, and `count` summary ranges
/// cached: the ranges, their paths, and which master holds each one's entry.
async fn cached_on_a_cluster(
    masters: u32,
    replicas: u32,
    op_timeout: Duration,
    count: usize,
) -> (
    OwnCluster,
    Arc<TestApp>,
    Vec<(String, String)>,
    Vec<String>,
    Vec<Option<u16>>,
) {
    let cluster = OwnCluster::start(masters, replicas);
    let app = app_on(&cluster, op_timeout).await;
    let ranges = ranges(count);
    let paths: Vec<String> = ranges.iter().map(path).collect();
    warm(&app, &paths).await;
    let homes = homes(&cluster, &ranges);
    (cluster, app, ranges, paths, homes)
}

async fn warm(app: &TestApp, paths: &[String]) {
    for p in paths {
        app.stats(p).await;
        assert_eq!(app.stats(p).await.0, "HIT", "{p} is cached");
    }
}

/// One read: which path, its status and `X-Cache`, the events it counted, how many creates had
/// been acknowledged before it was sent, and when it was sent.
struct Read {
    path: usize,
    status: StatusCode,
    cache: String,
    events: i64,
    floor: i64,
    at: Instant,
}

/// Creates landing in October and readers of every path, until stopped.
struct Traffic {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    reads: Arc<Mutex<Vec<Read>>>,
    failed_writes: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    fn start(app: &Arc<TestApp>, paths: &[String]) -> Self {
        let traffic = Self {
            stop: Arc::default(),
            acked: Arc::default(),
            reads: Arc::default(),
            failed_writes: Arc::default(),
            tasks: Vec::new(),
        };
        let mut tasks = Vec::new();
        {
            let (app, stop, acked, failed) = (
                app.clone(),
                traffic.stop.clone(),
                traffic.acked.clone(),
                traffic.failed_writes.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let body = json!({
                        "user_id": Uuid::new_v4(),
                        "action": "view",
                        "occurred_at": format!("2026-10-{:02}T10:00:00Z", 1 + i % 28),
                    });
                    let response = app.post_activity(&body).await;
                    if response.status() == StatusCode::CREATED {
                        acked.fetch_add(1, Ordering::SeqCst);
                    } else {
                        failed
                            .lock()
                            .await
                            .push(format!("create: {}", response.status()));
                    }
                    i += 1;
                }
            }));
        }
        for reader in 0..2 {
            let (app, stop, acked, reads) = (
                app.clone(),
                traffic.stop.clone(),
                traffic.acked.clone(),
                traffic.reads.clone(),
            );
            let paths = paths.to_vec();
            tasks.push(tokio::spawn(async move {
                let mut i = reader * paths.len() / 2;
                while !stop.load(Ordering::Relaxed) {
                    let path = i % paths.len();
                    let floor = acked.load(Ordering::SeqCst) as i64;
                    let at = Instant::now();
                    let response = app.stats_response(&paths[path]).await;
                    let (status, cache) = (response.status(), header(&response, "x-cache"));
                    let events = match response.json::<serde_json::Value>().await {
                        Ok(body) => body["events"].as_i64().unwrap_or(-1),
                        Err(_) => -1,
                    };
                    reads.lock().await.push(Read {
                        path,
                        status,
                        cache,
                        events,
                        floor,
                        at,
                    });
                    i += 1;
                }
            }));
        }
        Self { tasks, ..traffic }
    }

    /// Stops the traffic; answers every read and every failed write.
    async fn stop(self) -> (Vec<Read>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("traffic task");
        }
        let reads = std::mem::take(&mut *self.reads.lock().await);
        let failed = std::mem::take(&mut *self.failed_writes.lock().await);
        (reads, failed)
    }
}

/// No request failed and no read counted fewer creates than were acknowledged before it.
fn assert_never_failed_nor_stale(reads: &[Read], failed_writes: &[String], paths: &[String]) {
    assert!(failed_writes.is_empty(), "failed writes: {failed_writes:?}");
    let failed: Vec<String> = reads
        .iter()
        .filter(|r| r.status != StatusCode::OK)
        .map(|r| format!("{} {}", paths[r.path], r.status))
        .collect();
    assert!(failed.is_empty(), "failed reads: {failed:?}");
    let stale: Vec<String> = reads
        .iter()
        .filter(|r| r.events < r.floor)
        .map(|r| {
            format!(
                "{} ({}) counted {} after {} acknowledged",
                paths[r.path], r.cache, r.events, r.floor
            )
        })
        .collect();
    assert!(stale.is_empty(), "stale reads: {stale:?}");
}

/// Once writes have stopped, every cached answer equals a recomputation and the cache serves
/// again.
async fn assert_cached_answers_are_current(app: &TestApp, paths: &[String]) {
    for p in paths {
        // A shard with remembered invalidations bypasses until its retry lands (200 ms).
        let mut cache = String::new();
        for _ in 0..50 {
            cache = app.stats(p).await.0;
            if cache != "BYPASS" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_ne!(cache, "BYPASS", "{p}: the cache never came back");
        let (cache, cached) = app.stats(p).await;
        assert_eq!(cache, "HIT", "{p}: served from the cache again");
        assert_eq!(
            cached,
            app.stats_fresh(p).await,
            "{p}: cached answer is current"
        );
    }
}

#[tokio::test]
async fn a_deployment_spreads_over_every_master_and_is_cleared_on_all_of_them() {
    let cluster = OwnCluster::start(3, 0);
    let app = app_on(&cluster, Duration::from_millis(1000)).await;
    let ranges = ranges(60);
    let paths: Vec<String> = ranges.iter().map(path).collect();
    warm(&app, &paths).await;

    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    let entries = format!("{{{}.*}}:e:*", app.prefix);
    let per_master: Vec<Vec<String>> = masters
        .iter()
        .map(|m| OwnCluster::keys(*m, &entries))
        .collect();
    let counts: Vec<usize> = per_master.iter().map(Vec::len).collect();
    assert_eq!(counts.iter().sum::<usize>(), 60, "every entry stored once");
    // 12 shards, four to a master: about 20 entries each. A deployment in one slot would put
    // all 60 on one master.
    assert!(
        counts.iter().all(|c| *c >= 8),
        "entries spread over every master: {counts:?}"
    );
    let slots: std::collections::BTreeSet<u16> = per_master
        .iter()
        .flatten()
        .map(|k| cluster.slot_of(k))
        .collect();
    assert!(
        slots.len() > 6 && slots.len() <= 12,
        "entries in the shards' slots: {slots:?}"
    );

    // A key beside the deployment's, in a slot of its own, survives the clear.
    let outside = format!("{}-neighbour:keep", app.prefix);
    let home = cluster
        .master_of(cluster.slot_of(&outside))
        .expect("served");
    let _: () = redis::cmd("SET")
        .arg(&outside)
        .arg("1")
        .query(&mut OwnCluster::node(home))
        .expect("set");
    let response = app
        .send(Method::DELETE, "/api/v1/cache", &app.admin_token, &[])
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for m in &masters {
        assert_eq!(
            OwnCluster::keys(*m, &entries),
            Vec::<String>::new(),
            "master {m} cleared"
        );
    }
    let kept: Option<String> = redis::cmd("GET")
        .arg(&outside)
        .query(&mut OwnCluster::node(home))
        .expect("get");
    assert_eq!(kept.as_deref(), Some("1"));
    assert_eq!(app.stats(&paths[0]).await.0, "MISS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_master_costs_bypass_only_for_its_shards_and_no_stale_answer_follows() {
    let (cluster, app, ranges, paths, homes) =
        cached_on_a_cluster(3, 1, Duration::from_millis(250), 24).await;
    assert!(
        homes.iter().all(Option::is_some),
        "every entry stored: {homes:?}"
    );
    let victim = homes[0].expect("home");
    let victim_slot = cluster.slot_of(&OwnCluster::keys(victim, &entry_pattern(&ranges[0]))[0]);
    let elsewhere = homes.iter().filter(|h| **h != Some(victim)).count();
    assert!(elsewhere > 0, "some entries live on the other masters");

    let traffic = Traffic::start(&app, &paths);
    tokio::time::sleep(Duration::from_millis(800)).await;
    cluster.kill(victim);
    let killed = Instant::now();
    let promoted = cluster
        .wait_for_failover(victim_slot, victim, Duration::from_secs(30))
        .await;
    let failed_over = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (reads, failed_writes) = traffic.stop().await;

    assert_never_failed_nor_stale(&reads, &failed_writes, &paths);
    // While the victim was gone, only its shards went without the cache.
    let outage: Vec<&Read> = reads
        .iter()
        .filter(|r| r.at >= killed && r.at < failed_over)
        .collect();
    let bypassed_elsewhere: Vec<&String> = outage
        .iter()
        .filter(|r| r.cache == "BYPASS" && homes[r.path] != Some(victim))
        .map(|r| &paths[r.path])
        .collect();
    assert!(
        bypassed_elsewhere.is_empty(),
        "entries on live masters bypassed during the outage: {bypassed_elsewhere:?}"
    );
    let served_elsewhere = outage
        .iter()
        .filter(|r| r.cache == "HIT" && homes[r.path] != Some(victim))
        .count();
    assert!(
        served_elsewhere > 0,
        "the live masters kept serving HITs during the outage ({} reads in it)",
        outage.len()
    );
    assert_ne!(promoted, victim);
    assert_cached_answers_are_current(&app, &paths).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moved_and_ask_redirections_during_resharding_are_followed() {
    let (cluster, app, ranges, paths, homes) =
        cached_on_a_cluster(3, 0, Duration::from_millis(1000), 24).await;
    let source = homes[0].expect("stored");
    let slot = cluster.slot_of(&OwnCluster::keys(source, &entry_pattern(&ranges[0]))[0]);
    let target = cluster
        .masters()
        .into_iter()
        .find(|m| *m != source)
        .expect("another master");
    let (source_id, target_id) = (OwnCluster::node_id(source), OwnCluster::node_id(target));
    let moved: Vec<usize> = (0..paths.len())
        .filter(|i| homes[*i] == Some(source))
        .filter(|i| {
            let keys = OwnCluster::keys(source, &entry_pattern(&ranges[*i]));
            keys.first().is_some_and(|k| cluster.slot_of(k) == slot)
        })
        .collect();

    let traffic = Traffic::start(&app, &paths);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let setslot = |port: u16, args: &[&str]| {
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg(args)
            .query(&mut OwnCluster::node(port))
            .expect("setslot");
    };
    setslot(target, &["IMPORTING", &source_id]);
    setslot(source, &["MIGRATING", &target_id]);
    // Half the slot's keys first: for a while some of a script's keys are here and some there
    // (ASK, TRYAGAIN), and traffic runs through it.
    let migrate = |count: usize| -> usize {
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(count)
            .query(&mut OwnCluster::node(source))
            .expect("getkeysinslot");
        if !keys.is_empty() {
            let _: () = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(target)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .query(&mut OwnCluster::node(source))
                .expect("migrate");
        }
        keys.len()
    };
    let total: usize = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(slot)
        .query(&mut OwnCluster::node(source))
        .expect("countkeysinslot");
    assert!(total > 0, "the slot holds keys");
    migrate(total.div_ceil(2));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    while migrate(100) > 0 {}
    for port in cluster.masters() {
        setslot(port, &["NODE", &target_id]);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (reads, failed_writes) = traffic.stop().await;

    assert_never_failed_nor_stale(&reads, &failed_writes, &paths);
    assert_eq!(
        OwnCluster::keys(source, &format!("{{{}.*}}:*", app.prefix))
            .iter()
            .filter(|k| cluster.slot_of(k) == slot)
            .count(),
        0,
        "the slot left its old master"
    );
    assert_eq!(cluster.master_of(slot), Some(target));
    assert_cached_answers_are_current(&app, &paths).await;
    let on_target = homes_after(&cluster, &ranges, &moved, target);
    assert!(
        !moved.is_empty() && on_target,
        "the moved shard's entries are served from the new master"
    );
}

/// Do the entries of `moved` ranges now live on `target`?
fn homes_after(
    cluster: &OwnCluster,
    ranges: &[(String, String)],
    moved: &[usize],
    target: u16,
) -> bool {
    let now = homes(cluster, ranges);
    moved.iter().all(|i| now[*i] == Some(target))
}
