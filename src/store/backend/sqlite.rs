//! The SQLite backend: the store, how it opens, how a write transaction begins, and what it
//! does after `forget`. The rest is written once for both backends in `sql/` and included
//! here, with `Db` the SQLite database (see `backend.rs`).

use super::{migrate, unique_scratch_name};
use crate::store::types::*;
use sqlx::Row;

/// The database the files of `sql/` are compiled for here.
type Db = sqlx::Sqlite;
/// The store they are compiled for.
type This = SqliteStore;

#[allow(clippy::duplicate_mod)] // written once for both databases: see sql/
#[path = "sql/batch.rs"]
mod batch;
#[allow(clippy::duplicate_mod)] // written once for both databases: see sql/
#[path = "sql/batch_load.rs"]
mod batch_load;
#[allow(clippy::duplicate_mod)] // written once for both databases: see sql/
#[path = "sql/batch_write.rs"]
mod batch_write;
#[allow(clippy::duplicate_mod)] // written once for both databases: see sql/
#[path = "sql/coupon_sync.rs"]
mod coupon_sync;
#[allow(clippy::duplicate_mod)] // written once for both databases: see sql/
#[path = "sql/email.rs"]
mod email;
#[allow(clippy::duplicate_mod)] // written once for both databases: see sql/
#[path = "sql/email_control.rs"]
mod email_control;
#[allow(clippy::duplicate_mod)] // written once for both databases: see sql/
#[path = "sql/email_preferences.rs"]
mod email_preferences;
#[allow(clippy::duplicate_mod)] // written once for both databases: see sql/
#[path = "sql/email_store_impl.rs"]
mod email_store_impl;
#[allow(clippy::duplicate_mod)] // written once for both databases: see sql/
#[path = "sql/erase.rs"]
mod erase;
#[allow(clippy::duplicate_mod)] // written once for both databases: see sql/
#[path = "sql/events.rs"]
mod events;
#[allow(clippy::duplicate_mod)] // written once for both databases: see sql/
#[path = "sql/fingerprint.rs"]
mod fingerprint;
#[allow(clippy::duplicate_mod)] // written once for both databases: see sql/
#[path = "sql/operator.rs"]
mod operator;
#[allow(clippy::duplicate_mod)] // written once for both databases: see sql/
#[path = "sql/outbox.rs"]
mod outbox;
#[allow(clippy::duplicate_mod)] // written once for both databases: see sql/
#[path = "sql/packing.rs"]
mod packing;
#[allow(clippy::duplicate_mod)] // written once for both databases: see sql/
#[path = "sql/positions.rs"]
mod positions;
#[allow(clippy::duplicate_mod)] // written once for both databases: see sql/
#[path = "sql/reads.rs"]
mod reads;
#[allow(clippy::duplicate_mod)] // written once for both databases: see sql/
#[path = "sql/report.rs"]
mod report;
#[allow(clippy::duplicate_mod)] // written once for both databases: see sql/
#[path = "sql/retention.rs"]
mod retention;
#[allow(clippy::duplicate_mod)] // written once for both databases: see sql/
#[path = "sql/store_impl.rs"]
mod store_impl;
#[allow(clippy::duplicate_mod)] // written once for both databases: see sql/
#[path = "sql/webhooks.rs"]
mod webhooks;

/// The `meta` key a SQLite store gets once it has been vacuumed with `secure_delete` on: from
/// then on everything it frees is overwritten as it is freed. A store made before that setting
/// may hold erased data in its free pages, which one `VACUUM` rewrites away. Its value is a
/// constant (not a time), so that two stores with the same content dump alike.
const META_SECURE_DELETE: &str = "secure_delete";

/// SQLite: a file in WAL mode; one writer connection (every write transaction is
/// `BEGIN IMMEDIATE`, so a reader never upgrades into a busy-snapshot failure), and a pool of
/// readers for the HTTP API.
pub struct SqliteStore {
    write: sqlx::SqlitePool,
    read: sqlx::SqlitePool,
    /// The effect report's own readers: its seconds-long scans never hold up the station
    /// API's readers, nor the writer (WAL readers do not block it).
    report: sqlx::SqlitePool,
}

impl SqliteStore {
    /// The writer's transaction is `BEGIN IMMEDIATE`: rows need no lock of their own.
    const LOCK_PROFILES: &'static str = "";
    /// SQLite's write transactions are serial already (`BEGIN IMMEDIATE`).
    const LOCK_ROW: &'static str = "";
    /// The report's statements one after the other (see `REPORT_CONNECTIONS` in `postgres.rs`).
    const REPORT_SIDE_BY_SIDE: bool = false;
    const CLAIM_EMAILS_SQL: &'static str = "UPDATE email_jobs SET claimed_until = $3, attempts = attempts + 1 \
        WHERE (order_id, followup_id) IN (SELECT order_id, followup_id FROM email_jobs \
        WHERE state IN ('pending', 'retry', 'sending') AND due_at <= $1 AND (claimed_until IS NULL OR claimed_until < $1) ORDER BY due_at LIMIT $2) \
        RETURNING order_id, followup_id, customer_id, state, due_at, COALESCE(scheduled_for, due_at), claimed_until, attempts, tries, resends, message, variant";
    /// SQLite's write transactions are serial: the frequency cap needs no lock of its own.
    const LOCK_CUSTOMER_SQL: Option<&'static str> = None;

