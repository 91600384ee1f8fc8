//! The events the store keeps: every event a batch applies (a fresh id, parsed, under its
//! customer's key, folded without being set aside), in the compact encoding of
//! `event/compact.rs`, written in the batch's own transaction, so that the shop's own history
//! can be replayed (`packwell backtest --from-store`).
//!
//! `seq` numbers them in the order they were applied (for one customer, the order of their
//! partition). Retention removes those kept before `[store] retention` by `stored_at`, the
//! wall clock when kept, as it removes processed event ids by the time they were processed, so
//! that an event and its id leave together whatever times the events themselves carry (an
//! imported history from years back stays as long as one consumed today). `forget` removes all
//! of a customer's.
//!
//! The SQL is in `backend/sql/events.rs`, written once for both backends.

use super::{PgStore, SqliteStore, Store, StoreError};
use crate::event::Event;
use crate::event::compact::DecodeError;
use async_trait::async_trait;
use std::sync::Arc;

pub use crate::step::EventRow;

/// A kept event as read back: its place in application order, when it was kept, and the
/// event, or why its stored bytes are not one.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptEvent {
    pub seq: i64,
    pub stored_at: i64,
    pub event: Result<Event, DecodeError>,
}

/// Reading the kept events (every [`Store`] offers it).
#[async_trait]
pub trait EventStore {
    /// Kept events with `seq` above `after` and, when `since` is given, an `occurred_at` at or
    /// after it (Unix seconds), in application order, at most `limit`. Pass the last `seq`
    /// read as `after` to read on.
    async fn kept_events(
        &self,
        after: i64,
        since: Option<i64>,
        limit: i64,
    ) -> Result<Vec<KeptEvent>, StoreError>;

    /// The customer's kept events in application order, at most `limit` (the newest kept,
    /// the oldest left out past it): the history an order of theirs is tried after.
    async fn customer_kept_events(
        &self,
        customer_id: &str,
        limit: i64,
    ) -> Result<Vec<KeptEvent>, StoreError>;

    /// The newest `limit` kept events, newest first: where recent orders are found.
    async fn newest_kept_events(&self, limit: i64) -> Result<Vec<KeptEvent>, StoreError>;
}

/// Every kept event (from `since`, if given), in application order, read `page` at a time.
pub async fn all_kept_events(
    store: &dyn Store,
    since: Option<i64>,
    page: i64,
    mut progress: impl FnMut(usize),
) -> Result<Vec<KeptEvent>, StoreError> {
    let page = page.max(1);
    let mut out: Vec<KeptEvent> = Vec::new();
    let mut after = i64::MIN;
    loop {
        let rows = store.kept_events(after, since, page).await?;
        let Some(last) = rows.last() else {
            return Ok(out);
        };
        after = last.seq;
        let full = rows.len() as i64 == page;
        progress(rows.len());
        out.extend(rows);
        if !full {
            return Ok(out);
        }
    }
}

/// Opens the store `url` names for reading only: no migration, no file or folder created, and
/// every connection read-only (SQLite opened read-only, PostgreSQL with
/// `default_transaction_read_only`), so that nothing done through it changes the store. Its
/// schema must be this Packwell's, as the service leaves it.
pub async fn open_read_only(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if super::sqlite_file(url).is_none() {
        Ok(Arc::new(PgStore::connect_read_only(url).await?))
    } else {
        Ok(Arc::new(SqliteStore::open_read_only(url).await?))
    }
}
