//! `analytics seed`: realistic synthetic activity, deterministic for a seed, loaded with COPY.
//!
//! A few heavy users and many light ones (Zipf-like weights), a daily rhythm (busy afternoons,
//! quiet nights), quieter weekends, and a funnel of actions where purchases carry values.
//! Timestamps fall in the `days` days before the start of the current UTC hour (never in the
//! future, which the API would refuse), so the same seed gives the same rows within an hour.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::{DateTime, Datelike, Duration, DurationRound, Utc};
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

/// What every chunk of rows draws from: the users and the shapes of the distributions.
struct Population {
    users: Vec<Uuid>,
    user_weights: Vec<u64>,
    action_weights: Vec<u64>,
    hour_weights: Vec<u64>,
    start: DateTime<Utc>,
    days: u32,
}

impl Population {
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
            start: end - Duration::days(i64::from(o.days.max(1))),
            days: o.days.max(1),
        }
    }

    /// The chunks of a load as (day, rows): each day gets its share of the events (weekends
    /// about 60% of a weekday) in chunks of at most `CHUNK` rows. Loading day after day puts a
    /// day's rows on neighbouring pages, as live traffic would, so a scan of one day stays cheap.
    fn plan(&self, events: u64) -> Vec<(u32, u64)> {
        let weights: Vec<u64> = (0..self.days)
            .map(|d| {
                let date = self.start + Duration::days(i64::from(d));
                if date.weekday().number_from_monday() >= 6 {
                    6
                } else {
                    10
                }
            })
            .collect();
        let total: u64 = weights.iter().sum();
        let mut left = events;
        let mut chunks = Vec::new();
        for (day, weight) in weights.iter().enumerate() {
            let share = if day + 1 == weights.len() {
                left
            } else {
                (events * weight / total).min(left)
            };
            left -= share;
            let mut rest = share;
            while rest > 0 {
                let rows = rest.min(CHUNK);
                chunks.push((day as u32, rows));
                rest -= rows;
            }
        }
        chunks
    }

    /// Chunk `index` of the plan, in time order, encoded for a binary COPY. Each chunk has its
    /// own random stream derived from the seed and its index, so chunks can be generated on any
    /// number of threads and the rows stay the same.
    fn chunk(&self, seed: u64, index: u64, (day, rows): (u32, u64), out: &mut Vec<u8>) {
        let mut g = self.generator(seed, index);
        let mut rows: Vec<Row> = (0..rows).map(|_| g.row(day)).collect();
        rows.sort_unstable_by_key(|r| r.occurred_at);
        for row in &rows {
            row.encode(out);
        }
    }

    fn generator(&self, seed: u64, index: u64) -> Generator<'_> {
        Generator {
            rng: StdRng::seed_from_u64(
                seed ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ),
            population: self,
        }
    }
}

/// One generated activity.
#[derive(Debug, PartialEq)]
struct Row {
    id: Uuid,
    user_id: Uuid,
    action: &'static str,
    occurred_at: DateTime<Utc>,
    duration_ms: Option<i64>,
    value_cents: Option<u32>,
    path: Option<&'static str>,
}

/// Microseconds between the Unix epoch and 2000-01-01, Postgres' epoch for timestamps.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

