//! Time partitions and `RETENTION_DAYS`: a write never lacks its partition, whatever its date;
//! retention drops whole expired months with their rollups and every cached answer they were
//! part of; a backfill older than retention is refused; an unpartitioned database migrates
//! with every row and statistic unchanged.

use activity_analytics::db::{self, MIGRATOR};
use activity_analytics::retention::{self, Outcome};
use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{
    AppOptions, Backend, TestDatabase, assert_problem, spawn_app_on, spawn_app_with,
};

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

async fn partition_names(pool: &PgPool) -> Vec<String> {
    db::partitions::list(pool)
        .await
        .expect("partitions")
        .into_iter()
        .map(|p| p.name)
        .collect()
}

#[tokio::test]
async fn writes_of_any_date_find_their_partition() {
    let app = spawn_app_on(Backend::Memory).await;
    let user = Uuid::new_v4();
    // Years back, a month no one wrote before, and several months in one batch.
    let created = app.create(user, "view", "2019-03-04T05:06:07Z", None).await;
    let id = created["id"].as_str().expect("id");
    assert_eq!(app.get_activity(id).await.status(), StatusCode::OK);
    let batch: Vec<Value> = [
        "2021-01-31T23:59:59Z",
        "2021-02-01T00:00:00Z",
        "2023-07-15T12:00:00Z",
    ]
    .iter()
    .map(|at| json!({"user_id": user, "action": "buy", "occurred_at": at}))
    .collect();
    let response = app.post_batch(&json!({ "activities": batch })).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    // Moved by a patch into yet another month.
    let response = app
        .patch(id, &json!({"occurred_at": "2018-12-31T23:00:00Z"}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let names = partition_names(&app.pool).await;
    for month in ["2018_12", "2019_03", "2021_01", "2021_02", "2023_07"] {
        assert!(
            names.contains(&format!("activities_{month}")),
            "{month} in {names:?}"
        );
    }
    let (_, summary) = app.stats("summary?from=2018-12-01&to=2019-12-01").await;
    assert_eq!(summary["events"], json!(1));
    // Ahead of time: the month of an instant five minutes before a month's end, and the next.
    let late = Utc
        .with_ymd_and_hms(2031, 5, 31, 23, 58, 0)
        .single()
        .expect("instant");
    db::partitions::ensure_ahead(&app.pool, late)
        .await
        .expect("ahead");
    let names = partition_names(&app.pool).await;
    assert!(names.contains(&"activities_2031_05".to_owned()));
    assert!(names.contains(&"activities_2031_06".to_owned()));
}

#[tokio::test]
async fn retention_drops_expired_months_with_their_rollups_and_cached_answers() {
    let app = spawn_app_on(Backend::redis()).await;
    let now = Utc::now();
    // With 60 days kept, the month of `old` (which ends at least 69 days ago) has expired; the
    // month of `recent` has not.
    let old = now - Duration::days(100);
    let recent = now - Duration::days(20);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    for (user, action, at) in [
        (a, "view", old),
        (a, "buy", old + Duration::hours(1)),
        (b, "view", old),
        (a, "view", recent),
        (b, "buy", recent),
        (a, "view", now - Duration::minutes(1)),
    ] {
        app.create(user, action, &rfc3339(at), Some(2.5)).await;
    }
    let old_month = db::partitions::month_of(old);
    let (from, to) = (old_month, (now + Duration::days(1)).date_naive());
    let paths = [
        format!("summary?from={from}&to={to}"),
        format!("timeseries?bucket=month&from={from}&to={to}"),
        format!("timeseries?bucket=day&from={from}&to={to}&action=view"),
        format!("active-users?date={}", old.date_naive()),
        format!("top-users?from={from}&to={to}"),
        format!("users/{a}?from={from}&to={to}"),
    ];
    for path in &paths {
        app.stats(path).await;
        assert_eq!(app.stats(path).await.0, "HIT", "{path} cached");
    }
    let (_, before) = app.stats(&paths[0]).await;
    assert_eq!(before["events"], json!(6));
    // Unions of the closed days (migration 13), some of them over the expired month.
    let blocks = activity_analytics::db::stats::refresh_blocks(&app.pool)
        .await
        .expect("blocks");
    assert!(blocks > 0, "{blocks} unions of days stored");

    // As an operator runs it.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_analytics"))
        .arg("retention")
        .env(
            "DATABASE_URL",
            &app.options.database.as_ref().expect("db").url,
        )
        .env("REDIS_URL", crate::helpers::redis_url())
        .env("CACHE_PREFIX", &app.prefix)
        .env("RETENTION_DAYS", "60")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run analytics retention");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expired = format!("activities_{}", old_month.format("%Y_%m"));
    assert!(
        stdout.contains(&format!("dropped {expired} (")) && stdout.contains(": 3 activities"),
        "{stdout}"
    );

    let names = partition_names(&app.pool).await;
    assert!(!names.contains(&expired), "{names:?}");
    let table: Option<String> = sqlx::query_scalar("select to_regclass($1)::text")
        .bind(&expired)
        .fetch_one(&app.pool)
        .await
        .expect("regclass");
    assert_eq!(table, None, "the partition's table is gone");
    let left: i64 = sqlx::query_scalar(
        "select (select count(*) from activity_daily where day < $1)
              + (select count(*) from activity_user_daily where day < $1)
              + (select count(*) from activity_user_action_daily where day < $1)
              + (select count(*) from activity_day_users where day < $1)
              + (select count(*) from activity_quarter_hours where quarter < $1::date::timestamp at time zone 'UTC')
              + (select count(*) from activity_blocks where first_day < $1)
              -- Hour windows starting in the dropped month's last 45 minutes reach into the next.
              + (select count(*) from activity_hour_users
                 where hour < $1::date::timestamp at time zone 'UTC' - interval '45 minutes')",
    )
    .bind(old_month + chrono::Months::new(1))
    .fetch_one(&app.pool)
    .await
    .expect("rollups");
    assert_eq!(left, 0, "no rollup row of the dropped month is left");
    crate::rollups::assert_rollups_equal_a_rebuild(&app.pool).await;

    // Every cached answer reflects it at once: the same as computed afresh, and the sums say so.
    for path in &paths {
        let (status, cached) = app.stats(path).await;
        eprintln!("{path} {status} {cached}");
        assert_eq!(cached, app.stats_fresh(path).await, "{path}");
    }
    let (_, after) = app.stats(&paths[0]).await;
    assert_eq!(after["events"], json!(3));
    assert_eq!(after["unique_users"], json!(2));
    assert_eq!(app.stats(&paths[3]).await.1["dau"], json!(0));
    assert_eq!(app.stats(&paths[5]).await.1["events"], json!(2));
    let pending: i64 = sqlx::query_scalar("select count(*) from cache_pending")
        .fetch_one(&app.pool)
        .await
        .expect("pending");
    assert_eq!(
        pending, 0,
        "the command forgets the cache updates it applied"
    );

    // A second run finds nothing more to drop.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_analytics"))
        .arg("retention")
        .env(
            "DATABASE_URL",
            &app.options.database.as_ref().expect("db").url,
        )
        .env("RETENTION_DAYS", "60")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run analytics retention");
    assert!(String::from_utf8_lossy(&output.stdout).contains("0 partition(s) dropped"));
}

#[tokio::test]
async fn one_instance_at_a_time_applies_retention() {
    let app = spawn_app_on(Backend::Memory).await;
    let state = &app.state;
    let apply = || {
        retention::apply(
            &state.pool,
            &state.pending,
            &state.partitions,
            Some(30),
            Utc::now(),
        )
    };
    // Another instance holds the lock: this one does nothing.
    let mut other = app.pool.acquire().await.expect("connection");
    sqlx::query("select pg_advisory_lock(7412, 1)")
        .execute(&mut *other)
        .await
        .expect("lock");
    assert!(matches!(apply().await.expect("apply"), Outcome::Busy));
    sqlx::query("select pg_advisory_unlock(7412, 1)")
        .execute(&mut *other)
        .await
        .expect("unlock");
    assert!(matches!(
        apply().await.expect("apply"),
        Outcome::Applied { .. }
    ));
    let keep_all = retention::apply(
        &state.pool,
        &state.pending,
        &state.partitions,
        None,
        Utc::now(),
    );
    assert!(matches!(
        keep_all.await.expect("apply"),
        Outcome::KeepEverything
    ));
}

#[tokio::test]
async fn a_backfill_older_than_retention_is_refused_naming_occurred_at() {
    let keeper = spawn_app_on(Backend::Memory).await;
    let mut app = spawn_app_with(AppOptions {
        retention_days: Some(60),
        ..keeper.options.clone()
    })
    .await;
    app.write_token = keeper.write_token.clone();
    let user = Uuid::new_v4();
    let now = Utc::now();
    let too_old = rfc3339(now - Duration::days(61));
    let kept = rfc3339(now - Duration::days(59));
    let response = app
        .post_activity(&json!({"user_id": user, "action": "view", "occurred_at": too_old}))
        .await;
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "too old").await;
    assert_eq!(problem["errors"][0]["field"], "occurred_at");
    let response = app
        .post_batch(&json!({"activities": [
            {"user_id": user, "action": "view", "occurred_at": kept},
            {"user_id": user, "action": "view", "occurred_at": too_old},
        ]}))
        .await;
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "batch").await;
    assert_eq!(problem["errors"][0]["field"], "activities[1].occurred_at");
    let created = app.create(user, "view", &kept, None).await;
    let id = created["id"].as_str().expect("id");
    let response = app.patch(id, &json!({"occurred_at": too_old})).await;
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "patch").await;
    assert_eq!(problem["errors"][0]["field"], "occurred_at");
    // Without retention, the same backfill is welcome.
    keeper.create(user, "view", &too_old, None).await;
}

