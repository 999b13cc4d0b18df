// The dashboard in a real headless Chromium against a running, seeded server: it loads with a
// token, shows the server's numbers, and updates after an activity is recorded through it.
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const base = process.env.BASE_URL;
const token = process.env.TOKEN;
const shots = process.env.SCREENSHOT_DIR || "../target/e2e";
let browser;

async function api(path) {
  const response = await fetch(`${base}${path}`, { headers: { Authorization: `Bearer ${token}`, "Cache-Control": "no-cache" } });
  assert.equal(response.status, 200, path);
  return response.json();
}

const asNumber = (text) => Number(text.replace(/[^0-9.-]/g, ""));

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
});

after(async () => { await browser?.close(); });

// Every uncaught exception, console error and failed request of the page lands in `errors`.
async function openDashboard(width, height, options = {}) {
  // In UTC unless a test says otherwise: the dashboard shows the browser's zone by default.
  const page = await browser.newPage({ viewport: { width, height }, timezoneId: "UTC", ...options });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") errors.push(`console: ${m.text()}`); });
  page.on("response", (r) => { if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`); });
  await page.goto(`${base}/#token=${token}`);
  await page.waitForSelector("body[data-loaded]");
  return { page, errors };
}

test("the dashboard shows the server's numbers and updates after recording an activity", async () => {
  const { page, errors } = await openDashboard(1280, 1400);
  const summary = await api("/api/v1/stats/summary");
  assert.ok(summary.events > 0, "the server was seeded");
  assert.equal(asNumber(await page.textContent("#events")), summary.events);
  assert.equal(asNumber(await page.textContent("#unique-users")), summary.unique_users);

  // The range shown is the one the numbers cover (the server's default, `to` exclusive).
  assert.equal(await page.inputValue("#from"), summary.from.slice(0, 10));
  assert.equal(await page.inputValue("#to"), summary.to.slice(0, 10));

  const series = await api("/api/v1/stats/timeseries?bucket=day");
  assert.equal(await page.getAttribute("#timeseries", "data-points"), String(series.points.length));
  assert.equal(await page.locator("#timeseries circle.events").count(), series.points.length);
  // Readable axes: several dates along x, from the first day to the last, and a scale on y
  // that starts at 0 and reaches the largest value.
  const xTicks = await page.locator("#timeseries text.x-tick").allTextContents();
  const day = new Intl.DateTimeFormat("en-US", { month: "short", day: "numeric", timeZone: "UTC" });
  assert.ok(xTicks.length >= 4, `dates along the x axis: ${xTicks}`);
  assert.equal(xTicks[0], day.format(new Date(series.points[0].start)));
  assert.equal(xTicks.at(-1), day.format(new Date(series.points.at(-1).start)));
  const yTicks = await page.locator("#timeseries text.y-tick").evaluateAll((els) => els.map((e) => Number(e.dataset.value)));
  const largest = Math.max(...series.points.map((p) => p.events));
  assert.ok(yTicks.length >= 3 && yTicks[0] === 0, `a y scale from 0: ${yTicks}`);
  const top = yTicks.at(-1);
  assert.ok(top >= largest, `the scale reaches the largest value ${largest} (top ${top})`);

  const active = await api("/api/v1/stats/active-users");
  assert.equal(asNumber(await page.textContent("#dau")), active.dau);
  assert.equal(asNumber(await page.textContent("#mau")), active.mau);

  const topUsers = await api("/api/v1/stats/top-users");
  assert.equal(await page.locator("#top-users tbody tr").count(), topUsers.items.length);
  assert.match(await page.textContent("#top-users tbody tr:first-child"), new RegExp(topUsers.items[0].user_id.slice(0, 8)));
  assert.match(await page.textContent("[data-cache-for=summary]"), /HIT|MISS|BYPASS/);
  assert.match(await page.textContent("#hit-ratio"), /%/);

  // Open the top user's profile, then record an activity for them through the form.
  await page.click("#top-users tbody tr:first-child a");
  await page.waitForSelector("#user-panel:not([hidden])");
  const before = asNumber(await page.textContent("#user-events"));
  const loaded = await page.getAttribute("body", "data-loaded");
  await page.fill("#record-action", "e2e_click");
  await page.fill("#record-value", "5");
  await page.click("#record button");
  await page.waitForFunction((prev) => document.body.dataset.loaded !== prev, loaded);
  assert.equal(asNumber(await page.textContent("#events")), summary.events + 1);
  assert.equal(asNumber(await page.textContent("#user-events")), before + 1);
  assert.match(await page.textContent("#user-actions"), /e2e_click: 1/);

  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: `${shots}/dashboard.png`, fullPage: true });
  assert.deepEqual(errors, []);
});