impl Row {
    /// Appends the row in Postgres' binary COPY format: a field count, then each field as a
    /// length and its binary value (-1 for null). Parsing binary is far cheaper for the server
    /// than parsing text timestamps and UUIDs, and the load is bound by that parsing.
    fn encode(&self, out: &mut Vec<u8>) {
        fn field(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
            match bytes {
                Some(b) => {
                    out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    out.extend_from_slice(b);
                }
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        out.extend_from_slice(&7i16.to_be_bytes());
        field(out, Some(self.id.as_bytes()));
        field(out, Some(self.user_id.as_bytes()));
        field(out, Some(self.action.as_bytes()));
        let micros = self.occurred_at.timestamp_micros() - POSTGRES_EPOCH_MICROS;
        field(out, Some(&micros.to_be_bytes()));
        field(
            out,
            self.duration_ms
                .map(i64::to_be_bytes)
                .as_ref()
                .map(|b| &b[..]),
        );
        let value = self
            .value_cents
            .map(|c| (f64::from(c) / 100.0).to_be_bytes());
        field(out, value.as_ref().map(|b| &b[..]));
        // jsonb's binary form is a version byte (1) followed by the JSON text.
        let properties = self.path.map(|p| format!("\u{1}{{\"path\":\"{p}\"}}"));
        field(out, properties.as_ref().map(String::as_bytes));
    }
}

struct Generator<'a> {
    rng: StdRng,
    population: &'a Population,
}

impl Generator<'_> {
    /// A time on `day`, busier in the afternoon than at night.
    fn occurred_at(&mut self, day: u32) -> DateTime<Utc> {
        let date = self.population.start + Duration::days(i64::from(day));
        let hour = pick(&mut self.rng, &self.population.hour_weights) as i64;
        let micros = self.rng.random_range(0..3_600_000_000i64);
        date + Duration::hours(hour) + Duration::microseconds(micros)
    }

    fn row(&mut self, day: u32) -> Row {
        let p = self.population;
        let user_id = p.users[pick(&mut self.rng, &p.user_weights)];
        let (action, _) = ACTIONS[pick(&mut self.rng, &p.action_weights)];
        let occurred_at = self.occurred_at(day);
        let id = uuid::Builder::from_unix_timestamp_millis(
            occurred_at.timestamp_millis() as u64,
            &self.rng.random(),
        )
        .into_uuid();
        let mut row = Row {
            id,
            user_id,
            action,
            occurred_at,
            duration_ms: None,
            value_cents: None,
            path: None,
        };
        match action {
            "page_view" => {
                row.path = Some(PATHS[self.rng.random_range(0..PATHS.len())]);
                row.duration_ms = Some(self.rng.random_range(200..30_000));
            }
            "purchase" => row.value_cents = Some(self.rng.random_range(499..49_999)),
            "search" => row.duration_ms = Some(self.rng.random_range(50..2_000)),
            _ => {}
        }
        row
    }
}

/// Loads `events` activities; with `if_empty`, only into an empty table.
///
/// Everything happens in one transaction that keeps writers out, so the rollups are exact when it
/// commits: rows are copied with the rollup triggers deferred, then the rollups of the days they
/// fall on are rebuilt in one grouped pass. Into an empty table the indexes are dropped first and
/// built once at the end, which is several times faster than maintaining them row by row.
pub async fn run(pool: &PgPool, o: SeedOptions, if_empty: bool) -> anyhow::Result<u64> {
    let started = Instant::now();
    let end = Utc::now()
        .duration_trunc(Duration::hours(1))
        .unwrap_or_else(|_| Utc::now());
    // Every month the rows fall in gets its partition first (outside the load's transaction,
    // which would otherwise hold the partitions' creation lock for the whole load).
    let first = end - Duration::days(i64::from(o.days.max(1)) + 1);
    crate::db::partitions::ensure(pool, first, end).await?;
    let mut tx = pool.begin().await?;
    // One COPY of millions of rows and an index build are long statements: lift the service's
    // statement timeout, and give sorts and index builds room, for this transaction only.
    for setting in [
        "set local statement_timeout = 0",
        "set local work_mem = '256MB'",
        "set local maintenance_work_mem = '512MB'",
        "set local analytics.defer_rollups = 'on'",
        "lock table activities in share row exclusive mode",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(setting))
            .execute(&mut *tx)
            .await?;
    }
    let empty: bool = sqlx::query_scalar("select not exists (select 1 from activities)")
        .fetch_one(&mut *tx)
        .await?;
    if if_empty && !empty {
        tracing::info!("activities already present; not seeding");
        return Ok(0);
    }
    let indexes = if empty {
        DroppedIndexes::drop(&mut tx, &BULK_TABLES).await?
    } else {
        DroppedIndexes::default()
    };

    let rows = copy_rows(&mut tx, o, end).await?;

    let phase = Instant::now();
    let first_day = (end - Duration::days(i64::from(o.days.max(1)))).date_naive();
    sqlx::query("select activity_rollups_rebuild($1, $2)")
        .bind(first_day)
        .bind(end.date_naive())
        .execute(&mut *tx)
        .await?;
    // After the rebuild, so that the rollup rows are indexed once too.
    indexes.restore(&mut tx).await?;
    tx.commit().await?;
    tracing::info!(
        seconds = phase.elapsed().as_secs_f64(),
        "indexes and rollups built"
    );
    // Fresh statistics so the planner sees the new distribution at once.
    sqlx::query("analyze activities, activity_daily, activity_hourly, activity_hour_users, activity_user_daily, activity_user_action_daily, activity_day_users, activity_users")
        .execute(pool)
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

