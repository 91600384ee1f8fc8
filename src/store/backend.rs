//! The two backends, SQLite and PostgreSQL. The batch procedure and every query are written
//! once, as ordinary Rust in `backend/sql/`, against two names: `Db`, the sqlx database, and
//! `This`, the store. `sqlite.rs` and `postgres.rs` each define the two and include every file
//! of `sql/` as a module of their own (`#[path = "sql/…"]`), so that the same source is
//! compiled once for each backend. The SQL is the portable subset both speak (`$n` parameters,
//! `ON CONFLICT`, `RETURNING`, multi-row `VALUES`), so the two cannot drift apart. What differs
//! (opening, how a write transaction begins, locking rows, claiming e-mail jobs, cleaning up
//! after `forget`) is written per backend, in `sqlite.rs` and `postgres.rs`.
//!
//! Not a macro: rustfmt cannot format a macro's body, and the compiler's messages and a
//! reader's tools do not see into it; these are files like any other. Not generic code either:
//! sqlx's bounds on a generic database (every value bound and read, for each statement) would
//! outweigh the queries. Clippy warns that a file is loaded as two modules; that is the point,
//! and each `#[path]` module says so.

mod erase;
mod postgres;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use super::types::*;
use crate::engine;
use chrono::{DateTime, Utc};
use std::collections::HashSet;

/// The `meta` key holding the newest `created_at` of DLQ rows that retention removed.
const META_DLQ_PURGED: &str = "dlq_purged_through";

/// Errors after which the same transaction may well succeed: PostgreSQL deadlock (40P01) and
/// serialization failure (40001), SQLite busy or locked.
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            matches!(
                db.code().as_deref(),
                Some("40P01") | Some("40001") | Some("5") | Some("6") | Some("517")
            ) || db.message().contains("database is locked")
        }
        _ => false,
    }
}

/// A little randomness for back-off, without a generator to seed.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Utc::now().timestamp_subsec_nanos() as u64);
    h.finish()
}

fn now_secs() -> i64 {
    Utc::now().timestamp()
}

/// A confirmation from its stored columns.
fn packed_from_columns(
    station: String,
    body: &str,
    confirmed_at: i64,
) -> Result<PackedConfirmation, StoreError> {
    let inserts: Vec<PackedLine> = serde_json::from_str(body).map_err(corrupt)?;
    let at = DateTime::from_timestamp(confirmed_at, 0)
        .ok_or_else(|| corrupt(format!("confirmation time {confirmed_at}")))?;
    Ok(PackedConfirmation {
        station,
        confirmed_at: engine::format_time(at),
        inserts,
    })
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Why a batch's effects could not be written as they are.
enum Retry {
    /// A counter claim failed: another instance took what the batch's view still showed.
    Claim,
    /// A coupon code collided with one already issued.
    Code(String),
    /// A coupon or an insert changed since the batch read it (another instance, or an
    /// operator, moved it on): the batch must read again.
    Stale,
}

/// The ids a batch reads in one statement each, in a fixed order (locks are taken in it).
fn sorted(ids: HashSet<&str>) -> Vec<&str> {
    let mut v: Vec<&str> = ids.into_iter().collect();
    v.sort_unstable();
    v
}

/// A name no other scratch store of this machine has at the same time: the process id and a
/// counter.
fn unique_scratch_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Applies the migrations this binary knows; a database that has applied one it does not know
/// was written by a newer Packwell and stops start-up.
async fn migrate<DB>(
    pool: &sqlx::Pool<DB>,
    migrator: &sqlx::migrate::Migrator,
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    <DB as sqlx::Database>::Connection: sqlx::migrate::Migrate,
{
    match migrator.run(pool).await {
        Ok(()) => Ok(()),
        Err(sqlx::migrate::MigrateError::VersionMissing(v)) => Err(StoreError::SchemaTooNew(v)),
        Err(e) => Err(e.into()),
    }
}

/// The store's applied migrations against those this Packwell knows: one it does not know is
/// a newer schema; one it lacks an older schema, which only a writer updates.
pub(super) fn check_schema(
    applied: &[i64],
    migrator: &sqlx::migrate::Migrator,
) -> Result<(), StoreError> {
    let known: Vec<i64> = migrator.iter().map(|m| m.version).collect();
    if let Some(v) = applied.iter().find(|v| !known.contains(v)) {
        return Err(StoreError::SchemaTooNew(*v));
    }
    if let Some(v) = known.iter().find(|v| !applied.contains(v)) {
        return Err(StoreError::Other(format!(
            "the store's schema is older than this Packwell's (migration {v} is not applied): start the service on it once, which updates it"
        )));
    }
    Ok(())
}

pub(super) const APPLIED_SQL: &str = "SELECT version FROM _sqlx_migrations WHERE success";
