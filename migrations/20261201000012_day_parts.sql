-- Stored edges per UTC day part instead of per bucket (docs/rollups.md, "Time zones").
--
-- Migration 10 stored the edge of a whole local bucket (a Berlin day: one hour of one UTC day
-- and 23 of the next) once its bucket was closed. Edges of open buckets were read from every
-- per-user row of their UTC day on every miss: the start of the default range, of an
-- active-users window, of a month cut by the range, the day before yesterday while a bucket
-- reaching into yesterday is open. Those are the same parts of the same days as the closed day
-- buckets' edges; only the bucket around them differs. So what is stored now is a part: the
-- quarters [lo, hi) of one UTC day that start or end at a local midnight of some zone (a prefix
-- or a suffix of the day), with every action's totals and user bitmaps at once, so that a
-- summary (every action), a series (one action or all) and an active-users window reuse it.
--
-- Validity is migration 10's, per day: a part keeps the write count of its day it was computed
-- under (`activity_day_version`) and readers use it only while the count is the same. A header
-- row in `activity_parts` is inserted first, in the same statement as its totals and bitmaps:
-- a concurrent store of the same part waits on the header and then stores nothing, so a header
-- always comes with every action's rows.

drop table activity_span_users, activity_spans;
drop function activity_span_version(timestamptz, timestamptz);

create table activity_parts (
    day      date not null,
    lo       smallint not null,      -- first quarter of the day in the part
    hi       smallint not null,      -- quarter after its last
    version  bigint not null,        -- activity_day_version(day) it was computed under
    primary key (day, lo, hi, version),
    check (0 <= lo and lo < hi and hi <= 96)
);

-- One row per action that occurred in the part (no row: nothing happened).
create table activity_part_totals (
    day             date not null,
    lo              smallint not null,
    hi              smallint not null,
    version         bigint not null,
    action          text not null,
    events          bigint not null,
    value_sum       numeric not null,
    duration_sum    numeric not null,
    duration_count  bigint not null,
    primary key (day, lo, hi, version, action),
    foreign key (day, lo, hi, version) references activity_parts on delete cascade
);

-- The part's users per action, and per chunk for every action at once (action '').
create table activity_part_users (
    day      date not null,
    lo       smallint not null,
    hi       smallint not null,
    version  bigint not null,
    action   text not null,
    chunk    integer not null,
    users    bit(1024) not null,
    primary key (day, lo, hi, version, action, chunk),
    foreign key (day, lo, hi, version) references activity_parts on delete cascade
);

-- The writes counted for a UTC day (migration 10).
create function activity_day_version(d date) returns bigint
language sql stable parallel safe
return (select coalesce(sum(v.writes), 0)::int8 from activity_day_versions v where v.day = d);

-- The quarters [lo, hi) of a day as a quarter mask of the per-user day rows (bit q from the left
-- is quarter q).
create function activity_quarter_range(lo integer, hi integer) returns bit(96)
language sql immutable parallel safe
return (~B'0'::bit(96) >> lo) & ~(~B'0'::bit(96) >> hi);

create or replace function activity_versions_on_truncate() returns trigger
language plpgsql as $$
begin
    truncate activity_part_users, activity_part_totals, activity_parts, activity_day_versions;
    return null;
end
$$;
