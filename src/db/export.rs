//! The rows of an export, read through a server-side cursor in one read-only snapshot, a page
//! at a time: memory stays at one page whatever the selection, and a consumer that stops
//! (a client gone) drops the transaction, which rolls back and hands the connection back.

use futures_util::Stream;
use sqlx::{PgPool, Postgres, Transaction};

use crate::domain::{Activity, ExportQuery};

/// One round trip: 1000 rows, large enough that the round trips cost little, small enough that
/// a page is a few hundred kilobytes.
const FETCH_PAGE: &str = "fetch 1000 from export";

enum State {
    Open(Transaction<'static, Postgres>),
    Done,
}

/// Opens the export (so that a database that cannot serve it fails the request before any
/// byte is sent), then yields every activity `q` selects, in `(occurred_at, id)` order, as pages.
pub(crate) async fn pages(
    pool: &PgPool,
    q: &ExportQuery,
) -> sqlx::Result<impl Stream<Item = sqlx::Result<Vec<Activity>>> + use<>> {
    let tx = open(pool, q).await?;
    Ok(futures_util::stream::unfold(
        State::Open(tx),
        |state| async move {
            match state {
                State::Open(tx) => next_page(tx).await,
                State::Done => None,
            }
        },
    ))
}

// Runtime queries, not macros: Postgres cannot describe `declare ... cursor` or `fetch` before the
// cursor exists, which is what the macros ask of it at build time.
async fn open(pool: &PgPool, q: &ExportQuery) -> sqlx::Result<Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await?;
    // One snapshot for the whole export: rows written meanwhile neither appear halfway nor
    // shift the order.
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    // The same `$n is null or ...` filters as the listing: one static statement, no SQL built
    // from input. A cursor is planned for its first rows, so this walks the (occurred_at, id)
    // index instead of sorting the table.
    sqlx::query(
        "declare export no scroll cursor for
         select id, user_id, action, occurred_at, duration_ms, value, properties, created_at, updated_at
         from activities
         where ($1::uuid is null or user_id = $1)
           and ($2::text is null or action = $2)
           and ($3::timestamptz is null or occurred_at >= $3)
           and ($4::timestamptz is null or occurred_at < $4)
         order by occurred_at, id",
    )
    .bind(q.user_id)
    .bind(q.action.as_ref().map(|a| a.as_str()))
    .bind(q.from)
    .bind(q.to)
    .execute(&mut *tx)
    .await?;
    Ok(tx)
}

async fn next_page(
    mut tx: Transaction<'static, Postgres>,
) -> Option<(sqlx::Result<Vec<Activity>>, State)> {
    let fetched: sqlx::Result<Vec<Activity>> = sqlx::query_as(FETCH_PAGE).fetch_all(&mut *tx).await;
    match fetched {
        Ok(rows) if rows.is_empty() => {
            let _ = tx.commit().await;
            None
        }
        Ok(rows) => Some((Ok(rows), State::Open(tx))),
        Err(e) => Some((Err(e), State::Done)),
    }
}
