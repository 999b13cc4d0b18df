//! `analytics seed`: realistic synthetic activity, deterministic for a seed, loaded with COPY.
//!
//! A few heavy users and many light ones (Zipf-like weights), a daily rhythm (busy afternoons,
//! quiet nights), quieter weekends, and a funnel of actions where purchases carry values.
//! Timestamps fall in the `days` days before the start of the current UTC hour (never in the
//! future, which the API would refuse), so the same seed gives the same rows within an hour.

use std::fmt::Write as _;
use std::time::Instant;

use chrono::{DateTime, Duration, DurationRound, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, Copy)]
pub struct SeedOptions {
    pub users: u32,
    pub events: u64,
    pub days: u32,
    pub seed: u64,
}

/// (action, weight): a browsing funnel.
const ACTIONS: [(&str, u32); 7] = [
    ("page_view", 600),
    ("click", 200),
    ("search", 80),
    ("add_to_cart", 60),
    ("purchase", 30),
    ("share", 20),
    ("signup", 10),
];
const PATHS: [&str; 6] = ["/", "/pricing", "/docs", "/blog", "/product", "/checkout"];
/// Relative activity per UTC hour.
const HOURS: [u32; 24] = [
    2, 1, 1, 1, 1, 2, 4, 6, 8, 9, 10, 10, 9, 10, 11, 12, 12, 11, 10, 9, 8, 6, 4, 3,
];
const CHUNK: u64 = 20_000;

/// Picks an index by cumulative weights.
fn pick(rng: &mut StdRng, cumulative: &[u64]) -> usize {
    let total = cumulative.last().copied().unwrap_or(1);
    let x = rng.random_range(0..total);
    cumulative.partition_point(|&c| c <= x)
}

fn cumulative(weights: impl Iterator<Item = u64>) -> Vec<u64> {
    weights
        .scan(0u64, |acc, w| {
            *acc += w;
            Some(*acc)
        })
        .collect()
}

struct Generator {
    rng: StdRng,
    users: Vec<Uuid>,
    user_weights: Vec<u64>,
    action_weights: Vec<u64>,
    hour_weights: Vec<u64>,
    start: DateTime<Utc>,
    days: u32,
}

impl Generator {
    fn new(o: SeedOptions, end: DateTime<Utc>) -> Self {
        let mut rng = StdRng::seed_from_u64(o.seed);
        let users = (0..o.users.max(1))
            .map(|_| uuid::Builder::from_random_bytes(rng.random()).into_uuid())
            .collect();
        Self {
            // Weight of the i-th user ~ 1/(i+1)^1.1, scaled to integers.
            user_weights: cumulative(
                (0..o.users.max(1)).map(|i| (1e9 / f64::from(i + 1).powf(1.1)) as u64 + 1),
            ),
            action_weights: cumulative(ACTIONS.iter().map(|(_, w)| u64::from(*w))),
            hour_weights: cumulative(HOURS.iter().map(|w| u64::from(*w))),
            users,
            rng,
            start: end - Duration::days(i64::from(o.days.max(1))),
            days: o.days.max(1),
        }
    }

    fn occurred_at(&mut self) -> DateTime<Utc> {
        loop {
            let day = self.rng.random_range(0..self.days);
            let date = self.start + Duration::days(i64::from(day));
            // Weekends see about 60% of a weekday's traffic.
            let weekend = matches!(date.format("%u").to_string().as_str(), "6" | "7");
            if weekend && self.rng.random_range(0..10) >= 6 {
                continue;
            }
            let hour = pick(&mut self.rng, &self.hour_weights) as i64;
            let micros = self.rng.random_range(0..3_600_000_000i64);
            return date + Duration::hours(hour) + Duration::microseconds(micros);
        }
    }

