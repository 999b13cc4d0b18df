#!/usr/bin/env bash
# Monthly or daily partitions? Copies the activities of a seeded database (default: the 10 M
# events of `make bench`) into a table partitioned by day, with the same indexes, and measures
# the statements whose cost depends on the number of partitions, on both tables, with pgbench
# (2 clients, 10 s each, planning included). Prints a markdown table; docs/rollups.md quotes it.
set -euo pipefail
db=${1:-analytics_bench_scale}
seconds=${BENCH_SECONDS:-10}
p() { psql -q -tA -h 127.0.0.1 -U postgres -d "$db" -v ON_ERROR_STOP=1 "$@"; }
tmp=$(mktemp -d)
trap 'p -c "drop table if exists activities_by_day" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT

echo "copying into daily partitions..." >&2
p <<'SQL'
drop table if exists activities_by_day;
create table activities_by_day (like activities including defaults including constraints)
    partition by range (occurred_at);
do $$
declare d date;
begin
    for d in select generate_series((select min(occurred_at) at time zone 'UTC' from activities)::date,
                                    (now() at time zone 'UTC')::date + 31, interval '1 day')::date loop
        execute format('create table %I partition of activities_by_day for values from (%L) to (%L)',
            'activities_by_day_' || to_char(d, 'YYYYMMDD'),
            d::timestamp at time zone 'UTC', (d + 1)::timestamp at time zone 'UTC');
    end loop;
end $$;
insert into activities_by_day select * from activities order by occurred_at;
alter table activities_by_day add primary key (id, occurred_at);
create index on activities_by_day (occurred_at desc, id desc) include (user_id);
create index on activities_by_day (user_id, occurred_at desc, id desc);
create index on activities_by_day (action, occurred_at desc, id desc) include (user_id);
create index on activities_by_day (user_id, action, occurred_at);
vacuum analyze activities_by_day;
SQL
id=$(p -c "select id from activities order by occurred_at limit 1 offset 5000")
user=$(p -c "select user_id from activities_by_day group by 1 order by count(*) limit 1")
months=$(p -c "select count(*) from activity_partitions()")
days=$(p -c "select count(*) from pg_inherits where inhparent = 'activities_by_day'::regclass")

declare -A sql=(
  [get_by_id]="select * from TABLE where id = '$id'"
  [first_page]="select * from TABLE order by occurred_at desc, id desc limit 100"
  [user_page]="select * from TABLE where user_id = '$user' order by occurred_at desc, id desc limit 100"
  [neighbour]="select occurred_at from TABLE where user_id = '$user' and occurred_at <= now() - interval '45 days' order by occurred_at desc limit 1"
  [edge_hours]="select count(*), count(distinct user_id) from TABLE where occurred_at >= date_trunc('day', now()) - interval '2 hours' and occurred_at < date_trunc('day', now())"
)
echo "| statement ($months monthly vs $days daily partitions) | monthly, per s | daily, per s | daily ÷ monthly |"
echo "| --- | ---: | ---: | ---: |"
for name in get_by_id first_page user_page neighbour edge_hours; do
  tps() {
    echo "${sql[$name]//TABLE/$1};" >"$tmp/q.sql"
    pgbench -n -h 127.0.0.1 -U postgres -c 2 -j 2 -T "$seconds" -f "$tmp/q.sql" "$db" 2>/dev/null \
      | awk '/^tps/ {printf "%.0f", $3}'
  }
  m=$(tps activities) d=$(tps activities_by_day)
  echo "| $name | $m | $d | $(awk -v d="$d" -v m="$m" 'BEGIN {printf "%.2f", d / m}') |"
done
