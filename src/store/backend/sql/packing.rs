//! A packing station's confirmation (`Store::confirm_packed`): the order's given inserts move
//! on, with their effects on coupons and stock, in one write transaction that takes the
//! order's lock.

use super::{Db, This};
use crate::engine;
use crate::profile::{self, OrderSummary};
use crate::rules::InsertBody;
use crate::store::backend::{corrupt, is_transient, packed_from_columns};
use crate::store::types::*;
use chrono::{DateTime, Utc};
use sqlx::Row;

impl This {
    /// The work of [`Store::confirm_packed`](crate::store::Store::confirm_packed).
    pub(super) async fn confirm_packed_retrying(
        &self,
        order_id: &str,
        station: &str,
        lines: &[PackedLine],
        rules: &crate::rules::RuleSet,
    ) -> Result<PackedOutcome, StoreError> {
        // Locks are taken in one order everywhere (the order's decision row first), so
        // a deadlock is rare; PostgreSQL ends one when it happens, and this tries again.
        let mut tries = 0;
        loop {
            match self
                .confirm_packed_once(order_id, station, lines, rules)
                .await
            {
                Err(StoreError::Db(e)) if tries < 3 && is_transient(&e) => tries += 1,
                other => return other,
            }
        }
    }

    /// One try of [`Store::confirm_packed`], in one write transaction.
    async fn confirm_packed_once(
        &self,
        order_id: &str,
        station: &str,
        lines: &[PackedLine],
        rules: &crate::rules::RuleSet,
    ) -> Result<PackedOutcome, StoreError> {
        let body = serde_json::to_string(lines).map_err(corrupt)?;
        let now = Utc::now();
        let mut tx = self.begin_write().await?;
        // The decision row is the order's lock: a cancellation takes it too, so the two
        // never interleave (one sees the other's outcome).
        let decided = sqlx::query(&format!(
            "SELECT warehouse FROM decisions WHERE order_id = $1{}",
            Self::LOCK_ROW
        ))
        .bind(order_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(decided) = decided else {
            tx.rollback().await?;
            return Ok(PackedOutcome::NotDecided);
        };
        let warehouse: String = decided.try_get(0)?;
        if let Some(first) = Self::packed_row(&mut tx, order_id).await? {
            tx.rollback().await?;
            let same = first.station == station && first.inserts == lines;
            return Ok(if same {
                PackedOutcome::Repeated(first)
            } else {
                PackedOutcome::Conflict(first)
            });
        }
        if Self::order_cancelled(&mut tx, order_id).await? {
            tx.rollback().await?;
            return Ok(PackedOutcome::Cancelled);
        }
        sqlx::query("INSERT INTO packed_confirmations (order_id, station, body, confirmed_at) VALUES ($1, $2, $3, $4)")
            .bind(order_id)
            .bind(station)
            .bind(&body)
            .bind(now.timestamp())
            .execute(&mut *tx)
            .await?;
        // Stock effects are applied after the inserts moved, in (insert, slot) order
        // as every writer of stock rows takes them.
        let mut stock: Vec<(String, String, NotPackedReason)> = Vec::new();
        for (seq, line) in lines.iter().enumerate() {
            let state = if line.packed { "packed" } else { "not_packed" };
            let reason = line.reason.map(NotPackedReason::as_str);
            // Only from `given` (the insert state machine of docs/ARCHITECTURE.md).
            let moved = sqlx::query(
                "UPDATE given_inserts SET state = $1, reason = $2 WHERE order_id = $3 AND seq = $4 AND insert_id = $5 AND state = 'given' RETURNING kind, stock_slot",
            )
            .bind(state)
            .bind(reason)
            .bind(order_id)
            .bind(seq as i64)
            .bind(&line.insert_id)
            .fetch_optional(&mut *tx)
            .await?;
            let (Some(row), Some(reason)) = (moved, line.reason.filter(|_| !line.packed)) else {
                continue;
            };
            let kind: String = row.try_get(0)?;
            if kind == "coupon" {
                Self::void_unpacked_coupon(&mut tx, order_id, line, &now).await?;
            }
            if let Some(slot) = row.try_get::<Option<String>, _>(1)? {
                stock.push((line.insert_id.clone(), slot, reason));
            }
        }
        stock.sort();
        for (insert_id, slot, reason) in &stock {
            match reason {
                NotPackedReason::Other => {
                    sqlx::query("UPDATE stock SET used = used - 1 WHERE insert_id = $1 AND slot = $2 AND used > 0")
                        .bind(insert_id)
                        .bind(slot)
                        .execute(&mut *tx)
                        .await?;
                }
                NotPackedReason::Damaged => {}
                NotPackedReason::OutOfStock => {
                    // The counter this insert drew on is emptied: for a per-warehouse
                    // allocation that is the station's warehouse; a pool is one stock
                    // shared by every warehouse, so it empties for all of them.
                    let allocation = rules
                        .insert(insert_id)
                        .and_then(|i| match &i.body {
                            InsertBody::Item {
                                stock: Some(stock), ..
                            } => stock.slot(&warehouse),
                            _ => None,
                        })
                        .filter(|(s, _)| s.as_str() == slot)
                        .map(|(_, n)| i64::from(n));
                    let Some(allocation) = allocation else {
                        tracing::warn!(
                            order_id,
                            insert_id,
                            slot,
                            "out of stock reported for an insert the rules no longer count in this slot; no counter changed"
                        );
                        continue;
                    };
                    sqlx::query(
                        "INSERT INTO stock (insert_id, slot, used) VALUES ($1, $2, $3) ON CONFLICT (insert_id, slot) \
                         DO UPDATE SET used = excluded.used WHERE stock.used < excluded.used",
                    )
                    .bind(insert_id)
                    .bind(slot)
                    .bind(allocation)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(PackedOutcome::Recorded(PackedConfirmation {
            station: station.to_string(),
            confirmed_at: engine::format_time(
                DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now),
            ),
            inserts: lines.to_vec(),
        }))
    }

    /// The recorded confirmation of an order, if any.
    async fn packed_row(
        tx: &mut sqlx::Transaction<'_, Db>,
        order_id: &str,
    ) -> Result<Option<PackedConfirmation>, StoreError> {
        let row = sqlx::query(
            "SELECT station, body, confirmed_at FROM packed_confirmations WHERE order_id = $1",
        )
        .bind(order_id)
        .fetch_optional(&mut **tx)
        .await?;
        row.map(|r| packed_from_columns(r.try_get(0)?, &r.try_get::<String, _>(1)?, r.try_get(2)?))
            .transpose()
    }

    /// Whether the order was cancelled (its summary says so).
    async fn order_cancelled(
        tx: &mut sqlx::Transaction<'_, Db>,
        order_id: &str,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT data FROM orders WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(&mut **tx)
            .await?;
        let Some(row) = row else { return Ok(false) };
        let summary: OrderSummary =
            serde_json::from_str(&row.try_get::<String, _>(0)?).map_err(corrupt)?;
        Ok(summary.status == profile::OrderStatus::Cancelled)
    }

    /// Voids the coupon of an insert a station did not pack: nobody received its code.
    async fn void_unpacked_coupon(
        tx: &mut sqlx::Transaction<'_, Db>,
        order_id: &str,
        line: &PackedLine,
        now: &DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let voided = sqlx::query(
            "UPDATE coupons SET state = 'voided', version = version + 1 WHERE order_id = $1 AND insert_id = $2 AND source_id = $3 AND state = 'issued' RETURNING code, version, customer_id",
        )
        .bind(order_id)
        .bind(&line.insert_id)
        .bind(&line.rule_id)
        .fetch_all(&mut **tx)
        .await?;
        for v in voided {
            let code: String = v.try_get(0)?;
            let version: i64 = v.try_get(1)?;
            let customer: String = v.try_get(2)?;
            let msg = crate::message::CouponVoided::new(
                &code,
                version,
                order_id,
                &customer,
                crate::message::CouponVoidReason::NotPacked,
                &engine::format_time(*now),
            );
            Self::outbox_message(tx, msg.into_outbox()).await?;
        }
        Ok(())
    }
}