/// Tables whose indexes a load into an empty `activities` drops and rebuilds.
const BULK_TABLES: [&str; 3] = [
    "activities",
    "activity_user_daily",
    "activity_user_action_daily",
];

/// Index and primary-key definitions taken off tables for a bulk load, to put back afterwards.
#[derive(Default)]
struct DroppedIndexes {
    restore: Vec<String>,
}

impl DroppedIndexes {
    async fn drop(tx: &mut sqlx::PgConnection, tables: &[&str]) -> sqlx::Result<Self> {
        // Definitions come from the catalogue (pg_get_indexdef / pg_get_constraintdef), so the
        // rebuilt indexes are exactly the ones the migrations made.
        let found: Vec<(String, String, String)> = sqlx::query_as(
            "select format('alter table %I drop constraint %I', t.relname, c.conname),
                    format('alter table %I add constraint %I %s', t.relname, c.conname, pg_get_constraintdef(c.oid)),
                    'constraint'
             from pg_constraint c join pg_class t on t.oid = c.conrelid
             where c.contype = 'p' and t.relname = any($1) and t.relnamespace = 'public'::regnamespace
             union all
             -- A partitioned table's index is described `on only` the parent: rebuilt that
             -- way it would cover no partition, so it is rebuilt on the whole table.
             select format('drop index %I', i.relname),
                    regexp_replace(pg_get_indexdef(i.oid), ' ON ONLY ', ' ON '), 'index'
             from pg_index x join pg_class i on i.oid = x.indexrelid join pg_class t on t.oid = x.indrelid
             where t.relname = any($1) and t.relnamespace = 'public'::regnamespace and not x.indisprimary",
        )
        .bind(tables)
        .fetch_all(&mut *tx)
        .await?;
        let mut restore = Vec::with_capacity(found.len());
        for (drop, create, _) in found {
            sqlx::query(sqlx::AssertSqlSafe(drop))
                .execute(&mut *tx)
                .await?;
            restore.push(create);
        }
        Ok(Self { restore })
    }

