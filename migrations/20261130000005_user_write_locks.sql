-- Live cache updates (docs/cache.md, "Live ingest"): a create tells the cache whether its user was
-- already active around the new event (the user's previous and next activity), so that cached
-- unique-user counts can be brought up to date exactly instead of thrown away. That answer is only
-- right if no other write of the same user commits between reading it and committing the create,
-- so every write takes a transaction-scoped advisory lock on each user it touches.
--
-- Users share 256 lock buckets: a batch of 5000 users then holds at most 256 locks (each one a slot
-- in the shared lock table, which is small), and two creates of different users meet on a bucket
-- only one time in 256, for the length of one insert.

-- Which lock bucket a user's writes take.
create function activity_user_bucket(u uuid) returns integer
language sql immutable parallel safe
return hashtext(u::text) & 255;

-- Takes the write locks of `users`, bucket after bucket in ascending order, so that two writers
-- needing overlapping sets always queue instead of deadlocking.
create function activity_lock_users(users uuid[]) returns void
language plpgsql as $$
declare
    b integer;
begin
    for b in select distinct activity_user_bucket(u) from unnest(users) u order by 1 loop
        perform pg_advisory_xact_lock(7411, b);
    end loop;
end
$$;

-- A create's neighbours of the same action (docs/cache.md, "Live ingest"): without this index the
-- planner reads them through the action index, walking every user's activities of that action.
create index activities_user_action_occurred_at_idx on activities (user_id, action, occurred_at);
