-- Every write counts itself in `activity_day_versions`, today's too (docs/rollups.md, "Time
-- zones").
--
-- Migration 10 left writes to today uncounted, to spare creates one more row update; the price
-- was that a stored part or union could only be of a day no writer might still take for today:
-- the day before yesterday or older. Yesterday's parts, which every zone's default range and
-- active-users window reads (a Berlin day is an hour of one UTC day and 23 of the next), were
-- then an OR of up to 92 quarter-hour bitmaps on every miss: 50 of the 66 ms of Berlin's month
-- series with a million users. Counted, a part of any day is safe to store: a write it did not
-- see changes its day's count when it commits, and readers that see the write see the change.
-- Today's parts are still not stored (today's count changes with every create); yesterday's are.

create or replace function activity_versions_on_write() returns trigger
language plpgsql as $$
declare
    write_slot smallint := pg_backend_pid() % 64;
begin
    if tg_op in ('INSERT', 'UPDATE') then
        insert into activity_day_versions as v (day, slot, writes)
        select distinct (n.occurred_at at time zone 'UTC')::date, write_slot, 1 from new_rows n
        order by 1
        on conflict (day, slot) do update set writes = v.writes + 1;
    end if;
    if tg_op in ('UPDATE', 'DELETE') then
        insert into activity_day_versions as v (day, slot, writes)
        select distinct (o.occurred_at at time zone 'UTC')::date, write_slot, 1 from old_rows o
        order by 1
        on conflict (day, slot) do update set writes = v.writes + 1;
    end if;
    return null;
end
$$;
