//! An order cancelled or returned within a batch: before packing, its coupons are voided and
//! its inserts go back to stock; its e-mails are cancelled.

use super::{Db, This};
use crate::store::backend::{BatchCache, now_secs};
use crate::store::pending::*;
use crate::store::types::*;
use serde_json::json;
use sqlx::Row;

impl This {
    /// An order cancelled before packing: its coupons are voided (`coupon.voided`), its
    /// inserts go back to stock once, its e-mails are cancelled.
    pub(super) async fn cancel(
        tx: &mut sqlx::Transaction<'_, Db>,
        cache: &mut BatchCache,
        order_id: &str,
        at: &str,
    ) -> Result<(), StoreError> {
        if cache.pending.touches_order(order_id) {
            // Decided in this very batch: its rows must exist to be voided.
            Self::flush_or_contended(tx, cache).await?;
        }
        // The order's lock, as a packing confirmation takes it: a confirmation either
        // committed before (then the parcel is on its way) or waits and sees the
        // cancellation.
        sqlx::query(&format!(
            "SELECT order_id FROM decisions WHERE order_id = $1{}",
            Self::LOCK_ROW
        ))
        .bind(order_id)
        .fetch_optional(&mut **tx)
        .await?;
        let packed = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM given_inserts WHERE order_id = $1 AND state = 'packed') \
             + (SELECT COUNT(*) FROM packed_confirmations WHERE order_id = $1)",
        )
        .bind(order_id)
        .fetch_one(&mut **tx)
        .await?
        .try_get::<i64, _>(0)?;
        if packed == 0 {
            let voided = sqlx::query(
                "UPDATE coupons SET state = 'voided', version = version + 1 WHERE order_id = $1 AND state = 'issued' RETURNING code, version, customer_id",
            )
            .bind(order_id)
            .fetch_all(&mut **tx)
            .await?;
            for r in voided {
                let code: String = r.try_get(0)?;
                let version: i64 = r.try_get(1)?;
                let customer: String = r.try_get(2)?;
                let msg = json!({"schema_version": 1, "type": "coupon.voided", "code": code, "version": version,
                    "order_id": order_id, "customer_id": customer, "reason": "order_cancelled", "occurred_at": at});
                cache.pending.outbox.push(OutboxInsert {
                    topic: TOPIC_COUPONS,
                    key: Some(code.into_bytes()),
                    payload: msg.to_string().into_bytes(),
                    headers: None,
                });
            }
            sqlx::query("UPDATE given_inserts SET state = 'voided' WHERE order_id = $1 AND state = 'given' AND kind = 'coupon'")
                .bind(order_id)
                .execute(&mut **tx)
                .await?;
            // Only inserts still in state `given` go back: one moved on (packed, not
            // packed) was settled then, so nothing is returned twice.
            let returned = sqlx::query(
                "UPDATE given_inserts SET state = 'returned' WHERE order_id = $1 AND state = 'given' AND stock_slot IS NOT NULL RETURNING insert_id, stock_slot",
            )
            .bind(order_id)
            .fetch_all(&mut **tx)
            .await?;
            for r in returned {
                let insert: String = r.try_get(0)?;
                let slot: String = r.try_get(1)?;
                sqlx::query("UPDATE stock SET used = used - 1 WHERE insert_id = $1 AND slot = $2 AND used > 0")
                    .bind(&insert)
                    .bind(&slot)
                    .execute(&mut **tx)
                    .await?;
                // Back in stock for the rest of the batch too (claims staged but not
                // yet written are totals added on top, so the order does not matter).
                if let Some(used) = cache
                    .view
                    .as_mut()
                    .and_then(|v| v.stock.get_mut(&(insert, slot)))
                {
                    *used = used.saturating_sub(1);
                }
            }
        }
        Self::cancel_emails(tx, cache, order_id).await
    }

    pub(super) async fn cancel_emails(
        tx: &mut sqlx::Transaction<'_, Db>,
        cache: &mut BatchCache,
        order_id: &str,
    ) -> Result<(), StoreError> {
        if cache.pending.touches_order(order_id) {
            Self::flush_or_contended(tx, cache).await?;
        }
        // Pending ones, and ones waiting to be tried again (whose coupons, issued at the
        // first hand-over, were never delivered).
        let cancelled = sqlx::query(
            "UPDATE email_jobs SET state = 'skipped', reason = 'cancelled', detail = 'the order was cancelled or returned', \
             claimed_until = NULL, finished_at = $2 WHERE order_id = $1 AND state IN ('pending', 'retry') RETURNING followup_id, tries, resends",
        )
        .bind(order_id)
        .bind(now_secs())
        .fetch_all(&mut **tx)
        .await?;
        for r in cancelled {
            if r.try_get::<i64, _>(1)? > 0 && r.try_get::<i64, _>(2)? == 0 {
                Self::void_email_coupons(tx, order_id, &r.try_get::<String, _>(0)?).await?;
            }
        }
        Ok(())
    }
}
