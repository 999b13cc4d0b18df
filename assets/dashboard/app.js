// The dashboard: plain JavaScript and SVG, no dependencies, served from the binary.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: "", cacheHistory: [], lastCounts: null, user: null };
const fmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

function readToken() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    localStorage.setItem("analytics-token", fromHash);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return localStorage.getItem("analytics-token") || "";
}

function showError(message) {
  const el = $("error");
  el.textContent = message;
  el.hidden = !message;
}

// Fetches JSON from the API; problem+json answers become readable errors.
async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${state.token}`, ...(options.headers || {}) },
  });
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const fields = (body && body.errors || []).map((e) => `${e.field} ${e.message}`).join("; ");
    const reason = response.status === 401 ? "The token is missing, unknown or revoked."
      : response.status === 403 ? "This token's role may not do that."
      : response.status === 429 ? "Too many requests; retrying shortly."
      : response.status === 503 ? "The database is unavailable right now."
      : (body && body.detail) || `HTTP ${response.status}`;
    throw new Error(fields ? `${reason} (${fields})` : reason);
  }
  return { body, cache: response.headers.get("X-Cache") };
}

function setBadge(panel, cache) {
  const badge = document.querySelector(`[data-cache-for="${panel}"]`);
  if (badge) { badge.textContent = cache || ""; badge.className = `badge ${cache || ""}`; }
}

function filters() {
  const q = new URLSearchParams();
  if ($("from").value) q.set("from", $("from").value);
  if ($("to").value) q.set("to", $("to").value);
  if ($("action").value) q.set("action", $("action").value);
  return q;
}

// A line chart of several series over shared x labels, as SVG.
function lineChart(container, labels, series) {
  const w = 800, h = 220, pad = 30;
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const x = (i) => pad + (labels.length < 2 ? 0 : (i * (w - 2 * pad)) / (labels.length - 1));
  const y = (v) => h - pad - (v * (h - 2 * pad)) / max;
  const lines = series.map((s) => {
    const points = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    const dots = s.values.map((v, i) => `<circle class="point ${s.name}" cx="${x(i).toFixed(1)}" cy="${y(v).toFixed(1)}" r="2.5" fill="${s.color}"><title>${labels[i]}: ${v}</title></circle>`).join("");
    return `<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${points}"/>${dots}`;
  }).join("");
  const first = labels[0] || "", last = labels[labels.length - 1] || "";
  container.innerHTML = `<svg viewBox="0 0 ${w} ${h}" preserveAspectRatio="none">
    <line x1="${pad}" y1="${h - pad}" x2="${w - pad}" y2="${h - pad}" stroke="#334155"/>
    <text x="${pad}" y="${pad - 8}" fill="#94a3b8" font-size="12">${fmt.format(max)}</text>
    <text x="${pad}" y="${h - 8}" fill="#94a3b8" font-size="12">${first}</text>
    <text x="${w - pad}" y="${h - 8}" fill="#94a3b8" font-size="12" text-anchor="end">${last}</text>
    ${lines}</svg>`;
}

async function loadSummary() {
  const { body, cache } = await api(`/api/v1/stats/summary?${filters()}`);
  $("events").textContent = fmt.format(body.events);
  $("unique-users").textContent = fmt.format(body.unique_users);
  $("value-sum").textContent = fmt.format(body.value_sum);
  $("avg-duration").textContent = body.avg_duration_ms == null ? "–" : `${fmt.format(body.avg_duration_ms / 1000)} s`;
  setBadge("summary", cache);
}

async function loadTimeseries() {
  const q = filters();
  q.set("bucket", $("bucket").value);
  const { body, cache } = await api(`/api/v1/stats/timeseries?${q}`);
  const labels = body.points.map((p) => p.start.slice(0, body.bucket === "hour" ? 13 : 10));
  lineChart($("timeseries"), labels, [
    { name: "events", color: "#38bdf8", values: body.points.map((p) => p.events) },
    { name: "users", color: "#f472b6", values: body.points.map((p) => p.unique_users) },
  ]);
  $("timeseries").dataset.points = String(body.points.length);
  setBadge("timeseries", cache);
}

