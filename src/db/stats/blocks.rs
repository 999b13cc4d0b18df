//! Stored unions of closed days' user bitmaps (migration 13, docs/rollups.md "Many users"). A
//! distinct count over whole days ORs one bitmap per 1024 users per action per day, so its cost
//! grows with days × users: with a million users a year of months read two million bitmaps. A
//! block is the OR of 4, 16 or 64 aligned closed days (per action and for every action), or of
//! one day's actions; a run of whole days is read as at most three blocks of each size at each
//! end, and blocks not stored under their days' current write counts are read as their days.

use chrono::{Days, NaiveDate};
use sqlx::PgExecutor;

use super::parts::{Storable, closed_before};

/// Block lengths in days, longest first; `first_day` of a block is a multiple of its length
/// after 1970-01-01. One day is a block of its own for the union of its actions only.
const BLOCK_DAYS: [u16; 3] = [64, 16, 4];

fn day_number(day: NaiveDate) -> i64 {
    (day - NaiveDate::default()).num_days()
}

fn plus(day: NaiveDate, days: u16) -> NaiveDate {
    day.checked_add_days(Days::new(u64::from(days)))
        .unwrap_or(NaiveDate::MAX)
}

/// A run of whole days `[first, first + days)` as one bitmap source: a block, read stored when it
/// is (`stored`: a block of closed days that may be stored), else its days' own bitmaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    pub(crate) first: NaiveDate,
    pub(crate) days: u16,
    pub(crate) stored: bool,
}

/// The pieces of the whole days `[first, end)`: blocks of the days before `closed_before`, then
/// the rest as one piece read from the days. A single day is a block only when the reader wants
/// every action's union (`per_action` false): a day's own rows already are its per-action ones.
pub(crate) fn pieces(
    first: NaiveDate,
    end: NaiveDate,
    closed_before: NaiveDate,
    per_action: bool,
) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut day = first;
    let closed_end = end.min(closed_before);
    while day < closed_end {
        let n = day_number(day);
        let block = BLOCK_DAYS
            .into_iter()
            .find(|&len| n.rem_euclid(i64::from(len)) == 0 && plus(day, len) <= closed_end);
        let piece = match block {
            Some(days) => Piece {
                first: day,
                days,
                stored: true,
            },
            None => Piece {
                first: day,
                days: 1,
                stored: !per_action,
            },
        };
        out.push(piece);
        day = plus(day, piece.days);
    }
    if day < end {
        let days = u16::try_from((end - day).num_days()).unwrap_or(u16::MAX);
        out.push(Piece {
            first: day,
            days,
            stored: false,
        });
    }
    out
}

/// Pieces as the queries take them, each with the index of the bucket it belongs to.
#[derive(Debug, Default)]
pub(crate) struct PieceColumns {
    pub(crate) first: Vec<NaiveDate>,
    pub(crate) days: Vec<i16>,
    pub(crate) stored: Vec<bool>,
    pub(crate) bucket: Vec<i32>,
}

impl PieceColumns {
    /// Adds the pieces of the whole days `[first, end)` of bucket `bucket`.
    pub(crate) fn push_days(
        &mut self,
        (first, end): (NaiveDate, NaiveDate),
        bucket: i32,
        storable: Storable,
        per_action: bool,
    ) {
        for p in pieces(first, end, storable.closed_before(), per_action) {
            self.first.push(p.first);
            self.days.push(i16::try_from(p.days).unwrap_or(i16::MAX));
            self.stored.push(p.stored);
            self.bucket.push(bucket);
        }
    }
}

/// Every block of the days before `closed_before`, from the one holding `first` (the first day
/// with events) on: what the hourly refresh keeps stored.
fn blocks_between(first: NaiveDate, closed_before: NaiveDate) -> Vec<Piece> {
    let mut out = Vec::new();
    for len in BLOCK_DAYS.into_iter().chain([1]) {
        let start = day_number(first).div_euclid(i64::from(len)) * i64::from(len);
        let mut day = NaiveDate::default()
            .checked_add_signed(chrono::Duration::days(start))
            .unwrap_or(first);
        while plus(day, len) <= closed_before {
            out.push(Piece {
                first: day,
                days: len,
                stored: true,
            });
            day = plus(day, len);
        }
    }
    out
}

