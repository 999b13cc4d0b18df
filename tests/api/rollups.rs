//! The rollups stay exact: after a random mix of creates, batches, patches and deletes, some
//! of them concurrent, every statistic read through the rollups equals the same statistic
//! computed from the raw rows (`db::stats::reference`), and the rollup tables equal a rebuild.

use activity_analytics::db::stats::{self, reference};
use activity_analytics::domain::stats_query::ActiveUsersDay;
use activity_analytics::domain::{Action, Bucket, StatsQuery, TimeRange, TopUsersLimit, Zone};
use chrono::{DateTime, Duration, DurationRound, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app};

const ACTIONS: [&str; 4] = ["view", "click", "buy", "share"];

struct World {
    users: Vec<Uuid>,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
    /// Where the busy three-hour stretches start.
    busy: Vec<DateTime<Utc>>,
}

impl World {
    fn new() -> Self {
        let now = Utc::now();
        let today = now.duration_trunc(Duration::days(1)).expect("midnight");
        let start = today - Duration::days(40);
        Self {
            users: (0..8).map(|_| Uuid::new_v4()).collect(),
            // Long enough to span a month's end, so patches move rows between partitions.
            start,
            now,
            // The second stretch straddles last midnight, in the days whose quarter hours
            // have bitmaps of their own (migration 11).
            busy: vec![
                start + Duration::days(5) - Duration::hours(2),
                today - Duration::hours(2),
            ],
        }
    }

    /// March and early April 2026, when New York, St John's, Berlin, Lord Howe and Chatham change
    /// their clocks; the busy stretches straddle each change.
    fn dst_spring_2026() -> Self {
        let at = |s: &str| s.parse::<DateTime<Utc>>().expect(s);
        Self {
            users: (0..8).map(|_| Uuid::new_v4()).collect(),
            start: at("2026-03-01T00:00:00Z"),
            now: at("2026-04-10T00:00:00Z"),
            busy: [
                "2026-03-08T03:00:00Z", // St John's 02:00 NST (04:30Z), New York 02:00 EST (07:00Z)
                "2026-03-08T05:30:00Z",
                "2026-03-29T00:00:00Z", // Berlin 02:00 CET (01:00Z)
                "2026-04-04T13:00:00Z", // Chatham 03:45 (14:00Z), Lord Howe 02:00 (15:00Z)
                "2026-03-20T17:00:00Z", // around midnight in Kathmandu and Kolkata
            ]
            .map(at)
            .to_vec(),
        }
    }

    /// The first of the three busy hours: 22:00 on the fifth day, so they cross a midnight.
    fn busy_hour(&self) -> DateTime<Utc> {
        self.busy[0]
    }

    /// A random activity: user 0 is heavy, the others light; times fall anywhere in the window.
    fn activity(&self, rng: &mut StdRng) -> Value {
        let user = if rng.random_bool(0.4) {
            self.users[0]
        } else {
            self.users[rng.random_range(0..self.users.len())]
        };
        // Half the activity falls in three busy hours, so that users share hours with their
        // own other events and deletes leave hours both emptied and still occupied.
        let at = if rng.random_bool(0.5) {
            let busy = self.busy[rng.random_range(0..self.busy.len())];
            // The stretch over last midnight runs into the future in UTC's first hour, where a
            // write is refused (422): it ends now at the latest.
            let span = (self.now - busy).num_seconds().min(3 * 3600);
            busy + Duration::seconds(rng.random_range(0..span))
        } else {
            let span = (self.now - self.start).num_seconds();
            self.start + Duration::seconds(rng.random_range(0..span))
        };
        let mut item = json!({
            "user_id": user,
            "action": ACTIONS[rng.random_range(0..ACTIONS.len())],
            "occurred_at": at.to_rfc3339(),
        });
        if rng.random_bool(0.3) {
            item["value"] = json!(f64::from(rng.random_range(1..100_000)) / 100.0);
        }
        if rng.random_bool(0.5) {
            item["duration_ms"] = json!(rng.random_range(0..10_000));
        }
        item
    }
}

