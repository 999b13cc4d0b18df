//! Nothing a client sends, and nothing the database or Redis does, breaks the service for
//! everyone: every accepted write can be read back and aggregated by every endpoint, rows stored
//! before today's rules do not break reads, an exhausted database sheds load with 503 while cached
//! answers go on, and HTTP answers HEAD and protects its pages.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    AppOptions, Backend, OwnRedis, TestApp, header, spawn_app, spawn_app_with, try_spawn_app_with,
};

const RANGE: &str = "from=2026-10-01&to=2026-11-01";

/// Every read endpoint that can show `user`'s activities in October 2026, in the zone-free forms
/// the contract has today.
fn reads(user: Uuid, id: &str) -> Vec<String> {
    let mut paths = vec![
        format!("/api/v1/activities/{id}"),
        format!("/api/v1/activities?user_id={user}"),
        "/api/v1/activities?limit=1000".to_owned(),
        format!("/api/v1/stats/summary?{RANGE}"),
        format!("/api/v1/stats/top-users?{RANGE}&limit=100"),
        format!("/api/v1/stats/users/{user}?{RANGE}"),
        "/api/v1/stats/active-users?date=2026-10-15".to_owned(),
        "/api/v1/stats/summary?from=2026-10-15T03:00:00Z&to=2026-10-16T21:00:00Z".to_owned(),
    ];
    for bucket in ["hour", "day", "week", "month"] {
        paths.push(format!("/api/v1/stats/timeseries?{RANGE}&bucket={bucket}"));
    }
    paths
}

/// Reads every endpoint, cached and recomputed, and fails on anything but 200 with a finite
/// JSON body.
async fn assert_every_read_answers(app: &TestApp, paths: &[String], case: &str) {
    for path in paths {
        for fresh in [false, true] {
            let headers: &[(&str, &str)] = if fresh {
                &[("Cache-Control", "no-cache")]
            } else {
                &[]
            };
            let response = app.send(Method::GET, path, &app.read_token, headers).await;
            let status = response.status();
            let body = response.text().await.expect("body");
            assert_eq!(status, StatusCode::OK, "{case}: GET {path}: {body}");
            let json: Value = serde_json::from_str(&body).expect("json");
            assert!(
                !has_null_number(&json),
                "{case}: GET {path} has a null number: {body}"
            );
        }
    }
}

/// A sum that overflowed would serialize as null where the schema says number.
fn has_null_number(v: &Value) -> bool {
    match v {
        Value::Object(map) => map.iter().any(|(k, v)| {
            (matches!(
                k.as_str(),
                "value_sum" | "events" | "unique_users" | "dau" | "mau"
            ) && v.is_null())
                || has_null_number(v)
        }),
        Value::Array(items) => items.iter().any(has_null_number),
        _ => false,
    }
}

#[tokio::test]
async fn rows_stored_before_the_rules_do_not_break_any_read() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    // What an older version accepted: values whose sum overflows a double, a property number
    // that Postgres hands back as a 309-digit integer, and a duration of centuries.
    let mut ids = Vec::new();
    app.ensure_partitions("2026-10-15T12:00:00Z", "2026-10-15T12:00:00Z")
        .await;
    for (value, duration) in [
        (-1.7e308, 1i64 << 60),
        (-1.7976931348623157e308, 5),
        (-1e308, 0),
    ] {
        let id = Uuid::now_v7();
        sqlx::query(
            "insert into activities (id, user_id, action, occurred_at, duration_ms, value, properties)
             values ($1, $2, 'legacy', '2026-10-15T12:00:00Z', $3, $4,
                     '{\"n\": -1.7976931348623157e308, \"big\": 1e400}'::jsonb)",
        )
        .bind(id)
        .bind(user)
        .bind(duration)
        .bind(value)
        .execute(&app.pool)
        .await
        .expect("insert a legacy row");
        ids.push(id.to_string());
    }
    assert_every_read_answers(&app, &reads(user, &ids[0]), "legacy rows").await;
    let (_, summary) = app.stats(&format!("summary?{RANGE}")).await;
    assert_eq!(
        summary["value_sum"].as_f64(),
        Some(-f64::MAX),
        "saturated, not an error"
    );
    // A create on top of them updates the cached answers without overflowing either.
    app.create(user, "legacy", "2026-10-15T13:00:00Z", Some(-1e12))
        .await;
    assert_every_read_answers(&app, &reads(user, &ids[0]), "legacy rows and a create").await;
}

