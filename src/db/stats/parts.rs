//! Stored day parts (migration 12, docs/rollups.md "Time zones"): the quarters of one UTC day
//! from its start to a local midnight of some zone, or from one to its end. A Berlin day is a
//! suffix of one UTC day and a prefix of the next; its distinct users would otherwise come from
//! every per-user row of both days. A part is stored with every action's totals and users after
//! the first statistics miss that needs it (and hourly for kinds in use), for days before today
//! and for the parts of today that have ended, and read instead of those rows while the writes
//! counted under it are unchanged (`activity_part_version`: its day's for a closed day, its own
//! quarters' for today, migration 16).

use chrono::{DateTime, Days, NaiveDate, Utc};
use sqlx::PgExecutor;

use crate::domain::{DayPart, Zone};

/// Which parts may be stored and read stored: the edges of a zone's local days that have ended.
/// Every write counts itself (migrations 15 and 16), so a part of any day is safe to store. A part
/// of today is checked against its own quarters' count, which the creates landing after it do
/// not change; one still running would be stale with the next create.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Storable {
    zone: Zone,
    now: DateTime<Utc>,
}

/// Parts and unions of days before this one may be stored: today, by this clock.
pub(super) fn closed_before() -> NaiveDate {
    Utc::now().date_naive()
}

impl Storable {
    pub(crate) fn now(zone: Zone) -> Self {
        Self {
            zone,
            now: Utc::now(),
        }
    }

    /// Nothing stored is read (a query of one user's own rows has nothing to gain).
    pub(crate) fn never() -> Self {
        Self {
            zone: Zone::UTC,
            now: DateTime::<Utc>::MIN_UTC,
        }
    }

    /// The first day not closed: stored parts and blocks (`blocks`) are of earlier days.
    pub(crate) fn closed_before(&self) -> NaiveDate {
        self.now.date_naive()
    }

    /// A local day edge that has ended: every part of a closed day, and those of today before
    /// a local midnight that has passed.
    pub(crate) fn admits(&self, part: &DayPart) -> bool {
        part.to() <= self.now && part.is_local_day_edge(self.zone)
    }
}

/// Parts as the queries take them: one array per column, element `i` of each being part `i`.
#[derive(Debug, Default)]
pub(crate) struct PartArgs {
    pub(crate) days: Vec<NaiveDate>,
    pub(crate) lo: Vec<i16>,
    pub(crate) hi: Vec<i16>,
    pub(crate) from: Vec<DateTime<Utc>>,
    pub(crate) to: Vec<DateTime<Utc>>,
    pub(crate) masks: Vec<String>,
    /// Whether the part may be read stored (`Storable`).
    pub(crate) stored: Vec<bool>,
}

impl PartArgs {
    pub(crate) fn push(&mut self, part: &DayPart, storable: Storable) {
        self.days.push(part.day);
        self.lo.push(i16::from(part.lo));
        self.hi.push(i16::from(part.hi));
        self.from.push(part.from());
        self.to.push(part.to());
        self.masks.push(part.mask());
        self.stored.push(storable.admits(part));
    }

    pub(crate) fn of(parts: &[DayPart], storable: Storable) -> Self {
        let mut args = Self::default();
        for part in parts {
            args.push(part, storable);
        }
        args
    }
}

/// The closed days' parts of `parts` that `storable` admits.
pub(crate) fn storable_parts(parts: &[DayPart], storable: Storable) -> Vec<DayPart> {
    parts
        .iter()
        .filter(|p| storable.admits(p))
        .copied()
        .collect()
}