    async fn restore(self, tx: &mut sqlx::PgConnection) -> sqlx::Result<()> {
        for create in self.restore {
            sqlx::query(sqlx::AssertSqlSafe(create))
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }
}

/// Streams the generated rows into one COPY. Chunks are generated on every core while the
/// database parses the ones already sent.
async fn copy_rows(
    tx: &mut sqlx::PgConnection,
    o: SeedOptions,
    end: DateTime<Utc>,
) -> anyhow::Result<u64> {
    let population = Arc::new(Population::new(o, end));
    let plan = Arc::new(population.plan(o.events));
    let next = Arc::new(AtomicU64::new(0));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<(u64, Vec<u8>)>(threads * 2);
    for _ in 0..threads {
        let (population, plan, next, sender) = (
            population.clone(),
            plan.clone(),
            next.clone(),
            sender.clone(),
        );
        std::thread::spawn(move || {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(&chunk) = plan.get(index as usize) else {
                    break;
                };
                let rows = chunk.1;
                let mut buffer = Vec::with_capacity(rows as usize * 130);
                population.chunk(o.seed, index, chunk, &mut buffer);
                if sender.blocking_send((rows, buffer)).is_err() {
                    break; // the COPY failed and stopped listening
                }
            }
        });
    }
    drop(sender);
    let bar = ProgressBar::new(o.events).with_style(
        ProgressStyle::with_template(
            "{bar:40} {human_pos}/{human_len} events  {per_sec}  eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut copy = tx
        .copy_in_raw("copy activities (id, user_id, action, occurred_at, duration_ms, value, properties) from stdin with (format binary)")
        .await?;
    // The binary format's signature, flags and header-extension length, then the tuples.
    copy.send(&b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0"[..])
        .await?;
    while let Some((rows, buffer)) = receiver.recv().await {
        copy.send(buffer).await?;
        bar.inc(rows);
    }
    copy.send(&(-1i16).to_be_bytes()[..]).await?;
    let rows = copy.finish().await?;
    bar.finish_and_clear();
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("valid")
    }

    fn rows(seed: u64) -> Vec<Row> {
        let population = Population::new(
            SeedOptions {
                users: 50,
                events: 0,
                days: 30,
                seed,
            },
            at("2026-11-30T00:00:00Z"),
        );
        let mut g = population.generator(seed, 0);
        (0..500).map(|i| g.row(i % 30)).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_rows() {
        assert_eq!(rows(7), rows(7));
        assert_ne!(rows(7), rows(8));
    }

    #[test]
    fn heavy_users_exist_and_rows_stay_in_the_window() {
        let rows = rows(1);
        let mut per_user = std::collections::HashMap::new();
        for row in &rows {
            *per_user.entry(row.user_id).or_insert(0) += 1;
            assert!(row.occurred_at >= at("2026-10-31T00:00:00Z"));
            assert!(row.occurred_at < at("2026-11-30T00:00:00Z"));
        }
        let max = per_user.values().copied().max().unwrap_or(0);
        assert!(
            max > 500 / 50 * 3,
            "the heaviest user has {max} of 500 events"
        );
    }

    #[test]
    fn the_plan_covers_every_event_with_quieter_weekends() {
        let population = Population::new(
            SeedOptions {
                users: 5,
                events: 0,
                days: 14,
                seed: 1,
            },
            at("2026-11-30T00:00:00Z"),
        );
        let plan = population.plan(1_000_003);
        assert_eq!(plan.iter().map(|c| c.1).sum::<u64>(), 1_000_003);
        assert!(plan.iter().all(|c| c.1 <= CHUNK && c.0 < 14));
        let per_day = |d: u32| plan.iter().filter(|c| c.0 == d).map(|c| c.1).sum::<u64>();
        // 2026-11-16 is a Monday, 2026-11-21 a Saturday.
        assert!(
            per_day(5) * 10 < per_day(0) * 7,
            "{} vs {}",
            per_day(5),
            per_day(0)
        );
    }

    #[test]
    fn a_row_encodes_as_postgres_binary_copy() {
        let row = Row {
            id: Uuid::from_u128(1),
            user_id: Uuid::from_u128(2),
            action: "purchase",
            occurred_at: at("2000-01-01T00:00:01Z"),
            duration_ms: None,
            value_cents: Some(1250),
            path: Some("/"),
        };
        let mut out = Vec::new();
        row.encode(&mut out);
        let mut expected = vec![0, 7];
        expected.extend([0, 0, 0, 16]);
        expected.extend(1u128.to_be_bytes());
        expected.extend([0, 0, 0, 16]);
        expected.extend(2u128.to_be_bytes());
        expected.extend([0, 0, 0, 8]);
        expected.extend(b"purchase");
        expected.extend([0, 0, 0, 8]);
        expected.extend(1_000_000i64.to_be_bytes());
        expected.extend((-1i32).to_be_bytes());
        expected.extend([0, 0, 0, 8]);
        expected.extend(12.5f64.to_be_bytes());
        expected.extend([0, 0, 0, 13]);
        expected.extend(b"\x01{\"path\":\"/\"}");
        assert_eq!(out, expected);
    }
}
