//! Top users from the per-user daily rollups, without summing every user's days.
//!
//! Summing each user's days over a month reads every (user, day) row: hundreds of thousands on a
//! busy service. Instead the `m` heaviest users of each day the range touches (the partial edge
//! days included) become candidates and only their totals are computed. Anyone else had at most
//! the m-th count of each day, so at most `bound` events in the range. When the `limit`-th candidate has more
//! than `bound`, nobody outside the candidates can reach the list and the answer is exact;
//! otherwise (a flat distribution) the full sum decides. Both paths give the same list.

use chrono::{DateTime, Duration, NaiveDate, Utc};
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
/// `$edge` the partial edge days of the same users from `activities`.
macro_rules! totals_sql {
    ($rows:literal, $edge:expr) => {
        concat!(
            "with totals as (
                 select user_id, sum(events)::int8 as events, sum(value_sum) as value_sum
                 from (",
            $rows,
            "
                     union all",
            $edge,
            "
                 ) t
                 group by user_id
                 having sum(events) > 0
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
// A candidate's partial edge days: `$10` are edge days read whole from the rollup (below), and
// `$11`..`$13` spans of its events added (+1) or taken away (-1), each one range scan of the
// (user_id, occurred_at) index. An edge day is its whole-day row minus the rest of the day
// when that rest is the shorter part (a range from 02:00 reads two hours, not twenty-two).
macro_rules! candidate_edges {
    () => {
        "
    select c.user_id, e.events, e.value_sum
    from unnest($8::uuid[]) c(user_id)
    cross join lateral (
        select coalesce(sum(s.sign), 0) as events, coalesce(sum(s.sign * a.value::numeric), 0) as value_sum
        from unnest($11::timestamptz[], $12::timestamptz[], $13::int4[]) s(lo, hi, sign)
        join activities a on a.user_id = c.user_id and a.occurred_at >= s.lo and a.occurred_at < s.hi
        where ($5::text is null or a.action = $5)
    ) e"
    };
}

macro_rules! everyone_edges {
    () => {
        "
    select a.user_id, count(*), coalesce(sum(a.value::numeric), 0)
    from activities a
    where ((a.occurred_at >= $1 and a.occurred_at < $3) or (a.occurred_at >= $4 and a.occurred_at < $2))
      and ($5::text is null or a.action = $5)
    group by a.user_id"
    };
}

/// Each candidate's events on the whole UTC days of the range (`$2`..`$3`) and on its partial
/// days (`$4`), read whole: the least and the most its count in the range can be, before any
/// event of a partial day is read.
const BOUNDS_ALL: &str = "
select c.user_id,
       coalesce(sum(r.events) filter (where r.day >= $2 and r.day < $3), 0)::int8,
       coalesce(sum(r.events) filter (where r.day = any($4::date[])), 0)::int8
from unnest($1::uuid[]) c(user_id)
join activity_user_daily r
  on r.user_id = c.user_id and ((r.day >= $2 and r.day < $3) or r.day = any($4::date[]))
group by c.user_id";
const BOUNDS_ONE: &str = "
select c.user_id,
       coalesce(sum(r.events) filter (where r.day >= $2 and r.day < $3), 0)::int8,
       coalesce(sum(r.events) filter (where r.day = any($4::date[])), 0)::int8
from unnest($1::uuid[]) c(user_id)
join activity_user_action_daily r
  on r.user_id = c.user_id and r.action = $5
     and ((r.day >= $2 and r.day < $3) or r.day = any($4::date[]))
group by c.user_id";

const CANDIDATES_ALL: &str = totals_sql!(
    "select r.user_id, r.events, r.value_sum
     from unnest($8::uuid[]) c(user_id)
     join activity_user_daily r
       on r.user_id = c.user_id and ((r.day >= $6 and r.day < $7) or r.day = any($10::date[]))",
    candidate_edges!()
);
const CANDIDATES_ONE: &str = totals_sql!(
    "select r.user_id, r.events, r.value_sum
     from unnest($8::uuid[]) c(user_id)
     join activity_user_action_daily r
       on r.user_id = c.user_id and r.action = $5
          and ((r.day >= $6 and r.day < $7) or r.day = any($10::date[]))",
    candidate_edges!()
);
const EVERYONE_ALL: &str = totals_sql!(
    "select r.user_id, r.events, r.value_sum from activity_user_daily r
     where r.day >= $6 and r.day < $7 and $8::uuid[] is null",
    everyone_edges!()
);
const EVERYONE_ONE: &str = totals_sql!(
    "select r.user_id, r.events, r.value_sum from activity_user_action_daily r
     where r.action = $5 and r.day >= $6 and r.day < $7 and $8::uuid[] is null",
    everyone_edges!()
);

pub async fn top_users(
    db: &PgPool,
    q: &StatsQuery,
    limit: TopUsersLimit,
) -> sqlx::Result<TopUsers> {
    // The bound proven on the heads must hold for the totals: every statement reads one snapshot.
    let (_, items) = in_snapshot(db, async |tx| top_users_in(tx, q, limit).await).await?;
    Ok(TopUsers {
        from: q.zone.local(q.range.from()),
        to: q.zone.local(q.range.to()),
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
    // Every day the range touches, the partial ones included: a user's count in part of a day
    // is at most its count in the whole day, so the whole day's heads bound the part too.
    let mut days = q.range.days();
    let first_day = days.next().unwrap_or_else(|| q.range.from().date_naive());
    let end_day = days.last().unwrap_or(first_day) + chrono::Days::new(1);
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

    let totals = |sql: &'static str, users: Option<Vec<Uuid>>| {
        bind_range(sqlx::query_as::<_, TopUserRow>(sql), q)
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
    let users = reachable(db, q, candidates.users, limit).await?;
    let edges = EdgePlan::of(q);
    let (lo, hi, sign): (Vec<_>, Vec<_>, Vec<_>) = edges.spans.into_iter().collect();
    let mut items = totals(of_candidates, Some(users))
        .bind(edges.whole_days)
        .bind(lo)
        .bind(hi)
        .bind(sign)
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
    Ok(items
        .into_iter()
        .map(|r| TopUser {
            user_id: r.user_id,
            events: r.events,
            value_sum: r.value_sum,
            last_seen: q.zone.local(r.last_seen),
        })
        .collect())
}

/// The candidates that can still reach the list. Reading a candidate's partial edge days means
/// reading its events there (a few hundred rows for a heavy user); in another zone every range
/// has such days. Each candidate's count lies between its whole days' events and those plus its
/// partial days' whole counts, so whoever's most is below the `limit`-th best least cannot be
/// listed, and only the others' events are read.
async fn reachable(
    db: &mut PgConnection,
    q: &StatsQuery,
    users: Vec<Uuid>,
    limit: TopUsersLimit,
) -> sqlx::Result<Vec<Uuid>> {
    let (whole_first, whole_end) = q.range.split_days().days();
    let partial: Vec<NaiveDate> = q
        .range
        .days()
        .filter(|d| !(whole_first <= *d && *d < whole_end))
        .collect();
    let limit = usize::try_from(limit.0).unwrap_or(usize::MAX);
    if partial.is_empty() || users.len() <= limit {
        return Ok(users);
    }
    let mut bounds = sqlx::query_as::<_, (Uuid, i64, i64)>(if q.action.is_some() {
        BOUNDS_ONE
    } else {
        BOUNDS_ALL
    })
    .bind(users)
    .bind(whole_first)
    .bind(whole_end)
    .bind(partial);
    if let Some(a) = action(q) {
        bounds = bounds.bind(a);
    }
    let bounds = bounds.fetch_all(&mut *db).await?;
    Ok(within_reach(&bounds, limit))
}

/// Of `(user, least, partial)` bounds, the users whose most (`least + partial`) reaches the
/// `limit`-th best least: all when there are no more than `limit`.
fn within_reach(bounds: &[(Uuid, i64, i64)], limit: usize) -> Vec<Uuid> {
    let mut least: Vec<i64> = bounds.iter().map(|b| b.1).collect();
    let Some(nth) = limit.checked_sub(1).filter(|&n| n < least.len()) else {
        return bounds.iter().map(|b| b.0).collect();
    };
    let (_, &mut kth, _) = least.select_nth_unstable_by(nth, |a, b| b.cmp(a));
    bounds
        .iter()
        .filter(|(_, least, partial)| least.saturating_add(*partial) >= kth)
        .map(|b| b.0)
        .collect()
}

#[derive(sqlx::FromRow)]
struct TopUserRow {
    user_id: Uuid,
    events: i64,
    value_sum: f64,
    last_seen: DateTime<Utc>,
}

/// How the candidates' partial edge days are read (see `candidate_edges!`).
struct EdgePlan {
    whole_days: Vec<NaiveDate>,
    spans: Vec<(DateTime<Utc>, DateTime<Utc>, i32)>,
}

impl EdgePlan {
    fn of(q: &StatsQuery) -> Self {
        let (from, to) = (q.range.from(), q.range.to());
        let split = q.range.split_days();
        let mut plan = Self {
            whole_days: Vec::new(),
            spans: Vec::new(),
        };
        if split.whole_from == split.whole_to {
            plan.spans.push((from, to, 1));
            return plan;
        }
        let day = Duration::days(1);
        // [from, whole_from) is the end of the day before whole_from.
        if from < split.whole_from {
            let day_start = split.whole_from - day;
            if split.whole_from - from <= day / 2 {
                plan.spans.push((from, split.whole_from, 1));
            } else {
                plan.whole_days.push(day_start.date_naive());
                plan.spans.push((day_start, from, -1));
            }
        }
        // [whole_to, to) is the start of the day at whole_to.
        if split.whole_to < to {
            if to - split.whole_to <= day / 2 {
                plan.spans.push((split.whole_to, to, 1));
            } else {
                plan.whole_days.push(split.whole_to.date_naive());
                plan.spans.push((to, split.whole_to + day, -1));
            }
        }
        plan
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_every_candidate_whose_most_reaches_the_limit_th_least() {
        let [a, b, c, d] = [1, 2, 3, 4].map(Uuid::from_u128);
        let bounds = [(a, 100, 0), (b, 90, 5), (c, 50, 40), (d, 50, 39)];
        // The second best least is 90: c can reach it exactly (a tie still competes), d cannot.
        assert_eq!(within_reach(&bounds, 2), [a, b, c]);
        assert_eq!(within_reach(&bounds, 1), [a]);
        assert_eq!(within_reach(&bounds, 4), [a, b, c, d]);
        assert_eq!(within_reach(&bounds, 9), [a, b, c, d]);
    }
}
