//! The synthetic rows: who does what when (heavy and light users, a daily rhythm, quieter
//! weekends, a funnel of actions), each encoded as a tuple of Postgres' binary COPY format.

use chrono::{DateTime, Datelike, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use super::SeedOptions;

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
pub(super) const CHUNK: u64 = 20_000;

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
pub(super) struct Population {
    users: Vec<Uuid>,
    user_weights: Vec<u64>,
    action_weights: Vec<u64>,
    hour_weights: Vec<u64>,
    start: DateTime<Utc>,
    days: u32,
}

impl Population {
    pub(super) fn new(o: SeedOptions, end: DateTime<Utc>) -> Self {
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
    pub(super) fn plan(&self, events: u64) -> Vec<(u32, u64)> {
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
    pub(super) fn chunk(&self, seed: u64, index: u64, (day, rows): (u32, u64), out: &mut Vec<u8>) {
        let mut g = self.generator(seed, index);
        let mut rows: Vec<Row> = (0..rows).map(|_| g.row(day)).collect();
        rows.sort_unstable_by_key(|r| r.occurred_at);
        for row in &rows {
            row.encode(out);
        }
    }

    pub(super) fn generator(&self, seed: u64, index: u64) -> Generator<'_> {
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
pub(super) struct Row {
    pub(super) id: Uuid,
    pub(super) user_id: Uuid,
    pub(super) action: &'static str,
    pub(super) occurred_at: DateTime<Utc>,
    pub(super) duration_ms: Option<i64>,
    pub(super) value_cents: Option<u32>,
    pub(super) path: Option<&'static str>,
}

/// Microseconds between the Unix epoch and 2000-01-01, Postgres' epoch for timestamps.
pub(super) const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

impl Row {
    /// Appends the row in Postgres' binary COPY format: a field count, then each field as a
    /// length and its binary value (-1 for null). Parsing binary is far cheaper for the server
    /// than parsing text timestamps and UUIDs, and the load is bound by that parsing.
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
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

pub(super) struct Generator<'a> {
    rng: StdRng,
    population: &'a Population,
}

impl Generator<'_> {
    /// A time on `day`, busier in the afternoon than at night.
    pub(super) fn occurred_at(&mut self, day: u32) -> DateTime<Utc> {
        let date = self.population.start + Duration::days(i64::from(day));
        let hour = pick(&mut self.rng, &self.population.hour_weights) as i64;
        let micros = self.rng.random_range(0..3_600_000_000i64);
        date + Duration::hours(hour) + Duration::microseconds(micros)
    }

    pub(super) fn row(&mut self, day: u32) -> Row {
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
