-- One row per thing one user did. Ids are UUIDv7, so they sort by creation time
-- and keep the primary-key index append-mostly.
create table activities (
    id           uuid primary key,
    user_id      uuid not null,
    action       text not null check (action ~ '^[a-z0-9_.:-]{1,64}$'),
    occurred_at  timestamptz not null,
    duration_ms  bigint check (duration_ms >= 0),
    value        double precision,
    properties   jsonb check (properties is null or jsonb_typeof(properties) = 'object'),
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now()
);

-- Range scans of the statistics endpoints and newest-first keyset pages of the listing:
-- (occurred_at, id) is the page key, so the index serves both the filter and the order.
-- user_id is included so that distinct-user counts can be answered from the index alone.
create index activities_occurred_at_idx on activities (occurred_at desc, id desc) include (user_id);

-- A user's profile and the listing filtered by user.
create index activities_user_occurred_at_idx on activities (user_id, occurred_at desc, id desc);

-- Statistics and listings narrowed to one action.
create index activities_action_occurred_at_idx on activities (action, occurred_at desc, id desc) include (user_id);
