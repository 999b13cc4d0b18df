-- Responses to POSTs sent with an Idempotency-Key, so a retry gets the first answer instead
-- of storing the activity twice. Scoped to the API key that sent it (`principal` is the
-- SHA-256 of its token), so two clients cannot collide or read each other's responses.
-- A key is honoured for 24 hours; after that it may be claimed again.
create table idempotency_keys (
    principal     bytea not null,
    key           text not null check (length(key) between 1 and 255),
    request_hash  bytea not null,
    status        smallint,
    response      bytea,
    location      text,
    created_at    timestamptz not null default now(),
    primary key (principal, key)
);

-- The hourly purge of expired keys.
create index idempotency_keys_created_at_idx on idempotency_keys (created_at);
