-- Rollups: aggregates of `activities` kept exact by triggers in the transaction that writes the
-- activity, so a statistic over 30 days reads a few thousand small rows instead of millions of
-- events. Statistics read whole UTC days from here and only the partial days at the edges of a
-- range from `activities`. docs/rollups.md shows the queries and their plans.
--
-- Sums of `value` and `duration_ms` are numeric, not float8: a delete then subtracts exactly what
-- the insert added, so rollups never drift however many writes they absorb.

-- Totals per UTC day and action (summary, timeseries). Every write of today's page views would
-- update the same row and wait for the previous writer to commit, so each connection writes its
-- own slot (its backend pid modulo 64) and readers add the slots up: concurrent writers rarely
-- meet, and a day has at most as many rows per action as there were writing connections.
create table activity_daily (
    day             date not null,
    action          text not null,
    slot            smallint not null default 0,
    events          bigint not null,
    value_sum       numeric not null,
    duration_sum    numeric not null,
    duration_count  bigint not null,
    primary key (day, action, slot)
);

-- Per user and UTC day, all actions together (top users without an action filter).
-- A row exists only while the user has events that day.
create table activity_user_daily (
    day        date not null,
    user_id    uuid not null,
    events     bigint not null,
    value_sum  numeric not null,
    primary key (user_id, day)
);
-- The heaviest users of a day first: top-users reads the head of each day to bound everyone else.
create index activity_user_daily_day_events_idx on activity_user_daily (day, events desc, user_id);

-- Per user, action and UTC day (top users of one action; which bits of the bitmaps are set).
create table activity_user_action_daily (
    day        date not null,
    user_id    uuid not null,
    action     text not null,
    events     bigint not null,
    value_sum  numeric not null,
    primary key (user_id, action, day)
);
create index activity_user_action_daily_day_events_idx
    on activity_user_action_daily (day, action, events desc, user_id);

-- A dense number per user, so that a set of users is a bitmap. Numbers are never reused.
create table activity_users (
    user_id  uuid primary key,
    ordinal  integer generated always as identity unique
);

-- Which users did `action` on `day`, as bitmaps of user ordinals. A distinct count over a range
-- is the popcount of an OR of bitmaps: exact, and independent of the number of events.
-- Users are striped over 64 bitmaps (ordinal % 64), so users who are new for the day at the same
-- moment mostly set bits in different rows and do not wait for each other; each bitmap holds
-- 1024 users of its stripe (128 bytes, never compressed or moved out of line).
create table activity_day_users (
    day     date not null,
    action  text not null,
    chunk   integer not null,
    users   bit(1024) not null,
    primary key (day, action, chunk)
);

-- Where a user's bit lives: the bitmap (chunk) and the position in it.
create function activity_user_chunk(ordinal integer) returns integer
language sql immutable parallel safe
return ordinal % 64 + 64 * (ordinal / 65536);

create function activity_user_bit(ordinal integer) returns integer
language sql immutable parallel safe
return (ordinal / 64) % 1024;

-- One signed contribution of an activity row to the rollups: +1 for a row that appears, -1 for
-- one that goes away (an update is both).
create type activity_delta as (
    sign         integer,
    occurred_at  timestamptz,
    user_id      uuid,
    action       text,
    value        double precision,
    duration_ms  bigint
);

-- Applies deltas to every rollup. Each table is written in primary-key order by one statement,
-- so two transactions lock rollup rows in the same order and cannot deadlock on them.
create function activity_rollups_apply(deltas activity_delta[]) returns void
language plpgsql as $$
declare
    write_slot smallint := pg_backend_pid() % 64;
