# Sourced by bench/run.sh. matrix BIN TOKEN OUT: with a server of BIN running at $addr on
# $DATABASE_URL, appends to OUT one line "statistic variant seconds" per cell of issue 17's
# matrix: every statistic under the parameters a client may pick (the default range, a range
# cut at 02:00 and 22:00, one action, both, two zones), and the profiles of the heaviest seeded
# user and of a typical one; uncached, median of five (a zone's first request also alone).

# wait_for_stores: until no stored part or union of days (migrations 12, 13) is being written.
# The refresh stores one union per statement: idle five times in a row, 0.1 s apart, is done.
wait_for_stores() {
  local db=${DATABASE_URL##*/} idle=0
  sleep 0.3
  for _ in $(seq 1200); do
    if [ "$(psql -tA -h 127.0.0.1 -U postgres -d "$db" -c "select count(*) from pg_stat_activity
      where state = 'active' and pid <> pg_backend_pid()
        and (query like '%into activity_parts (day%' or query like '%into activity_blocks (first_day%')")" = 0 ]; then
      idle=$((idle + 1))
      [ "$idle" -ge 5 ] && return
    else
      idle=0
    fi
    sleep 0.1
  done
}

matrix() {
  local bin=$1 token=$2 out=$3 db=${DATABASE_URL##*/}
  # Parts stored by an earlier run would hide what a zone's first request costs.
  psql -q -h 127.0.0.1 -U postgres -d "$db" -c "truncate activity_part_users, activity_part_totals, activity_parts"
  matrix_once() {
    curl -s -o /dev/null -w "%{time_total}\n" -H "Authorization: Bearer $token" \
      -H "Cache-Control: no-cache" "http://$addr/api/v1/stats/$1"
  }
  matrix_median() {
    for _ in 1 2 3 4 5; do matrix_once "$1"; done | sort -n | sed -n 3p
  }
  local heaviest typical cut
  heaviest=$(psql -tA -h 127.0.0.1 -U postgres -d "$db" -c \
    "select user_id from activity_user_daily group by 1 order by sum(events) desc limit 1")
  typical=$(psql -tA -h 127.0.0.1 -U postgres -d "$db" -c \
    "select user_id from activity_user_daily group by 1 order by sum(events) desc, 1 limit 1 offset 10000")
  cut="from=$(date -u -d '40 days ago' +%Y-%m-%dT02:00:00Z)&to=$(date -u -d '10 days ago' +%Y-%m-%dT22:00:00Z)"
  for endpoint in "summary?" "timeseries?bucket=hour&" "timeseries?bucket=day&" "timeseries?bucket=week&" \
    "timeseries?bucket=month&" "active-users?" "top-users?" "users/$heaviest?" "users/$typical?"; do
    for variant in default cut action cut_action berlin kathmandu; do
      case $variant in
        default) query="" ;;
        cut) query="$cut" ;;
        action) query="action=purchase" ;;
        cut_action) query="$cut&action=purchase" ;;
        # The default 30 days of a zone whose midnight is a UTC hour, and of one at :15 (issue 13).
        berlin) query="tz=Europe/Berlin" ;;
        kathmandu) query="tz=Asia/Kathmandu" ;;
      esac
      # active-users takes a date, not a range.
      [ "$endpoint" = "active-users?" ] && query=${query//$cut/date=$(date -u -d '10 days ago' +%Y-%m-%d)}
      name=${endpoint%%\?*}; name=${name/$heaviest/heaviest}; name=${name/$typical/typical}
      [ "${endpoint#timeseries?bucket=}" != "$endpoint" ] && name="timeseries_${endpoint#timeseries?bucket=}" && name=${name%&}
      if [ "$variant" = berlin ] || [ "$variant" = kathmandu ]; then
        # A zone's first miss reads every per-user row of its days' edges and stores those parts
        # in the background (docs/rollups.md, "Time zones"): timed alone, then the median after.
        echo "$name ${variant}_first $(matrix_once "$endpoint$query")" >>"$out"
        wait_for_stores
      fi
      echo "$name $variant $(matrix_median "$endpoint$query")" >>"$out"
    done
  done
}
