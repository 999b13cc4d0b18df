//! Getting the rows in fast: generated on every core and streamed into one binary COPY, into a
//! table whose indexes are dropped first and built once at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};

use super::SeedOptions;
use super::generate::Population;

/// Tables whose indexes a load into an empty `activities` drops and rebuilds.
pub(super) const BULK_TABLES: [&str; 3] = [
    "activities",
    "activity_user_daily",
    "activity_user_action_daily",
];

/// Index and primary-key definitions taken off tables for a bulk load, to put back afterwards.
#[derive(Default)]
pub(super) struct DroppedIndexes {
    restore: Vec<String>,
}

impl DroppedIndexes {
    pub(super) async fn drop(tx: &mut sqlx::PgConnection, tables: &[&str]) -> sqlx::Result<Self> {
        // Definitions come from the catalogue (pg_get_indexdef / pg_get_constraintdef), so the
        // rebuilt indexes are exactly the ones the migrations made.
        let found = sqlx::query!(
            r#"select format('alter table %I drop constraint %I', t.relname, c.conname) as "drop!",
                    format('alter table %I add constraint %I %s', t.relname, c.conname, pg_get_constraintdef(c.oid)) as "create!"
             from pg_constraint c join pg_class t on t.oid = c.conrelid
             where c.contype = 'p' and t.relname = any($1) and t.relnamespace = 'public'::regnamespace
             union all
             -- A partitioned table's index is described `on only` the parent: rebuilt that
             -- way it would cover no partition, so it is rebuilt on the whole table.
             select format('drop index %I', i.relname),
                    regexp_replace(pg_get_indexdef(i.oid), ' ON ONLY ', ' ON ')
             from pg_index x join pg_class i on i.oid = x.indexrelid join pg_class t on t.oid = x.indrelid
             where t.relname = any($1) and t.relnamespace = 'public'::regnamespace and not x.indisprimary"#,
            tables as _,
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut restore = Vec::with_capacity(found.len());
        for index in found {
            // Statements the catalogue wrote (format with %I quoting), never input.
            sqlx::query(sqlx::AssertSqlSafe(index.drop))
                .execute(&mut *tx)
                .await?;
            restore.push(index.create);
        }
        Ok(Self { restore })
    }

    pub(super) async fn restore(self, tx: &mut sqlx::PgConnection) -> sqlx::Result<()> {
        for create in self.restore {
            sqlx::query(sqlx::AssertSqlSafe(create))
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }
}

/// Streams the generated rows into one COPY. Chunks are generated on every core while the
/// database parses the ones already sent.
pub(super) async fn copy_rows(
    tx: &mut sqlx::PgConnection,
    o: SeedOptions,
    end: DateTime<Utc>,
) -> anyhow::Result<u64> {
    let population = Arc::new(Population::new(o, end));
    let plan = Arc::new(population.plan(o.events));
    let next = Arc::new(AtomicU64::new(0));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<(u64, Vec<u8>)>(threads * 2);
    for _ in 0..threads {
        let (population, plan, next, sender) = (
            population.clone(),
            plan.clone(),
            next.clone(),
            sender.clone(),
        );
        std::thread::spawn(move || {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(&chunk) = plan.get(index as usize) else {
                    break;
                };
                let rows = chunk.1;
                let mut buffer = Vec::with_capacity(rows as usize * 130);
                population.chunk(o.seed, index, chunk, &mut buffer);
                if sender.blocking_send((rows, buffer)).is_err() {
                    break; // the COPY failed and stopped listening
                }
            }
        });
    }
    drop(sender);
    let bar = ProgressBar::new(o.events).with_style(
        ProgressStyle::with_template(
            "{bar:40} {human_pos}/{human_len} events  {per_sec}  eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut copy = tx
        .copy_in_raw("copy activities (id, user_id, action, occurred_at, duration_ms, value, properties) from stdin with (format binary)")
        .await?;
    // The binary format's signature, flags and header-extension length, then the tuples.
    copy.send(&b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0"[..])
        .await?;
    while let Some((rows, buffer)) = receiver.recv().await {
        copy.send(buffer).await?;
        bar.inc(rows);
    }
    copy.send(&(-1i16).to_be_bytes()[..]).await?;
    let rows = copy.finish().await?;
    bar.finish_and_clear();
    Ok(rows)
}