    /// Opens (creating) the database at `path` (a file path, `sqlite:` URL, or `:memory:`).
    pub async fn open(path: &str) -> Result<Self, StoreError> {
        use sqlx::sqlite::{
            SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
        };
        use std::str::FromStr;
        let memory = path == ":memory:" || path == "sqlite::memory:";
        let mut fresh = memory;
        let opts = if memory {
            // A shared in-memory database, for scratch stores (backtest).
            let name = format!(
                "file:packwell-scratch-{}?mode=memory&cache=shared",
                unique_scratch_name()
            );
            SqliteConnectOptions::from_str(&format!("sqlite:{name}"))?
        } else {
            let file = crate::store::sqlite_file(path).unwrap_or(path);
            // The folder 0700 and the file 0600 before SQLite opens it: its -wal and -shm
            // then get the file's mode (see `files.rs`).
            let (new, narrowed) = crate::files::prepare_sqlite_file(std::path::Path::new(file))
                .map_err(|e| StoreError::Other(format!("cannot create {file}: {e}")))?;
            for n in narrowed {
                tracing::warn!("{n}");
            }
            fresh = new;
            SqliteConnectOptions::new()
                .filename(file)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
        }
        .synchronous(SqliteSynchronous::Normal)
        .statement_cache_capacity(crate::store::types::STATEMENT_CACHE)
        .busy_timeout(std::time::Duration::from_secs(10))
        // 64 MiB of page cache per connection (the default is 2 MiB): a batch reads hundreds of
        // profiles and orders, and pages read from the OS cache cost a system call each.
        .pragma("cache_size", "-65536")
        // Statement journals and sorts in memory, not in files under /var/tmp: a multi-row
        // statement inside a transaction journals every page it changes, which in files cost
        // as many bytes written as the WAL itself.
        .pragma("temp_store", "MEMORY")
        // A checkpoint every 10 000 WAL pages (40 MiB) rather than 1 000: a page changed by
        // many batches in between is copied into the database once.
        .pragma("wal_autocheckpoint", "10000")
        // What is deleted or overwritten is overwritten with zeros in the file, on every
        // connection, so that erased data does not linger in free space (`forget`).
        .pragma("secure_delete", "ON")
        .foreign_keys(false);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        migrate(&write, &sqlx::migrate!("migrations/sqlite")).await?;
        let read_opts = opts.read_only(!memory);
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(read_opts.clone())
            .await?;
        let report = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .connect_lazy_with(read_opts);
        let store = SqliteStore {
            write,
            read,
            report,
        };
        store.vacuum_once(fresh).await?;
        Ok(store)
    }

    /// One instance per SQLite file (the data folder's lock file): its relay is the only one.
    async fn try_take_relay_lock(&self) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.write.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Empties the WAL into the database file and truncates it, so that it holds no copy of
    /// the pages as they were before the erasure.
    async fn after_forget(&self) -> Result<String, StoreError> {
        let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&self.write)
            .await?;
        let busy: i64 = row.try_get(0)?;
        Ok(if busy == 0 {
            "freed space overwritten (secure_delete), the WAL emptied".into()
        } else {
            "freed space overwritten (secure_delete); the WAL could not be emptied now (another \
             process was reading): it empties at its next checkpoint, or run forget again"
                .into()
        })
    }

    /// Once per store: a store made before `secure_delete` was set may hold erased data in
    /// its free pages; `VACUUM` rewrites the file without them. A new store (`fresh`) has
    /// none. A failure (a full disk: `VACUUM` needs room for a copy) is told and tried again
    /// at the next opening, rather than keeping the store closed.
    async fn vacuum_once(&self, fresh: bool) -> Result<(), StoreError> {
        let done = sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(META_SECURE_DELETE)
            .fetch_optional(&self.write)
            .await?;
        if done.is_some() {
            return Ok(());
        }
        if !fresh {
            tracing::warn!(
                "rewriting the store once (VACUUM), so that data erased before secure_delete was on is gone from its free pages"
            );
            let vacuumed = async {
                sqlx::query("VACUUM").execute(&self.write).await?;
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(&self.write)
                    .await
            }
            .await;
            if let Err(e) = vacuumed {
                tracing::warn!(error = %e, "the store could not be rewritten now; trying again when it is next opened");
                return Ok(());
            }
        }
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(META_SECURE_DELETE)
            .bind("on")
            .execute(&self.write)
            .await?;
        Ok(())
    }
}

// Opened for reading only (`crate::store::events::open_read_only`): no migration, no file or
// folder created, every connection read-only, so that nothing done through it changes the store.
impl SqliteStore {
    pub(crate) async fn open_read_only(path: &str) -> Result<Self, StoreError> {
        use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
        let file = crate::store::sqlite_file(path).unwrap_or(path);
        let opts = SqliteConnectOptions::new()
            .filename(file)
            .read_only(true)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(opts)
            .await?;
        let applied: Vec<i64> = sqlx::query_scalar(super::APPLIED_SQL)
            .fetch_all(&pool)
            .await?;
        super::check_schema(&applied, &sqlx::migrate!("migrations/sqlite"))?;
        Ok(SqliteStore {
            write: pool.clone(),
            read: pool.clone(),
            report: pool,
        })
    }
}