test("numbers and dates follow the reader's locale", async () => {
  const { page, errors } = await openDashboard(1280, 1000, { locale: "de-DE" });
  const summary = await api("/api/v1/stats/summary");
  assert.equal(await page.textContent("#events"), new Intl.NumberFormat("de-DE").format(summary.events));
  const first = await page.locator("#timeseries text.x-tick").first().textContent();
  assert.match(first, /^\d{1,2}\. [A-ZÄÖÜa-zäöü]{3,4}\.?$/, `a German date: ${first}`);
  assert.deepEqual(errors, []);
});

test("the page says it is loading while numbers are on their way", async () => {
  const page = await browser.newPage();
  let release;
  const held = new Promise((resolve) => { release = resolve; });
  await page.route("**/api/v1/stats/summary*", async (route) => { await held; await route.continue(); });
  await page.goto(`${base}/#token=${token}`);
  await page.waitForSelector("#loading:not([hidden])");
  assert.equal(await page.getAttribute("main", "aria-busy"), "true");
  release();
  await page.waitForSelector("body[data-loaded]");
  assert.equal(await page.isHidden("#loading"), true);
  assert.equal(await page.getAttribute("main", "aria-busy"), "false");
});

test("errors from the API are shown in words", async () => {
  const page = await browser.newPage();
  await page.goto(`${base}/#token=not-a-real-token`);
  await page.waitForSelector("#error:not([hidden])");
  assert.match(await page.textContent("#error"), /token is missing, unknown or revoked/);
  await page.fill("#token", token);
  await page.click("#token-form button");
  await page.waitForSelector("#error", { state: "hidden" });
  assert.ok(Number(await page.textContent("#events").then((t) => t.replace(/[^0-9]/g, ""))) > 0);
});

test("the dashboard is readable on a phone", async () => {
  const { page, errors } = await openDashboard(390, 844);
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 390, `no horizontal scrolling (page is ${width}px wide)`);
  await page.screenshot({ path: `${shots}/dashboard-phone.png`, fullPage: true });
  assert.deepEqual(errors, []);
});

test("a reader in Kathmandu sees Kathmandu's days, and the zone picked is remembered", async () => {
  const { page, errors } = await openDashboard(1280, 1000, { timezoneId: "Asia/Kathmandu" });
  // The browser's own name for the zone (Chromium may say Asia/Katmandu, an IANA alias).
  const zone = await page.evaluate(() => Intl.DateTimeFormat().resolvedOptions().timeZone);
  assert.match(zone, /^Asia\/Kath?mandu$/);
  assert.equal(await page.inputValue("#tz"), zone);
  const q = `tz=${encodeURIComponent(zone)}`;
  const summary = await api(`/api/v1/stats/summary?${q}`);
  assert.match(summary.from, /T00:00:00\+05:45$/, "the range starts at a Kathmandu midnight");
  assert.equal(asNumber(await page.textContent("#events")), summary.events);
  assert.equal(await page.inputValue("#from"), summary.from.slice(0, 10));
  assert.match(await page.textContent("#summary-zone"), new RegExp(zone));
  assert.match(await page.textContent("#series-zone"), new RegExp(zone));
  assert.match(await page.textContent("#active-date"), new RegExp(zone));

  // Axis labels are the zone's dates: each bucket starts at its local midnight.
  const series = await api(`/api/v1/stats/timeseries?bucket=day&${q}`);
  const day = new Intl.DateTimeFormat("en-US", { month: "short", day: "numeric", timeZone: zone });
  const xTicks = await page.locator("#timeseries text.x-tick").allTextContents();
  assert.equal(xTicks[0], day.format(new Date(series.points[0].start)));
  assert.equal(await page.getAttribute("#timeseries", "data-points"), String(series.points.length));

  // Another zone: new numbers for its days, and it is still chosen after a reload.
  const loaded = await page.getAttribute("body", "data-loaded");
  await page.selectOption("#tz", "America/St_Johns");
  await page.waitForFunction((prev) => document.body.dataset.loaded !== prev, loaded);
  const stJohns = await api("/api/v1/stats/summary?tz=America/St_Johns");
  assert.match(stJohns.from, /T00:00:00-0[23]:30$/);
  assert.equal(asNumber(await page.textContent("#events")), stJohns.events);
  assert.equal(await page.inputValue("#from"), stJohns.from.slice(0, 10));
  await page.reload();
  await page.waitForSelector("body[data-loaded]");
  assert.equal(await page.inputValue("#tz"), "America/St_Johns");
  assert.deepEqual(errors, []);
});