/// The activities and rollups, as text in a fixed order.
async fn snapshot(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "select format('%s', a) from (select * from activities order by id) a
         union all select format('%s', d) from (select * from activity_daily order by day, action, slot) d
         union all select format('%s', u) from (select * from activity_user_daily order by user_id, day) u
         union all select format('%s', u) from (select * from activity_user_action_daily order by user_id, action, day) u
         union all select format('%s', b) from (select * from activity_day_users order by day, action, chunk) b",
    )
    .fetch_all(pool)
    .await
    .expect("snapshot")
}

#[tokio::test]
async fn an_unpartitioned_database_migrates_with_every_row_and_statistic_unchanged() {
    let database = TestDatabase::create_unmigrated().await;
    let pool = PgPool::connect(&database.url).await.expect("connect");
    // The schema as it was before partitioning (migration 7), with activity in it.
    MIGRATOR
        .run_to(20261130000007, &pool)
        .await
        .expect("migrate to 7");
    sqlx::query(
        "insert into activities (id, user_id, action, occurred_at, duration_ms, value, properties)
         select gen_random_uuid(),
                ('00000000-0000-0000-0000-' || lpad((i % 37)::text, 12, '0'))::uuid,
                (array['view', 'buy', 'share'])[1 + i % 3],
                now() - i * interval '37 minutes', i % 1000, (i % 7) * 1.5,
                case when i % 5 = 0 then jsonb_build_object('n', i) end
         from generate_series(1, 5000) as i",
    )
    .execute(&pool)
    .await
    .expect("insert");
    let before = snapshot(&pool).await;
    MIGRATOR
        .run_to(20261130000008, &pool)
        .await
        .expect("migrate to 8");
    assert_eq!(snapshot(&pool).await, before, "rows and rollups unchanged");
    // The later migrations (hourly rollups) rebuild from the rows; the rebuild check below
    // holds them to the triggers' arithmetic.
    db::migrate(&pool).await.expect("migrate to the end");
    let partitioned: bool =
        sqlx::query_scalar("select relkind = 'p' from pg_class where oid = 'activities'::regclass")
            .fetch_one(&pool)
            .await
            .expect("relkind");
    assert!(partitioned);
    assert!(
        partition_names(&pool).await.len() >= 5,
        "the 128 days of rows span 5 months"
    );
    pool.close().await;

    // And the service answers from it as it did.
    let app = spawn_app_with(AppOptions {
        backend: Backend::Memory,
        database: Some(database),
        ..AppOptions::default()
    })
    .await;
    crate::rollups::assert_rollups_equal_a_rebuild(&app.pool).await;
    let (_, summary) = app.stats("summary").await;
    let expected: i64 = sqlx::query_scalar(
        "select count(*) from activities
         where occurred_at >= ((now() at time zone 'UTC')::date + 1 - 30)::timestamp at time zone 'UTC'
           and occurred_at < ((now() at time zone 'UTC')::date + 1)::timestamp at time zone 'UTC'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(summary["events"], json!(expected));
}
