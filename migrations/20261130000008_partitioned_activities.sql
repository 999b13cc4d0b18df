-- `activities` becomes a table partitioned by month of `occurred_at` (docs/rollups.md, "Partitions
-- and retention"), so that `RETENTION_DAYS` removes a month of expired activity by dropping one
-- table instead of deleting millions of rows. Every row is copied over; the rollups do not change
-- (the same rows are there afterwards), so they are left as they are.
--
-- A partitioned table's primary key must include the partition key: it is (id, occurred_at).
-- Ids are UUIDv7 made by the service, so they stay unique without a global index.

alter table activities rename to activities_unpartitioned;

create table activities (like activities_unpartitioned including defaults including constraints)
    partition by range (occurred_at);

-- The partition that holds month `m`: activities_YYYY_MM.
create function activity_partition_name(m date) returns text
language sql immutable parallel safe
return format('activities_%s', to_char(m, 'YYYY_MM'));

-- Creates, for every month in [lo, hi], the partition that holds it unless it exists, and returns
-- how many it created. A partition is created empty and then attached: attaching takes a lock
-- that lets reads and writes go on (creating it as `partition of` would block every query on
-- `activities` until the creating transaction ends, and wait behind a long export first).
-- Creators take turns on an advisory lock, so two instances never race for the same month.
create function activity_partitions_ensure(lo timestamptz, hi timestamptz) returns integer
language plpgsql as $$
declare
    m date := date_trunc('month', lo at time zone 'UTC')::date;
    last_month date := date_trunc('month', hi at time zone 'UTC')::date;
    part text;
    created integer := 0;
begin
    if m < last_month - interval '100 years' then
        raise exception 'refusing to create partitions for more than 100 years (% to %)', lo, hi;
    end if;
    perform pg_advisory_xact_lock(7412, 0);
    while m <= last_month loop
        part := activity_partition_name(m);
        if not exists (
            select 1 from pg_inherits i join pg_class c on c.oid = i.inhrelid
            where i.inhparent = 'activities'::regclass and c.relname = part
        ) then
            execute format(
                'create table %I (like activities including defaults including constraints)', part);
            execute format(
                'alter table activities attach partition %I for values from (%L) to (%L)',
                part, m::timestamp at time zone 'UTC',
                (m + interval '1 month')::timestamp at time zone 'UTC');
            created := created + 1;
        end if;
        m := (m + interval '1 month')::date;
    end loop;
    return created;
end
$$;

-- The attached monthly partitions and the instants they cover, [first_instant, end_instant).
create function activity_partitions()
returns table (name text, first_instant timestamptz, end_instant timestamptz)
language sql stable as $$
    select c.relname::text,
           to_date(substr(c.relname, 12), 'YYYY_MM')::timestamp at time zone 'UTC',
           (to_date(substr(c.relname, 12), 'YYYY_MM') + interval '1 month')::timestamp at time zone 'UTC'
    from pg_inherits i join pg_class c on c.oid = i.inhrelid
    where i.inhparent = 'activities'::regclass and c.relname ~ '^activities_[0-9]{4}_[0-9]{2}$'
    order by 2
$$;

select activity_partitions_ensure(min(occurred_at), max(occurred_at))
from activities_unpartitioned
having count(*) > 0;
-- This month and the next, so that the first writes find their partition.
select activity_partitions_ensure(now(), now() + interval '1 month');

-- In time order, so each partition is filled in one run and its indexes are built from sorted rows.
insert into activities select * from activities_unpartitioned order by occurred_at;

drop table activities_unpartitioned;

-- The same indexes as before (see migrations 1 and 5 for what each serves), built once the rows
-- are in; each is created on every partition, and on those attached later.
alter table activities add primary key (id, occurred_at);
create index activities_occurred_at_idx on activities (occurred_at desc, id desc) include (user_id);
create index activities_user_occurred_at_idx on activities (user_id, occurred_at desc, id desc);
create index activities_action_occurred_at_idx on activities (action, occurred_at desc, id desc) include (user_id);
create index activities_user_action_occurred_at_idx on activities (user_id, action, occurred_at);

-- The rollup triggers, as in migration 4. Statement-level triggers on the partitioned table see
-- the rows of every partition a statement wrote, including rows an update moved between months.
create trigger activities_rollups_insert after insert on activities
    referencing new table as new_rows for each statement execute function activity_rollups_on_insert();
create trigger activities_rollups_update after update on activities
    referencing old table as old_rows new table as new_rows
    for each statement execute function activity_rollups_on_update();
create trigger activities_rollups_delete after delete on activities
    referencing old table as old_rows for each statement execute function activity_rollups_on_delete();
create trigger activities_rollups_truncate after truncate on activities
    for each statement execute function activity_rollups_on_truncate();

analyze activities;
