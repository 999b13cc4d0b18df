-- The user's number on every per-user day row (docs/rollups.md, "Many users").
--
-- The users of part of a day (the edge of a range cut at 02:00, a Berlin day's hour of the UTC
-- day before) are the per-user rows of that day whose quarter mask meets it, as bits of a
-- bitmap: each row's user had to be looked up in `activity_users` for its number. With a
-- million users that lookup was a hash of half a million users built for every edge day, 100 of
-- the 107 ms an edge took; with the number on the row (and in the index the edges are read
-- from) an edge is an index-only scan.
--
-- Writers do not name the number: a row inserted without one takes it from `activity_users`
-- (which every writer fills first), so the rollup functions keep their statements; the rebuild
-- sets it in its grouped pass.

alter table activity_user_daily add column ordinal integer;
alter table activity_user_action_daily add column ordinal integer;
update activity_user_daily t set ordinal = u.ordinal from activity_users u where u.user_id = t.user_id;
update activity_user_action_daily t set ordinal = u.ordinal from activity_users u where u.user_id = t.user_id;
alter table activity_user_daily alter column ordinal set not null;
alter table activity_user_action_daily alter column ordinal set not null;

create function activity_user_row_ordinal() returns trigger
language plpgsql as $$
begin
    new.ordinal := (select u.ordinal from activity_users u where u.user_id = new.user_id);
    return new;
end
$$;

-- Only for rows that come without it: the rebuild's (millions, on a seed) pay nothing.
create trigger activity_user_daily_ordinal before insert on activity_user_daily
    for each row when (new.ordinal is null) execute function activity_user_row_ordinal();
create trigger activity_user_action_daily_ordinal before insert on activity_user_action_daily
    for each row when (new.ordinal is null) execute function activity_user_row_ordinal();

drop index activity_user_daily_day_events_idx;
create index activity_user_daily_day_events_idx
    on activity_user_daily (day, events desc, user_id) include (quarters, ordinal);
drop index activity_user_action_daily_day_events_idx;
create index activity_user_action_daily_day_events_idx
    on activity_user_action_daily (day, action, events desc, user_id) include (quarters, ordinal);

-- As in migration 11, with the numbers.
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
    insert into activity_user_action_daily (day, user_id, action, events, value_sum, quarters, ordinal)
    select r.day, r.user_id, r.action, r.events, r.value_sum, r.quarters, u.ordinal
    from activity_rollups_rebuilt r join activity_users u using (user_id)
    order by r.user_id, r.action, r.day;

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

    insert into activity_user_daily (day, user_id, events, value_sum, quarters, ordinal)
    select r.day, r.user_id, sum(r.events), sum(r.value_sum), bit_or(r.quarters), min(u.ordinal)
    from activity_rollups_rebuilt r join activity_users u using (user_id)
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
