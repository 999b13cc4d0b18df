//! Every statistic is checked against an independent computation over the rows the test
//! inserted, including boundaries, empty buckets and the action filter.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, assert_problem, problem_fields, spawn_app};

#[derive(Clone, Debug)]
struct Row {
    user: Uuid,
    action: &'static str,
    at: DateTime<Utc>,
    value: Option<f64>,
    duration: Option<i64>,
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect(s)
}

/// A small, irregular data set: three users, three actions, rows on range boundaries.
fn dataset() -> Vec<Row> {
    let users: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let mut rows = Vec::new();
    let actions = ["view", "buy", "share"];
    for i in 0..60i64 {
        rows.push(Row {
            user: users[(i % 3) as usize * usize::from(i % 5 != 0)],
            action: actions[(i % 7 % 3) as usize],
            at: t("2026-10-01T00:00:00Z") + Duration::hours(i * 13 + i % 4),
            value: (i % 4 == 1).then_some(i as f64 * 1.25),
            duration: (i % 3 == 0).then_some(i * 100),
        });
    }
    // Exactly on the boundaries used below: `from` counts, `to` does not.
    for at in ["2026-10-10T00:00:00Z", "2026-10-20T00:00:00Z"] {
        rows.push(Row {
            user: users[1],
            action: "view",
            at: t(at),
            value: Some(1.0),
            duration: None,
        });
    }
    rows
}

async fn insert(app: &TestApp, rows: &[Row]) {
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut item =
                json!({"user_id": r.user, "action": r.action, "occurred_at": r.at.to_rfc3339()});
            if let Some(v) = r.value {
                item["value"] = json!(v);
            }
            if let Some(d) = r.duration {
                item["duration_ms"] = json!(d);
            }
            item
        })
        .collect();
    let response = app.post_batch(&json!({"activities": items})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

fn within<'a>(
    rows: &'a [Row],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    action: Option<&'a str>,
) -> impl Iterator<Item = &'a Row> {
    rows.iter()
        .filter(move |r| r.at >= from && r.at < to && action.is_none_or(|a| r.action == a))
}

fn close(a: &Value, b: f64, what: &str) {
    let a = a.as_f64().unwrap_or(f64::NAN);
    assert!((a - b).abs() < 1e-6, "{what}: got {a}, expected {b}");
}

