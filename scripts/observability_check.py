"""Evaluates every alerting/recording rule and every Grafana panel query against a real
Prometheus that scrapes a live service, while this script loads that service.

    python3 scripts/observability_check.py PROMETHEUS_URL SERVICE_URL DASHBOARD_JSON

TOKEN (admin) comes from the environment. Fails (exit 1) on any query that errors or returns no
series, and on any rule whose evaluation Prometheus reports as unhealthy. An alert's expression
is `quantity OP threshold`, which returns nothing while the alert is quiet: it is evaluated as
`quantity OP bool threshold`, which returns every series the quantity has.
"""

import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

prometheus, service, dashboard_path = sys.argv[1], sys.argv[2], sys.argv[3]
token = os.environ["TOKEN"]
LOAD_SECONDS = float(os.environ.get("LOAD_SECONDS", "12"))


def call(method, url, body=None, headers=None):
    req = urllib.request.Request(url, method=method, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def load(stop):
    """What a dashboard and a product do: reads (hits, and misses with no-cache), single creates
    (entries updated in place), a batch (entries removed), and a few client errors."""
    auth = {"Authorization": f"Bearer {token}"}
    json_auth = {**auth, "Content-Type": "application/json"}
    user = "00000000-0000-4000-8000-000000000001"
    i = 0
    while not stop.is_set():
        for path in ["summary", "timeseries?bucket=day", "active-users", "top-users", f"users/{user}"]:
            call("GET", f"{service}/api/v1/stats/{path}", headers=auth)
        if i % 5 == 0:
            call("GET", f"{service}/api/v1/stats/summary", headers={**auth, "Cache-Control": "no-cache"})
        call("POST", f"{service}/api/v1/activities", json.dumps({"user_id": user, "action": "view"}).encode(), json_auth)
        if i % 10 == 0:
            batch = {"activities": [{"user_id": user, "action": "click"} for _ in range(3)]}
            call("POST", f"{service}/api/v1/activities/batch", json.dumps(batch).encode(), json_auth)
            call("POST", f"{service}/api/v1/activities", b'{"user_id": "nope"}', json_auth)  # 422
            call("GET", f"{service}/api/v1/nowhere", headers=auth)  # 404
        i += 1
        time.sleep(0.02)


def query(expr):
    status, raw = call("GET", f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    body = json.loads(raw)
    if status != 200 or body.get("status") != "success":
        return None, body.get("error", f"HTTP {status}")
    return body["data"]["result"], None


def alert_quantity(expr):
    m = re.fullmatch(r"(?s)\s*(.*\S)\s*(==|!=|>=|<=|>|<)\s*(-?[0-9.]+(?:e-?[0-9]+)?)\s*", expr)
    if not m:
        return None
    return f"{m.group(1)} {m.group(2)} bool {m.group(3)}"


def grafana_expr(expr):
    # The dashboard's variables, as "All" selects them.
    return expr.replace("$__rate_interval", "1m").replace("$instance", ".*").replace("$job", ".*")


def panel_targets(dashboard):
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for var in dashboard["templating"]["list"]:
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", var.get("definition", ""))
        if m:
            yield f"variable {var['name']}", f"count by ({m.group(2)}) ({m.group(1)})"


def main():
    stop = threading.Event()
    loader = threading.Thread(target=load, args=(stop,), daemon=True)
    loader.start()
    time.sleep(LOAD_SECONDS)
    stop.set()
    loader.join()
    time.sleep(3)  # a few more scrapes and rule evaluations after the last request

    failures, checked = [], 0
    status, raw = call("GET", f"{prometheus}/api/v1/rules")
    groups = json.loads(raw)["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    if not rules:
        failures.append("Prometheus loaded no rules")
    for rule in rules:
        name = rule["name"]
        if rule.get("health") != "ok":
            failures.append(f"rule {name}: health {rule.get('health')}: {rule.get('lastError')}")
            continue
        expr = rule["query"]
        if rule["type"] == "alerting":
            expr = alert_quantity(expr)
            if expr is None:
                failures.append(f"alert {name}: expression is not `quantity OP threshold`: {rule['query']}")
                continue
        result, error = query(expr)
        checked += 1
        if error:
            failures.append(f"rule {name}: {error}")
        elif not result:
            failures.append(f"rule {name}: no series for {expr}")

    with open(dashboard_path) as f:
        dashboard = json.load(f)
    for title, expr in panel_targets(dashboard):
        result, error = query(grafana_expr(expr))
        checked += 1
        if error:
            failures.append(f"panel {title!r}: {error}")
        elif not result:
            failures.append(f"panel {title!r}: no series for {grafana_expr(expr)}")

    for failure in failures:
        print("FAIL", failure, file=sys.stderr)
    print(f"{checked} queries checked ({len(rules)} rules, dashboard {dashboard['uid']}), {len(failures)} failed")
    sys.exit(1 if failures else 0)


main()
