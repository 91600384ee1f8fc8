//! What operators change by hand (stock counters, a coupon voided), each change logged in
//! the transaction that makes it, and what they read: the operator log, and the DLQ rows the
//! outbox keeps.

use super::{Db, This};
use crate::engine;
use crate::store::backend::{META_DLQ_PURGED, corrupt, now_secs};
use crate::store::types::*;
use chrono::Utc;
use serde_json::json;
use sqlx::Row;

impl This {
    /// The work of [`Store::set_stock`](crate::store::Store::set_stock).
    pub(super) async fn set_stock_counters(
        &self,
        settings: &[StockSetting],
        actor: &str,
    ) -> Result<Vec<StockChange>, StoreError> {
        let mut keyed: Vec<&StockSetting> = settings.iter().collect();
        // A fixed (sorted) order of keys, as batches take them: no waiting in a cycle.
        keyed.sort_by(|a, b| (&a.insert_id, &a.slot).cmp(&(&b.insert_id, &b.slot)));
        for pair in keyed.windows(2) {
            if (&pair[0].insert_id, &pair[0].slot) == (&pair[1].insert_id, &pair[1].slot) {
                return Err(StoreError::Other(format!(
                    "the stock of {} ({}) is set twice",
                    pair[0].insert_id, pair[0].slot
                )));
            }
        }
        for s in &keyed {
            if s.remaining < 0 || s.remaining > s.allocation {
                return Err(StoreError::Other(format!(
                    "the stock of {} ({}): {} remaining is outside 0 to {} (the allocation in the rules)",
                    s.insert_id, s.slot, s.remaining, s.allocation
                )));
            }
        }
        let mut tx = self.begin_write().await?;
        let mut changes = Vec::with_capacity(keyed.len());
        for s in keyed {
            let used_after = s.allocation - s.remaining;
            let used_before = Self::set_stock_key(&mut tx, s, used_after).await?;
            let detail = json!({"insert_id": s.insert_id, "slot": s.slot, "allocation": s.allocation,
                "remaining_before": s.allocation - used_before, "remaining_after": s.remaining,
                "used_before": used_before, "used_after": used_after});
            Self::operator_row(
                &mut tx,
                actor,
                "stock.set",
                &format!("{}/{}", s.insert_id, s.slot),
                &detail,
            )
            .await?;
            changes.push(StockChange {
                insert_id: s.insert_id.clone(),
                slot: s.slot.clone(),
                allocation: s.allocation,
                used_before,
                used_after,
            });
        }
        tx.commit().await?;
        Ok(changes)
    }

    /// Sets one stock counter to `used`: compare-and-set against the value just read, so
    /// a unit another instance takes in between is not overwritten unseen (the read is
    /// done again). Returns `used` as it was.
    async fn set_stock_key(
        tx: &mut sqlx::Transaction<'_, Db>,
        s: &StockSetting,
        used: i64,
    ) -> Result<i64, StoreError> {
        for _ in 0..16 {
            let before: i64 =
                sqlx::query("SELECT used FROM stock WHERE insert_id = $1 AND slot = $2")
                    .bind(&s.insert_id)
                    .bind(&s.slot)
                    .fetch_optional(&mut **tx)
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?
                    .unwrap_or(0);
            let r = sqlx::query(
                "INSERT INTO stock (insert_id, slot, used) VALUES ($1, $2, $3) ON CONFLICT (insert_id, slot) \
                 DO UPDATE SET used = excluded.used WHERE stock.used = $4",
            )
            .bind(&s.insert_id)
            .bind(&s.slot)
            .bind(used)
            .bind(before)
            .execute(&mut **tx)
            .await?;
            if r.rows_affected() == 1 {
                return Ok(before);
            }
        }
        Err(StoreError::Other(format!(
            "the stock counter of {} ({}) kept changing while it was set; try again",
            s.insert_id, s.slot
        )))
    }