#[tokio::test]
async fn a_create_rejected_for_its_values_stores_nothing() {
    let app = spawn_app().await;
    for (body, field) in [
        (json!({"value": -1.7976931348623157e308}), "value"),
        (json!({"value": 1e13}), "value"),
        (json!({"duration_ms": 2_592_000_001i64}), "duration_ms"),
    ] {
        let mut body = body;
        body["user_id"] = json!(Uuid::new_v4());
        body["action"] = json!("x");
        let response = app.post_activity(&body).await;
        let problem =
            crate::helpers::assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, field).await;
        assert_eq!(
            crate::helpers::problem_fields(&problem),
            vec![field.to_owned()]
        );
    }
    let count: i64 = sqlx::query_scalar("select count(*) from activities")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(count, 0);
}

/// JSON text for a number that strategies pick from the extremes.
fn extreme_number() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("-1.7976931348623157e308".to_owned()),
        Just("1.7976931348623157e308".to_owned()),
        Just("5e-324".to_owned()),
        Just("-0".to_owned()),
        Just("123456789012345678901234567890123456789".to_owned()),
        Just("1e-1000".to_owned()),
        Just("9.99e999".to_owned()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<u64>().prop_map(|i| i.to_string()),
    ]
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("🦀 emoji \u{200f}rtl \u{feff}bom".to_owned()),
        Just("\"quotes\" \\ back\\slash \n\t".to_owned()),
        Just("'; drop table activities; --".to_owned()),
        Just("<script>alert(1)</script>".to_owned()),
        "\\PC{0,40}",
    ]
}

/// A properties object as JSON text: nested, with extreme numbers and hostile strings.
fn properties() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        extreme_number(),
        hostile_string().prop_map(|s| serde_json::to_string(&s).expect("string")),
        Just("null".to_owned()),
        Just("true".to_owned()),
    ];
    let tree = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4)
                .prop_map(|items| format!("[{}]", items.join(","))),
            prop::collection::vec((hostile_string(), inner), 0..4).prop_map(|fields| {
                let fields: Vec<String> = fields
                    .into_iter()
                    .map(|(k, v)| format!("{}:{v}", serde_json::to_string(&k).expect("key")))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    });
    prop::collection::vec((hostile_string(), tree), 0..5).prop_map(|fields| {
        let fields: Vec<String> = fields
            .into_iter()
            .map(|(k, v)| format!("{}:{v}", serde_json::to_string(&k).expect("key")))
            .collect();
        format!("{{{}}}", fields.join(","))
    })
}

/// One create's JSON text, with values at and beyond every bound.
fn activity(user: Uuid) -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just(None),
            Just(Some("1e12".to_owned())),
            Just(Some("-1e12".to_owned())),
            Just(Some("1.0000000000001e12".to_owned())),
            Just(Some("-1.7976931348623157e308".to_owned())),
            (-1e12f64..1e12).prop_map(|v| Some(format!("{v:e}"))),
            extreme_number().prop_map(Some),
        ],
        prop_oneof![
            Just(None),
            Just(Some("0".to_owned())),
            Just(Some("2592000000".to_owned())),
            Just(Some("2592000001".to_owned())),
            Just(Some("18446744073709551615".to_owned())),
            (0i64..2_592_000_000).prop_map(|d| Some(d.to_string())),
        ],
        prop::option::of(properties()),
        0u32..30,
        0u32..86_400,
        "[a-z0-9_.:-]{1,64}",
    )
        .prop_map(move |(value, duration, properties, day, second, action)| {
            let mut fields = vec![
                format!("\"user_id\":\"{user}\""),
                format!("\"action\":\"{action}\""),
                format!(
                    "\"occurred_at\":\"2026-10-{:02}T{:02}:{:02}:{:02}Z\"",
                    1 + day,
                    second / 3600,
                    second / 60 % 60,
                    second % 60
                ),
            ];
            fields.extend(value.map(|v| format!("\"value\":{v}")));
            fields.extend(duration.map(|d| format!("\"duration_ms\":{d}")));
            fields.extend(properties.map(|p| format!("\"properties\":{p}")));
            format!("{{{}}}", fields.join(","))
        })
}

