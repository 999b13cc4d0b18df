-- Hourly rollups: statistics whose range or buckets do not fall on UTC midnights (hour buckets, a
-- range starting at 22:00) read the whole hours of their partial days from here instead of every
-- event of those days from `activities` (docs/rollups.md, "Hours").
--
-- - activity_hourly: totals per UTC hour and action, slotted by writer like activity_daily.
-- - activity_hour_users: distinct users per UTC hour, per action and over all actions (action
--   ''), as counts: an hour bucket is never unioned with another, so a number is enough, and
--   30 days of hour buckets read 720 of them.
-- - `hours` on the per-user day rollups: which hours of the day the user was active in (bit h =
--   hour h), so the users of a partial day are read from one row per user, not from its events.
--
-- Counts and masks are derived from each user's rows before and after a statement, so writers of
-- the same user must not interleave: activity_rollups_apply takes the user write locks of
-- migration 5 (every service write already holds them; taking them again is free).

create table activity_hourly (
    hour            timestamptz not null,
    action          text not null,
    slot            smallint not null default 0,
    events          bigint not null,
    value_sum       numeric not null,
    duration_sum    numeric not null,
    duration_count  bigint not null,
    primary key (hour, action, slot)
);

create table activity_hour_users (
    hour    timestamptz not null,
    action  text not null,
    slot    smallint not null default 0,
    users   bigint not null,
    primary key (hour, action, slot)
);

alter table activity_user_daily add column hours bit(24) not null default B'0'::bit(24);
alter table activity_user_action_daily add column hours bit(24) not null default B'0'::bit(24);

-- A partial day reads every user row of that day with its mask. A day's rows are scattered over
-- the table (it fills in user order), so the day indexes carry the mask and those reads stay
-- index-only: 250 ms for two edge days on 10 M events without it, 30 ms with it.
drop index activity_user_daily_day_events_idx;
create index activity_user_daily_day_events_idx on activity_user_daily (day, events desc, user_id) include (hours);
drop index activity_user_action_daily_day_events_idx;
create index activity_user_action_daily_day_events_idx
    on activity_user_action_daily (day, action, events desc, user_id) include (hours);

-- The UTC hour an instant falls in, and its number within its UTC day.
create function activity_hour(t timestamptz) returns timestamptz
language sql immutable parallel safe
return date_trunc('hour', t, 'UTC');

create function activity_hour_of_day(t timestamptz) returns integer
language sql immutable parallel safe
return extract(hour from t at time zone 'UTC')::integer;

create function activity_hour_start(day date, hour integer) returns timestamptz
language sql immutable parallel safe
return (day + make_interval(hours => hour)) at time zone 'UTC';

