//! A user's profile from the per-user rollups: whole days from `activity_user_action_daily`,
//! the partial edge days from the day's rows when the user was active only inside them (else
//! from `activities`), and first and last seen from one index probe each,
//! so its cost grows with the days in the range, not with the user's events (a user with a
//! million events costs what a user with ten does).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::buckets::{BucketPieces, clip};
use super::parts::Storable;
use super::{ActionCount, UserStats, action};
use crate::domain::{Bucket, StatsQuery, TimeRange, cut_at_midnights};

struct Row {
    action: Option<String>,
    events: i64,
    value_sum: f64,
    active_days: i64,
}

pub async fn user_stats(
    db: &mut PgConnection,
    user_id: Uuid,
    q: &StatsQuery,
) -> sqlx::Result<UserStats> {
    let split = q.range.split_days();
    let (first_day, end_day) = split.days();
    let edges = EdgePieces::of(q);
    // One row per action, then one with a null action for the whole range. An edge piece lies in
    // one UTC day outside the whole days (`$2`..`$3`), so counting distinct days over both counts
    // each day once. A piece whose day the user was active in only inside the piece's whole
    // quarters (`inside`: today before the hours to come, for one) is that day's rows; any other
    // is read from the user's events, or, when it is most of the day, is the day's rows less the
    // events of the rest (like top users' edges).
    let rows = sqlx::query_as!(
        Row,
        r#"with edges as (
            select e.lo, e.hi, e.day, d.day_start, d.day_end,
                   (select (u.quarters & ~e.mask::bit(96)) = B'0'::bit(96) from activity_user_daily u
                    where u.user_id = $4 and u.day = e.day) as inside,
                   e.hi - e.lo > interval '12 hours' as long
            from unnest($5::timestamptz[], $6::timestamptz[], $7::date[], $8::text[]) e(lo, hi, day, mask)
            cross join lateral (
                select (e.day::timestamp at time zone 'UTC') as day_start,
                       ((e.day + 1)::timestamp at time zone 'UTC') as day_end
            ) d
        ), day_rows as (
            -- Pieces read through the day's rows: the user was active only inside the piece, or
            -- the piece is most of the day and the events of the rest are taken away below.
            select a.action, a.day, a.events, a.value_sum
            from edges e
            join activity_user_action_daily a
              on a.user_id = $4 and a.day = e.day and ($1::text is null or a.action = $1) and a.events > 0
            where e.inside or e.long
        ), days as (
            select action, day, sum(events) as events, sum(value_sum) as value_sum
            from (
                select action, day, events, value_sum
                from activity_user_action_daily
                where user_id = $4 and day >= $2 and day < $3 and ($1::text is null or action = $1) and events > 0
                union all
                select action, day, events, value_sum from day_rows
                union all
                select a.action, e.day, count(*), coalesce(sum(a.value::numeric), 0)
                from edges e
                join activities a
                  on a.user_id = $4 and a.occurred_at >= e.lo and a.occurred_at < e.hi
                 and ($1::text is null or a.action = $1)
                where e.inside is not true and not e.long
                group by 1, 2
                union all
                select a.action, e.day, -count(*), -coalesce(sum(a.value::numeric), 0)
                from edges e
                join activities a
                  on a.user_id = $4
                 and ((a.occurred_at >= e.day_start and a.occurred_at < e.lo)
                      or (a.occurred_at >= e.hi and a.occurred_at < e.day_end))
                 and ($1::text is null or a.action = $1)
                where e.inside is not true and e.long
                group by 1, 2
            ) t
            group by 1, 2
            having sum(events) > 0
        ), per_action as (
            select action, sum(events)::int8 as events, sum(value_sum) as value_sum
            from days group by action having sum(events) > 0
        )
        select action as "action?", events as "events!", activity_float8(value_sum) as "value_sum!",
               0::int8 as "active_days!"
        from per_action
        union all
        select null, coalesce(sum(events), 0)::int8, activity_float8(coalesce(sum(value_sum), 0)),
               (select count(distinct day) from days)::int8
        from per_action"#,
        action(q),
        first_day,
        end_day,
        user_id,
        &edges.from,
        &edges.to,
        &edges.days,
        &edges.masks,
    )
    .fetch_all(&mut *db)
    .await?;
    // `min` and `max` under `order by ... limit 1` shapes: each is one probe of the
    // (user_id, occurred_at) index, or of (user_id, action, occurred_at) for one action.
    let seen = sqlx::query!(
        r#"select (select occurred_at from activities
                where user_id = $1 and occurred_at >= $2 and occurred_at < $3 and ($4::text is null or action = $4)
                order by occurred_at limit 1) as first_seen,
               (select occurred_at from activities
                where user_id = $1 and occurred_at >= $2 and occurred_at < $3 and ($4::text is null or action = $4)
                order by occurred_at desc limit 1) as last_seen"#,
        user_id,
        q.range.from(),
        q.range.to(),
        action(q),
    )
    .fetch_one(&mut *db)
    .await?;
    let (first_seen, last_seen) = (seen.first_seen, seen.last_seen);
    let local_days = if q.zone.is_utc() {
        None
    } else {
        Some(local_active_days(&mut *db, user_id, q).await?)
    };
    let mut by_action = Vec::new();
    let (mut events, mut value_sum, mut active_days) = (0, 0.0, 0);
    for row in rows {
        match row.action {
            Some(action) => by_action.push(ActionCount {
                action,
                events: row.events,
                unique_users: 1,
            }),
            None => (events, value_sum, active_days) = (row.events, row.value_sum, row.active_days),
        }
    }
    // The order the reference gives: most events first, then the action's bytes.
    by_action.sort_by(|a, b| {
        b.events
            .cmp(&a.events)
            .then_with(|| a.action.as_bytes().cmp(b.action.as_bytes()))
    });
    Ok(UserStats {
        user_id,
        from: q.zone.local(q.range.from()),
        to: q.zone.local(q.range.to()),
        events,
        value_sum,
        first_seen: first_seen.map(|t| q.zone.local(t)),
        last_seen: last_seen.map(|t| q.zone.local(t)),
        active_days: local_days.unwrap_or(active_days),
        by_action,
    })
}