/// Numerically equal JSON, numbers compared by their exact decimal value as far as a double
/// can tell apart, and beyond that by text (Postgres keeps `numeric` digits, not the spelling).
fn same_json(sent: &Value, stored: &Value) -> bool {
    match (sent, stored) {
        (Value::Number(a), Value::Number(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => normalise(a.as_str()) == normalise(b.as_str()),
        },
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => sent == stored,
    }
}

/// A number's digits and decimal exponent, for numbers beyond a double's range.
fn normalise(text: &str) -> (bool, String, i64) {
    let negative = text.starts_with('-');
    let text = text.trim_start_matches('-');
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i64>().unwrap_or(0)),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{int}{frac}");
    let lead = digits.len() - digits.trim_start_matches('0').len();
    let digits = digits.trim_matches('0').to_owned();
    (
        negative && !digits.is_empty(),
        digits,
        int.len() as i64 - lead as i64 + exponent,
    )
}

#[test]
fn hostile_writes_are_refused_or_served_by_every_endpoint() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let app = Arc::new(runtime.block_on(spawn_app()));
    let user = Uuid::new_v4();
    let config = ProptestConfig {
        cases: 40,
        // Deterministic: the same cases on every run (a failure prints its input).
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new_with_rng(
        config,
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let accepted = std::cell::Cell::new(0);
    let stored_id = std::cell::RefCell::new(None);
    let result = runner.run(&activity(user), |body| {
        runtime.block_on(async {
            let response = app
                .client
                .post(app.url("/api/v1/activities"))
                .bearer_auth(&app.write_token)
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("request");
            let status = response.status();
            let text = response.text().await.expect("body");
            prop_assert!(
                status == StatusCode::CREATED
                    || status == StatusCode::UNPROCESSABLE_ENTITY
                    || status == StatusCode::BAD_REQUEST,
                "POST {body} answered {status}: {text}"
            );
            if status != StatusCode::CREATED {
                return Ok(());
            }
            accepted.set(accepted.get() + 1);
            let created: Value = serde_json::from_str(&text).expect("json");
            let sent: Value = serde_json::from_str(&body).expect("json");
            let id = created["id"].as_str().expect("id").to_owned();
            // Read back exactly as written.
            let got: Value = app
                .get_json(&format!("/api/v1/activities/{id}"), Some(&app.read_token))
                .await;
            prop_assert!(
                same_json(&sent["properties"], &got["properties"])
                    || sent.get("properties").is_none(),
                "properties changed: sent {} got {}",
                sent["properties"],
                got["properties"]
            );
            *stored_id.borrow_mut() = Some(id.clone());
            Ok(())
        })
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    let accepted = accepted.get();
    assert!(
        accepted >= 10,
        "too few cases were valid ({accepted}) to mean anything"
    );
    let id = stored_id.into_inner().expect("one create was accepted");
    runtime.block_on(assert_every_read_answers(
        &app,
        &reads(user, &id),
        "after hostile creates",
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_exhausted_database_sheds_load_with_503_while_cached_answers_are_served() {
    let app = Arc::new(
        spawn_app_with(AppOptions {
            db_max_connections: 2,
            ..AppOptions::default()
        })
        .await,
    );
    let path = format!("summary?{RANGE}");
    assert_eq!(app.stats(&path).await.0, "MISS");
    // Every statement that touches activities now waits: the database is slower than the load.
    let mut blocker = app.pool.begin().await.expect("begin");
    sqlx::query("lock table activities in access exclusive mode")
        .execute(&mut *blocker)
        .await
        .expect("lock");
    let waiting: Vec<_> = (0..6)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let response = app.list("limit=1").await;
                (
                    response.status(),
                    header(&response, "retry-after"),
                    started.elapsed(),
                )
            })
        })
        .collect();
    // Long enough for the API key's cached check (0.9 s) to lapse: keys are checked anew.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Cached answers go on while the pool is exhausted.
    for _ in 0..5 {
        assert_eq!(app.stats(&path).await.0, "HIT");
    }
    let mut shed = 0;
    for task in waiting.into_iter().take(4) {
        let (status, retry_after, elapsed) = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .map(|r| r.expect("task"))
            .unwrap_or((
                StatusCode::REQUEST_TIMEOUT,
                String::new(),
                Duration::from_secs(5),
            ));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            shed += 1;
            assert_eq!(retry_after, "1", "503 says when to retry");
            assert!(
                elapsed < Duration::from_millis(2500),
                "failed fast: {elapsed:?}"
            );
        }
    }
    assert!(
        shed >= 2,
        "requests beyond the pool were shed with 503 ({shed})"
    );
    blocker.rollback().await.expect("release");
}

#[tokio::test]
async fn head_is_answered_wherever_get_is() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    let created = app.create(user, "view", "2026-10-15T12:00:00Z", None).await;
    let id = created["id"].as_str().expect("id");
    let paths = [
        "/healthz".to_owned(),
        "/readyz".to_owned(),
        "/metrics".to_owned(),
        "/openapi.json".to_owned(),
        "/".to_owned(),
        "/docs/".to_owned(),
        format!("/api/v1/activities/{id}"),
        format!("/api/v1/stats/summary?{RANGE}"),
        format!("/api/v1/stats/users/{user}"),
    ];
    for path in paths {
        let get = app.send(Method::GET, &path, &app.read_token, &[]).await;
        let head = app.send(Method::HEAD, &path, &app.read_token, &[]).await;
        assert_eq!(head.status(), get.status(), "HEAD {path}");
        assert_eq!(
            header(&head, "content-type"),
            header(&get, "content-type"),
            "HEAD {path}"
        );
        assert!(
            head.bytes().await.expect("body").is_empty(),
            "HEAD {path} sent a body"
        );
    }
    // Authentication and 404s answer HEAD the same way.
    let anonymous = app
        .client
        .head(app.url("/api/v1/stats/summary"))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn pages_allow_only_their_own_scripts_and_no_framing_or_sniffing() {
    let app = spawn_app().await;
    for path in [
        "/",
        "/assets/app.js",
        "/docs/",
        "/openapi.json",
        "/api/v1/stats/summary",
    ] {
        let response = app.send(Method::GET, path, &app.read_token, &[]).await;
        let csp = header(&response, "content-security-policy");
        let script_src = csp
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("script-src"))
            .unwrap_or_default();
        assert_eq!(script_src, "script-src 'self'", "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(
            header(&response, "x-content-type-options"),
            "nosniff",
            "{path}"
        );
        assert_eq!(
            header(&response, "referrer-policy"),
            "no-referrer",
            "{path}"
        );
        assert_eq!(header(&response, "x-frame-options"), "DENY", "{path}");
    }
    // The dashboard itself runs no inline script, so the policy costs it nothing.
    let page = app
        .send(Method::GET, "/", &app.read_token, &[])
        .await
        .text()
        .await
        .expect("page");
    for script in page.split("<script").skip(1) {
        assert!(
            script.trim_start().starts_with("src="),
            "inline script: <script{script}"
        );
    }
    for handler in ["onclick=", "onload=", "onerror=", "javascript:"] {
        assert!(!page.contains(handler), "inline handler {handler}");
    }
}

