//! The kept events (`store/events.rs`): reading them in application order, and what `forget`
//! does to a customer's. Rows are written by the batch (`batch_write.rs`) and removed by
//! retention (`retention.rs`).

use super::{Db, This};
use crate::event::EventBody;
use crate::event::compact;
use crate::store::StoreError;
use crate::store::events::{EventStore, KeptEvent};
use crate::store::scrub::Needles;
use async_trait::async_trait;
use sqlx::Row;

#[async_trait]
impl EventStore for This {
    async fn kept_events(
        &self,
        after: i64,
        since: Option<i64>,
        limit: i64,
    ) -> Result<Vec<KeptEvent>, StoreError> {
        let rows = sqlx::query("SELECT seq, stored_at, body FROM events WHERE seq > $1 AND occurred_at >= $2 ORDER BY seq LIMIT $3")
            .bind(after)
            .bind(since.unwrap_or(i64::MIN))
            .bind(limit.max(0))
            .fetch_all(&self.read)
            .await?;
        kept(&rows)
    }

    async fn customer_kept_events(
        &self,
        customer_id: &str,
        limit: i64,
    ) -> Result<Vec<KeptEvent>, StoreError> {
        // Read by the customer index, newest first so that `limit` keeps the newest.
        let rows = sqlx::query("SELECT seq, stored_at, body FROM events WHERE customer_id = $1 ORDER BY seq DESC LIMIT $2")
            .bind(customer_id)
            .bind(limit.max(0))
            .fetch_all(&self.read)
            .await?;
        let mut events = kept(&rows)?;
        events.reverse();
        Ok(events)
    }

    async fn newest_kept_events(&self, limit: i64) -> Result<Vec<KeptEvent>, StoreError> {
        let rows =
            sqlx::query("SELECT seq, stored_at, body FROM events ORDER BY seq DESC LIMIT $1")
                .bind(limit.max(0))
                .fetch_all(&self.read)
                .await?;
        kept(&rows)
    }
}

/// Rows of `seq, stored_at, body`, decoded.
fn kept(rows: &[<Db as sqlx::Database>::Row]) -> Result<Vec<KeptEvent>, StoreError> {
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

impl This {
    /// For `forget`: the personal values the customer's kept events carry (names,
    /// addresses they used, where they ship to), so that every other copy loses them.
    pub(super) async fn kept_event_needles(
        tx: &mut sqlx::Transaction<'_, Db>,
        customer_id: &str,
        needles: &mut Needles,
    ) -> Result<(), StoreError> {
        let rows = sqlx::query("SELECT body FROM events WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_all(&mut **tx)
            .await?;
        for r in rows {
            // Bytes that are not an event name nobody readable; the row goes all the same.
            let Ok(event) = compact::decode(&r.try_get::<Vec<u8>, _>(0)?) else {
                continue;
            };
            if let EventBody::OrderPlaced(o) = &event.body {
                let c = &o.customer;
                for v in [
                    Some(&c.email),
                    Some(&c.first_name),
                    c.last_name.as_ref(),
                    o.shipping.city.as_ref(),
                    o.shipping.postcode.as_ref(),
                ]
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
    pub(super) async fn erase_kept_events(
        tx: &mut sqlx::Transaction<'_, Db>,
        customer_id: &str,
    ) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM events WHERE customer_id = $1")
            .bind(customer_id)
            .execute(&mut **tx)
            .await?;
        Ok(r.rows_affected())
    }
}
