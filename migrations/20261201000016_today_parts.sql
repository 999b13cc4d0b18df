-- Parts of today, stored (docs/rollups.md, "Time zones").
--
-- Once a zone's midnight has passed in UTC's today (Kathmandu's at 18:15, New York's at 05:00),
-- that zone's yesterday ends with the part of UTC's today before it. Today's write count changes
-- with every create, so that part was never stored: it was an OR of up to 95 quarter-hour bitmaps
-- per action on every miss, growing through the day (Kathmandu's series by day at 20:47 UTC with
-- a million users: 125 ms, 3.7 times UTC's). Yet the creates of live ingest land now, after
-- that part; what changes it is a write into its own quarters.
--
-- So writes also count themselves per UTC quarter hour, slotted by writer like the day counts,
-- for the days from the writer's yesterday on (older rows are of no use and the hourly task
-- removes them; seeding history then costs nothing here). A part is stored under, and read
-- against, `activity_part_version`: for a day before the reader's today, its day's count as
-- before; for today, the count of its own quarters, which creates landing after it leave alone.
-- The two kinds never compare equal (the quarter kind is negative). Counts only grow, so an equal
-- sum means the very same writes; a writer that does not count a day it writes must have started
-- a day after a reader that takes that day for today, which no statement lives long enough for.

create table activity_quarter_versions (
    quarter  timestamptz not null,
    slot     smallint not null,
    writes   bigint not null,
    primary key (quarter, slot)
);

-- The writes counted in the quarters [lo, hi) of day d.
create function activity_quarters_version(d date, lo integer, hi integer) returns bigint
language sql stable parallel safe
return (select coalesce(sum(v.writes), 0)::int8 from activity_quarter_versions v
        where v.quarter >= activity_quarter_start(d, lo) and v.quarter < activity_quarter_start(d, hi));

-- What the part [lo, hi) of day d is stored under and checked against.
create function activity_part_version(d date, lo integer, hi integer) returns bigint
language sql stable parallel safe
return case when d < (now() at time zone 'UTC')::date then activity_day_version(d)
            else -1 - activity_quarters_version(d, lo, hi) end;

create or replace function activity_versions_on_write() returns trigger
language plpgsql as $$
declare
    write_slot smallint := pg_backend_pid() % 64;
    recent timestamptz := ((now() at time zone 'UTC')::date - 1) at time zone 'UTC';
begin
    if tg_op in ('INSERT', 'UPDATE') then
        insert into activity_day_versions as v (day, slot, writes)
        select distinct (n.occurred_at at time zone 'UTC')::date, write_slot, 1 from new_rows n
        order by 1
        on conflict (day, slot) do update set writes = v.writes + 1;
        insert into activity_quarter_versions as v (quarter, slot, writes)
        select distinct activity_quarter(n.occurred_at), write_slot, 1 from new_rows n
        where n.occurred_at >= recent
        order by 1
        on conflict (quarter, slot) do update set writes = v.writes + 1;
    end if;
    if tg_op in ('UPDATE', 'DELETE') then
        insert into activity_day_versions as v (day, slot, writes)
        select distinct (o.occurred_at at time zone 'UTC')::date, write_slot, 1 from old_rows o
        order by 1
        on conflict (day, slot) do update set writes = v.writes + 1;
        insert into activity_quarter_versions as v (quarter, slot, writes)
        select distinct activity_quarter(o.occurred_at), write_slot, 1 from old_rows o
        where o.occurred_at >= recent
        order by 1
        on conflict (quarter, slot) do update set writes = v.writes + 1;
    end if;
    return null;
end
$$;

create or replace function activity_versions_on_truncate() returns trigger
language plpgsql as $$
begin
    truncate activity_part_users, activity_part_totals, activity_parts,
             activity_block_users, activity_blocks, activity_day_versions,
             activity_quarter_versions;
    return null;
end
$$;

-- Parts stored until now are of closed days, under their day's count, which is what
-- `activity_part_version` gives for them: they stay valid.