#[tokio::test]
async fn a_redis_that_may_evict_keys_is_refused_at_start() {
    let redis =
        OwnRedis::start_with(&["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"]).await;
    let settings_of = |url: String| AppOptions {
        backend: Backend::Redis(url),
        ..AppOptions::default()
    };
    let error = try_spawn_app_with(settings_of(redis.url()))
        .await
        .err()
        .expect("refused");
    let message = format!("{error:#}");
    assert!(
        message.contains("maxmemory-policy allkeys-lru"),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
    // The same Redis without a memory limit evicts nothing and is accepted.
    let unlimited = OwnRedis::start_with(&["--maxmemory-policy", "allkeys-lru"]).await;
    assert!(
        try_spawn_app_with(settings_of(unlimited.url()))
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_redis_under_noeviction_costs_nothing_but_bypass() {
    let redis =
        OwnRedis::start_with(&["--maxmemory", "3mb", "--maxmemory-policy", "noeviction"]).await;
    let app = spawn_app_with(AppOptions {
        backend: Backend::Redis(redis.url()),
        cache_op_timeout: Duration::from_millis(200),
        ..AppOptions::default()
    })
    .await;
    let path = format!("summary?{RANGE}");
    app.create(Uuid::new_v4(), "view", "2026-10-10T12:00:00Z", None)
        .await;
    assert_eq!(app.stats(&path).await.0, "MISS");
    let sibling = app.spawn_sibling().await;
    assert_eq!(sibling.stats(&path).await.0, "HIT");
    // Fill Redis until it refuses even the smallest write (memory moves a little as the app
    // works, so fill until a probe is refused too).
    let client = redis::Client::open(redis.url()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let mut n = 0;
    loop {
        for size in [64 * 1024, 1024, 16] {
            let ballast = "x".repeat(size);
            loop {
                n += 1;
                let filled: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(format!("ballast:{n}"))
                    .arg(&ballast)
                    .query_async(&mut conn)
                    .await;
                if filled.is_err() {
                    break;
                }
            }
        }
        let probe: redis::RedisResult<()> = redis::cmd("SET")
            .arg("probe")
            .arg(1)
            .query_async(&mut conn)
            .await;
        if probe.is_err() {
            break;
        }
    }
    // Writes succeed and every answer includes them; nothing is a 5xx.
    for i in 0..5 {
        app.create(
            Uuid::new_v4(),
            "view",
            &format!("2026-10-1{i}T12:00:00Z"),
            None,
        )
        .await;
        let (status, body) = app.stats(&path).await;
        assert_eq!(
            body["events"].as_i64(),
            Some(2 + i),
            "{status}: a write is missing"
        );
        // Another instance, which knows nothing of this one's troubles, is not served it either.
        let (status, body) = sibling.stats(&path).await;
        assert_eq!(
            body["events"].as_i64(),
            Some(2 + i),
            "sibling {status}: a write is missing"
        );
    }
    assert!(
        app.metric("analytics_cache_bypasses_total{endpoint=\"summary\"}")
            .await
            > 0.0,
        "the full Redis was never felt"
    );
    // Once there is room again, the cache serves again.
    let _: () = redis::cmd("FLUSHDB")
        .query_async(&mut conn)
        .await
        .expect("flush");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = app.stats(&path).await;
        assert_eq!(body["events"].as_i64(), Some(6));
        if status == "HIT" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cache never came back ({status})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn activities_at_the_far_edges_of_time_are_served_by_every_endpoint() {
    let app = spawn_app().await;
    for (at, day, range) in [
        (
            "0001-01-01T00:00:00Z",
            "0001-01-01",
            "from=0001-01-01&to=0001-01-31",
        ),
        (
            "1969-12-31T23:59:59.999999Z",
            "1969-12-31",
            "from=1969-12-01&to=1970-01-01",
        ),
    ] {
        let user = Uuid::new_v4();
        let created = app.create(user, "view", at, Some(1.0)).await;
        let id = created["id"].as_str().expect("id");
        let mut paths = vec![
            format!("/api/v1/activities/{id}"),
            format!("/api/v1/activities?user_id={user}&from={day}"),
            format!("/api/v1/stats/summary?{range}"),
            format!("/api/v1/stats/top-users?{range}"),
            format!("/api/v1/stats/users/{user}?{range}"),
            format!("/api/v1/stats/active-users?date={day}"),
        ];
        for bucket in ["day", "week", "month"] {
            paths.push(format!("/api/v1/stats/timeseries?{range}&bucket={bucket}"));
        }
        assert_every_read_answers(&app, &paths, at).await;
        let (_, summary) = app.stats(&format!("summary?{range}")).await;
        assert_eq!(summary["events"].as_i64(), Some(1), "{at}");
    }
}
