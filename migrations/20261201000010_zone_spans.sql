-- Local days of other zones, kept once computed (docs/rollups.md, "Time zones").
--
-- A day in Berlin or Kathmandu is not made of whole UTC days: its distinct users come from the
-- hour masks of every per-user row of the two UTC days it straddles (and, at :30 and :45
-- offsets, from the events of two half hours), about 400 ms for 30 local days on 10 M events
-- against 20 ms for UTC days. So the part of a bucket that is not whole UTC days (its "edge")
-- is stored once computed, for closed days only: its events, value sum and user bitmaps.
--
-- A stored edge is valid while no write has touched the UTC days it lies in since it was
-- computed. Writes count themselves per UTC day in `activity_day_versions` (slotted by writer,
-- like activity_daily, so that yesterday's late events do not queue on one row); an edge keeps
-- the sum of those counts it was computed under, and readers use it only when the sum is still
-- the same. Counts only grow, and a reader that sees a stored edge began after it was stored,
-- so it sees every write the edge saw: equal sums mean the very same writes.
--
-- Today is never stored, and writes to today and later are not counted: the read path stores
-- only edges that end two UTC days before its own date, so a writer that saw "today" cannot
-- have written a day a reader considers closed unless its transaction lasted a day.

create table activity_day_versions (
    day     date not null,
    slot    smallint not null,
    writes  bigint not null,
    primary key (day, slot)
);

create table activity_spans (
    lo         timestamptz not null,
    hi         timestamptz not null,
    action     text not null,        -- '' = every action
    version    bigint not null,      -- sum of activity_day_versions.writes over its UTC days
    events     bigint not null,
    value_sum  numeric not null,
    primary key (lo, hi, action, version)
);

create table activity_span_users (
    lo       timestamptz not null,
    hi       timestamptz not null,
    action   text not null,
    version  bigint not null,
    chunk    integer not null,
    users    bit(1024) not null,
    primary key (lo, hi, action, version, chunk),
    foreign key (lo, hi, action, version) references activity_spans on delete cascade
);

-- The UTC days an instant range [lo, hi) touches, as the versions count them.
create function activity_span_version(lo timestamptz, hi timestamptz) returns bigint
language sql stable parallel safe
return (select coalesce(sum(v.writes), 0)::int8 from activity_day_versions v
        where v.day >= (lo at time zone 'UTC')::date
          and v.day <= ((hi - interval '1 microsecond') at time zone 'UTC')::date);

create function activity_versions_on_write() returns trigger
language plpgsql as $$
declare
    write_slot smallint := pg_backend_pid() % 64;
begin
    if tg_op in ('INSERT', 'UPDATE') then
        insert into activity_day_versions as v (day, slot, writes)
        select distinct (n.occurred_at at time zone 'UTC')::date, write_slot, 1 from new_rows n
        where (n.occurred_at at time zone 'UTC')::date < current_date
        order by 1
        on conflict (day, slot) do update set writes = v.writes + 1;
    end if;
    if tg_op in ('UPDATE', 'DELETE') then
        insert into activity_day_versions as v (day, slot, writes)
        select distinct (o.occurred_at at time zone 'UTC')::date, write_slot, 1 from old_rows o
        where (o.occurred_at at time zone 'UTC')::date < current_date
        order by 1
        on conflict (day, slot) do update set writes = v.writes + 1;
    end if;
    return null;
end
$$;

create function activity_versions_on_truncate() returns trigger
language plpgsql as $$
begin
    truncate activity_span_users, activity_spans, activity_day_versions;
    return null;
end
$$;

-- Named after the rollup triggers, so they fire after them (triggers fire in name order) and
-- every writer locks rollup rows first, then version rows.
create trigger activities_versions_insert after insert on activities
    referencing new table as new_rows for each statement execute function activity_versions_on_write();
create trigger activities_versions_update after update on activities
    referencing old table as old_rows new table as new_rows
    for each statement execute function activity_versions_on_write();
create trigger activities_versions_delete after delete on activities
    referencing old table as old_rows for each statement execute function activity_versions_on_write();
create trigger activities_versions_truncate after truncate on activities
    for each statement execute function activity_versions_on_truncate();
