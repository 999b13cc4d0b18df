// The dashboard: plain JavaScript and SVG, no dependencies, served from the binary.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: "", cacheHistory: [], lastCounts: null, user: null, zone: "UTC" };
// Numbers in the reader's locale; dates in the chosen zone, the one the API counts days in.
const fmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });
let dateFormats = formatsFor("UTC");

function formatsFor(timeZone) {
  return {
    hour: new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZone }),
    day: new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", timeZone }),
    week: new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", timeZone }),
    month: new Intl.DateTimeFormat(undefined, { month: "short", year: "numeric", timeZone }),
    time: new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" }),
    full: new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZone }),
  };
}

// The zone: the one picked before (remembered like the token), else the browser's own.
function readZone() {
  const browser = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const zones = new Set(["UTC", browser, ...(Intl.supportedValuesOf ? Intl.supportedValuesOf("timeZone") : [])]);
  const select = $("tz");
  select.innerHTML = [...zones].sort().map((z) => `<option>${z}</option>`).join("");
  const remembered = localStorage.getItem("analytics-tz");
  useZone(remembered && zones.has(remembered) ? remembered : browser);
}

function useZone(zone) {
  state.zone = zone;
  $("tz").value = zone;
  dateFormats = formatsFor(zone);
  $("summary-zone").textContent = `Days in ${zone}`;
  $("series-zone").textContent = `(${zone})`;
}

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

// A date field the dashboard filled with the server's default range is shown, not sent: the
// default follows the clock (it moves at midnight) and a picked date would not.
function picked(id) {
  const el = $(id);
  return el.value && el.dataset.auto !== el.value ? el.value : "";
}

function showRange(from, to) {
  for (const [id, value] of [["from", from], ["to", to]]) {
    const el = $(id);
    if (!el.value || el.dataset.auto === el.value) { el.value = value.slice(0, 10); el.dataset.auto = el.value; }
  }
}

function filters() {
  const q = new URLSearchParams({ tz: state.zone });
  if (picked("from")) q.set("from", picked("from"));
  if (picked("to")) q.set("to", picked("to"));
  if ($("action").value) q.set("action", $("action").value);
  return q;
}

// The y axis: about four round steps from 0 to at least the largest value.
function yTicks(max) {
  const rough = Math.max(1, max) / 4;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= rough);
  return Array.from({ length: Math.ceil(Math.max(1, max) / step) + 1 }, (_, i) => i * step);
}

// A line chart of several series over shared x labels, as SVG: dates along the x axis (about
// six, evenly spaced), a scale with grid lines on the y axis.
function lineChart(container, labels, series) {
  container.chart = [labels, series];
  // Drawn at the container's own size, so labels keep their size on a phone as on a screen.
  const w = Math.max(280, container.clientWidth || 800), h = container.clientHeight || 220;
  const left = 48, right = 12, top = 12, bottom = 26;
  const ticks = yTicks(Math.max(0, ...series.flatMap((s) => s.values)));
  const max = ticks[ticks.length - 1];
  const x = (i) => left + (labels.length < 2 ? 0 : (i * (w - left - right)) / (labels.length - 1));
  const y = (v) => h - bottom - (v * (h - top - bottom)) / max;
  const grid = ticks.map((t) => `<line class="grid" x1="${left}" x2="${w - right}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}"/>
    <text class="y-tick" data-value="${t}" x="${left - 6}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end">${compact.format(t)}</text>`).join("");
  const every = Math.max(1, Math.ceil(labels.length / Math.max(2, Math.floor(w / 120))));
  const xTicks = labels.map((label, i) => (i % every === 0 || i === labels.length - 1) && (i === labels.length - 1 || labels.length - 1 - i >= every / 2)
    ? `<text class="x-tick" x="${x(i).toFixed(1)}" y="${h - 8}" text-anchor="${i === 0 ? "start" : i === labels.length - 1 ? "end" : "middle"}">${label}</text>` : "").join("");
  const lines = series.map((s) => {
    const points = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    const dots = s.values.map((v, i) => `<circle class="point ${s.name}" cx="${x(i).toFixed(1)}" cy="${y(v).toFixed(1)}" r="2.5" fill="${s.color}"><title>${labels[i]}: ${fmt.format(v)}</title></circle>`).join("");
    return `<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${points}"/>${dots}`;
  }).join("");
  container.innerHTML = `<svg viewBox="0 0 ${w} ${h}" width="${w}" height="${h}">
    ${grid}<line class="axis" x1="${left}" y1="${h - bottom}" x2="${w - right}" y2="${h - bottom}"/>
    ${xTicks}${lines}</svg>`;
}

