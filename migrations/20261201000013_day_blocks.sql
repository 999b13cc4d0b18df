-- Stored unions of closed days' user bitmaps (docs/rollups.md, "Many users").
--
-- A distinct count over whole days ORs every day's bitmaps, and a day has one bitmap per 1024
-- users per action: with a million users, a 30-day summary read 176,000 bitmaps and a year of
-- months two million. A block is the OR of the bitmaps of 4, 16 or 64 consecutive closed days
-- (per action and for every action at once, action ''), or of one day's actions (action ''
-- only: the day itself has them per action); `first_day` is a multiple of `days` days after
-- 1970-01-01, so any run of whole days is at most three blocks of each size at each end, and a
-- 30-day range reads about 12 unions instead of 30 days' worth of bitmaps.
--
-- Validity is the day parts' (migration 12): a block keeps the sum of its days' write counts
-- it was computed under and readers use it only while that sum is the same; blocks cover days
-- before yesterday only, which every writer counts. The header row comes first, in the statement
-- that stores the bitmaps, so a header always comes with all of its rows.

create table activity_blocks (
    first_day  date not null,
    days       smallint not null,
    version    bigint not null,      -- activity_days_version(first_day, days) when computed
    primary key (first_day, days, version),
    check (days in (1, 4, 16, 64) and (first_day - date '1970-01-01') % days = 0)
);

create table activity_block_users (
    first_day  date not null,
    days       smallint not null,
    version    bigint not null,
    action     text not null,        -- '' = every action
    chunk      integer not null,
    users      bit(1024) not null,
    primary key (first_day, days, version, action, chunk),
    foreign key (first_day, days, version) references activity_blocks on delete cascade
);

-- The writes counted for the days [first_day, first_day + days).
create function activity_days_version(first_day date, days integer) returns bigint
language sql stable parallel safe
return (select coalesce(sum(v.writes), 0)::int8 from activity_day_versions v
        where v.day >= first_day and v.day < first_day + days);

create or replace function activity_versions_on_truncate() returns trigger
language plpgsql as $$
begin
    truncate activity_part_users, activity_part_totals, activity_parts,
             activity_block_users, activity_blocks, activity_day_versions;
    return null;
end
$$;