/// One writer: `steps` random writes, keeping the ids it created so it can patch and delete them.
async fn write_randomly(app: &TestApp, world: &World, seed: u64, steps: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ids: Vec<String> = Vec::new();
    for _ in 0..steps {
        match rng.random_range(0..10) {
            0..=2 => {
                let response = app.post_activity(&world.activity(&mut rng)).await;
                assert_eq!(response.status(), StatusCode::CREATED, "create");
                let body: Value = response.json().await.expect("json");
                ids.push(body["id"].as_str().expect("id").to_owned());
            }
            3..=4 => {
                let n = rng.random_range(1..40);
                let batch: Vec<Value> = (0..n).map(|_| world.activity(&mut rng)).collect();
                let response = app.post_batch(&json!({"activities": batch})).await;
                assert_eq!(response.status(), StatusCode::CREATED, "batch");
                let body: Value = response.json().await.expect("json");
                for id in body["ids"].as_array().expect("ids") {
                    ids.push(id.as_str().expect("id").to_owned());
                }
            }
            5..=7 if !ids.is_empty() => {
                let id = &ids[rng.random_range(0..ids.len())];
                let fresh = world.activity(&mut rng);
                // Change one field, several, or only one that no statistic reads.
                let patch = match rng.random_range(0..6) {
                    0 => json!({"occurred_at": fresh["occurred_at"]}),
                    1 => json!({"user_id": fresh["user_id"]}),
                    2 => json!({"action": fresh["action"], "value": fresh.get("value")}),
                    3 => json!({"duration_ms": fresh.get("duration_ms"), "value": null}),
                    4 => json!({"properties": {"note": "only properties"}}),
                    _ => fresh,
                };
                let response = app.patch(id, &patch).await;
                assert_eq!(response.status(), StatusCode::OK, "patch {patch}");
            }
            _ if !ids.is_empty() => {
                let id = ids.swap_remove(rng.random_range(0..ids.len()));
                let response = app.delete(&id).await;
                assert_eq!(response.status(), StatusCode::NO_CONTENT, "delete");
            }
            _ => {}
        }
    }
}

/// Equal as JSON, with floats equal to 1e-9 relative: the rollups add values as numeric while
/// the reference adds float8, and the two round differently in the last bits.
pub fn assert_same(rollup: &Value, raw: &Value, case: &str) {
    fn close(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
                let (x, y) = (
                    x.as_f64().unwrap_or(f64::NAN),
                    y.as_f64().unwrap_or(f64::NAN),
                );
                (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
            }
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| close(a, b))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
            }
            _ => a == b,
        }
    }
    assert!(
        close(rollup, raw),
        "{case}\n rollup: {rollup}\n    raw: {raw}"
    );
}

fn json_of<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("serialisable")
}

/// Every statistic, over aligned, unaligned and short ranges, with and without an action.
async fn assert_every_statistic_matches(pool: &PgPool, world: &World) {
    let (queries, dates) = every_query(world);
    assert_statistics_match(pool, world, &queries, &dates, &[1, 3, 100]).await;
}

/// Stores every part of a local day and every union of days the queries of
/// `assert_every_statistic_matches` can read, yesterday's included (migrations 12, 13, 15).
async fn store_every_part(pool: &PgPool, world: &World) {
    let (queries, dates) = every_query(world);
    store_parts_of(pool, &queries, &dates).await;
    stats::refresh_blocks(pool).await.expect("store unions");
}

/// Stores the parts of local days that the statistics of `queries` (every bucket) and active
/// users on `dates` read, as their misses would in the background.
async fn store_parts_of(pool: &PgPool, queries: &[StatsQuery], dates: &[ActiveUsersDay]) {
    let mut parts = Vec::new();
    for q in queries {
        for bucket in [Bucket::Hour, Bucket::Day, Bucket::Week, Bucket::Month] {
            parts.extend(stats::timeseries_parts(q, bucket));
        }
        parts.extend(stats::summary_parts(q));
    }
    for &date in dates {
        parts.extend(stats::active_users_parts(date));
    }
    stats::store_parts(pool, &parts).await.expect("store parts");
}