fn expected_by_action(rows: &[&Row]) -> Vec<(String, i64, i64)> {
    let mut groups: BTreeMap<&str, (i64, BTreeSet<Uuid>)> = BTreeMap::new();
    for r in rows {
        let g = groups.entry(r.action).or_default();
        g.0 += 1;
        g.1.insert(r.user);
    }
    let mut out: Vec<_> = groups
        .into_iter()
        .map(|(a, (n, u))| (a.to_owned(), n, u.len() as i64))
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

fn actual_by_action(body: &Value) -> Vec<(String, i64, i64)> {
    body["by_action"]
        .as_array()
        .expect("by_action")
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap_or_default().to_owned(),
                a["events"].as_i64().unwrap_or(-1),
                a["unique_users"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

#[tokio::test]
async fn summary_matches_the_rows_with_and_without_an_action() {
    let app = spawn_app().await;
    let rows = dataset();
    insert(&app, &rows).await;
    let (from, to) = (t("2026-10-10T00:00:00Z"), t("2026-10-20T00:00:00Z"));
    for action in [None, Some("view"), Some("buy")] {
        let query = match action {
            Some(a) => format!("summary?from=2026-10-10&to=2026-10-20T00:00:00Z&action={a}"),
            None => "summary?from=2026-10-10&to=2026-10-20T00:00:00Z".into(),
        };
        let (_, body) = app.stats(&query).await;
        let expected: Vec<&Row> = within(&rows, from, to, action).collect();
        let case = format!("{action:?}");
        assert_eq!(body["events"], expected.len() as i64, "{case}");
        let users: BTreeSet<Uuid> = expected.iter().map(|r| r.user).collect();
        assert_eq!(body["unique_users"], users.len() as i64, "{case}");
        close(
            &body["value_sum"],
            expected.iter().filter_map(|r| r.value).sum(),
            &case,
        );
        let durations: Vec<i64> = expected.iter().filter_map(|r| r.duration).collect();
        if durations.is_empty() {
            assert_eq!(body["avg_duration_ms"], Value::Null, "{case}");
        } else {
            close(
                &body["avg_duration_ms"],
                durations.iter().sum::<i64>() as f64 / durations.len() as f64,
                &case,
            );
        }
        assert_eq!(
            actual_by_action(&body),
            expected_by_action(&expected),
            "{case}"
        );
        assert_eq!(body["from"], "2026-10-10T00:00:00Z");
        assert_eq!(body["to"], "2026-10-20T00:00:00Z");
    }
}

fn bucket_start(at: DateTime<Utc>, bucket: &str) -> DateTime<Utc> {
    let day = at.date_naive();
    let date = match bucket {
        "hour" => {
            return at
                .with_minute(0)
                .and_then(|x| x.with_second(0))
                .and_then(|x| x.with_nanosecond(0))
                .expect("hour");
        }
        "day" => day,
        "week" => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
        "month" => NaiveDate::from_ymd_opt(day.year(), day.month(), 1).expect("month"),
        _ => unreachable!(),
    };
    date.and_hms_opt(0, 0, 0).expect("midnight").and_utc()
}

fn next_bucket(start: DateTime<Utc>, bucket: &str) -> DateTime<Utc> {
    match bucket {
        "hour" => start + Duration::hours(1),
        "day" => start + Duration::days(1),
        "week" => start + Duration::days(7),
        _ => {
            let d = start.date_naive();
            let (y, m) = if d.month() == 12 {
                (d.year() + 1, 1)
            } else {
                (d.year(), d.month() + 1)
            };
            NaiveDate::from_ymd_opt(y, m, 1)
                .expect("month")
                .and_hms_opt(0, 0, 0)
                .expect("midnight")
                .and_utc()
        }
    }
}

#[tokio::test]
async fn timeseries_has_every_bucket_and_matches_the_rows() {
    let app = spawn_app().await;
    let rows = dataset();
    insert(&app, &rows).await;
    let cases = [
        ("hour", "2026-10-10T00:00:00Z", "2026-10-11T06:30:00Z"),
        ("day", "2026-10-03T12:00:00Z", "2026-10-20T00:00:00Z"),
        ("week", "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"),
        ("month", "2026-09-15T00:00:00Z", "2026-12-01T00:00:00Z"),
    ];
    for (bucket, from, to) in cases {
        let (from, to) = (t(from), t(to));
        let (_, body) = app
            .stats(&format!(
                "timeseries?bucket={bucket}&from={}&to={}",
                from.to_rfc3339().replace('+', "%2B"),
                to.to_rfc3339().replace('+', "%2B")
            ))
            .await;
        assert_eq!(body["bucket"], bucket);
        let points = body["points"].as_array().expect("points");
        let mut start = bucket_start(from, bucket);
        let mut expected_starts = Vec::new();
        while start < to {
            expected_starts.push(start);
            start = next_bucket(start, bucket);
        }
        assert_eq!(
            points.len(),
            expected_starts.len(),
            "{bucket}: number of buckets"
        );
        for (point, start) in points.iter().zip(&expected_starts) {
            assert_eq!(point["start"].as_str().map(t), Some(*start), "{bucket}");
            let end = next_bucket(*start, bucket);
            let inside: Vec<&Row> = within(&rows, (*start).max(from), end.min(to), None).collect();
            assert_eq!(point["events"], inside.len() as i64, "{bucket} at {start}");
            let users: BTreeSet<Uuid> = inside.iter().map(|r| r.user).collect();
            assert_eq!(
                point["unique_users"],
                users.len() as i64,
                "{bucket} at {start}"
            );
            close(
                &point["value_sum"],
                inside.iter().filter_map(|r| r.value).sum(),
                bucket,
            );
        }
        if bucket == "hour" {
            assert!(
                points.iter().any(|p| p["events"] == 0),
                "{bucket}: empty buckets are present as zeros"
            );
        }
    }
}

#[tokio::test]
async fn active_users_counts_distinct_users_in_each_window() {
    let app = spawn_app().await;
    let users: Vec<Uuid> = (0..6).map(|_| Uuid::new_v4()).collect();
    let rows: Vec<Row> = [
        (0, "2026-10-20T23:59:59Z"),
        (0, "2026-10-20T01:00:00Z"),
        (1, "2026-10-20T00:00:00Z"),
        (2, "2026-10-14T00:00:00Z"), // first day of the 7-day window
        (3, "2026-10-13T23:59:59Z"), // just outside it
        (4, "2026-09-21T00:00:00Z"), // first day of the 30-day window
        (5, "2026-09-20T23:59:59Z"), // just outside it
        (5, "2026-10-21T00:00:00Z"), // the next day
    ]
    .iter()
    .map(|(u, at)| Row {
        user: users[*u],
        action: "view",
        at: t(at),
        value: None,
        duration: None,
    })
    .collect();
    insert(&app, &rows).await;
    let (_, body) = app.stats("active-users?date=2026-10-20").await;
    assert_eq!(body["date"], "2026-10-20");
    assert_eq!(body["dau"], 2);
    assert_eq!(body["wau"], 3);
    assert_eq!(body["mau"], 5);
    close(&body["stickiness"], 2.0 / 5.0, "stickiness");
    let (_, empty) = app.stats("active-users?date=2020-01-01").await;
    assert_eq!(
        (empty["dau"].as_i64(), empty["mau"].as_i64()),
        (Some(0), Some(0))
    );
    close(&empty["stickiness"], 0.0, "stickiness with no users");
}

#[tokio::test]
async fn top_users_and_a_user_profile_match_the_rows() {
    let app = spawn_app().await;
    let rows = dataset();
    insert(&app, &rows).await;
    let (from, to) = (t("2026-10-01T00:00:00Z"), t("2026-11-01T00:00:00Z"));
    let mut per_user: HashMap<Uuid, (i64, f64, DateTime<Utc>)> = HashMap::new();
    for r in within(&rows, from, to, None) {
        let e = per_user.entry(r.user).or_insert((0, 0.0, r.at));
        e.0 += 1;
        e.1 += r.value.unwrap_or(0.0);
        e.2 = e.2.max(r.at);
    }
    let mut expected: Vec<_> = per_user.iter().collect();
    expected.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
    let (_, body) = app
        .stats("top-users?from=2026-10-01&to=2026-11-01&limit=2")
        .await;
    let items = body["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    for (item, (user, (events, value, last))) in items.iter().zip(&expected) {
        assert_eq!(item["user_id"], json!(user));
        assert_eq!(item["events"], *events);
        close(&item["value_sum"], *value, "value_sum");
        assert_eq!(item["last_seen"].as_str().map(t), Some(*last));
    }

    let (user, (events, value, last)) = expected[0];
    let (_, profile) = app
        .stats(&format!("users/{user}?from=2026-10-01&to=2026-11-01"))
        .await;
    let mine: Vec<&Row> = within(&rows, from, to, None)
        .filter(|r| r.user == *user)
        .collect();
    assert_eq!(profile["events"], *events);
    close(&profile["value_sum"], *value, "value_sum");
    assert_eq!(profile["last_seen"].as_str().map(t), Some(*last));
    assert_eq!(
        profile["first_seen"].as_str().map(t),
        mine.iter().map(|r| r.at).min()
    );
    let days: BTreeSet<NaiveDate> = mine.iter().map(|r| r.at.date_naive()).collect();
    assert_eq!(profile["active_days"], days.len() as i64);
    assert_eq!(actual_by_action(&profile), expected_by_action(&mine));

    let (_, nobody) = app.stats(&format!("users/{}", Uuid::new_v4())).await;
    assert_eq!(nobody["events"], 0);
    assert_eq!(nobody["first_seen"], Value::Null);
}

#[tokio::test]
async fn statistics_parameters_are_validated() {
    let app = spawn_app().await;
    let cases = [
        ("summary?from=2026-10-10&to=2026-10-10", "from"),
        ("summary?from=2026-10-11&to=2026-10-10", "from"),
        ("summary?from=2025-01-01&to=2026-01-03", "from"),
        ("summary?from=last-week", "from"),
        ("summary?to=soon", "to"),
        ("summary?action=Nope", "action"),
        ("timeseries?bucket=year", "bucket"),
        ("top-users?limit=0", "limit"),
        ("top-users?limit=101", "limit"),
        ("active-users?date=2026-02-30", "date"),
        ("users/not-a-uuid", "user_id"),
        ("summary?tz=Mars/Olympus_Mons", "tz"),
        // The last dates chrono can hold: a day after them cannot be counted.
        ("active-users?date=%2B262142-12-31", "date"),
        ("summary?from=%2B262142-12-30", "from"),
        ("timeseries?from=-262143-01-01&to=2026-01-01", "from"),
        ("timeseries?tz=europe/berlin", "tz"),
        ("active-users?tz=UTC%2B05:00", "tz"),
        ("top-users?tz=", "tz"),
        (
            "users/00000000-0000-0000-0000-000000000000?tz=Nowhere",
            "tz",
        ),
    ];
    for (query, field) in cases {
        let problem = assert_problem(
            app.stats_response(query).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            query,
        )
        .await;
        assert_eq!(problem_fields(&problem), vec![field.to_owned()], "{query}");
    }
}

#[tokio::test]
async fn the_default_range_is_thirty_days_ending_at_the_next_midnight() {
    let app = spawn_app().await;
    let (_, body) = app.stats("summary").await;
    let to = (Utc::now().date_naive() + Duration::days(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    assert_eq!(body["to"].as_str().map(t), Some(to));
    assert_eq!(body["from"].as_str().map(t), Some(to - Duration::days(30)));
}

#[tokio::test]
async fn a_zone_moves_days_bounds_and_the_default_range_to_its_midnights() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    // 18:20 UTC on 19 October is five past midnight on the 20th in Kathmandu (+05:45).
    for at in [
        "2026-10-19T18:10:00Z",
        "2026-10-19T18:20:00Z",
        "2026-10-20T12:00:00Z",
    ] {
        app.create(user, "view", at, None).await;
    }
    let (_, utc) = app.stats("timeseries?from=2026-10-19&to=2026-10-21").await;
    let (_, ktm) = app
        .stats("timeseries?from=2026-10-19&to=2026-10-21&tz=Asia/Kathmandu")
        .await;
    let events = |s: &Value| -> Vec<i64> {
        s["points"]
            .as_array()
            .expect("points")
            .iter()
            .map(|p| p["events"].as_i64().expect("n"))
            .collect()
    };
    assert_eq!(events(&utc), [2, 1]);
    assert_eq!(events(&ktm), [1, 2]);
    assert_eq!(ktm["from"], "2026-10-19T00:00:00+05:45");
    assert_eq!(ktm["points"][1]["start"], "2026-10-20T00:00:00+05:45");
    let (_, profile) = app
        .stats(&format!(
            "users/{user}?from=2026-10-19&to=2026-10-21&tz=Asia/Kathmandu"
        ))
        .await;
    assert_eq!(profile["first_seen"], "2026-10-19T23:55:00+05:45");
    assert_eq!(profile["active_days"], 2);
    let (_, active) = app
        .stats("active-users?date=2026-10-19&tz=Asia/Kathmandu")
        .await;
    assert_eq!(active["dau"], 1);

    // The default range: the 30 local days ending at the next local midnight.
    let (_, body) = app.stats("summary?tz=Pacific/Chatham").await;
    let to = t(body["to"].as_str().expect("to"));
    let from = t(body["from"].as_str().expect("from"));
    assert!(
        to > Utc::now() && to - Utc::now() <= Duration::days(1),
        "{body}"
    );
    assert!(
        body["to"].as_str().expect("to").ends_with(":45"),
        "Chatham midnight: {body}"
    );
    assert!(
        (from - (to - Duration::days(30))).num_hours().abs() <= 1,
        "{body}"
    );
}
