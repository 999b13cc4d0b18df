//! Top users from the per-user daily rollups, without summing every user's days.
//!
//! Summing each user's days over a month reads every (user, day) row: hundreds of thousands on a
//! busy service. Instead the `m` heaviest users of each whole day, and of the partial edge days,
//! become candidates and only their totals are computed. Anyone else had at most the m-th count
//! of each day, so at most `bound` events in the range. When the `limit`-th candidate has more
//! than `bound`, nobody outside the candidates can reach the list and the answer is exact;
//! otherwise (a flat distribution) the full sum decides. Both paths give the same list.

use chrono::NaiveDate;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{TopUser, TopUsers, action, bind_range, in_snapshot};
use crate::domain::{StatsQuery, TopUsersLimit};

/// The `$1` heaviest users of each whole day in `[$2, $3)` (of action `$4`), through the
/// `(day, [action,] events desc)` index: one short index scan per day.
const HEADS_ALL: &str = "
select d.day::date as day, h.user_id, h.events
from generate_series($2::date, $3::date - 1, interval '1 day') d(day)
cross join lateral (
    select r.user_id, r.events from activity_user_daily r
    where r.day = d.day::date
    order by r.events desc
    limit $1
) h
order by d.day, h.events desc";
const HEADS_ONE: &str = "
select d.day::date as day, h.user_id, h.events
from generate_series($2::date, $3::date - 1, interval '1 day') d(day)
cross join lateral (
    select r.user_id, r.events from activity_user_action_daily r
    where r.day = d.day::date and r.action = $4
    order by r.events desc
    limit $1
) h
order by d.day, h.events desc";

/// Totals over the range, heaviest first, with the time of each one's last event in the range.
/// `$rows` reads the whole days of the users in `$8` (or of everyone, `$8` null) from a rollup;
/// `$edge` limits the partial edge days to the same users.
macro_rules! totals_sql {
    ($rows:literal, $edge:literal) => {
        concat!(
            "with totals as (
                 select user_id, sum(events)::int8 as events, sum(value_sum) as value_sum
                 from (",
            $rows,
            "
                     union all
                     select a.user_id, count(*), coalesce(sum(a.value::numeric), 0)
                     from activities a
                     where ((a.occurred_at >= $1 and a.occurred_at < $3) or (a.occurred_at >= $4 and a.occurred_at < $2))
                       and ($5::text is null or a.action = $5)",
            $edge,
            "
                     group by a.user_id
                 ) t
                 group by user_id
                 order by events desc, user_id
                 limit $9
             )
             select t.user_id, t.events, activity_float8(t.value_sum) as value_sum,
                    (select max(a.occurred_at) from activities a
                     where a.user_id = t.user_id and a.occurred_at >= $1 and a.occurred_at < $2
                       and ($5::text is null or a.action = $5)) as last_seen
             from totals t
             order by t.events desc, t.user_id"
        )
    };
}

// Candidates are joined from an array so each one is an index lookup on the rollup's
// (user_id, ...) primary key; a filter `user_id = any($8)` invites a scan of every row.
const CANDIDATES_ALL: &str = totals_sql!(
    "select r.user_id, r.events, r.value_sum
     from unnest($8::uuid[]) c(user_id)
     join activity_user_daily r on r.user_id = c.user_id and r.day >= $6 and r.day < $7",
    " and a.user_id = any($8)"
);
const CANDIDATES_ONE: &str = totals_sql!(
    "select r.user_id, r.events, r.value_sum
     from unnest($8::uuid[]) c(user_id)
     join activity_user_action_daily r
       on r.user_id = c.user_id and r.action = $5 and r.day >= $6 and r.day < $7",
    " and a.user_id = any($8)"
);
const EVERYONE_ALL: &str = totals_sql!(
    "select r.user_id, r.events, r.value_sum from activity_user_daily r
     where r.day >= $6 and r.day < $7 and $8::uuid[] is null",
    ""
);
const EVERYONE_ONE: &str = totals_sql!(
    "select r.user_id, r.events, r.value_sum from activity_user_action_daily r
     where r.action = $5 and r.day >= $6 and r.day < $7 and $8::uuid[] is null",
    ""
);