async function loadSummary() {
  const { body, cache } = await api(`/api/v1/stats/summary?${filters()}`);
  showRange(body.from, body.to);
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
  const labels = body.points.map((p) => dateFormats[body.bucket].format(new Date(p.start)));
  lineChart($("timeseries"), labels, [
    { name: "events", color: "#38bdf8", values: body.points.map((p) => p.events) },
    { name: "users", color: "#f472b6", values: body.points.map((p) => p.unique_users) },
  ]);
  $("timeseries").dataset.points = String(body.points.length);
  setBadge("timeseries", cache);
}

async function loadActiveUsers() {
  const q = new URLSearchParams({ tz: state.zone });
  if ($("action").value) q.set("action", $("action").value);
  const { body, cache } = await api(`/api/v1/stats/active-users?${q}`);
  $("dau").textContent = fmt.format(body.dau);
  $("wau").textContent = fmt.format(body.wau);
  $("mau").textContent = fmt.format(body.mau);
  $("stickiness").textContent = `${fmt.format(body.stickiness * 100)} %`;
  $("active-date").textContent = `on ${body.date} (${state.zone}), over the 1, 7 and 30 days ending that day`;
  setBadge("active-users", cache);
}

async function loadTopUsers() {
  const { body, cache } = await api(`/api/v1/stats/top-users?${filters()}`);
  const rows = body.items.map((u) => `<tr><td><a href="#" data-user="${u.user_id}">${u.user_id.slice(0, 8)}…</a></td>
    <td>${fmt.format(u.events)}</td><td>${fmt.format(u.value_sum)}</td><td>${dateFormats.full.format(new Date(u.last_seen))}</td></tr>`);
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
  $("user-last").textContent = body.last_seen ? dateFormats.day.format(new Date(body.last_seen)) : "–";
  $("user-actions").innerHTML = body.by_action.map((a) => `<li>${a.action}: ${fmt.format(a.events)}</li>`).join("");
  setBadge("user", cache);
}

async function loadCache() {
  const { body } = await api("/api/v1/cache/stats");
  $("hit-ratio").textContent = `${fmt.format(body.hit_ratio * 100)} %`;
  $("cache-counts").textContent = `${fmt.format(body.hits)} hits, ${fmt.format(body.misses)} misses, ${fmt.format(body.bypasses)} bypasses (${body.backend})`;
  const prev = state.lastCounts || body;
  state.cacheHistory.push({ at: dateFormats.time.format(new Date()), hits: body.hits - prev.hits, misses: body.misses - prev.misses });
  state.cacheHistory = state.cacheHistory.slice(-30);
  state.lastCounts = body;
  lineChart($("cache-chart"), state.cacheHistory.map((c) => c.at), [
    { name: "hits", color: "#38bdf8", values: state.cacheHistory.map((c) => c.hits) },
    { name: "misses", color: "#f472b6", values: state.cacheHistory.map((c) => c.misses) },
  ]);
}

// While numbers are on their way the page says so (and screen readers hear it: aria-busy).
function setLoading(loading) {
  $("loading").hidden = !loading;
  document.querySelector("main").setAttribute("aria-busy", String(loading));
}

async function refresh() {
  if (!state.token) { showError("Enter an API token to see the numbers."); return; }
  setLoading(true);
  try {
    await Promise.all([loadSummary(), loadTimeseries(), loadActiveUsers(), loadTopUsers(), loadUser()]);
    await loadCache();
    showError("");
    document.body.dataset.loaded = String(Date.now());
  } catch (e) {
    showError(e.message);
  } finally {
    setLoading(false);
  }
}

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  state.token = $("token").value.trim();
  localStorage.setItem("analytics-token", state.token);
  refresh();
});
$("filters").addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
$("bucket").addEventListener("change", () => refresh());
$("tz").addEventListener("change", () => {
  localStorage.setItem("analytics-tz", $("tz").value);
  // Dates the dashboard filled in were the old zone's default: let the new zone's replace them.
  for (const id of ["from", "to"]) if ($(id).dataset.auto === $(id).value) $(id).value = "";
  useZone($("tz").value);
  refresh();
});
window.addEventListener("resize", () => {
  for (const el of document.querySelectorAll(".chart")) if (el.chart) lineChart(el, ...el.chart);
});
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
readZone();
refresh();
setInterval(() => { if (state.token) loadCache().catch(() => {}); }, 5000);
