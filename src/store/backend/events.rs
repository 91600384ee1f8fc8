//! The kept events (`store/events.rs`) on both backends, written once like the batch procedure:
//! reading them in application order, and what `forget` does to a customer's. Rows are written
//! by the batch (`write_pending`) and removed by retention (`purge_older_than`). Also the
//! read-only openings that replaying them uses.

use super::{PgStore, REPORT_CONNECTIONS, SqliteStore};
use crate::event::EventBody;
use crate::event::compact;
use crate::store::StoreError;
use crate::store::events::{EventStore, KeptEvent};
use crate::store::scrub::Needles;
use async_trait::async_trait;
use sqlx::Row;

macro_rules! events_backend {
    ($store:ident, $db:ty) => {
        #[async_trait]
        impl EventStore for $store {
            async fn kept_events(&self, after: i64, since: Option<i64>, limit: i64) -> Result<Vec<KeptEvent>, StoreError> {
                let rows = sqlx::query("SELECT seq, stored_at, body FROM events WHERE seq > $1 AND occurred_at >= $2 ORDER BY seq LIMIT $3")
                    .bind(after)
                    .bind(since.unwrap_or(i64::MIN))
                    .bind(limit.max(0))
                    .fetch_all(&self.read)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(KeptEvent {
                            seq: r.try_get(0)?,
                            stored_at: r.try_get(1)?,
                            event: compact::decode(&r.try_get::<Vec<u8>, _>(2)?),
                        })
                    })
                    .collect()
            }
        }

        impl $store {
            /// For `forget`: the personal values the customer's kept events carry (names,
            /// addresses they used, where they ship to), so that every other copy loses them.
            pub(super) async fn kept_event_needles(
                tx: &mut sqlx::Transaction<'_, $db>,
                customer_id: &str,
                needles: &mut Needles,
            ) -> Result<(), StoreError> {
                let rows = sqlx::query("SELECT body FROM events WHERE customer_id = $1").bind(customer_id).fetch_all(&mut **tx).await?;
                for r in rows {
                    // Bytes that are not an event name nobody readable; the row goes all the same.
                    let Ok(event) = compact::decode(&r.try_get::<Vec<u8>, _>(0)?) else { continue };
                    if let EventBody::OrderPlaced(o) = &event.body {
                        let c = &o.customer;
                        for v in [Some(&c.email), Some(&c.first_name), c.last_name.as_ref(), o.shipping.city.as_ref(), o.shipping.postcode.as_ref()]
                            .into_iter()
                            .flatten()
                        {
                            needles.add(v);
                        }
                    }
                }
                Ok(())
            }

            /// For `forget`: removes every kept event of the customer; returns how many.
            pub(super) async fn erase_kept_events(tx: &mut sqlx::Transaction<'_, $db>, customer_id: &str) -> Result<u64, StoreError> {
                let r = sqlx::query("DELETE FROM events WHERE customer_id = $1").bind(customer_id).execute(&mut **tx).await?;
                Ok(r.rows_affected())
            }
        }
    };
}

events_backend!(SqliteStore, sqlx::Sqlite);
events_backend!(PgStore, sqlx::Postgres);

/// The store's applied migrations against those this Packwell knows: one it does not know is
/// a newer schema; one it lacks an older schema, which only a writer updates.
fn check_schema(applied: &[i64], migrator: &sqlx::migrate::Migrator) -> Result<(), StoreError> {
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

const APPLIED_SQL: &str = "SELECT version FROM _sqlx_migrations WHERE success";

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
        let applied: Vec<i64> = sqlx::query_scalar(APPLIED_SQL).fetch_all(&pool).await?;
        check_schema(&applied, &sqlx::migrate!("migrations/sqlite"))?;
        Ok(SqliteStore {
            write: pool.clone(),
            read: pool.clone(),
            report: pool,
        })
    }
}

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
        let applied: Vec<i64> = sqlx::query_scalar(APPLIED_SQL).fetch_all(&pool).await?;
        check_schema(&applied, &sqlx::migrate!("migrations/postgres"))?;
        Ok(PgStore {
            read: pool.clone(),
            report: pool.clone(),
            write: pool,
            relay_lock: tokio::sync::Mutex::new(None),
        })
    }
}