/// The local days of the zone the user was active in: each day cut into rollup pieces like a
/// series bucket, and the user's own rows (or, under a quarter hour, its events) asked whether
/// they meet it. The UTC count above comes from the same rows, by UTC date.
async fn local_active_days(
    db: &mut PgConnection,
    user_id: Uuid,
    q: &StatsQuery,
) -> sqlx::Result<i64> {
    let (from, to) = (q.range.from(), q.range.to());
    let starts = q.zone.bucket_starts(from, to, Bucket::Day);
    let p = BucketPieces::new(&clip(&starts, from, to), Storable::never(), None);
    sqlx::query_scalar!(
        r#"select count(distinct b)::int8 as "n!" from (
            select d.b from unnest($3::date[], $4::date[], $5::int4[]) d(lo, hi, b)
            join activity_user_daily a on a.user_id = $1 and a.day >= d.lo and a.day < d.hi
            where $2::text is null and a.events > 0
            union all
            select d.b from unnest($3::date[], $4::date[], $5::int4[]) d(lo, hi, b)
            join activity_user_action_daily a on a.user_id = $1 and a.action = $2 and a.day >= d.lo and a.day < d.hi
            where a.events > 0
            union all
            select m.b from unnest($6::date[], $7::text[], $8::int4[]) m(day, mask, b)
            join activity_user_daily a on a.user_id = $1 and a.day = m.day
            where $2::text is null and (a.quarters & m.mask::bit(96)) <> B'0'::bit(96)
            union all
            select m.b from unnest($6::date[], $7::text[], $8::int4[]) m(day, mask, b)
            join activity_user_action_daily a on a.user_id = $1 and a.action = $2 and a.day = m.day
            where (a.quarters & m.mask::bit(96)) <> B'0'::bit(96)
            union all
            select r.b from unnest($9::timestamptz[], $10::timestamptz[], $11::int4[]) r(lo, hi, b)
            where exists (select 1 from activities e
                          where e.user_id = $1 and e.occurred_at >= r.lo and e.occurred_at < r.hi
                            and ($2::text is null or e.action = $2))
        ) x"#,
        user_id,
        action(q),
        &p.days_from,
        &p.days_to,
        &p.day_bucket,
        &p.parts.days,
        &p.parts.masks,
        &p.part_bucket,
        &p.raw_from,
        &p.raw_to,
        &p.raw_bucket,
    )
    .fetch_one(db)
    .await
}

/// The parts of the range outside its whole UTC days, cut at UTC midnights, each with the mask of
/// the whole quarter hours inside it.
#[derive(Debug, Default, PartialEq)]
struct EdgePieces {
    from: Vec<DateTime<Utc>>,
    to: Vec<DateTime<Utc>>,
    days: Vec<NaiveDate>,
    masks: Vec<String>,
}

impl EdgePieces {
    fn of(q: &StatsQuery) -> Self {
        let split = q.range.split_days();
        let mut edges = Self::default();
        for (from, to) in [
            (q.range.from(), split.whole_from),
            (split.whole_to, q.range.to()),
        ] {
            for (lo, hi) in cut_at_midnights(from, to) {
                let mask = TimeRange::new(lo, hi)
                    .ok()
                    .and_then(|r| r.pieces().day_parts().first().map(|p| p.mask()))
                    .unwrap_or_else(|| "0".repeat(96));
                edges.from.push(lo);
                edges.to.push(hi);
                edges.days.push(lo.date_naive());
                edges.masks.push(mask);
            }
        }
        edges
    }
}