/// The ranges, actions, zones and dates the rollups are checked on.
fn every_query(world: &World) -> (Vec<StatsQuery>, Vec<ActiveUsersDay>) {
    let day = Duration::days(1);
    let end = world.start + Duration::days(13);
    let ranges = [
        (world.start, end),
        (
            world.start + Duration::hours(5),
            end - day - Duration::hours(7),
        ),
        (
            world.start + Duration::days(3),
            world.start + Duration::days(10),
        ),
        (
            world.start + Duration::hours(30),
            world.start + Duration::hours(40),
        ),
        (
            world.start + Duration::hours(20),
            world.start + Duration::hours(44),
        ),
        (
            world.start - Duration::days(40),
            world.start - Duration::days(1),
        ),
        // Inside and across the busy hours, on and off the hour.
        (world.busy_hour(), world.busy_hour() + Duration::hours(3)),
        (
            world.busy_hour() + Duration::minutes(30),
            world.busy_hour() + Duration::minutes(150),
        ),
        (
            world.busy_hour() + Duration::hours(1),
            world.busy_hour() + Duration::days(2) + Duration::minutes(7),
        ),
        (
            world.busy_hour() - Duration::days(2) - Duration::minutes(20),
            world.busy_hour() + Duration::hours(1),
        ),
        // Edges of most of a day, whose short rest (half an hour) is inside the busy hours.
        (world.busy_hour() + Duration::minutes(150), end),
        (world.start, world.busy_hour() + Duration::minutes(90)),
    ];
    let actions = [None, Some("view"), Some("buy"), Some("never")];
    let queries: Vec<StatsQuery> = ranges
        .iter()
        .flat_map(|&(from, to)| {
            actions.map(|action| StatsQuery {
                range: TimeRange::new(from, to).expect("range"),
                action: action.map(|a| Action::parse(a).expect("action")),
                zone: Zone::UTC,
            })
        })
        .collect();
    let mut dates: Vec<ActiveUsersDay> = [-1, 0, 3, 8, 12, 20, 45]
        .map(|offset| ActiveUsersDay {
            date: (world.start + Duration::days(offset)).date_naive(),
            zone: Zone::UTC,
        })
        .to_vec();
    // Today and yesterday in zones whose days cut them: read from the quarter-hour bitmaps.
    let mut queries = queries;
    for name in ["Asia/Kathmandu", "Europe/Berlin", "America/St_Johns"] {
        let zone: Zone = serde_json::from_value(serde_json::json!(name)).expect("zone");
        // The local yesterday: part of the UTC yesterday, whose rest (the busy hours before
        // midnight) had users of its own.
        let today = zone.date_of(world.now);
        let yesterday = (today - chrono::Days::new(1)).to_string();
        let today = today.to_string();
        let recent = [
            (None, None),
            (
                Some((world.now - Duration::hours(40) - Duration::minutes(7)).to_rfc3339()),
                None,
            ),
            (Some(yesterday), Some(today)),
        ];
        for (from, to) in recent {
            for action in [None, Some("view")] {
                queries.push(StatsQuery {
                    range: TimeRange::parse(from.as_deref(), to.as_deref(), world.now, zone)
                        .expect("range"),
                    action: action.map(|a| Action::parse(a).expect("action")),
                    zone,
                });
            }
        }
        for days_ago in [0, 1] {
            dates.push(ActiveUsersDay {
                date: zone.date_of(world.now) - chrono::Days::new(days_ago),
                zone,
            });
        }
    }
    (queries, dates)
}

/// Each statistic of each query (every bucket, every user's profile, top users at each limit)
/// and active users on each date (with and without an action) equals the reference.
async fn assert_statistics_match(
    pool: &PgPool,
    world: &World,
    queries: &[StatsQuery],
    dates: &[ActiveUsersDay],
    limits: &[i64],
) {
    let mut conn = pool.acquire().await.expect("connection");
    let conn = &mut *conn;
    for q in queries {
        let case = format!(
            "{}..{} action={:?} tz={}",
            q.range.from(),
            q.range.to(),
            q.action,
            q.zone.name()
        );
        assert_same(
            &json_of(&stats::summary(pool, q).await.expect("summary")),
            &json_of(&reference::summary(conn, q).await.expect("summary")),
            &format!("summary {case}"),
        );
        for bucket in [Bucket::Hour, Bucket::Day, Bucket::Week, Bucket::Month] {
            assert_same(
                &json_of(&stats::timeseries(conn, q, bucket).await.expect("series")),
                &json_of(
                    &reference::timeseries(pool, q, bucket)
                        .await
                        .expect("series"),
                ),
                &format!("timeseries {bucket:?} {case}"),
            );
        }
        for &user in &world.users {
            assert_same(
                &json_of(&stats::user_stats(conn, user, q).await.expect("profile")),
                &json_of(&reference::user_stats(conn, user, q).await.expect("profile")),
                &format!("user {user} {case}"),
            );
        }
        for &limit in limits {
            let limit = TopUsersLimit(limit);
            assert_same(
                &json_of(&stats::top_users(pool, q, limit).await.expect("top")),
                &json_of(&reference::top_users(pool, q, limit).await.expect("top")),
                &format!("top-users limit={} {case}", limit.0),
            );
        }
    }
    for &date in dates {
        for action in [None, Some("click")] {
            assert_same(
                &json_of(&stats::active_users(pool, date, action).await.expect("au")),
                &json_of(
                    &reference::active_users(pool, date, action)
                        .await
                        .expect("au"),
                ),
                &format!(
                    "active-users {} {action:?} tz={}",
                    date.date,
                    date.zone.name()
                ),
            );
        }
    }
}