// The heaviest users of the partial edge days, read from `activities`.
const EDGE_HEADS: &str = "
select user_id, count(*)::int8 as events
from activities
where ((occurred_at >= $1 and occurred_at < $3) or (occurred_at >= $4 and occurred_at < $2))
  and ($5::text is null or action = $5)
group by user_id
order by events desc, user_id
limit $6";

pub async fn top_users(
    db: &PgPool,
    q: &StatsQuery,
    limit: TopUsersLimit,
) -> sqlx::Result<TopUsers> {
    // The bound proven on the heads must hold for the totals: every statement reads one snapshot.
    let (_, items) = in_snapshot(db, async |tx| top_users_in(tx, q, limit).await).await?;
    Ok(TopUsers {
        from: q.range.from(),
        to: q.range.to(),
        items,
    })
}

/// The top users, heaviest first. Its statements must share one snapshot: call it inside
/// [`in_snapshot`].
pub async fn top_users_in(
    db: &mut PgConnection,
    q: &StatsQuery,
    limit: TopUsersLimit,
) -> sqlx::Result<Vec<TopUser>> {
    let split = q.range.split_days();
    let (first_day, end_day) = split.days();
    // Enough heads per day that, on skewed data, the bound falls well below the list.
    let m = 2 * limit.0 + 50;
    let mut heads = sqlx::query_as(if q.action.is_some() {
        HEADS_ONE
    } else {
        HEADS_ALL
    })
    .bind(m)
    .bind(first_day)
    .bind(end_day);
    if let Some(a) = action(q) {
        heads = heads.bind(a);
    }
    let heads: Vec<(NaiveDate, Uuid, i64)> = heads.fetch_all(&mut *db).await?;
    let mut candidates = Candidates::default();
    for day in heads.chunk_by(|a, b| a.0 == b.0) {
        let day: Vec<(Uuid, i64)> = day.iter().map(|(_, u, e)| (*u, *e)).collect();
        candidates.add(&day, m);
    }
    if split.whole_from != q.range.from() || split.whole_to != q.range.to() {
        let edge: Vec<(Uuid, i64)> = sqlx::query_as(EDGE_HEADS)
            .bind(q.range.from())
            .bind(q.range.to())
            .bind(split.whole_from)
            .bind(split.whole_to)
            .bind(action(q))
            .bind(m)
            .fetch_all(&mut *db)
            .await?;
        candidates.add(&edge, m);
    }

    let totals = |sql: &'static str, users: Option<Vec<Uuid>>| {
        bind_range(sqlx::query_as::<_, TopUser>(sql), q)
            .bind(users)
            .bind(limit.0)
    };
    let of_candidates = if q.action.is_some() {
        CANDIDATES_ONE
    } else {
        CANDIDATES_ALL
    };
    // A heavy user heads most days: look each one up once.
    candidates.users.sort_unstable();
    candidates.users.dedup();
    let mut items = totals(of_candidates, Some(candidates.users))
        .fetch_all(&mut *db)
        .await?;
    let settled = candidates.bound == 0
        || (items.len() as i64 == limit.0
            && items.last().is_some_and(|u| u.events > candidates.bound));
    if !settled {
        let everyone = if q.action.is_some() {
            EVERYONE_ONE
        } else {
            EVERYONE_ALL
        };
        items = totals(everyone, None).fetch_all(&mut *db).await?;
    }
    Ok(items)
}

#[derive(Default)]
struct Candidates {
    users: Vec<Uuid>,
    /// The most events a user outside `users` can have in the range.
    bound: i64,
}

impl Candidates {
    /// Adds one day's heads (heaviest first). A day that filled all `m` places may hide more
    /// users, each with at most its last count; a day with fewer has no one else.
    fn add(&mut self, heads: &[(Uuid, i64)], m: i64) {
        self.users.extend(heads.iter().map(|(u, _)| *u));
        if heads.len() as i64 == m {
            self.bound += heads.last().map_or(0, |(_, e)| *e);
        }
    }
}
