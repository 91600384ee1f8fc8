//! Retention: old decisions, processed event ids, finished e-mail jobs, sent outbox rows and the
//! sync rows of codes whose coupon is gone removed a few at a time; how far DLQ rows went is
//! remembered (`dlq replay` tells it).

use super::This;
use crate::store::backend::META_DLQ_PURGED;
use crate::store::types::*;
use sqlx::Row;

impl This {
    /// The work of [`Store::purge_older_than`](crate::store::Store::purge_older_than).
    pub(super) async fn purge_rows_older_than(
        &self,
        cutoff: i64,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut removed = 0;
        for sql in [
            "DELETE FROM given_inserts WHERE order_id IN (SELECT order_id FROM decisions WHERE decided_at < $1 ORDER BY order_id LIMIT $2)",
            "DELETE FROM packed_confirmations WHERE order_id IN (SELECT order_id FROM decisions WHERE decided_at < $1 ORDER BY order_id LIMIT $2)",
            "DELETE FROM decisions WHERE order_id IN (SELECT order_id FROM decisions WHERE decided_at < $1 ORDER BY order_id LIMIT $2)",
            "DELETE FROM processed_events WHERE event_id IN (SELECT event_id FROM processed_events WHERE processed_at < $1 LIMIT $2)",
            "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE stored_at < $1 ORDER BY seq LIMIT $2)",
            "DELETE FROM webhook_deliveries WHERE (platform, delivery_id) IN (SELECT platform, delivery_id FROM webhook_deliveries WHERE received_at < $1 LIMIT $2)",
            "DELETE FROM webhook_events WHERE event_id IN (SELECT event_id FROM webhook_events WHERE produced_at < $1 LIMIT $2)",
            "DELETE FROM email_jobs WHERE (order_id, followup_id) IN (SELECT order_id, followup_id FROM email_jobs WHERE state NOT IN ('pending', 'retry', 'sending') AND created_at < $1 LIMIT $2)",
            // Sync rows of codes the store no longer holds (not written in the last retention
            // period, so that a row is never removed while its coupon is still on its way).
            "DELETE FROM coupon_sync WHERE (code, platform) IN (SELECT code, platform FROM coupon_sync s WHERE updated_at < $1 AND NOT EXISTS (SELECT 1 FROM coupons c WHERE c.code = s.code) LIMIT $2)",
        ] {
            removed += sqlx::query(sql)
                .bind(cutoff)
                .bind(limit)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        let gone = sqlx::query("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE sent AND created_at < $1 LIMIT $2) RETURNING topic, created_at")
            .bind(cutoff)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        removed += gone.len() as u64;
        // Remember how far DLQ rows went, so `dlq replay` can say what it cannot see.
        let mut dlq_through: Option<i64> = None;
        for r in &gone {
            if r.try_get::<String, _>(0)? == TOPIC_DLQ {
                let at: i64 = r.try_get(1)?;
                dlq_through = Some(dlq_through.map_or(at, |t| t.max(at)));
            }
        }
        if let Some(at) = dlq_through {
            let before: Option<String> = sqlx::query("SELECT value FROM meta WHERE key = $1")
                .bind(META_DLQ_PURGED)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
            if before
                .and_then(|b| b.parse::<i64>().ok())
                .is_none_or(|b| at > b)
            {
                sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                    .bind(META_DLQ_PURGED)
                    .bind(at.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(removed)
    }
}
