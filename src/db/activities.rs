//! Activity rows: insert, find, list (keyset pages), update and delete.

use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::domain::{
    Activity, ActivityPatch, ListActivitiesQuery, LiveWrite, Neighbours, NewActivity, Touch,
};

/// A stored activity, what the cache needs to apply it to cached answers, and the id of the
/// `cache_pending` row that records the cache update it owes (migration 6).
pub(crate) type Created = (Activity, LiveWrite, i64);

/// Inserts one activity under its user's write lock (migration 5), records the cache update it
/// owes, and reads what the cache needs to apply it: the transaction id and the user's
/// neighbouring activities. Must run inside a transaction, which holds the lock until it ends:
/// the neighbours stay true until the create has committed.
pub async fn insert_activity(tx: &mut PgConnection, a: &NewActivity) -> sqlx::Result<Created> {
    // The lock is taken in its own statement before the neighbours are read: under read committed
    // a statement sees what committed before it started, so the neighbours' statement, started
    // after the lock was granted, sees every earlier write of this user.
    let stored = sqlx::query_as!(
        Activity,
        "with locked as (select activity_lock_users(array[$2::uuid]))
         insert into activities (id, user_id, action, occurred_at, duration_ms, value, properties)
         select $1, $2, $3, $4, $5, $6, $7 from locked
         returning *",
        a.id,
        a.user_id,
        a.action.as_str(),
        a.occurred_at,
        a.duration_ms,
        a.value,
        a.properties.as_ref(),
    )
    .fetch_one(&mut *tx)
    .await?;
    // Each neighbour is one short scan of a (user_id, [action,] occurred_at) index. The pending
    // row rides along to save a round trip.
    let touches = [Touch::from(&stored)];
    let row = sqlx::query!(
        r#"with pending as (insert into cache_pending (touches) values ($5) returning id)
         select (select id from pending) as "pending!", pg_current_xact_id()::text as "xid!",
            (select occurred_at from activities where user_id = $1 and occurred_at <= $2 and id <> $3
             order by occurred_at desc limit 1) as prev_any,
            (select occurred_at from activities where user_id = $1 and occurred_at >= $2 and id <> $3
             order by occurred_at limit 1) as next_any,
            (select occurred_at from activities where user_id = $1 and occurred_at <= $2 and id <> $3
               and action = $4 order by occurred_at desc limit 1) as prev_same,
            (select occurred_at from activities where user_id = $1 and occurred_at >= $2 and id <> $3
               and action = $4 order by occurred_at limit 1) as next_same"#,
        stored.user_id,
        stored.occurred_at,
        stored.id,
        &stored.action,
        Json(&touches) as _,
    )
    .fetch_one(&mut *tx)
    .await?;
    let (pending, xid) = (row.pending, row.xid);
    let xid = xid
        .parse()
        .map_err(|e| sqlx::Error::Decode(format!("transaction id {xid:?}: {e}").into()))?;
    let write = LiveWrite {
        seq: 0,
        xid,
        user_id: stored.user_id,
        action: stored.action.clone(),
        occurred_at: stored.occurred_at,
        duration_ms: stored.duration_ms,
        value: stored.value,
        neighbours: Neighbours {
            prev_any: row.prev_any,
            next_any: row.next_any,
            prev_same: row.prev_same,
            next_same: row.next_same,
        },
    };
    Ok((stored, write, pending))
}

/// Takes the write locks of `users` until the transaction ends (see `insert_activity`).
pub(crate) async fn lock_users(tx: &mut PgConnection, users: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query!("select activity_lock_users($1)", users)
        .execute(tx)
        .await
        .map(|_| ())
}