/// Zones every run covers: half-hour and 45-minute offsets, a 30-minute DST (Lord Howe), and
/// zones changing their clocks inside `World::dst_spring_2026`.
const ZONES: [&str; 7] = [
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "America/St_Johns",
    "Pacific/Chatham",
];
/// Three of these more, at random.
const MORE_ZONES: [&str; 12] = [
    "UTC",
    "Europe/London",
    "America/Los_Angeles",
    "America/Santiago",
    "America/Sao_Paulo",
    "Asia/Tokyo",
    "Asia/Kabul",
    "Asia/Tehran",
    "Australia/Adelaide",
    "Australia/Eucla",
    "Pacific/Auckland",
    "Pacific/Kiritimati",
];

/// Local-date ranges and unaligned ones, each across at least one change of the clocks.
fn zone_queries(zone: Zone) -> Vec<StatsQuery> {
    let now = "2026-04-20T00:00:00Z".parse().expect("now");
    let ranges: [(Option<&str>, Option<&str>); 6] = [
        (Some("2026-03-02"), Some("2026-04-08")),
        (Some("2026-03-28"), Some("2026-03-31")),
        (Some("2026-04-04"), Some("2026-04-06")),
        (Some("2026-03-07T23:10:00Z"), Some("2026-03-29T01:30:00Z")),
        (Some("2026-03-29T00:40:00Z"), Some("2026-03-29T01:20:00Z")),
        (Some("2026-03-20T16:20:00Z"), Some("2026-04-04T15:50:00Z")),
    ];
    ranges
        .iter()
        .flat_map(|&(from, to)| {
            [None, Some("view")].map(|action| StatsQuery {
                range: TimeRange::parse(from, to, now, zone).expect("range"),
                action: action.map(|a| Action::parse(a).expect("action")),
                zone,
            })
        })
        .collect()
}

#[tokio::test]
async fn every_statistic_is_exact_in_every_zone_across_changes_of_the_clocks() {
    let app = spawn_app().await;
    let world = World::dst_spring_2026();
    write_randomly(&app, &world, 7, 150).await;
    let seed: u64 = rand::random();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut zones = ZONES.to_vec();
    for _ in 0..3 {
        zones.push(MORE_ZONES[rng.random_range(0..MORE_ZONES.len())]);
    }
    eprintln!("zones {zones:?} (seed {seed})");
    // Read from the pieces; then with the parts of the closed local days stored; then after
    // writes into those days, which must make the stored parts count for nothing; then stored
    // again.
    for round in 0..4 {
        if round == 2 {
            write_randomly(&app, &world, 8, 60).await;
        }
        for name in &zones {
            let zone: Zone = serde_json::from_value(json!(name)).expect("zone");
            let dates: Vec<ActiveUsersDay> =
                ["2026-03-08", "2026-03-29", "2026-04-05", "2026-04-09"]
                    .map(|d| ActiveUsersDay {
                        date: d.parse().expect("date"),
                        zone,
                    })
                    .to_vec();
            let queries = zone_queries(zone);
            if round % 2 == 1 {
                store_parts_of(&app.pool, &queries, &dates).await;
                stats::refresh_blocks(&app.pool).await.expect("blocks");
            }
            assert_statistics_match(&app.pool, &world, &queries, &dates, &[3]).await;
        }
        let stored: i64 = sqlx::query_scalar("select count(*) from activity_parts")
            .fetch_one(&app.pool)
            .await
            .expect("parts");
        assert_eq!(
            stored > 0,
            round > 0,
            "round {round}: {stored} stored parts"
        );
    }
}

#[tokio::test]
async fn the_compiled_in_zone_rules_agree_with_postgres() {
    let app = spawn_app().await;
    for name in ZONES.iter().chain(&MORE_ZONES) {
        let zone: Zone = serde_json::from_value(json!(name)).expect("zone");
        let rows: Vec<(chrono::NaiveDate, DateTime<Utc>)> = sqlx::query_as(
            "select d::date, d::timestamp at time zone $1
             from generate_series('2026-01-01'::date, '2027-12-31'::date, interval '1 day') d",
        )
        .bind(name)
        .fetch_all(&app.pool)
        .await
        .expect("midnights");
        for (date, midnight) in rows {
            assert_eq!(zone.midnight(date), midnight, "{name} {date}");
        }
    }
}