create or replace function activity_rollups_apply(deltas activity_delta[]) returns void
language plpgsql as $$
declare
    write_slot smallint := pg_backend_pid() % 64;
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

    insert into activity_hourly as t (hour, action, slot, events, value_sum, duration_sum, duration_count)
    select activity_hour(d.occurred_at), d.action, write_slot, sum(d.sign),
           coalesce(sum(d.sign * d.value::numeric), 0), coalesce(sum(d.sign * d.duration_ms), 0),
           count(d.duration_ms) filter (where d.sign > 0) - count(d.duration_ms) filter (where d.sign < 0)
    from unnest(deltas) d
    group by 1, 2
    order by 1, 2
    on conflict (hour, action, slot) do update
    set events = t.events + excluded.events,
        value_sum = t.value_sum + excluded.value_sum,
        duration_sum = t.duration_sum + excluded.duration_sum,
        duration_count = t.duration_count + excluded.duration_count;

    -- Per user and day (all actions): totals, the hour mask, and the hours the user became
    -- active or inactive in. An hour the statement only removed rows from stays in the mask if
    -- the user still has an event in it (one probe of the (user_id, occurred_at) index).
    with d as (
        select (occurred_at at time zone 'UTC')::date as day, user_id,
               activity_hour_of_day(occurred_at) as hour, sign, value
        from unnest(deltas)
    ), touched as (
        select day, user_id, hour, bool_or(sign > 0) as added from d group by 1, 2, 3
    ), hour_state as (
        select t.day, t.user_id, t.hour,
               t.added or exists (
                   select 1 from activities a
                   where a.user_id = t.user_id
                     and a.occurred_at >= activity_hour_start(t.day, t.hour)
                     and a.occurred_at < activity_hour_start(t.day, t.hour + 1)) as present
        from touched t
    ), masks as (
        select day, user_id,
               bit_or(set_bit(B'0'::bit(24), hour, 1)) as written,
               coalesce(bit_or(set_bit(B'0'::bit(24), hour, 1)) filter (where present), B'0'::bit(24)) as kept
        from hour_state group by 1, 2
    ), totals as (
        select day, user_id, sum(sign) as events, coalesce(sum(sign * value::numeric), 0) as value_sum
        from d group by 1, 2
    ), next as (
        select m.day, m.user_id, t.events, t.value_sum,
               coalesce(o.hours, B'0'::bit(24)) as old_hours,
               (coalesce(o.hours, B'0'::bit(24)) & ~m.written) | m.kept as new_hours
        from masks m
        join totals t using (day, user_id)
        left join activity_user_daily o using (day, user_id)
    ), written as (
        insert into activity_user_daily as t (day, user_id, events, value_sum, hours)
        select day, user_id, events, value_sum, new_hours from next
        -- A patch of `properties` alone changes nothing here: skip it instead of locking the row.
        where events <> 0 or value_sum <> 0 or new_hours <> old_hours
        order by user_id, day
        on conflict (user_id, day) do update
        set events = t.events + excluded.events, value_sum = t.value_sum + excluded.value_sum,
            hours = excluded.hours
    )
    insert into activity_hour_users as h (hour, action, slot, users)
    select activity_hour_start(n.day, s.hour), '', write_slot,
           sum(get_bit(n.new_hours, s.hour) - get_bit(n.old_hours, s.hour))
    from next n join hour_state s using (day, user_id)
    group by 1
    having sum(get_bit(n.new_hours, s.hour) - get_bit(n.old_hours, s.hour)) <> 0
    order by 1
    on conflict (hour, action, slot) do update set users = h.users + excluded.users;

    -- The same per action, and the bitmap bits of the (user, action, day) rows that appeared
    -- (went from no events to some) or vanished (went to none) in this statement.
    with d as (
        select (occurred_at at time zone 'UTC')::date as day, user_id, action,
               activity_hour_of_day(occurred_at) as hour, sign, value
        from unnest(deltas)
    ), touched as (
        select day, user_id, action, hour, bool_or(sign > 0) as added from d group by 1, 2, 3, 4
    ), hour_state as (
        select t.day, t.user_id, t.action, t.hour,
               t.added or exists (
                   select 1 from activities a
                   where a.user_id = t.user_id and a.action = t.action
                     and a.occurred_at >= activity_hour_start(t.day, t.hour)
                     and a.occurred_at < activity_hour_start(t.day, t.hour + 1)) as present
        from touched t
    ), masks as (
        select day, user_id, action,
               bit_or(set_bit(B'0'::bit(24), hour, 1)) as written,
               coalesce(bit_or(set_bit(B'0'::bit(24), hour, 1)) filter (where present), B'0'::bit(24)) as kept
        from hour_state group by 1, 2, 3
    ), delta as (
        select day, user_id, action, sum(sign) as events, coalesce(sum(sign * value::numeric), 0) as value_sum
        from d group by 1, 2, 3
    ), next as (
        select m.day, m.user_id, m.action, t.events, t.value_sum,
               coalesce(o.hours, B'0'::bit(24)) as old_hours,
               (coalesce(o.hours, B'0'::bit(24)) & ~m.written) | m.kept as new_hours
        from masks m
        join delta t using (day, user_id, action)
        left join activity_user_action_daily o using (day, user_id, action)
    ), hour_users as (
        insert into activity_hour_users as h (hour, action, slot, users)
        select activity_hour_start(n.day, s.hour), n.action, write_slot,
               sum(get_bit(n.new_hours, s.hour) - get_bit(n.old_hours, s.hour))
        from next n join hour_state s using (day, user_id, action)
        group by 1, 2
        having sum(get_bit(n.new_hours, s.hour) - get_bit(n.old_hours, s.hour)) <> 0
        order by 1, 2
        on conflict (hour, action, slot) do update set users = h.users + excluded.users
    ), changed as (
        insert into activity_user_action_daily as t (day, user_id, action, events, value_sum, hours)
        select day, user_id, action, events, value_sum, new_hours from next
        where events <> 0 or value_sum <> 0 or new_hours <> old_hours
        order by user_id, action, day
        on conflict (user_id, action, day) do update
        set events = t.events + excluded.events, value_sum = t.value_sum + excluded.value_sum,
            hours = excluded.hours
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
    truncate activity_daily, activity_hourly, activity_hour_users, activity_user_daily,
             activity_user_action_daily, activity_day_users;
    return null;
end
$$;

-- As in migration 4, plus the hourly tables and masks. Distinct users per hour are counted from
-- the masks (a bit per user and hour) rather than with count(distinct) over the events, which
-- would sort every event of the range.
create or replace function activity_rollups_rebuild(first_day date, last_day date) returns void
language plpgsql as $$
declare
    lo timestamptz := first_day::timestamp at time zone 'UTC';
    hi timestamptz := (last_day + 1)::timestamp at time zone 'UTC';
begin
    delete from activity_daily where day between first_day and last_day;
    delete from activity_hourly where hour >= lo and hour < hi;
    delete from activity_hour_users where hour >= lo and hour < hi;
    delete from activity_user_daily where day between first_day and last_day;
    delete from activity_user_action_daily where day between first_day and last_day;
    delete from activity_day_users where day between first_day and last_day;

    drop table if exists pg_temp.activity_rollups_rebuilt;
    create temporary table activity_rollups_rebuilt on commit drop as
    select (occurred_at at time zone 'UTC')::date as day, user_id, action, count(*) as events,
           coalesce(sum(value::numeric), 0) as value_sum,
           bit_or(set_bit(B'0'::bit(24), activity_hour_of_day(occurred_at), 1)) as hours
    from activities where occurred_at >= lo and occurred_at < hi
    group by 1, 2, 3;

    insert into activity_users (user_id)
    select distinct r.user_id from activity_rollups_rebuilt r
    where not exists (select 1 from activity_users u where u.user_id = r.user_id)
    order by 1
    on conflict do nothing;

    -- Inserted in key order: appending to the primary-key index is much cheaper than scattering.
    insert into activity_user_action_daily (day, user_id, action, events, value_sum, hours)
    select day, user_id, action, events, value_sum, hours from activity_rollups_rebuilt
    order by user_id, action, day;

    insert into activity_hourly (hour, action, events, value_sum, duration_sum, duration_count)
    select activity_hour(occurred_at), action, count(*), coalesce(sum(value::numeric), 0),
           coalesce(sum(duration_ms), 0), count(duration_ms)
    from activities where occurred_at >= lo and occurred_at < hi
    group by 1, 2;

    insert into activity_daily (day, action, events, value_sum, duration_sum, duration_count)
    select (hour at time zone 'UTC')::date, action, sum(events), sum(value_sum), sum(duration_sum),
           sum(duration_count)
    from activity_hourly where hour >= lo and hour < hi
    group by 1, 2;

    insert into activity_user_daily (day, user_id, events, value_sum, hours)
    select day, user_id, sum(events), sum(value_sum), bit_or(hours)
    from activity_rollups_rebuilt
    group by 1, 2
    order by 2, 1;

    insert into activity_hour_users (hour, action, users)
    select activity_hour_start(r.day, h), r.action, count(*)
    from activity_rollups_rebuilt r, generate_series(0, 23) h
    where get_bit(r.hours, h) = 1
    group by 1, 2;
    insert into activity_hour_users (hour, action, users)
    select activity_hour_start(r.day, h), '', count(*)
    from activity_user_daily r, generate_series(0, 23) h
    where r.day between first_day and last_day and get_bit(r.hours, h) = 1
    group by 1, 2;

    insert into activity_day_users (day, action, chunk, users)
    select r.day, r.action, activity_user_chunk(u.ordinal), bit_or(set_bit(B'0'::bit(1024), activity_user_bit(u.ordinal), 1))
    from activity_rollups_rebuilt r join activity_users u using (user_id)
    group by 1, 2, 3;

    drop table activity_rollups_rebuilt;
end
$$;

-- Activities that exist before this migration: every rollup rebuilt, so masks and hourly rows
-- start exact.
select activity_rollups_rebuild(
    (min(occurred_at) at time zone 'UTC')::date, (max(occurred_at) at time zone 'UTC')::date)
from activities
having count(*) > 0;