/// Inserts every activity in one statement: a batch is all or nothing, and one round trip
/// with arrays is far cheaper than 5000 single-row inserts. Holds its users' write locks until
/// the statement's transaction ends.
pub(crate) async fn insert_activities(
    db: impl PgExecutor<'_>,
    batch: &[NewActivity],
) -> sqlx::Result<u64> {
    let ids: Vec<Uuid> = batch.iter().map(|a| a.id).collect();
    let users: Vec<Uuid> = batch.iter().map(|a| a.user_id).collect();
    let actions: Vec<&str> = batch.iter().map(|a| a.action.as_str()).collect();
    let times: Vec<_> = batch.iter().map(|a| a.occurred_at).collect();
    let durations: Vec<Option<i64>> = batch.iter().map(|a| a.duration_ms).collect();
    let values: Vec<Option<f64>> = batch.iter().map(|a| a.value).collect();
    let properties: Vec<Option<serde_json::Value>> =
        batch.iter().map(|a| a.properties.clone()).collect();
    let done = sqlx::query!(
        "with locked as (select activity_lock_users($2))
         insert into activities (id, user_id, action, occurred_at, duration_ms, value, properties)
         select r.* from locked,
             unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::int8[], $6::float8[], $7::jsonb[]) r",
        &ids,
        &users,
        // The macros expect `&[String]` and non-null elements for these arrays; borrowed strings
        // and `Option`s encode the same, and the casts in `unnest` name the types.
        &actions as _,
        &times,
        &durations as _,
        &values as _,
        &properties as _,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

pub(crate) async fn find_activity(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> sqlx::Result<Option<Activity>> {
    sqlx::query_as!(Activity, "select * from activities where id = $1", id)
        .fetch_optional(db)
        .await
}

/// Locks the row until the transaction ends, so a concurrent patch or delete of the same
/// activity cannot slip between reading its old values (needed for invalidation) and writing.
pub(crate) async fn find_activity_for_update(
    db: &mut PgConnection,
    id: Uuid,
) -> sqlx::Result<Option<Activity>> {
    sqlx::query_as!(
        Activity,
        "select * from activities where id = $1 for update",
        id
    )
    .fetch_optional(db)
    .await
}

/// One page, newest first. Fetches `limit + 1` rows so the caller knows whether another page follows.
pub(crate) async fn list_activities(
    db: impl PgExecutor<'_>,
    q: &ListActivitiesQuery,
) -> sqlx::Result<Vec<Activity>> {
    // Each filter is `$n is null or ...` so that one static statement serves every combination
    // (no SQL is assembled from input); the row comparison on (occurred_at, id) uses the index.
    sqlx::query_as!(
        Activity,
        "select * from activities
         where ($1::uuid is null or user_id = $1)
           and ($2::text is null or action = $2)
           and ($3::timestamptz is null or occurred_at >= $3)
           and ($4::timestamptz is null or occurred_at < $4)
           and ($5::timestamptz is null or (occurred_at, id) < ($5, $6::uuid))
         order by occurred_at desc, id desc
         limit $7",
        q.user_id,
        q.action.as_ref().map(|a| a.as_str()),
        q.from,
        q.to,
        q.after.map(|c| c.occurred_at),
        q.after.map(|c| c.id),
        q.limit + 1,
    )
    .fetch_all(db)
    .await
}

/// Writes `patch` over `old` (which the caller locked) and returns the new row.
pub(crate) async fn update_activity(
    db: &mut PgConnection,
    old: &Activity,
    patch: &ActivityPatch,
) -> sqlx::Result<Activity> {
    let new = patch.apply(old);
    sqlx::query_as!(
        Activity,
        "update activities
         set user_id = $2, action = $3, occurred_at = $4, duration_ms = $5, value = $6, properties = $7,
             updated_at = now()
         where id = $1
         returning *",
        old.id,
        new.user_id,
        &new.action,
        new.occurred_at,
        new.duration_ms,
        new.value,
        new.properties.as_ref(),
    )
    .fetch_one(db)
    .await
}

/// Deletes the row (under its user's write lock) and returns it, so the caller can invalidate
/// what it was part of.
pub(crate) async fn delete_activity(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> sqlx::Result<Option<Activity>> {
    sqlx::query_as!(
        Activity,
        "with locked as (select activity_lock_users(array[user_id]) from activities where id = $1)
         delete from activities a using locked where a.id = $1
         returning a.*",
        id,
    )
    .fetch_optional(db)
    .await
}

/// What erasing a user removed: how many activities, and per action and UTC day the first and
/// last instant they covered (what the cache must forget).
pub(crate) struct Erased {
    pub(crate) deleted: u64,
    pub(crate) touches: Vec<Touch>,
}

/// Deletes every activity of `user` under its write lock (the rollups and the user's bitmaps
/// follow in the same statement, by trigger), the user's bitmap number, and every stored
/// idempotent response that carries the user's id, so no copy of their data survives in this
/// database.
pub(crate) async fn erase_user(tx: &mut PgConnection, user: Uuid) -> sqlx::Result<Erased> {
    lock_users(tx, &[user]).await?;
    let spans = sqlx::query!(
        r#"with gone as (delete from activities where user_id = $1 returning action, occurred_at)
         select action as "action!", min(occurred_at) as "first!", max(occurred_at) as "last!",
             count(*) as "events!"
         from gone group by action, (occurred_at at time zone 'UTC')::date"#,
        user,
    )
    .fetch_all(&mut *tx)
    .await?;
    // The user's number in the bitmaps: every bit of it was cleared by the delete above (its
    // trigger), and a later write of the same id simply gets a new number.
    sqlx::query!("delete from activity_users where user_id = $1", user)
        .execute(&mut *tx)
        .await?;
    sqlx::query!(
        "delete from idempotency_keys where position(convert_to($1, 'UTF8') in response) > 0",
        user.to_string(),
    )
    .execute(&mut *tx)
    .await?;
    let deleted = spans.iter().map(|s| s.events).sum::<i64>();
    Ok(Erased {
        deleted: u64::try_from(deleted).unwrap_or(0),
        touches: spans
            .into_iter()
            .map(|s| Touch {
                user_id: user,
                action: s.action,
                occurred_at: s.first,
                through: Some(s.last),
            })
            .collect(),
    })
}