/// The rollup tables, as text in a fixed order.
async fn rollup_tables(pool: &PgPool) -> Vec<String> {
    let mut out = Vec::new();
    for sql in [
        // trim_scale: 89.90 and 89.9 are the same sum, reached by different additions.
        // Writers spread a day's totals over slots; a rebuild puts them in one.
        "select concat_ws(' ', day, action, sum(events), trim_scale(sum(value_sum)),
                          trim_scale(sum(duration_sum)), sum(duration_count))
         from activity_daily group by day, action
         having sum(events) <> 0 or sum(value_sum) <> 0 or sum(duration_count) <> 0
         order by day, action",
        "select concat_ws(' ', quarter, action, sum(events), trim_scale(sum(value_sum)),
                          trim_scale(sum(duration_sum)), sum(duration_count))
         from activity_quarter_hours group by quarter, action
         having sum(events) <> 0 or sum(value_sum) <> 0 or sum(duration_count) <> 0
         order by quarter, action",
        "select concat_ws(' ', hour, action, sum(users)) from activity_hour_users
         group by hour, action having sum(users) <> 0 order by hour, action",
        "select concat_ws(' ', day, user_id, events, trim_scale(value_sum), quarters, ordinal)
         from activity_user_daily order by user_id, day",
        "select concat_ws(' ', day, user_id, action, events, trim_scale(value_sum), quarters, ordinal)
         from activity_user_action_daily order by user_id, action, day",
        // A bitmap whose last bit was cleared stays as zeros; a rebuild does not make it.
        "select concat_ws(' ', day, action, chunk, users) from activity_day_users
         where bit_count(users) > 0 order by day, action, chunk",
        // Kept for today and yesterday only; older rows wait for the hourly prune.
        "select concat_ws(' ', day, action, quarter, chunk, users) from activity_recent_quarter_users
         where bit_count(users) > 0 and day >= activity_recent_first_day()
         order by day, action, quarter, chunk",
    ] {
        let rows: Vec<String> = sqlx::query_scalar(sql)
            .fetch_all(pool)
            .await
            .expect("rollup rows");
        out.extend(rows);
    }
    out
}

pub async fn assert_rollups_equal_a_rebuild(pool: &PgPool) {
    let kept = rollup_tables(pool).await;
    sqlx::query("select activity_rollups_rebuild(current_date - 60, current_date + 1)")
        .execute(pool)
        .await
        .expect("rebuild");
    let rebuilt = rollup_tables(pool).await;
    assert_eq!(
        kept.len(),
        rebuilt.len(),
        "rows kept by triggers vs rebuilt"
    );
    for (k, r) in kept.iter().zip(&rebuilt) {
        assert_eq!(k, r, "a row kept by the triggers differs from the rebuild");
    }
}

#[tokio::test]
async fn every_statistic_equals_the_raw_computation_after_random_writes() {
    let app = spawn_app().await;
    let world = World::new();
    write_randomly(&app, &world, 1, 120).await;
    assert_every_statistic_matches(&app.pool, &world).await;
    assert_rollups_equal_a_rebuild(&app.pool).await;
}

/// Every write counts itself on its day, today's too (migration 15): a part of yesterday may then
/// be stored, since a write it missed (one whose transaction began before midnight, say) changes
/// the count when it commits.
#[tokio::test]
async fn every_write_counts_on_its_day_today_included() {
    let app = spawn_app().await;
    let count = async || -> i64 {
        sqlx::query_scalar("select activity_day_version((now() at time zone 'UTC')::date)")
            .fetch_one(&app.pool)
            .await
            .expect("version")
    };
    let before = count().await;
    sqlx::query(
        "insert into activities (id, user_id, action, occurred_at)
         values (gen_random_uuid(), gen_random_uuid(), 'now', now())",
    )
    .execute(&app.pool)
    .await
    .expect("insert");
    assert!(count().await > before, "a write to today counted");
}

/// Stored unions of days still valid (stored under their days' current write counts), and stale.
async fn block_counts(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as(
        "select count(*) filter (where version = activity_days_version(first_day, days)),
                count(*) filter (where version <> activity_days_version(first_day, days))
         from activity_blocks",
    )
    .fetch_one(pool)
    .await
    .expect("blocks")
}