async function loadActiveUsers() {
  const q = new URLSearchParams();
  if ($("action").value) q.set("action", $("action").value);
  const { body, cache } = await api(`/api/v1/stats/active-users?${q}`);
  $("dau").textContent = fmt.format(body.dau);
  $("wau").textContent = fmt.format(body.wau);
  $("mau").textContent = fmt.format(body.mau);
  $("stickiness").textContent = `${fmt.format(body.stickiness * 100)} %`;
  $("active-date").textContent = `on ${body.date} (UTC), over the 1, 7 and 30 days ending that day`;
  setBadge("active-users", cache);
}

async function loadTopUsers() {
  const { body, cache } = await api(`/api/v1/stats/top-users?${filters()}`);
  const rows = body.items.map((u) => `<tr><td><a href="#" data-user="${u.user_id}">${u.user_id.slice(0, 8)}…</a></td>
    <td>${fmt.format(u.events)}</td><td>${fmt.format(u.value_sum)}</td><td>${u.last_seen.slice(0, 16).replace("T", " ")}</td></tr>`);
  document.querySelector("#top-users tbody").innerHTML = rows.join("") || `<tr><td colspan="4" class="hint">No activity in this range.</td></tr>`;
  setBadge("top-users", cache);
}

async function loadUser() {
  if (!state.user) return;
  const { body, cache } = await api(`/api/v1/stats/users/${state.user}?${filters()}`);
  $("user-panel").hidden = false;
  $("user-id").textContent = body.user_id;
  $("user-events").textContent = fmt.format(body.events);
  $("user-value").textContent = fmt.format(body.value_sum);
  $("user-days").textContent = fmt.format(body.active_days);
  $("user-last").textContent = body.last_seen ? body.last_seen.slice(0, 10) : "–";
  $("user-actions").innerHTML = body.by_action.map((a) => `<li>${a.action}: ${fmt.format(a.events)}</li>`).join("");
  setBadge("user", cache);
}

async function loadCache() {
  const { body } = await api("/api/v1/cache/stats");
  $("hit-ratio").textContent = `${fmt.format(body.hit_ratio * 100)} %`;
  $("cache-counts").textContent = `${body.hits} hits, ${body.misses} misses, ${body.bypasses} bypasses (${body.backend})`;
  const prev = state.lastCounts || body;
  state.cacheHistory.push({ hits: body.hits - prev.hits, misses: body.misses - prev.misses });
  state.cacheHistory = state.cacheHistory.slice(-30);
  state.lastCounts = body;
  lineChart($("cache-chart"), state.cacheHistory.map((_, i) => `${i}`), [
    { name: "hits", color: "#38bdf8", values: state.cacheHistory.map((c) => c.hits) },
    { name: "misses", color: "#f472b6", values: state.cacheHistory.map((c) => c.misses) },
  ]);
}

async function refresh() {
  if (!state.token) { showError("Enter an API token to see the numbers."); return; }
  try {
    await Promise.all([loadSummary(), loadTimeseries(), loadActiveUsers(), loadTopUsers(), loadUser()]);
    await loadCache();
    showError("");
    document.body.dataset.loaded = String(Date.now());
  } catch (e) {
    showError(e.message);
  }
}

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  state.token = $("token").value.trim();
  localStorage.setItem("analytics-token", state.token);
  refresh();
});
$("filters").addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
document.querySelector("#top-users tbody").addEventListener("click", (e) => {
  const link = e.target.closest("a[data-user]");
  if (!link) return;
  e.preventDefault();
  state.user = link.dataset.user;
  $("record-user").value = state.user;
  loadUser().catch((err) => showError(err.message));
});
$("record").addEventListener("submit", async (e) => {
  e.preventDefault();
  const activity = { user_id: $("record-user").value.trim(), action: $("record-action").value.trim() };
  if ($("record-value").value !== "") activity.value = Number($("record-value").value);
  try {
    await api("/api/v1/activities", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(activity) });
    $("record-status").textContent = "Recorded.";
    await refresh();
  } catch (err) {
    $("record-status").textContent = "";
    showError(`Not recorded: ${err.message}`);
  }
});

state.token = readToken();
$("token").value = state.token;
refresh();
setInterval(() => { if (state.token) loadCache().catch(() => {}); }, 5000);
