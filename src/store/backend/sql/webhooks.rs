//! The shop webhooks' records (`store/webhooks.rs`). Rows are removed by retention
//! (`retention.rs`).

use super::This;
use crate::store::StoreError;
use crate::store::backend::now_secs;
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
        let mut tx = self.begin_write().await?;
        for handled in handled {
            let fresh = sqlx::query("INSERT INTO webhook_deliveries (platform, delivery_id, received_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(&handled.platform)
                .bind(&handled.delivery_id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            for id in &handled.event_ids {
                sqlx::query("INSERT INTO webhook_events (event_id, produced_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            // A delivery handled twice at once (the platform retrying while the first answer
            // was on its way) sets aside one dead letter, not two.
            if let (true, Some(letter)) = (fresh, &handled.dead_letter) {
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