/// Whole closed days read as stored unions (migration 13), and local days' parts stored down to
/// yesterday's (migration 15): exact when stored, when late writes into their days have made them
/// stale (they must count for nothing), and stored again.
#[tokio::test]
async fn statistics_read_through_unions_of_days_stay_exact_across_late_writes() {
    let app = spawn_app().await;
    let world = World::new();
    write_randomly(&app, &world, 3, 120).await;
    let stored = stats::refresh_blocks(&app.pool).await.expect("blocks");
    assert!(stored > 0, "{stored} unions stored");
    store_every_part(&app.pool, &world).await;
    let yesterday = (world.now - Duration::days(1)).date_naive();
    let yesterdays: i64 = sqlx::query_scalar(
        "select count(*) from activity_parts where day = $1 and version = activity_day_version(day)",
    )
    .bind(yesterday)
    .fetch_one(&app.pool)
    .await
    .expect("parts");
    assert!(
        yesterdays > 0,
        "yesterday's parts are stored (migration 15)"
    );
    let (valid, _) = block_counts(&app.pool).await;
    assert_every_statistic_matches(&app.pool, &world).await;
    write_randomly(&app, &world, 4, 60).await;
    let (still_valid, _) = block_counts(&app.pool).await;
    assert!(
        still_valid < valid,
        "late writes made unions stale: {still_valid} of {valid} still valid"
    );
    assert_every_statistic_matches(&app.pool, &world).await;
    let restored = stats::refresh_blocks(&app.pool).await.expect("blocks");
    assert!(restored > 0, "stale unions stored again");
    store_every_part(&app.pool, &world).await;
    assert_eq!(
        stats::refresh_blocks(&app.pool).await.expect("blocks"),
        0,
        "a second refresh finds nothing to store"
    );
    assert_every_statistic_matches(&app.pool, &world).await;
    let (_, stale) = block_counts(&app.pool).await;
    assert_eq!(stale, 0, "a stored union replaces its stale one");
}

/// The part of today before a zone's midnight that has passed (migration 16): stored once, it
/// stays valid while creates land after it, counts for nothing after a write into it, and every
/// statistic stays exact through all three.
#[tokio::test]
async fn a_part_of_today_stays_stored_while_creates_land_after_it() {
    let app = spawn_app().await;
    let world = World::new();
    let today = world.now.date_naive();
    let hour = (world.now - today.and_time(chrono::NaiveTime::MIN).and_utc()).num_hours();
    if hour == 0 {
        // No zone has a midnight between 00:00 and 01:00 UTC: no part of today has ended.
        eprintln!("skipped: no local midnight has passed in today's first UTC hour");
        return;
    }
    // A fixed-offset zone whose midnight is this UTC hour's start ("Etc/GMT+5" is UTC-5).
    let name = if hour <= 12 {
        format!("Etc/GMT+{hour}")
    } else {
        format!("Etc/GMT-{}", 24 - hour)
    };
    let zone: Zone = serde_json::from_value(json!(name)).expect("zone");
    write_randomly(&app, &world, 11, 120).await;
    let local_today = zone.date_of(world.now);
    let queries: Vec<StatsQuery> = [None, Some("view")]
        .into_iter()
        .flat_map(|action| {
            let yesterday = (local_today - chrono::Days::new(1)).to_string();
            [
                (None, None),
                (Some(yesterday), Some(local_today.to_string())),
            ]
            .map(|(from, to)| StatsQuery {
                range: TimeRange::parse(from.as_deref(), to.as_deref(), world.now, zone)
                    .expect("range"),
                action: action.map(|a| Action::parse(a).expect("action")),
                zone,
            })
        })
        .collect();
    let dates = [1, 0].map(|ago| ActiveUsersDay {
        date: local_today - chrono::Days::new(ago),
        zone,
    });
    let hi = i16::try_from(4 * hour).expect("quarter");
    store_parts_of(&app.pool, &queries, &dates).await;
    let valid = async || -> bool {
        sqlx::query_scalar(
            "select exists (select 1 from activity_parts
             where day = $1 and lo = 0 and hi = $2 and version = activity_part_version(day, lo, hi))",
        )
        .bind(today)
        .bind(hi)
        .fetch_one(&app.pool)
        .await
        .expect("parts")
    };
    assert!(
        valid().await,
        "today's part before {name}'s midnight stored"
    );
    assert_statistics_match(&app.pool, &world, &queries, &dates, &[3]).await;

    // Live ingest: creates at the current instant, after the part.
    for i in 0..3 {
        let at = Utc::now().max(world.now);
        let body =
            json!({"user_id": world.users[i], "action": "view", "occurred_at": at.to_rfc3339()});
        assert_eq!(app.post_activity(&body).await.status(), StatusCode::CREATED);
    }
    assert!(valid().await, "creates after the part leave it valid");
    assert_statistics_match(&app.pool, &world, &queries, &dates, &[3]).await;

    // A late write into the part, by a user nobody else had that day.
    let late = today.and_time(chrono::NaiveTime::MIN).and_utc() + Duration::minutes(7);
    let body =
        json!({"user_id": Uuid::new_v4(), "action": "view", "occurred_at": late.to_rfc3339()});
    assert_eq!(app.post_activity(&body).await.status(), StatusCode::CREATED);
    assert!(!valid().await, "a write into the part makes it stale");
    assert_statistics_match(&app.pool, &world, &queries, &dates, &[3]).await;
    store_parts_of(&app.pool, &queries, &dates).await;
    assert!(valid().await, "stored again");
    assert_statistics_match(&app.pool, &world, &queries, &dates, &[3]).await;
}

