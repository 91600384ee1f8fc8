//! The shop webhooks' records (`store/webhooks.rs`). Rows are removed by retention
//! (`retention.rs`).

use super::{Db, This};
use crate::store::StoreError;
use crate::store::backend::now_secs;
use crate::store::types::statement_chunks;
use crate::store::webhooks::{HandledWebhook, WebhookStore};
use async_trait::async_trait;
use sqlx::Row;
use std::collections::HashSet;

#[async_trait]
impl WebhookStore for This {
    async fn webhook_delivery_seen(
        &self,
        platform: &str,
        delivery_id: &str,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM webhook_deliveries WHERE platform = $1 AND delivery_id = $2",
        )
        .bind(platform)
        .bind(delivery_id)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.is_some())
    }

    async fn webhook_events_produced(
        &self,
        event_ids: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        // A webhook maps to one or two events: one query each is simpler than an IN list
        // written for two databases.
        let mut known = HashSet::new();
        for id in event_ids {
            let row = sqlx::query("SELECT 1 FROM webhook_events WHERE event_id = $1")
                .bind(id)
                .fetch_optional(&self.read)
                .await?;
            if row.is_some() {
                known.insert(id.clone());
            }
        }
        Ok(known)
    }

    async fn record_webhooks(&self, handled: &[HandledWebhook]) -> Result<(), StoreError> {
        let now = now_secs();
        // Multi-row statements: a group is a few statements, not two per webhook.
        let deliveries: Vec<(&str, &str)> = handled
            .iter()
            .map(|h| (h.platform.as_str(), h.delivery_id.as_str()))
            .collect();
        let events: Vec<&str> = handled
            .iter()
            .flat_map(|h| h.event_ids.iter().map(String::as_str))
            .collect();
        let mut tx = self.begin_write().await?;
        let mut fresh: HashSet<(String, String)> = HashSet::new();
        for chunk in statement_chunks(&deliveries) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO webhook_deliveries (platform, delivery_id, received_at) ",
            );
            qb.push_values(chunk, |mut b, (platform, id)| {
                b.push_bind(*platform).push_bind(*id).push_bind(now);
            });
            qb.push(" ON CONFLICT DO NOTHING RETURNING platform, delivery_id");
            for r in qb.build().fetch_all(&mut *tx).await? {
                fresh.insert((r.try_get(0)?, r.try_get(1)?));
            }
        }
        for chunk in statement_chunks(&events) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO webhook_events (event_id, produced_at) ",
            );
            qb.push_values(chunk, |mut b, id| {
                b.push_bind(*id).push_bind(now);
            });
            qb.push(" ON CONFLICT DO NOTHING");
            qb.build().execute(&mut *tx).await?;
        }
        // A delivery handled twice at once (the platform retrying while the first answer was
        // on its way) sets aside one dead letter, not two.
        for h in handled {
            let key = (h.platform.clone(), h.delivery_id.clone());
            if let (true, Some(letter)) = (fresh.remove(&key), &h.dead_letter) {
                Self::outbox_message(&mut tx, letter.clone()).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn order_customer(&self, order_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT customer_id FROM orders WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }
}
