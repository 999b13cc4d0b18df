// The generated client against a live, seeded server (scripts/client.sh starts one): every call
// goes through the types generated from /openapi.json, so a field renamed on either side fails
// to compile before it fails here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createAnalyticsClient, type components } from "../src/index.js";

const base = process.env.BASE_URL ?? "http://127.0.0.1:8080";
const token = process.env.TOKEN ?? "";
const client = createAnalyticsClient(base, token);
const fresh = { "Cache-Control": "no-cache" };

test("a create is read back, in the list and in the statistics", async () => {
  const user = randomUUID();
  const { data: created, response } = await client.POST("/api/v1/activities", {
    body: { user_id: user, action: "ts_client", value: 2.5, duration_ms: 1200, properties: { plan: "pro" } },
  });
  assert.equal(response.status, 201);
  assert.ok(created);
  assert.equal(created.user_id, user);
  assert.equal(created.value, 2.5);

  const { data: got } = await client.GET("/api/v1/activities/{id}", { params: { path: { id: created.id } } });
  assert.equal(got?.action, "ts_client");

  const { data: profile } = await client.GET("/api/v1/stats/users/{user_id}", { params: { path: { user_id: user } } });
  assert.equal(profile?.events, 1);
  assert.equal(profile?.value_sum, 2.5);
  assert.deepEqual(profile?.by_action.map((a) => [a.action, a.events]), [["ts_client", 1]]);
});

test("a batch lands whole, and the list pages through it by cursor", async () => {
  const user = randomUUID();
  const activities: components["schemas"]["CreateActivity"][] = Array.from({ length: 5 }, (_, i) => ({
    user_id: user,
    action: "ts_batch",
    value: i,
  }));
  const { data: batch, response } = await client.POST("/api/v1/activities/batch", { body: { activities } });
  assert.equal(response.status, 201);
  assert.equal(batch?.inserted, 5);

  const seen: string[] = [];
  let cursor: string | undefined;
  do {
    const { data: page, error } = await client.GET("/api/v1/activities", {
      params: { query: { user_id: user, limit: 2, cursor } },
    });
    assert.equal(error, undefined);
    assert.ok(page);
    assert.ok(page.items.length <= 2);
    seen.push(...page.items.map((a) => a.id));
    cursor = page.next_cursor ?? undefined;
  } while (cursor);
  assert.deepEqual([...seen].sort(), [...(batch?.ids ?? [])].sort());
});

test("every statistic answers through its typed shape", async () => {
  const { data: summary } = await client.GET("/api/v1/stats/summary", { headers: fresh });
  assert.ok(summary && summary.events > 0 && summary.unique_users > 0);
  assert.ok(Date.parse(summary.to) > Date.parse(summary.from));

  for (const bucket of ["hour", "day", "week", "month"] as const) {
    const { data: series } = await client.GET("/api/v1/stats/timeseries", { params: { query: { bucket } } });
    assert.equal(series?.bucket, bucket);
    assert.ok((series?.points.length ?? 0) > 0);
  }
  const { data: active } = await client.GET("/api/v1/stats/active-users", {});
  assert.ok(active && active.mau >= active.wau && active.wau >= active.dau);

  const { data: top } = await client.GET("/api/v1/stats/top-users", { params: { query: { limit: 3 } } });
  assert.equal(top?.items.length, 3);
  assert.ok((top?.items[0].events ?? 0) >= (top?.items[2].events ?? 0));
});

test("an unchanged answer revalidates by its entity tag", async () => {
  const first = await client.GET("/api/v1/stats/summary", {});
  const etag = first.response.headers.get("ETag");
  assert.ok(etag, "statistics carry an ETag");
  const again = await client.GET("/api/v1/stats/summary", { headers: { "If-None-Match": etag } });
  assert.equal(again.response.status, 304);
  assert.equal(again.data, undefined);
});

test("a broken field comes back as a typed problem naming it", async () => {
  const { data, error, response } = await client.POST("/api/v1/activities", {
    body: { user_id: randomUUID(), action: "Not An Action!" },
  });
  assert.equal(data, undefined);
  assert.equal(response.status, 422);
  assert.equal(response.headers.get("Content-Type"), "application/problem+json");
  assert.ok(error);
  assert.equal(error.status, 422);
  assert.deepEqual(error.errors?.map((e) => e.field), ["action"]);
});

test("a read token may not write, and says so", async () => {
  const reader = createAnalyticsClient(base, process.env.READ_TOKEN);
  const { error, response } = await reader.POST("/api/v1/activities", { body: { user_id: randomUUID(), action: "x" } });
  assert.equal(response.status, 403);
  assert.equal(error?.status, 403);
});
