"""Paced single creates for the live-ingest scenarios of `make bench`.

    python3 bench/creates.py HOST:PORT RATE SECONDS WHEN [PROFILE_USER]

Sends RATE creates per second for SECONDS, each from one of 20,000 users (one in ten from
PROFILE_USER, whose profile a scenario reads), dated now (WHEN=today) or 60 days ago
(WHEN=elsewhere: outside every default range, the same write cost). Requests go out on their
schedule from several keep-alive connections, so a slow answer does not slow the offered rate.
Prints one JSON line: offered and achieved rate, failures, and latency percentiles.
"""

import datetime
import http.client
import json
import os
import random
import sys
import threading
import time

host, rate, seconds, when = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
profile_user = sys.argv[5] if len(sys.argv) > 5 else None
token = os.environ["TOKEN"]
WORKERS = 16

schedule = [i / rate for i in range(int(rate * seconds))]
lock = threading.Lock()
next_index = 0
latencies, failures = [], 0
start = time.monotonic() + 0.1


def body(rng):
    at = datetime.datetime.now(datetime.timezone.utc)
    if when == "elsewhere":
        at -= datetime.timedelta(days=60)
    if profile_user and rng.random() < 0.1:
        user = profile_user
    else:
        user = "00000000-0000-4000-8000-%012x" % rng.randint(1, 20000)
    return json.dumps({
        "user_id": user,
        "action": rng.choice(["view", "click", "bench"]),
        "occurred_at": at.isoformat().replace("+00:00", "Z"),
        "value": 1.5,
        "duration_ms": rng.randint(0, 5000),
    })


def worker(seed):
    global next_index, failures
    rng = random.Random(seed)
    conn = http.client.HTTPConnection(host, timeout=10)
    while True:
        with lock:
            if next_index >= len(schedule):
                return
            due = start + schedule[next_index]
            next_index += 1
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent = time.monotonic()
        try:
            conn.request("POST", "/api/v1/activities", body(rng),
                          {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
            response = conn.getresponse()
            response.read()
            ok = response.status == 201
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection(host, timeout=10)
            ok = False
        with lock:
            if ok:
                latencies.append(time.monotonic() - sent)
            else:
                failures += 1


threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - start
latencies.sort()


def pct(p):
    return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2) if latencies else None


print(json.dumps({
    "offered_per_sec": rate,
    "achieved_per_sec": round(len(latencies) / elapsed, 1),
    "failures": failures,
    "p50_ms": pct(0.5),
    "p99_ms": pct(0.99),
}))
