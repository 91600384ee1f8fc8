//! The PostgreSQL backend: the store, how it connects, how a write transaction begins, the
//! relay's lock, and what it does after `forget`. The rest is written once for both backends
//! in `sql/` and included here, with `Db` the PostgreSQL database (see `backend.rs`).

use super::migrate;
use crate::store::types::*;
use sqlx::Row;

/// The database the files of `sql/` are compiled for here.
type Db = sqlx::Postgres;
/// The store they are compiled for.
type This = PgStore;

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

/// The tables `forget` writes: PostgreSQL vacuums them afterwards.
const TABLES_WRITTEN: &str = "profiles, orders, decisions, email_jobs, outbox, events";

/// PostgreSQL: a pool shared by every task; several Packwell instances may share the database
/// (counters are claimed with conditional updates, e-mail jobs with `FOR UPDATE SKIP LOCKED`).
pub struct PgStore {
    write: sqlx::PgPool,
    read: sqlx::PgPool,
    /// The effect report's own connections, so that its scans never take the ones the
    /// consumer and the station API need.
    report: sqlx::PgPool,
    /// The connection holding the relay's advisory lock, once taken: one relay per database.
    relay_lock: tokio::sync::Mutex<Option<sqlx::pool::PoolConnection<sqlx::Postgres>>>,
}

/// Connections of PostgreSQL's report pool: its four long statements run side by side (the
/// operating system shares them among the cores). SQLite's pool has one: two statements in one
/// process contend on SQLite's global memory mutex and take longer side by side than one after
/// the other (measured: 19 s against 11 s).
const REPORT_CONNECTIONS: u32 = 4;

/// A small pool beside `pool`, on the same database with the same settings, opened on first use.
/// Without JIT compilation: the report's statements are many short index probes, for which
/// compiling costs more than it saves (half a second per statement, measured). With room to
/// sort and hash a million cohort rows in memory rather than on disk, and hash joins rather
/// than a million index probes where the planner misjudges a cohort's size (a fifth faster,
/// measured on 1M customers).
fn report_pool(pool: &sqlx::PgPool) -> sqlx::PgPool {
    let options = (*pool.connect_options()).clone().options([
        ("jit", "off"),
        ("work_mem", "64MB"),
        ("enable_nestloop", "off"),
    ]);
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(REPORT_CONNECTIONS)
        .min_connections(0)
        .connect_lazy_with(options)
}

/// The advisory lock key of the relay ("packwell relay" in ASCII, cut to 63 bits).
const RELAY_LOCK_KEY: i64 = 0x7061_636b_7765_6c6c;

impl PgStore {
    /// Locked until the batch commits, so a concurrent `forget` (or another batch) is not
    /// overwritten by this batch's copy of the profile.
    const LOCK_PROFILES: &'static str = " FOR UPDATE";
    /// A row read to take an order's lock.
    const LOCK_ROW: &'static str = " FOR UPDATE";
    /// The report's statements side by side, each on a connection of its own.
    const REPORT_SIDE_BY_SIDE: bool = true;
    const CLAIM_EMAILS_SQL: &'static str = "UPDATE email_jobs SET claimed_until = $3, attempts = attempts + 1 \
        WHERE (order_id, followup_id) IN (SELECT order_id, followup_id FROM email_jobs \
        WHERE state IN ('pending', 'retry', 'sending') AND due_at <= $1 AND (claimed_until IS NULL OR claimed_until < $1) ORDER BY due_at LIMIT $2 \
        FOR UPDATE SKIP LOCKED) RETURNING order_id, followup_id, customer_id, state, due_at, COALESCE(scheduled_for, due_at), claimed_until, attempts, tries, resends, message, variant";
    /// The frequency cap's per-customer lock: held until the transaction ends, so two
    /// instances handing over e-mails of one customer take turns.
    const LOCK_CUSTOMER_SQL: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))");

    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        use std::str::FromStr;
        let options = sqlx::postgres::PgConnectOptions::from_str(url)?
            .statement_cache_capacity(crate::store::types::STATEMENT_CACHE);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        migrate(&pool, &sqlx::migrate!("migrations/postgres")).await?;
        Ok(PgStore {
            read: pool.clone(),
            report: report_pool(&pool),
            write: pool,
            relay_lock: tokio::sync::Mutex::new(None),
        })
    }

    /// Connects with an explicit pool (tests use a schema of their own through `search_path`).
    pub async fn with_pool(pool: sqlx::PgPool) -> Result<Self, StoreError> {
        migrate(&pool, &sqlx::migrate!("migrations/postgres")).await?;
        Ok(PgStore {
            read: pool.clone(),
            report: report_pool(&pool),
            write: pool,
            relay_lock: tokio::sync::Mutex::new(None),
        })
    }

    /// Takes the relay's session-level advisory lock on a connection kept for it; true while
    /// this instance holds it. Several instances share one database: one relays, the others
    /// wait, and take over when its connection (so its lock) goes.
    async fn try_take_relay_lock(&self) -> Result<bool, StoreError> {
        let mut held = self.relay_lock.lock().await;
        if let Some(conn) = held.as_mut() {
            if sqlx::query("SELECT 1").execute(&mut **conn).await.is_ok() {
                return Ok(true);
            }
            // The connection broke, and the lock went with it.
            *held = None;
        }
        let mut conn = self.write.acquire().await?;
        let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1)")
            .bind(RELAY_LOCK_KEY)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        if got {
            *held = Some(conn);
        }
        Ok(got)
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        Ok(self.write.begin().await?)
    }

    /// Vacuums the tables written, after the commit (`VACUUM` runs outside any transaction):
    /// the row versions as they were before the erasure are removed from the tables. One a
    /// transaction open since before the commit may still see is kept until it ends; the
    /// answer says so.
    async fn after_forget(&self) -> Result<String, StoreError> {
        let committed: f64 = sqlx::query("SELECT extract(epoch FROM clock_timestamp())::float8")
            .fetch_one(&self.write)
            .await?
            .try_get(0)?;
        sqlx::raw_sql(&format!("VACUUM {TABLES_WRITTEN}"))
            .execute(&self.write)
            .await?;
        let older: i64 = sqlx::query(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND backend_xmin IS NOT NULL AND extract(epoch FROM xact_start) < $1",
        )
        .bind(committed)
        .fetch_one(&self.write)
        .await?
        .try_get(0)?;
        Ok(if older == 0 {
            format!("old row versions vacuumed ({TABLES_WRITTEN})")
        } else {
            format!(
                "vacuumed ({TABLES_WRITTEN}), but {older} transaction(s) open since before the erasure may keep old row \
                 versions until they end: VACUUM those tables after them (autovacuum will, too)"
            )
        })
    }
}

// Opened for reading only (`crate::store::events::open_read_only`): no migration, no file or
// folder created, every connection read-only, so that nothing done through it changes the store.
impl PgStore {
    pub(crate) async fn connect_read_only(url: &str) -> Result<Self, StoreError> {
        use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
        use std::str::FromStr;
        let opts =
            PgConnectOptions::from_str(url)?.options([("default_transaction_read_only", "on")]);
        let pool = PgPoolOptions::new()
            .max_connections(REPORT_CONNECTIONS)
            .connect_with(opts)
            .await?;
        let applied: Vec<i64> = sqlx::query_scalar(super::APPLIED_SQL)
            .fetch_all(&pool)
            .await?;
        super::check_schema(&applied, &sqlx::migrate!("migrations/postgres"))?;
        Ok(PgStore {
            read: pool.clone(),
            report: pool.clone(),
            write: pool,
            relay_lock: tokio::sync::Mutex::new(None),
        })
    }
}