/// Computes and stores `block` unless it is stored under its days' current write counts, in one
/// statement (the block and the counts it is stored under come from one snapshot). Returns
/// whether it stored it. A failure costs only speed: readers read the days instead.
async fn store_block(db: impl PgExecutor<'_>, block: Piece) -> sqlx::Result<bool> {
    let days = i16::try_from(block.days).unwrap_or(i16::MAX);
    // The header is inserted first and the bitmaps join its returned rows: a concurrent store of
    // the same block waits on the header's key and then stores nothing. Blocks of one day keep
    // only the union of every action; longer ones each action's union as well.
    let stored = sqlx::query_scalar!(
        r#"with wanted as (
            select $1::date as first, $2::int2 as days, activity_days_version($1, $2) as version
        ), header as (
            insert into activity_blocks (first_day, days, version)
            select w.first, w.days, w.version from wanted w
            where not exists (select 1 from activity_blocks b
                              where b.first_day = w.first and b.days = w.days and b.version = w.version)
            on conflict do nothing
            returning first_day, days, version
        ), stale as (
            delete from activity_blocks b using header n
            where b.first_day = n.first_day and b.days = n.days and b.version <> n.version
        ), action_bits as materialized (
            select n.first_day, n.days, n.version, u.action, u.chunk, bit_or(u.users) as users
            from header n
            cross join lateral (
                select u.action, u.chunk, u.users from activity_day_users u
                where u.day >= n.first_day and u.day < n.first_day + n.days
                offset 0
            ) u
            group by 1, 2, 3, 4, 5
        ), bitmaps as (
            insert into activity_block_users (first_day, days, version, action, chunk, users)
            select first_day, days, version, action, chunk, users from action_bits where days > 1
            union all
            select first_day, days, version, '', chunk, bit_or(users) from action_bits
            group by 1, 2, 3, 5
        )
        select count(*) as "n!" from header"#,
        block.first,
        days,
    )
    .fetch_one(db)
    .await?;
    Ok(stored > 0)
}

/// Stores every block of closed days with events that is missing or was made stale by a late
/// write. Run hourly by the service; one block per statement, so each holds its locks briefly.
pub async fn refresh_blocks(db: &sqlx::PgPool) -> sqlx::Result<u64> {
    let first = sqlx::query_scalar!("select min(day) from activity_daily")
        .fetch_one(db)
        .await?;
    let Some(first) = first else {
        return Ok(0);
    };
    let mut stored = 0;
    for block in blocks_between(first, closed_before()) {
        stored += u64::from(store_block(db, block).await?);
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    fn covered(pieces: &[Piece]) -> Vec<NaiveDate> {
        pieces
            .iter()
            .flat_map(|p| (0..p.days).map(move |i| plus(p.first, i)))
            .collect()
    }

    #[test]
    fn pieces_cover_every_day_once_in_aligned_blocks() {
        let (first, end, closed) = (d("2026-08-03"), d("2026-11-29"), d("2026-11-20"));
        let all = pieces(first, end, closed, false);
        let expected: Vec<NaiveDate> = first.iter_days().take_while(|&x| x < end).collect();
        assert_eq!(covered(&all), expected);
        for p in &all {
            if p.days > 1 && p.stored {
                assert_eq!(day_number(p.first) % i64::from(p.days), 0, "{p:?}");
                assert!(plus(p.first, p.days) <= closed, "{p:?}");
            }
            assert_eq!(p.stored, plus(p.first, p.days) <= closed, "{p:?}");
        }
        // 118 days in 3 blocks of 64 and 16, a few of 4, singles and the open rest.
        assert!(all.len() <= 16, "{all:?}");
        let last = all.last().expect("pieces");
        assert_eq!((last.first, last.days, last.stored), (closed, 9, false));
    }

    #[test]
    fn a_30_day_range_is_a_dozen_pieces_and_singles_follow_the_reader() {
        let (first, end) = (d("2026-10-01"), d("2026-10-31"));
        let all = pieces(first, end, d("2026-12-01"), true);
        assert_eq!(covered(&all).len(), 30);
        assert!(all.len() <= 12, "{all:?}");
        assert!(all.iter().filter(|p| p.days == 1).all(|p| !p.stored));
        let unions = pieces(first, end, d("2026-12-01"), false);
        assert!(unions.iter().all(|p| p.stored));
    }

    #[test]
    fn nothing_is_a_block_when_no_day_is_closed() {
        let all = pieces(d("2026-10-01"), d("2026-10-31"), NaiveDate::MIN, false);
        assert_eq!(
            all,
            vec![Piece {
                first: d("2026-10-01"),
                days: 30,
                stored: false
            }]
        );
    }

    #[test]
    fn the_refresh_wants_every_aligned_block_of_closed_days() {
        let blocks = blocks_between(d("2026-09-01"), d("2026-11-29"));
        for len in [64u16, 16, 4, 1] {
            let of_len: Vec<&Piece> = blocks.iter().filter(|b| b.days == len).collect();
            assert!(!of_len.is_empty(), "no block of {len}");
            for b in &of_len {
                assert_eq!(day_number(b.first) % i64::from(len), 0);
                assert!(plus(b.first, len) <= d("2026-11-29"));
                assert!(plus(b.first, len) > d("2026-09-01"));
            }
        }
        assert_eq!(blocks.iter().filter(|b| b.days == 1).count(), 89);
    }
}
