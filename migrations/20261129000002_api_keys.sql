-- API keys. The token itself is never stored: only its SHA-256, which is enough because
-- tokens are 256 random bits (no dictionary to attack, so no slow hash is needed) and it
-- lets a request find its key with one indexed lookup.
create table api_keys (
    id          uuid primary key,
    name        text not null unique check (length(name) between 1 and 100),
    role        text not null check (role in ('read', 'write', 'admin')),
    token_hash  bytea not null unique,
    created_at  timestamptz not null default now(),
    revoked_at  timestamptz
);
