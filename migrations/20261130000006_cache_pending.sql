-- Cache updates that committed writes still owe (docs/cache.md, "Failure of a write's cache
-- update"). A write inserts its row in its own transaction, so the row exists exactly when the
-- write committed; the instance deletes it once the cache reflects the write. A row that outlives
-- its writer (the process died between commit and cache update) is found by any instance's sweep
-- and turned into an invalidation, so no entry stays without the write.
create table cache_pending (
    id          bigint generated always as identity primary key,
    -- What the write touched: [{"user_id", "action", "occurred_at"}], old and new values.
    touches     jsonb not null,
    created_at  timestamptz not null default now()
);

-- The sweep reads the oldest rows only.
create index cache_pending_created_at_idx on cache_pending (created_at);