/// Computes and stores those of `parts` that are not stored under their current write count
/// (`activity_part_version`): one statement, so a part and the count it is stored under come
/// from one snapshot. `parts` must be local day edges that have ended (`storable_parts`).
/// Returns how many parts it stored. A failure costs only speed: readers read the parts from
/// the rollups.
pub async fn store_parts(db: impl PgExecutor<'_>, parts: &[DayPart]) -> sqlx::Result<u64> {
    if parts.is_empty() {
        return Ok(0);
    }
    // Each part once: a part twice in one statement would be counted twice.
    let mut parts = parts.to_vec();
    parts.sort_unstable_by_key(|p| (p.day, p.lo, p.hi));
    parts.dedup();
    let a = PartArgs::of(&parts, Storable::never());
    // The header is inserted first and everything else joins its returned rows: a concurrent
    // store of the same part waits on the header's key and then stores nothing, so a header
    // always comes with all of its rows. Each day's per-user rows are read once for all its
    // parts; a part's users are those whose quarter mask meets it, per action, and their OR for
    // every action at once.
    let stored = sqlx::query_scalar!(
        r#"with wanted as (
            select w.day, w.lo, w.hi, w.qfrom, w.qto, activity_part_version(w.day, w.lo, w.hi) as version
            from unnest($1::date[], $2::int2[], $3::int2[], $4::timestamptz[], $5::timestamptz[])
                 w(day, lo, hi, qfrom, qto)
        ), header as (
            insert into activity_parts (day, lo, hi, version)
            select w.day, w.lo, w.hi, w.version from wanted w
            where not exists (select 1 from activity_parts p
                              where p.day = w.day and p.lo = w.lo and p.hi = w.hi and p.version = w.version)
            order by 1, 2, 3
            on conflict do nothing
            returning day, lo, hi, version
        ), parts as (
            select w.* from wanted w join header h using (day, lo, hi, version)
        ), stale as (
            delete from activity_parts p using parts n
            where p.day = n.day and p.lo = n.lo and p.hi = n.hi and p.version <> n.version
        ), totals as (
            insert into activity_part_totals
                (day, lo, hi, version, action, events, value_sum, duration_sum, duration_count)
            select n.day, n.lo, n.hi, n.version, q.action, sum(q.events), sum(q.value_sum),
                   sum(q.duration_sum), sum(q.duration_count)
            from parts n join activity_quarter_hours q on q.quarter >= n.qfrom and q.quarter < n.qto
            group by 1, 2, 3, 4, 5
            having sum(q.events) <> 0
        ), day_rows as (
            select d.day, a.action, a.ordinal, a.quarters
            from (select distinct day from parts) d
            cross join lateral (
                select a.action, a.ordinal, a.quarters from activity_user_action_daily a
                where a.day = d.day
                offset 0
            ) a
        ), action_bits as materialized (
            select n.day, n.lo, n.hi, n.version, r.action, activity_user_chunk(r.ordinal) as chunk,
                   bit_or(set_bit(B'0'::bit(1024), activity_user_bit(r.ordinal), 1)) as users
            from day_rows r
            join parts n
              on n.day = r.day and (r.quarters & activity_quarter_range(n.lo, n.hi)) <> B'0'::bit(96)
            group by 1, 2, 3, 4, 5, 6
        ), bitmaps as (
            insert into activity_part_users (day, lo, hi, version, action, chunk, users)
            select day, lo, hi, version, action, chunk, users from action_bits
            union all
            select day, lo, hi, version, '', chunk, bit_or(users) from action_bits group by 1, 2, 3, 4, 6
        )
        select count(*) as "n!" from parts"#,
        &a.days,
        &a.lo,
        &a.hi,
        &a.from,
        &a.to,
    )
    .fetch_one(db)
    .await?;
    Ok(u64::try_from(stored).unwrap_or(0))
}

/// Stores, for the last `days` closed days and today, the parts of every kind stored in that
/// time (one kind per zone offset in use and end of the day) that have ended: each newly closed
/// day, each part of today once its local midnight has passed, and each part a late write made
/// stale, is stored before a request needs it. Run hourly by the service.
pub async fn refresh_parts(db: &sqlx::PgPool, days: u32) -> sqlx::Result<u64> {
    let now = Utc::now();
    let today = now.date_naive();
    let kinds = sqlx::query!(
        r#"select distinct lo as "lo!", hi as "hi!" from activity_parts
         where day >= $1::date - $2::int4 order by 1, 2"#,
        today,
        i32::try_from(days).unwrap_or(i32::MAX),
    )
    .fetch_all(db)
    .await?;
    let mut parts = Vec::new();
    let days = (0..=u64::from(days)).filter_map(|i| today.checked_sub_days(Days::new(i)));
    for day in days {
        for k in &kinds {
            let (Ok(lo), Ok(hi)) = (u8::try_from(k.lo), u8::try_from(k.hi)) else {
                continue;
            };
            let part = DayPart { day, lo, hi };
            if part.to() <= now {
                parts.push(part);
            }
        }
    }
    store_parts(db, &parts).await
}