#[tokio::test]
async fn concurrent_writers_keep_the_rollups_exact_and_never_deadlock() {
    let app = spawn_app().await;
    let world = World::new();
    let writers = (0..6u64).map(|seed| write_randomly(&app, &world, 100 + seed, 40));
    futures_util::future::join_all(writers).await;
    assert_every_statistic_matches(&app.pool, &world).await;
    assert_rollups_equal_a_rebuild(&app.pool).await;
}

#[tokio::test]
async fn top_users_is_exact_when_no_user_stands_out() {
    // Every user equally busy: the candidates cannot settle the list, so the full sum must.
    let app = spawn_app().await;
    let world = World::new();
    let batch: Vec<Value> = (0..200)
        .map(|i| {
            json!({
                "user_id": Uuid::new_v4(),
                "action": "view",
                "occurred_at": (world.start + Duration::hours(i % 48)).to_rfc3339(),
            })
        })
        .collect();
    let response = app.post_batch(&json!({"activities": batch})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let q = StatsQuery {
        range: TimeRange::new(world.start, world.start + Duration::days(2)).expect("range"),
        action: None,
        zone: Zone::UTC,
    };
    let top = stats::top_users(&app.pool, &q, TopUsersLimit(3))
        .await
        .expect("top");
    assert_eq!(top.items.len(), 3);
    assert_same(
        &json_of(&top),
        &json_of(
            &reference::top_users(&app.pool, &q, TopUsersLimit(3))
                .await
                .expect("top"),
        ),
        "flat top-users",
    );
}

async fn index_definitions(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "select indexdef from pg_indexes where schemaname = 'public'
         and tablename in ('activities', 'activity_user_daily', 'activity_user_action_daily')
         order by indexname",
    )
    .fetch_all(pool)
    .await
    .expect("indexes")
}

#[tokio::test]
async fn seed_leaves_exact_rollups_and_every_index_whether_the_table_was_empty_or_not() {
    let app = spawn_app().await;
    let indexes = index_definitions(&app.pool).await;
    // Into an empty table (indexes dropped and rebuilt), then into a full one (kept). The same
    // seed would give the same ids again, so the second load takes another.
    for (seed, expected) in [(5, 3_000), (6, 6_000)] {
        let options = activity_analytics::seed::SeedOptions {
            users: 40,
            events: 3_000,
            days: 20,
            seed,
        };
        activity_analytics::seed::run(&app.pool, options, false)
            .await
            .expect("seed");
        let rows: i64 = sqlx::query_scalar("select count(*) from activities")
            .fetch_one(&app.pool)
            .await
            .expect("count");
        assert_eq!(rows, expected);
        assert_eq!(index_definitions(&app.pool).await, indexes);
        // Written in time order, as readers take them (and live writes leave them).
        for (table, column) in [
            ("activity_quarter_hours", "quarter"),
            ("activity_day_users", "day"),
        ] {
            let correlation: f32 = sqlx::query_scalar(
                "select correlation from pg_stats where tablename = $1 and attname = $2",
            )
            .bind(table)
            .bind(column)
            .fetch_one(&app.pool)
            .await
            .expect("statistics");
            assert!(correlation > 0.9, "{table}.{column}: {correlation}");
        }
        assert_rollups_equal_a_rebuild(&app.pool).await;
    }
    // The triggers still maintain the rollups after a seed.
    let world = World::new();
    write_randomly(&app, &world, 9, 30).await;
    assert_every_statistic_matches(&app.pool, &world).await;
    assert_rollups_equal_a_rebuild(&app.pool).await;
}