begin
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

    insert into activity_user_daily as t (day, user_id, events, value_sum)
    select (d.occurred_at at time zone 'UTC')::date, d.user_id, sum(d.sign),
           coalesce(sum(d.sign * d.value::numeric), 0)
    from unnest(deltas) d
    group by 1, 2
    -- A patch of `properties` alone changes nothing here: skip it instead of locking the row.
    having sum(d.sign) <> 0 or coalesce(sum(d.sign * d.value::numeric), 0) <> 0
    order by 2, 1
    on conflict (user_id, day) do update
    set events = t.events + excluded.events, value_sum = t.value_sum + excluded.value_sum;

    -- The per-action rows, and the bitmap bits of the (user, action, day) rows that appeared
    -- (went from no events to some) or vanished (went to none) in this statement.
    with delta as (
        select (d.occurred_at at time zone 'UTC')::date as day, d.user_id, d.action,
               sum(d.sign) as events, coalesce(sum(d.sign * d.value::numeric), 0) as value_sum
        from unnest(deltas) d
        group by 1, 2, 3
        having sum(d.sign) <> 0 or coalesce(sum(d.sign * d.value::numeric), 0) <> 0
    ), changed as (
        insert into activity_user_action_daily as t (day, user_id, action, events, value_sum)
        select day, user_id, action, events, value_sum from delta
        order by user_id, action, day
        on conflict (user_id, action, day) do update
        set events = t.events + excluded.events, value_sum = t.value_sum + excluded.value_sum
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

-- `seed` loads millions of rows with this setting on, then rebuilds the days it touched with
-- activity_rollups_rebuild in the same transaction: one grouped pass instead of a trigger per row.
create function activity_rollups_deferred() returns boolean
language sql stable as $$ select coalesce(current_setting('analytics.defer_rollups', true), '') = 'on' $$;

-- Statement-level triggers see every row a statement wrote at once (transition tables), so a
-- batch of 5000 activities costs one grouped update per rollup, not 5000.
create function activity_rollups_on_insert() returns trigger
language plpgsql as $$
begin
    if not activity_rollups_deferred() then
        perform activity_rollups_apply(array(
            select row(1, n.occurred_at, n.user_id, n.action, n.value, n.duration_ms)::activity_delta
            from new_rows n));
    end if;
    return null;
end
$$;

create function activity_rollups_on_update() returns trigger
language plpgsql as $$
begin
    if not activity_rollups_deferred() then
        perform activity_rollups_apply(array(
            select row(1, n.occurred_at, n.user_id, n.action, n.value, n.duration_ms)::activity_delta
            from new_rows n
            union all
            select row(-1, o.occurred_at, o.user_id, o.action, o.value, o.duration_ms)::activity_delta
            from old_rows o));
    end if;
    return null;
end
$$;

create function activity_rollups_on_delete() returns trigger
language plpgsql as $$
begin
    if not activity_rollups_deferred() then
        perform activity_rollups_apply(array(
            select row(-1, o.occurred_at, o.user_id, o.action, o.value, o.duration_ms)::activity_delta
            from old_rows o));
    end if;
    return null;
end
$$;

create function activity_rollups_on_truncate() returns trigger
language plpgsql as $$
begin
    truncate activity_daily, activity_user_daily, activity_user_action_daily, activity_day_users;
    return null;
end
$$;

create trigger activities_rollups_insert after insert on activities
    referencing new table as new_rows for each statement execute function activity_rollups_on_insert();
create trigger activities_rollups_update after update on activities
    referencing old table as old_rows new table as new_rows
    for each statement execute function activity_rollups_on_update();
create trigger activities_rollups_delete after delete on activities
    referencing old table as old_rows for each statement execute function activity_rollups_on_delete();
create trigger activities_rollups_truncate after truncate on activities
    for each statement execute function activity_rollups_on_truncate();

-- Recomputes every rollup of the UTC days [first_day, last_day] from `activities`, with one scan
-- of the activities into a temporary table that every rollup is then derived from. The caller
-- must keep writers out (seed locks the table) or a rebuilt day could miss a concurrent write.
create function activity_rollups_rebuild(first_day date, last_day date) returns void
language plpgsql as $$
declare
    lo timestamptz := first_day::timestamp at time zone 'UTC';
    hi timestamptz := (last_day + 1)::timestamp at time zone 'UTC';
begin
    delete from activity_daily where day between first_day and last_day;
    delete from activity_user_daily where day between first_day and last_day;
    delete from activity_user_action_daily where day between first_day and last_day;
    delete from activity_day_users where day between first_day and last_day;

    drop table if exists pg_temp.activity_rollups_rebuilt;
    create temporary table activity_rollups_rebuilt on commit drop as
    select (occurred_at at time zone 'UTC')::date as day, user_id, action, count(*) as events,
           coalesce(sum(value::numeric), 0) as value_sum, coalesce(sum(duration_ms), 0) as duration_sum,
           count(duration_ms) as duration_count
    from activities where occurred_at >= lo and occurred_at < hi
    group by 1, 2, 3;

    insert into activity_users (user_id)
    select distinct r.user_id from activity_rollups_rebuilt r
    where not exists (select 1 from activity_users u where u.user_id = r.user_id)
    order by 1
    on conflict do nothing;

    -- Inserted in key order: appending to the primary-key index is much cheaper than scattering.
    insert into activity_user_action_daily (day, user_id, action, events, value_sum)
    select day, user_id, action, events, value_sum from activity_rollups_rebuilt
    order by user_id, action, day;

    insert into activity_daily (day, action, events, value_sum, duration_sum, duration_count)
    select day, action, sum(events), sum(value_sum), sum(duration_sum), sum(duration_count)
    from activity_rollups_rebuilt
    group by 1, 2;

    insert into activity_user_daily (day, user_id, events, value_sum)
    select day, user_id, sum(events), sum(value_sum)
    from activity_rollups_rebuilt
    group by 1, 2
    order by 2, 1;

    insert into activity_day_users (day, action, chunk, users)
    select r.day, r.action, activity_user_chunk(u.ordinal), bit_or(set_bit(B'0'::bit(1024), activity_user_bit(u.ordinal), 1))
    from activity_rollups_rebuilt r join activity_users u using (user_id)
    group by 1, 2, 3;

    drop table activity_rollups_rebuilt;
end
$$;

-- Activities that exist before this migration.
select activity_rollups_rebuild(
    (min(occurred_at) at time zone 'UTC')::date, (max(occurred_at) at time zone 'UTC')::date)
from activities
having count(*) > 0;