    /// The work of [`Store::void_coupon`](crate::store::Store::void_coupon).
    pub(super) async fn void_coupon_by_operator(
        &self,
        code: &str,
        actor: &str,
    ) -> Result<VoidOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        // The order's lock first, as confirmations and cancellations take it.
        sqlx::query(&format!(
            "SELECT order_id FROM decisions WHERE order_id = (SELECT order_id FROM coupons WHERE code = $1){}",
            Self::LOCK_ROW
        ))
        .bind(code)
        .fetch_optional(&mut *tx)
        .await?;
        let row = sqlx::query(
            "UPDATE coupons SET state = 'voided', version = version + 1 WHERE code = $1 AND state = 'issued' \
             RETURNING version, order_id, customer_id, insert_id, source_id",
        )
        .bind(code)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(r) = row else {
            let found = sqlx::query("SELECT state, redeemed_order_id FROM coupons WHERE code = $1")
                .bind(code)
                .fetch_optional(&mut *tx)
                .await?;
            tx.rollback().await?;
            return Ok(match found {
                None => VoidOutcome::Unknown,
                Some(f) => VoidOutcome::Final {
                    state: f.try_get(0)?,
                    redeemed_order_id: f.try_get(1)?,
                },
            });
        };
        let version: i64 = r.try_get(0)?;
        let order_id: String = r.try_get(1)?;
        let customer_id: String = r.try_get(2)?;
        let insert_id: String = r.try_get(3)?;
        let source_id: String = r.try_get(4)?;
        // The parcel's copy follows, as when an order is cancelled: a coupon not yet
        // packed is no longer to be packed (one packed already stays packed).
        sqlx::query(
            "UPDATE given_inserts SET state = 'voided' WHERE order_id = $1 AND insert_id = $2 AND rule_id = $3 AND kind = 'coupon' AND state = 'given'",
        )
        .bind(&order_id)
        .bind(&insert_id)
        .bind(&source_id)
        .execute(&mut *tx)
        .await?;
        let msg = crate::message::CouponVoided::new(
            code,
            version,
            &order_id,
            &customer_id,
            crate::message::CouponVoidReason::Operator,
            &engine::format_time(Utc::now()),
        );
        Self::outbox_message(&mut tx, msg.into_outbox()).await?;
        let detail = json!({"order_id": order_id, "customer_id": customer_id, "insert_id": insert_id,
            "source_id": source_id, "state_before": "issued", "version": version});
        Self::operator_row(&mut tx, actor, "coupon.void", code, &detail).await?;
        tx.commit().await?;
        Ok(VoidOutcome::Voided {
            version,
            order_id,
            customer_id,
        })
    }

    /// The work of [`Store::log_operator`](crate::store::Store::log_operator).
    pub(super) async fn log_operator_action(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        Self::operator_row(&mut tx, actor, action, subject, detail).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One row of the operator log, in the transaction of the change it records.
    pub(super) async fn operator_row(
        tx: &mut sqlx::Transaction<'_, Db>,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO operator_log (at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5)")
            .bind(now_secs())
            .bind(actor)
            .bind(action)
            .bind(subject)
            .bind(detail.to_string())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// The work of [`Store::operator_log`](crate::store::Store::operator_log).
    pub(super) async fn read_operator_log(
        &self,
        limit: i64,
    ) -> Result<Vec<OperatorLogRow>, StoreError> {
        let rows = sqlx::query("SELECT id, at, actor, action, subject, detail FROM operator_log ORDER BY id DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OperatorLogRow {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    actor: r.try_get(2)?,
                    action: r.try_get(3)?,
                    subject: r.try_get(4)?,
                    detail: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// The work of [`Store::dlq_rows`](crate::store::Store::dlq_rows).
    pub(super) async fn read_dlq_rows(
        &self,
        since: i64,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<DlqRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, msg_key, payload, headers, sent, created_at FROM outbox \
             WHERE topic = $1 AND created_at >= $2 AND id > $3 ORDER BY id LIMIT $4",
        )
        .bind(TOPIC_DLQ)
        .bind(since)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DlqRow {
                    id: r.try_get(0)?,
                    key: r.try_get(1)?,
                    value: r.try_get(2)?,
                    headers: r.try_get(3)?,
                    sent: r.try_get(4)?,
                    created_at: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// The work of [`Store::dlq_purged_through`](crate::store::Store::dlq_purged_through).
    pub(super) async fn read_dlq_purged_through(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(META_DLQ_PURGED)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| r.try_get::<String, _>(0)?.parse::<i64>().map_err(corrupt))
            .transpose()
    }
}