    /// Appends one CSV row (the COPY format of `activities`).
    fn row(&mut self, out: &mut String) {
        let user = self.users[pick(&mut self.rng, &self.user_weights)];
        let (action, _) = ACTIONS[pick(&mut self.rng, &self.action_weights)];
        let at = self.occurred_at();
        let id = uuid::Builder::from_unix_timestamp_millis(
            at.timestamp_millis() as u64,
            &self.rng.random(),
        )
        .into_uuid();
        let (duration, value, properties) = match action {
            "page_view" => {
                let path = PATHS[self.rng.random_range(0..PATHS.len())];
                (
                    Some(self.rng.random_range(200..30_000)),
                    None,
                    format!("\"{{\"\"path\"\":\"\"{path}\"\"}}\""),
                )
            }
            "purchase" => {
                let cents: u32 = self.rng.random_range(499..49_999);
                (None, Some(f64::from(cents) / 100.0), String::new())
            }
            "search" => (Some(self.rng.random_range(50..2_000)), None, String::new()),
            _ => (None, None, String::new()),
        };
        let _ = writeln!(
            out,
            "{id},{user},{action},{},{},{},{properties}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            duration.map(|d: i64| d.to_string()).unwrap_or_default(),
            value.map(|v| format!("{v:.2}")).unwrap_or_default(),
        );
    }
}

/// Loads `events` activities; with `if_empty`, only into an empty table.
pub async fn run(pool: &PgPool, o: SeedOptions, if_empty: bool) -> anyhow::Result<u64> {
    if if_empty {
        let any: bool = sqlx::query_scalar("select exists (select 1 from activities)")
            .fetch_one(pool)
            .await?;
        if any {
            tracing::info!("activities already present; not seeding");
            return Ok(0);
        }
    }
    let started = Instant::now();
    let end = Utc::now()
        .duration_trunc(Duration::hours(1))
        .unwrap_or_else(|_| Utc::now());
    let mut generator = Generator::new(o, end);
    let bar = ProgressBar::new(o.events).with_style(
        ProgressStyle::with_template(
            "{bar:40} {human_pos}/{human_len} events  {per_sec}  eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut conn = pool.acquire().await?;
    // One COPY of millions of rows is one long statement: lift the service's statement timeout
    // for this connection only.
    sqlx::query("set statement_timeout = 0")
        .execute(&mut *conn)
        .await?;
    let mut copy = conn
        .copy_in_raw("copy activities (id, user_id, action, occurred_at, duration_ms, value, properties) from stdin with (format csv)")
        .await?;
    let mut written = 0;
    let mut buffer = String::with_capacity(CHUNK as usize * 160);
    while written < o.events {
        let n = CHUNK.min(o.events - written);
        buffer.clear();
        for _ in 0..n {
            generator.row(&mut buffer);
        }
        copy.send(buffer.as_bytes()).await?;
        written += n;
        bar.inc(n);
    }
    let rows = copy.finish().await?;
    bar.finish_and_clear();
    // Fresh statistics so the planner sees the new distribution at once.
    sqlx::query("analyze activities")
        .execute(&mut *conn)
        .await?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "seeded {rows} events for {} users over {} days in {secs:.1} s ({:.0} events/s)",
        o.users,
        o.days,
        rows as f64 / secs.max(0.001)
    );
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(seed: u64) -> String {
        let end = "2026-11-30T00:00:00Z".parse().expect("valid");
        let mut g = Generator::new(
            SeedOptions {
                users: 50,
                events: 0,
                days: 30,
                seed,
            },
            end,
        );
        let mut out = String::new();
        for _ in 0..500 {
            g.row(&mut out);
        }
        out
    }

    #[test]
    fn the_same_seed_gives_the_same_rows() {
        assert_eq!(rows(7), rows(7));
        assert_ne!(rows(7), rows(8));
    }

    #[test]
    fn heavy_users_exist_and_rows_stay_in_the_window() {
        let text = rows(1);
        let mut per_user = std::collections::HashMap::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.splitn(7, ',').collect();
            *per_user.entry(fields[1]).or_insert(0) += 1;
            let at: DateTime<Utc> = fields[3].parse().expect("timestamp");
            assert!(
                at >= "2026-10-31T00:00:00Z"
                    .parse::<DateTime<Utc>>()
                    .expect("valid")
            );
            assert!(
                at < "2026-11-30T00:00:00Z"
                    .parse::<DateTime<Utc>>()
                    .expect("valid")
            );
        }
        let max = per_user.values().copied().max().unwrap_or(0);
        assert!(
            max > 500 / 50 * 3,
            "the heaviest user has {max} of 500 events"
        );
    }
}