#[tokio::test]
async fn stored_parts_do_not_grow_with_the_ranges_actions_and_zones_a_client_invents() {
    let app = spawn_app().await;
    let world = World::dst_spring_2026();
    write_randomly(&app, &world, 9, 40).await;
    let now = "2026-04-20T00:00:00Z".parse().expect("now");
    let store = async |zone: &str, from: &str, action: Option<&str>| {
        let zone: Zone = serde_json::from_value(json!(zone)).expect("zone");
        let q = StatsQuery {
            range: TimeRange::parse(Some(from), Some("2026-03-20"), now, zone).expect("range"),
            action: action.map(|a| Action::parse(a).expect("action")),
            zone,
        };
        let mut parts = stats::timeseries_parts(&q, Bucket::Day);
        parts.extend(stats::summary_parts(&q));
        stats::store_parts(&app.pool, &parts).await.expect("store");
        let stored: i64 = sqlx::query_scalar("select count(*) from activity_parts")
            .fetch_one(&app.pool)
            .await
            .expect("count");
        stored
    };
    let whole_days = store("Asia/Kathmandu", "2026-03-02", None).await;
    // Two parts per local day (each straddles two UTC days), shared by its neighbours.
    assert!(whole_days >= 18, "the local days of March were stored");
    // The same days from other starting minutes: a part only where a local day starts or ends.
    for from in [
        "2026-03-01T18:22:00Z",
        "2026-03-01T18:31:00Z",
        "2026-03-02T07:00:00Z",
    ] {
        assert_eq!(
            store("Asia/Kathmandu", from, None).await,
            whole_days,
            "from {from}"
        );
    }
    // Parts hold every action: an action, or one nobody did, has nothing new to store.
    for action in ["click", "nobody_did_this"] {
        assert_eq!(
            store("Asia/Kathmandu", "2026-03-02", Some(action)).await,
            whole_days
        );
    }
    // Zones at the same offset cut days at the same instants: Berlin's days are Lagos' (UTC+1
    // until Berlin's clocks change on March 29).
    let berlin = store("Europe/Berlin", "2026-03-02", None).await;
    assert!(berlin > whole_days);
    assert_eq!(store("Africa/Lagos", "2026-03-02", None).await, berlin);

    // A late write makes its day's parts stale; the hourly refresh stores them again (the kinds
    // of parts in use, for each closed day it covers), and nothing else.
    let count = async |sql: &'static str| -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&app.pool)
            .await
            .expect("count")
    };
    let stale =
        "select count(*) from activity_parts where version <> activity_part_version(day, lo, hi)";
    sqlx::query(
        "insert into activities (id, user_id, action, occurred_at)
         values (gen_random_uuid(), gen_random_uuid(), 'late', '2026-03-10T12:00:00Z')",
    )
    .execute(&app.pool)
    .await
    .expect("insert");
    assert!(
        count(stale).await > 0,
        "the write made its day's parts stale"
    );
    let days = u32::try_from((Utc::now().date_naive() - world.start.date_naive()).num_days())
        .expect("days");
    let stored = stats::refresh_parts(&app.pool, days + 1)
        .await
        .expect("refresh");
    assert!(stored > 0);
    assert_eq!(count(stale).await, 0, "stored again under the new count");
    let kinds = "select count(*) from (select distinct lo, hi from activity_parts) k";
    let closed_days = "select count(*) from (select distinct day from activity_parts
                       where day < (now() at time zone 'UTC')::date) d";
    assert_eq!(
        count("select count(*) from activity_parts where day < (now() at time zone 'UTC')::date")
            .await,
        count(kinds).await * count(closed_days).await,
        "each kind of part on every closed day the refresh covers"
    );
    // And today, each kind that has ended (migration 16): the parts before a local midnight
    // that has passed.
    assert_eq!(
        count("select count(*) from activity_parts where day = (now() at time zone 'UTC')::date")
            .await,
        count(
            "select count(*) from (select distinct lo, hi from activity_parts) k
             where activity_quarter_start((now() at time zone 'UTC')::date, k.hi) <= now()"
        )
        .await,
        "today's parts that have ended"
    );
}
