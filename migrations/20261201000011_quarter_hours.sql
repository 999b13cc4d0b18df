-- Quarter hours (issue 13; docs/rollups.md, "Time zones"). Every UTC offset in use is a multiple
-- of 15 minutes, so every local midnight and every local hour starts on a UTC quarter hour. With
-- hour-grained rollups, Kathmandu's days (starting at 18:15 UTC) and hours (at :15) read the
-- events of the odd quarters from `activities`: 45 ms for 30 local days and 265 ms for 720 local
-- hours on 10 M events, against 15 and 7 ms in UTC. Made a quarter finer:
--
-- - activity_quarter_hours replaces activity_hourly: totals per UTC quarter hour and action.
--   A partial day reads at most 95 of its rows per action, a partial hour at most 3.
-- - `quarters bit(96)` replaces the `hours bit(24)` masks of the per-user day rows: bit q is the
--   quarter [q * 15 min, (q + 1) * 15 min) of the UTC day.
-- - activity_hour_users counts the distinct users of every hour-long window that starts on a
--   quarter hour, not only on a whole hour: the hour buckets of every zone read one count each.
--   A window starting in the day's last three quarters ends in the next day.
-- - activity_recent_quarter_users: for today and yesterday (UTC) only, a bitmap of the users of
--   each quarter hour, per action and over all actions (action ''). The users of part of an open
--   day (Berlin's today is 23 hours of today and one of yesterday) are an OR of at most 95 of
--   them per stripe instead of a read of every per-user row of the day (11,000 on 10 M events);
--   closed days are served by the stored edges of migration 10. Rows of older days are kept
--   by nobody and pruned by the service's hourly task.
--
-- Cost (bench/results.md): four times the rows of activity_hourly and activity_hour_users (a
-- few thousand per million events), masks 9 bytes wider, and per written quarter four windows
-- to recount instead of one hour.

drop table activity_hourly;
create table activity_quarter_hours (
    quarter         timestamptz not null,
    action          text not null,
    slot            smallint not null default 0,
    events          bigint not null,
    value_sum       numeric not null,
    duration_sum    numeric not null,
    duration_count  bigint not null,
    primary key (quarter, action, slot)
);

create table activity_recent_quarter_users (
    day      date not null,
    action   text not null,
    quarter  smallint not null,
    chunk    integer not null,
    users    bit(1024) not null,
    primary key (day, action, quarter, chunk)
);

-- The first day activity_recent_quarter_users keeps: yesterday, by the clock of the transaction.
-- A writer keeps every day from its own yesterday on, and a reader that sees its write started
-- later, so the reader's yesterday is no earlier: every day a reader reads was kept by every
-- writer it sees (and filled by this migration or a rebuild before that).
create function activity_recent_first_day() returns date
language sql stable parallel safe
return (now() at time zone 'UTC')::date - 1;

comment on column activity_hour_users.hour is
    'start of an hour-long window, on any UTC quarter hour (migration 11)';

-- Dropping the columns drops the day indexes that carry them; they are made again below.
alter table activity_user_daily drop column hours,
    add column quarters bit(96) not null default B'0'::bit(96);
alter table activity_user_action_daily drop column hours,
    add column quarters bit(96) not null default B'0'::bit(96);
create index if not exists activity_user_daily_day_events_idx
    on activity_user_daily (day, events desc, user_id) include (quarters);
create index if not exists activity_user_action_daily_day_events_idx
    on activity_user_action_daily (day, action, events desc, user_id) include (quarters);

drop function activity_hour(timestamptz);
drop function activity_hour_of_day(timestamptz);
drop function activity_hour_start(date, integer);

-- The UTC quarter hour an instant falls in, its number within its UTC day, and back.
create function activity_quarter(t timestamptz) returns timestamptz
language sql immutable parallel safe
return date_bin('15 minutes', t, timestamptz '2000-01-01 00:00:00+00');

create function activity_quarter_of_day(t timestamptz) returns integer
language sql immutable parallel safe
return (extract(hour from t at time zone 'UTC')::integer * 4
        + extract(minute from t at time zone 'UTC')::integer / 15);

create function activity_quarter_start(day date, quarter integer) returns timestamptz
language sql immutable parallel safe
return (day + make_interval(mins => quarter * 15)) at time zone 'UTC';

-- Whether the user of two consecutive days' masks was active in the hour window starting at
-- quarter `s` of the first day (reaching into the second when s > 92).
create function activity_window_active(first_day bit(96), second_day bit(96), s integer) returns boolean
language sql immutable parallel safe
return bit_count(substring(first_day || second_day from s + 1 for 4)) > 0;

-- Generic plans: planning these statements afresh for every write (plpgsql's custom plans,
-- which it kept choosing) cost more than the write itself: single inserts ran at 140-210/s against
-- 750 with generic plans and 760-1,000 under migration 10 (pgbench, 4 clients). The joins below
-- are written so that a generic plan (which guesses one row per CTE) cannot turn them into a scan
-- of a table: every lookup of a stored row is a lateral probe by primary key.
create or replace function activity_rollups_apply(deltas activity_delta[]) returns void
language plpgsql
set plan_cache_mode = force_generic_plan
as $$
declare
    write_slot smallint := pg_backend_pid() % 64;
    none constant bit(96) := B'0'::bit(96);
begin
    perform activity_lock_users(array(select distinct d.user_id from unnest(deltas) d));

    -- Numbers for users seen for the first time. Only missing users are inserted, so the
    -- identity does not skip a value on every known user (holes would widen the bitmaps).
    insert into activity_users (user_id)
    select distinct d.user_id from unnest(deltas) d
    where d.sign > 0 and not exists (select 1 from activity_users u where u.user_id = d.user_id)
    order by 1
    on conflict do nothing;

    insert into activity_daily as t (day, action, slot, events, value_sum, duration_sum, duration_count)
    select (d.occurred_at at time zone 'UTC')::date, d.action, write_slot, sum(d.sign),
           coalesce(sum(d.sign * d.value::numeric), 0), coalesce(sum(d.sign * d.duration_ms), 0),
           count(d.duration_ms) filter (where d.sign > 0) - count(d.duration_ms) filter (where d.sign < 0)
    from unnest(deltas) d
    group by 1, 2
    order by 1, 2
    on conflict (day, action, slot) do update
    set events = t.events + excluded.events,
        value_sum = t.value_sum + excluded.value_sum,
        duration_sum = t.duration_sum + excluded.duration_sum,
        duration_count = t.duration_count + excluded.duration_count;

    insert into activity_quarter_hours as t (quarter, action, slot, events, value_sum, duration_sum, duration_count)
    select activity_quarter(d.occurred_at), d.action, write_slot, sum(d.sign),
           coalesce(sum(d.sign * d.value::numeric), 0), coalesce(sum(d.sign * d.duration_ms), 0),
           count(d.duration_ms) filter (where d.sign > 0) - count(d.duration_ms) filter (where d.sign < 0)
    from unnest(deltas) d
    group by 1, 2
    order by 1, 2
    on conflict (quarter, action, slot) do update
    set events = t.events + excluded.events,
        value_sum = t.value_sum + excluded.value_sum,
        duration_sum = t.duration_sum + excluded.duration_sum,
        duration_count = t.duration_count + excluded.duration_count;

    -- Per user and day (all actions): totals, the quarter mask, and the hour windows the user
    -- entered or left. A quarter the statement only removed rows from stays in the mask if the
    -- user still has an event in it (one probe of the (user_id, occurred_at) index). A window
    -- is recounted from the masks of the day it starts on and the next, before and after; a day
    -- the statement did not write is the same before and after.
    with d as (
        select (occurred_at at time zone 'UTC')::date as day, user_id,
               activity_quarter_of_day(occurred_at) as quarter, sign, value
        from unnest(deltas)
    ), touched as (
        select day, user_id, quarter, bool_or(sign > 0) as added from d group by 1, 2, 3
    ), quarter_state as (
        -- Whether the user has an event in the quarter after the statement, and had before (its
        -- stored mask, by primary key: a lateral probe per quarter, whatever the plan).
        select t.day, t.user_id, t.quarter,
               t.added or exists (
                   select 1 from activities a
                   where a.user_id = t.user_id
                     and a.occurred_at >= activity_quarter_start(t.day, t.quarter)
                     and a.occurred_at < activity_quarter_start(t.day, t.quarter + 1)) as present,
               coalesce(get_bit(o.quarters, t.quarter) = 1, false) as was
        from touched t
        left join lateral (
            select o.quarters from activity_user_daily o
            where o.user_id = t.user_id and o.day = t.day offset 0
        ) o on true
    ), masks as (
        select day, user_id,
               bit_or(set_bit(none, quarter, 1)) as written,
               coalesce(bit_or(set_bit(none, quarter, 1)) filter (where present), none) as kept
        from quarter_state group by 1, 2
    ), totals as (
        select day, user_id, sum(sign) as events, coalesce(sum(sign * value::numeric), 0) as value_sum
        from d group by 1, 2
    ), next as (
        select m.day, m.user_id, t.events, t.value_sum,
               coalesce(o.quarters, none) as old_quarters,
               (coalesce(o.quarters, none) & ~m.written) | m.kept as new_quarters
        from masks m
        join totals t using (day, user_id)
        left join activity_user_daily o using (day, user_id)
    ), written as (
        insert into activity_user_daily as t (day, user_id, events, value_sum, quarters)
        select day, user_id, events, value_sum, new_quarters from next
        -- A patch of `properties` alone changes nothing here: skip it instead of locking the row.
        where events <> 0 or value_sum <> 0 or new_quarters <> old_quarters
        order by user_id, day
        on conflict (user_id, day) do update
        set events = t.events + excluded.events, value_sum = t.value_sum + excluded.value_sum,
            quarters = excluded.quarters
    ), recent_changes as (
        -- The quarters of recent days whose bit the user gained or lost, per stripe.
        select s.day, s.quarter, activity_user_chunk(u.ordinal) as chunk,
               bit_or(set_bit(B'0'::bit(1024), activity_user_bit(u.ordinal), 1))
                   filter (where s.present) as set_mask,
               bit_or(set_bit(B'0'::bit(1024), activity_user_bit(u.ordinal), 1))
                   filter (where not s.present) as clear_mask
        from quarter_state s
        join activity_users u using (user_id)
        where s.day >= activity_recent_first_day() and s.present <> s.was
        group by 1, 2, 3
    ), recent as (
        insert into activity_recent_quarter_users as r (day, action, quarter, chunk, users)
        select day, '', quarter, chunk, coalesce(set_mask, B'0'::bit(1024)) from recent_changes
        order by 1, 3, 2
        on conflict (day, action, quarter, chunk) do update
        set users = (r.users & ~coalesce(
                (select c.clear_mask from recent_changes c
                 where (c.day, c.quarter, c.chunk) = (excluded.day, excluded.quarter, excluded.chunk)),
                B'0'::bit(1024)))
            | excluded.users
    ), windows as (
        -- Every window holding a written quarter: the four that start at it or up to three
        -- quarters before it (on the day before, for the day's first three quarters).
        select distinct t.user_id, w.day, w.s
        from touched t,
             lateral (select t.day - (t.quarter < k)::int as day, (t.quarter - k + 96) % 96 as s
                      from generate_series(0, 3) k) w
    ), days as (
        select x.user_id, x.day,
               coalesce(n.old_quarters, o.quarters, none) as old_quarters,
               coalesce(n.new_quarters, o.quarters, none) as new_quarters
        from (select distinct user_id, day + i as day
              from windows, generate_series(0, (s > 92)::int) i) x
        left join next n using (user_id, day)
        -- A day the statement did not write: its row, by primary key (lateral, so that the
        -- planner cannot trade the probes for a scan of the whole table).
        left join lateral (
            select o.quarters from activity_user_daily o
            where n.user_id is null and o.user_id = x.user_id and o.day = x.day
            offset 0
        ) o on true
    ), changes as (
        select activity_quarter_start(w.day, w.s) as start,
               activity_window_active(a.new_quarters, coalesce(b.new_quarters, none), w.s)::int
             - activity_window_active(a.old_quarters, coalesce(b.old_quarters, none), w.s)::int as delta
        from windows w
        join days a on a.user_id = w.user_id and a.day = w.day
        left join days b on b.user_id = w.user_id and b.day = w.day + 1
    )
    insert into activity_hour_users as h (hour, action, slot, users)
    select start, '', write_slot, sum(delta)
    from changes
    group by 1
    having sum(delta) <> 0
    order by 1
    on conflict (hour, action, slot) do update set users = h.users + excluded.users;

    -- The same per action, and the bitmap bits of the (user, action, day) rows that appeared
    -- (went from no events to some) or vanished (went to none) in this statement.
    with d as (
        select (occurred_at at time zone 'UTC')::date as day, user_id, action,
               activity_quarter_of_day(occurred_at) as quarter, sign, value
        from unnest(deltas)
    ), touched as (
        select day, user_id, action, quarter, bool_or(sign > 0) as added from d group by 1, 2, 3, 4
    ), quarter_state as (
        select t.day, t.user_id, t.action, t.quarter,
               t.added or exists (
                   select 1 from activities a
                   where a.user_id = t.user_id and a.action = t.action
                     and a.occurred_at >= activity_quarter_start(t.day, t.quarter)
                     and a.occurred_at < activity_quarter_start(t.day, t.quarter + 1)) as present,
               coalesce(get_bit(o.quarters, t.quarter) = 1, false) as was
        from touched t
        left join lateral (
            select o.quarters from activity_user_action_daily o
            where o.user_id = t.user_id and o.action = t.action and o.day = t.day offset 0
        ) o on true
    ), masks as (
        select day, user_id, action,
               bit_or(set_bit(none, quarter, 1)) as written,
               coalesce(bit_or(set_bit(none, quarter, 1)) filter (where present), none) as kept
        from quarter_state group by 1, 2, 3
    ), delta as (
        select day, user_id, action, sum(sign) as events, coalesce(sum(sign * value::numeric), 0) as value_sum
        from d group by 1, 2, 3
    ), next as (
        select m.day, m.user_id, m.action, t.events, t.value_sum,
               coalesce(o.quarters, none) as old_quarters,
               (coalesce(o.quarters, none) & ~m.written) | m.kept as new_quarters
        from masks m
        join delta t using (day, user_id, action)
        left join activity_user_action_daily o using (day, user_id, action)
    ), recent_changes as (
        select s.day, s.action, s.quarter, activity_user_chunk(u.ordinal) as chunk,
               bit_or(set_bit(B'0'::bit(1024), activity_user_bit(u.ordinal), 1))
                   filter (where s.present) as set_mask,
               bit_or(set_bit(B'0'::bit(1024), activity_user_bit(u.ordinal), 1))
                   filter (where not s.present) as clear_mask
        from quarter_state s
        join activity_users u using (user_id)
        where s.day >= activity_recent_first_day() and s.present <> s.was
        group by 1, 2, 3, 4
    ), recent as (
        insert into activity_recent_quarter_users as r (day, action, quarter, chunk, users)
        select day, action, quarter, chunk, coalesce(set_mask, B'0'::bit(1024)) from recent_changes
        order by 1, 2, 3, 4
        on conflict (day, action, quarter, chunk) do update
        set users = (r.users & ~coalesce(
                (select c.clear_mask from recent_changes c
                 where (c.day, c.action, c.quarter, c.chunk)
                     = (excluded.day, excluded.action, excluded.quarter, excluded.chunk)),
                B'0'::bit(1024)))
            | excluded.users
    ), windows as (
        select distinct t.user_id, t.action, w.day, w.s
        from touched t,
             lateral (select t.day - (t.quarter < k)::int as day, (t.quarter - k + 96) % 96 as s
                      from generate_series(0, 3) k) w
    ), days as (
        select x.user_id, x.action, x.day,
               coalesce(n.old_quarters, o.quarters, none) as old_quarters,
               coalesce(n.new_quarters, o.quarters, none) as new_quarters
        from (select distinct user_id, action, day + i as day
              from windows, generate_series(0, (s > 92)::int) i) x
        left join next n using (user_id, action, day)
        left join lateral (
            select o.quarters from activity_user_action_daily o
            where n.user_id is null and o.user_id = x.user_id and o.action = x.action and o.day = x.day
            offset 0
        ) o on true
    ), hour_users as (
        insert into activity_hour_users as h (hour, action, slot, users)
        select activity_quarter_start(w.day, w.s), w.action, write_slot,
               sum(activity_window_active(a.new_quarters, coalesce(b.new_quarters, none), w.s)::int
                 - activity_window_active(a.old_quarters, coalesce(b.old_quarters, none), w.s)::int)
        from windows w
        join days a on a.user_id = w.user_id and a.action = w.action and a.day = w.day
        left join days b on b.user_id = w.user_id and b.action = w.action and b.day = w.day + 1
        group by 1, 2
        having sum(activity_window_active(a.new_quarters, coalesce(b.new_quarters, none), w.s)::int
                 - activity_window_active(a.old_quarters, coalesce(b.old_quarters, none), w.s)::int) <> 0
        order by 1, 2
        on conflict (hour, action, slot) do update set users = h.users + excluded.users
    ), changed as (
        insert into activity_user_action_daily as t (day, user_id, action, events, value_sum, quarters)
        select day, user_id, action, events, value_sum, new_quarters from next
        where events <> 0 or value_sum <> 0 or new_quarters <> old_quarters
        order by user_id, action, day
        on conflict (user_id, action, day) do update
        set events = t.events + excluded.events, value_sum = t.value_sum + excluded.value_sum,
            quarters = excluded.quarters
        returning t.day, t.user_id, t.action, t.events
    ), transitions as (
        select c.day, c.action, activity_user_chunk(u.ordinal) as chunk,
               bit_or(set_bit(B'0'::bit(1024), activity_user_bit(u.ordinal), 1))
                   filter (where c.events > 0) as set_mask,
               bit_or(set_bit(B'0'::bit(1024), activity_user_bit(u.ordinal), 1))
                   filter (where c.events <= 0) as clear_mask
        from changed c
        join delta d using (day, user_id, action)
        join activity_users u using (user_id)
        -- appeared: nothing before, something now; vanished: nothing now
        where (c.events > 0 and c.events = d.events) or c.events <= 0
        group by 1, 2, 3
    )
    insert into activity_day_users as b (day, action, chunk, users)
    select day, action, chunk, coalesce(set_mask, B'0'::bit(1024)) from transitions
    order by 1, 2, 3
    on conflict (day, action, chunk) do update
    set users = (b.users & ~coalesce(
            (select t.clear_mask from transitions t
             where (t.day, t.action, t.chunk) = (excluded.day, excluded.action, excluded.chunk)),
            B'0'::bit(1024)))
        | excluded.users;

    if not exists (select 1 from unnest(deltas) d where d.sign < 0) then
        return;
    end if;
    -- Rows whose events went to zero: they are already locked by the statements above.
    delete from activity_user_action_daily t
    using (select distinct d.user_id, d.action, (d.occurred_at at time zone 'UTC')::date as day
           from unnest(deltas) d where d.sign < 0) gone
    where (t.user_id, t.action, t.day) = (gone.user_id, gone.action, gone.day) and t.events <= 0;
    delete from activity_user_daily t
    using (select distinct d.user_id, (d.occurred_at at time zone 'UTC')::date as day
           from unnest(deltas) d where d.sign < 0) gone
    where (t.user_id, t.day) = (gone.user_id, gone.day) and t.events <= 0;
end
$$;

create or replace function activity_rollups_on_truncate() returns trigger
language plpgsql as $$
begin
    truncate activity_daily, activity_quarter_hours, activity_hour_users, activity_user_daily,
             activity_user_action_daily, activity_day_users, activity_recent_quarter_users;
    return null;
end
$$;

-- The distinct users of every hour window starting from `first_day` to `last_day`, counted from
-- the masks of the per-user day rows (complete for those days and the next). A window inside
-- one day is a column sum of the rows' window masks (bit s set when any of quarters s..s+3 is):
-- one pass over the rows instead of a row per user and window (a third of the time on 10 M
-- events). The three windows reaching into the next day unite the users of both days' rows.
create function activity_hour_users_rebuild(first_day date, last_day date) returns void
language plpgsql as $$
declare
    sums text := (select string_agg(format('sum(get_bit(w, %s))', s), ', ' order by s)
                  from generate_series(0, 92) s);
    source record;
begin
    delete from activity_hour_users
    where hour >= activity_quarter_start(first_day, 0) and hour < activity_quarter_start(last_day + 1, 0);
    -- Table names and expressions below are constants of this function, never input.
    for source in
        select * from (values ('activity_user_daily', $e$''::text$e$),
                              ('activity_user_action_daily', 'action')) s(tab, act)
    loop
        execute format($q$
            insert into activity_hour_users (hour, action, users)
            select activity_quarter_start(t.day, c.i::integer - 1), t.action, c.n
            from (select day, action, array[%3$s] as counts
                  from (select day, %2$s as action, quarters | (quarters << 1) | (quarters << 2) | (quarters << 3) as w
                        from %1$I where day between $1 and $2 offset 0) r
                  group by 1, 2) t,
                 unnest(t.counts) with ordinality c(n, i)
            where c.n > 0$q$, source.tab, source.act, sums)
        using first_day, last_day;
        execute format($q$
            insert into activity_hour_users (hour, action, users)
            select activity_quarter_start(day, s), action, count(distinct user_id)
            from (
                select r.day, s, %2$s as action, r.user_id
                from %1$I r, generate_series(93, 95) s
                where r.day between $1 and $2 and bit_count(substring(r.quarters from s + 1)) > 0
                union all
                select r.day - 1, s, %2$s, r.user_id
                from %1$I r, generate_series(93, 95) s
                where r.day between $1 + 1 and $2 + 1 and bit_count(substring(r.quarters from 1 for s - 92)) > 0
            ) x
            group by 1, 2$q$, source.tab, source.act)
        using first_day, last_day;
    end loop;
end
$$;

-- As in migration 9, a quarter finer.
create or replace function activity_rollups_rebuild(first_day date, last_day date) returns void
language plpgsql as $$
declare
    lo timestamptz := first_day::timestamp at time zone 'UTC';
    hi timestamptz := (last_day + 1)::timestamp at time zone 'UTC';
begin
    delete from activity_daily where day between first_day and last_day;
    delete from activity_quarter_hours where quarter >= lo and quarter < hi;
    delete from activity_user_daily where day between first_day and last_day;
    delete from activity_user_action_daily where day between first_day and last_day;
    delete from activity_day_users where day between first_day and last_day;

    drop table if exists pg_temp.activity_rollups_rebuilt;
    create temporary table activity_rollups_rebuilt on commit drop as
    select (occurred_at at time zone 'UTC')::date as day, user_id, action, count(*) as events,
           coalesce(sum(value::numeric), 0) as value_sum,
           bit_or(set_bit(B'0'::bit(96), activity_quarter_of_day(occurred_at), 1)) as quarters
    from activities where occurred_at >= lo and occurred_at < hi
    group by 1, 2, 3;

    insert into activity_users (user_id)
    select distinct r.user_id from activity_rollups_rebuilt r
    where not exists (select 1 from activity_users u where u.user_id = r.user_id)
    order by 1
    on conflict do nothing;

    -- Inserted in key order: appending to the primary-key index is much cheaper than scattering.
    insert into activity_user_action_daily (day, user_id, action, events, value_sum, quarters)
    select day, user_id, action, events, value_sum, quarters from activity_rollups_rebuilt
    order by user_id, action, day;

    insert into activity_quarter_hours (quarter, action, events, value_sum, duration_sum, duration_count)
    select activity_quarter(occurred_at), action, count(*), coalesce(sum(value::numeric), 0),
           coalesce(sum(duration_ms), 0), count(duration_ms)
    from activities where occurred_at >= lo and occurred_at < hi
    group by 1, 2;

    insert into activity_daily (day, action, events, value_sum, duration_sum, duration_count)
    select (quarter at time zone 'UTC')::date, action, sum(events), sum(value_sum), sum(duration_sum),
           sum(duration_count)
    from activity_quarter_hours where quarter >= lo and quarter < hi
    group by 1, 2;

    insert into activity_user_daily (day, user_id, events, value_sum, quarters)
    select day, user_id, sum(events), sum(value_sum), bit_or(quarters)
    from activity_rollups_rebuilt
    group by 1, 2
    order by 2, 1;

    -- The windows starting on the day before reach into the first day.
    perform activity_hour_users_rebuild(first_day - 1, last_day);

    insert into activity_day_users (day, action, chunk, users)
    select r.day, r.action, activity_user_chunk(u.ordinal), bit_or(set_bit(B'0'::bit(1024), activity_user_bit(u.ordinal), 1))
    from activity_rollups_rebuilt r join activity_users u using (user_id)
    group by 1, 2, 3;

    delete from activity_recent_quarter_users where day between first_day and last_day;
    insert into activity_recent_quarter_users (day, action, quarter, chunk, users)
    select r.day, r.action, q, activity_user_chunk(u.ordinal),
           bit_or(set_bit(B'0'::bit(1024), activity_user_bit(u.ordinal), 1))
    from (select day, user_id, action, quarters from activity_rollups_rebuilt
          union all
          select day, user_id, '', quarters from activity_user_daily
          where day between first_day and last_day) r
    join activity_users u using (user_id), generate_series(0, 95) q
    where r.day >= activity_recent_first_day() and get_bit(r.quarters, q) = 1
    group by 1, 2, 3, 4;

    drop table activity_rollups_rebuilt;
end
$$;

-- Activities that exist before this migration: every rollup rebuilt, so masks and quarter rows
-- start exact.
select activity_rollups_rebuild(
    (min(occurred_at) at time zone 'UTC')::date, (max(occurred_at) at time zone 'UTC')::date)
from activities
having count(*) > 0;
