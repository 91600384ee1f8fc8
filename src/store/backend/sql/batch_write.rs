//! Writing what a batch staged: counter claims as conditional upserts, then one multi-row
//! insert per table; at the batch's end, the profiles and orders it changed.

use super::{Db, This};
use crate::profile::{self, OrderSummary};
use crate::store::apply::to_units;
use crate::store::backend::{BatchCache, Retry, corrupt, now_secs, sorted};
use crate::store::pending::*;
use crate::store::types::*;
use sqlx::Row;
use std::collections::HashSet;

impl This {
    /// Writes what is staged before a statement that reads or changes rows the batch
    /// may have staged; a lost claim here rolls the batch back ([`StoreError::Contended`]).
    pub(super) async fn flush_or_contended(
        tx: &mut sqlx::Transaction<'_, Db>,
        cache: &mut BatchCache,
    ) -> Result<(), StoreError> {
        if cache.pending.is_empty() {
            return Ok(());
        }
        match Self::write_pending(tx, std::mem::take(&mut cache.pending)).await? {
            Ok(()) => Ok(()),
            Err(_) => Err(StoreError::Contended),
        }
    }

    /// Writes what is staged, in this order: counter claims (sorted keys), coupons,
    /// given inserts, decisions, outbox rows (in event order, so the relay
    /// sends them in it), e-mail jobs. `Err(Retry)` when a claim or a code was lost.
    pub(super) async fn write_pending(
        tx: &mut sqlx::Transaction<'_, Db>,
        pending: Pending,
    ) -> Result<Result<(), Retry>, StoreError> {
        for ((insert_id, slot), (quantity, allocation)) in &pending.stock {
            if quantity > allocation {
                return Ok(Err(Retry::Claim));
            }
            let r = sqlx::query(
                "INSERT INTO stock (insert_id, slot, used) VALUES ($1, $2, $3) ON CONFLICT (insert_id, slot) \
                 DO UPDATE SET used = stock.used + excluded.used WHERE stock.used + excluded.used <= $4",
            )
            .bind(insert_id)
            .bind(slot)
            .bind(*quantity)
            .bind(*allocation)
            .execute(&mut **tx)
            .await?;
            if r.rows_affected() == 0 {
                return Ok(Err(Retry::Claim));
            }
        }
        for ((rule_id, period, currency), (amount, limit)) in &pending.budget {
            if amount > limit {
                return Ok(Err(Retry::Claim));
            }
            let r = sqlx::query(
                "INSERT INTO budgets (rule_id, period, currency, spent_units) VALUES ($1, $2, $3, $4) ON CONFLICT (rule_id, period, currency) \
                 DO UPDATE SET spent_units = budgets.spent_units + excluded.spent_units WHERE budgets.spent_units + excluded.spent_units <= $5",
            )
            .bind(rule_id)
            .bind(period)
            .bind(currency)
            .bind(*amount)
            .bind(*limit)
            .execute(&mut **tx)
            .await?;
            if r.rows_affected() == 0 {
                return Ok(Err(Retry::Claim));
            }
        }
        for chunk in pending.coupons.chunks(ROWS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO coupons (code, order_id, source_id, insert_id, customer_id, amount, currency, expires_on, state, version, issued_at) ",
            );
            qb.push_values(chunk, |mut b, c| {
                b.push_bind(&c.code)
                    .push_bind(&c.order_id)
                    .push_bind(&c.source_id)
                    .push_bind(&c.insert_id)
                    .push_bind(&c.customer_id)
                    .push_bind(&c.amount)
                    .push_bind(&c.currency)
                    .push_bind(&c.expires_on)
                    .push_bind("issued")
                    .push_bind(1_i64)
                    .push_bind(c.issued_at);
            });
            qb.push(" ON CONFLICT (code) DO NOTHING RETURNING code");
            let rows = qb.build().persistent(false).fetch_all(&mut **tx).await?;
            if rows.len() < chunk.len() {
                let written: HashSet<String> = rows
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<Result<_, _>>()?;
                let lost = chunk
                    .iter()
                    .find(|c| !written.contains(&c.code))
                    .map(|c| c.code.clone())
                    .unwrap_or_default();
                return Ok(Err(Retry::Code(lost)));
            }
        }
        for chunk in pending.given.chunks(ROWS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO given_inserts (order_id, seq, insert_id, rule_id, kind, stock_slot, state) ",
            );
            qb.push_values(chunk, |mut b, g| {
                b.push_bind(&g.order_id)
                    .push_bind(g.seq)
                    .push_bind(&g.insert_id)
                    .push_bind(&g.rule_id)
                    .push_bind(&g.kind)
                    .push_bind(g.stock_slot.as_deref())
                    .push_bind("given");
            });
            qb.build().persistent(false).execute(&mut **tx).await?;
        }
        for chunk in pending.decisions.chunks(ROWS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO decisions (order_id, customer_id, warehouse, rules_version, decided_at, decision) ",
            );
            qb.push_values(chunk, |mut b, d| {
                b.push_bind(&d.order_id)
                    .push_bind(&d.customer_id)
                    .push_bind(&d.warehouse)
                    .push_bind(&d.rules_version)
                    .push_bind(d.decided_at)
                    .push_bind(&d.json);
            });
            qb.build().persistent(false).execute(&mut **tx).await?;
        }
        let now = now_secs();
        for chunk in pending.outbox.chunks(ROWS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO outbox (topic, msg_key, payload, headers, sent, created_at) ",
            );
            qb.push_values(chunk, |mut b, o| {
                b.push_bind(o.topic)
                    .push_bind(o.key.as_deref())
                    .push_bind(o.payload.as_slice())
                    .push_bind(o.headers.as_deref())
                    .push_bind(false)
                    .push_bind(now);
            });
            qb.build().persistent(false).execute(&mut **tx).await?;
        }
        for chunk in pending.emails.chunks(ROWS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO email_jobs (order_id, followup_id, customer_id, due_at, scheduled_for, first_due_at, state, reason, created_at) ",
            );
            qb.push_values(chunk, |mut b, e| {
                b.push_bind(&e.order_id)
                    .push_bind(&e.followup_id)
                    .push_bind(&e.customer_id)
                    .push_bind(e.due_at)
                    .push_bind(e.due_at)
                    .push_bind(e.due_at)
                    .push_bind(if e.held_out { "skipped" } else { "pending" })
                    .push_bind(e.held_out.then_some("holdout"))
                    .push_bind(now);
            });
            qb.push(" ON CONFLICT (order_id, followup_id) DO NOTHING");
            qb.build().persistent(false).execute(&mut **tx).await?;
        }
        for chunk in pending.exposures.chunks(ROWS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO exposures (source_id, order_id, customer_id, arm, at) ",
            );
            qb.push_values(chunk, |mut b, e| {
                b.push_bind(&e.source_id)
                    .push_bind(&e.order_id)
                    .push_bind(&e.customer_id)
                    .push_bind(e.arm)
                    .push_bind(e.at);
            });
            qb.build().persistent(false).execute(&mut **tx).await?;
        }
        let costs: Vec<(&ExposureInsert, &(String, i64))> = pending
            .exposures
            .iter()
            .flat_map(|e| e.costs.iter().map(move |c| (e, c)))
            .collect();
        for chunk in costs.chunks(ROWS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO exposure_costs (source_id, order_id, currency, units) ",
            );
            qb.push_values(chunk, |mut b, (e, (currency, units))| {
                b.push_bind(&e.source_id)
                    .push_bind(&e.order_id)
                    .push_bind(currency)
                    .push_bind(*units);
            });
            qb.build().persistent(false).execute(&mut **tx).await?;
        }
        let firsts: Vec<(&FirstExposureKey, &FirstExposure)> =
            pending.first_exposures.iter().collect();
        for chunk in firsts.chunks(ROWS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO first_exposures (kind, source_id, customer_id, shadow, at, arm, customer_since) ",
            );
            qb.push_values(chunk, |mut b, ((kind, source, customer, shadow), first)| {
                b.push_bind(*kind)
                    .push_bind(source)
                    .push_bind(customer)
                    .push_bind(*shadow)
                    .push_bind(first.at)
                    .push_bind(first.arm)
                    .push_bind(first.customer_since);
            });
            // The earliest exposure stays first; a second arm makes the customer `mixed`.
            qb.push(
                " ON CONFLICT (kind, source_id, customer_id, shadow) DO UPDATE SET \
                 arm = CASE WHEN first_exposures.arm = excluded.arm THEN first_exposures.arm ELSE 'mixed' END, \
                 customer_since = CASE WHEN excluded.at < first_exposures.at THEN excluded.customer_since ELSE first_exposures.customer_since END, \
                 at = CASE WHEN excluded.at < first_exposures.at THEN excluded.at ELSE first_exposures.at END \
                 WHERE first_exposures.arm <> excluded.arm OR excluded.at < first_exposures.at",
            );
            qb.build().persistent(false).execute(&mut **tx).await?;
        }
        for chunk in pending.feedback.chunks(ROWS_PER_STATEMENT) {
            let mut qb =
                sqlx::QueryBuilder::<Db>::new("INSERT INTO feedback (customer_id, at, nps) ");
            qb.push_values(chunk, |mut b, f| {
                b.push_bind(&f.customer_id).push_bind(f.at).push_bind(f.nps);
            });
            qb.build().persistent(false).execute(&mut **tx).await?;
        }
        Ok(Ok(()))
    }

    /// Profiles and orders changed by the batch, one multi-row upsert each.
    pub(super) async fn write_profiles_and_orders(
        tx: &mut sqlx::Transaction<'_, Db>,
        cache: &BatchCache,
    ) -> Result<(), StoreError> {
        let now = now_secs();
        let ids = sorted(cache.dirty_profiles.iter().map(String::as_str).collect());
        let mut rows: Vec<(&str, String)> = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(p) = cache.profiles.get(id) {
                rows.push((id, serde_json::to_string(p).map_err(corrupt)?));
            }
        }
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO profiles (customer_id, data, updated_at) ",
            );
            qb.push_values(chunk, |mut b, (id, data)| {
                b.push_bind(*id).push_bind(data.as_str()).push_bind(now);
            });
            qb.push(" ON CONFLICT (customer_id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at");
            qb.build().persistent(false).execute(&mut **tx).await?;
        }
        let ids = sorted(cache.dirty_orders.iter().map(String::as_str).collect());
        let mut rows: Vec<(&str, &OrderSummary, String)> = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(o) = cache.orders.get(id) {
                rows.push((id, o, serde_json::to_string(o).map_err(corrupt)?));
            }
        }
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO orders (order_id, customer_id, data, placed_at, currency, net_units, cancelled) ",
            );
            qb.push_values(chunk, |mut b, (id, o, data)| {
                let cancelled = o.status == profile::OrderStatus::Cancelled;
                b.push_bind(*id)
                    .push_bind(o.customer_id.as_str())
                    .push_bind(data.as_str())
                    .push_bind(o.placed_at.timestamp())
                    .push_bind(o.currency.to_string())
                    .push_bind(if cancelled {
                        0
                    } else {
                        to_units(o.total - o.returned_value)
                    })
                    .push_bind(cancelled);
            });
            qb.push(
                " ON CONFLICT (order_id) DO UPDATE SET data = excluded.data, currency = excluded.currency, net_units = excluded.net_units, \
                 cancelled = excluded.cancelled WHERE orders.customer_id = excluded.customer_id",
            );
            qb.build().persistent(false).execute(&mut **tx).await?;
        }
        Ok(())
    }
}
