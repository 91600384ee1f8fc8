//! Writing a batch's effects, in this order: counter claims (sorted keys, each a conditional
//! upsert), coupons, given inserts, decisions, coupon and insert state changes (each a
//! compare-and-set on the state the batch read), stock returned, outbox messages (in event
//! order, so the relay sends them in it), e-mail cancellations then new e-mail jobs, exposures,
//! feedback, and the profiles and orders the batch changed. New rows go in multi-row statements
//! of a few fixed sizes ([`statement_chunks`]), prepared once per connection.

use super::{Db, This};
use crate::message::OutboxMessage;
use crate::step::{Effects, EmailStart, Message, State};
use crate::store::StoreError;
use crate::store::backend::{Retry, corrupt, now_secs};
use crate::store::types::*;
use sqlx::Row;
use std::collections::{BTreeMap, HashMap, HashSet};

/// An outbox row as written: the packing instruction borrows its key from the decision.
struct OutboxRow<'a> {
    topic: &'static str,
    key: Option<std::borrow::Cow<'a, [u8]>>,
    payload: Vec<u8>,
    headers: Option<String>,
}

impl From<OutboxMessage> for OutboxRow<'_> {
    fn from(m: OutboxMessage) -> Self {
        OutboxRow {
            topic: m.topic,
            key: m.key.map(std::borrow::Cow::Owned),
            payload: m.payload,
            headers: m.headers,
        }
    }
}

impl This {
    /// Writes `effects`. `Ok(Err(_))` when a claim, a code or a row the batch read was taken
    /// or changed by another instance: the transaction must not commit.
    pub(super) async fn write_effects(
        tx: &mut sqlx::Transaction<'_, Db>,
        state: &State,
        effects: &Effects,
        fence: &Fence,
    ) -> Result<Result<(), Retry>, StoreError> {
        if let Err(retry) = Self::write_claims(tx, effects).await? {
            return Ok(Err(retry));
        }
        if let Err(retry) = Self::write_coupons(tx, effects).await? {
            return Ok(Err(retry));
        }
        for chunk in statement_chunks(&effects.given) {
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
            qb.build().execute(&mut **tx).await?;
        }
        // Each packing instruction is its decision's JSON, made once for both.
        let mut decisions: HashMap<&str, String> = HashMap::with_capacity(effects.decisions.len());
        for m in &effects.messages {
            if let Message::Packing(d) = m {
                decisions.insert(&d.order_id, serde_json::to_string(d).map_err(corrupt)?);
            }
        }
        for chunk in statement_chunks(&effects.decisions) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO decisions (order_id, customer_id, warehouse, rules_version, decided_at, decision) ",
            );
            qb.push_values(chunk, |mut b, d| {
                b.push_bind(&d.order_id)
                    .push_bind(&d.customer_id)
                    .push_bind(&d.warehouse)
                    .push_bind(&d.rules_version)
                    .push_bind(d.decided_at)
                    .push_bind(
                        decisions
                            .get(d.order_id.as_str())
                            .map(String::as_str)
                            .unwrap_or("{}"),
                    );
            });
            qb.build().execute(&mut **tx).await?;
        }
        if let Err(retry) = Self::write_state_changes(tx, effects).await? {
            return Ok(Err(retry));
        }
        Self::write_outbox(tx, effects, &decisions, fence).await?;
        let mut cancelled: HashSet<&str> = HashSet::new();
        for order_id in &effects.email_cancellations {
            if cancelled.insert(order_id) {
                Self::cancel_emails(tx, order_id).await?;
            }
        }
        Self::write_emails(tx, effects).await?;
        Self::write_exposures(tx, effects).await?;
        for chunk in statement_chunks(&effects.feedback) {
            let mut qb =
                sqlx::QueryBuilder::<Db>::new("INSERT INTO feedback (customer_id, at, nps) ");
            qb.push_values(chunk, |mut b, f| {
                b.push_bind(&f.customer_id).push_bind(f.at).push_bind(f.nps);
            });
            qb.build().execute(&mut **tx).await?;
        }
        for (customer_id, at) in &effects.resubscribed {
            sqlx::query("DELETE FROM unsubscribes WHERE customer_id = $1 AND at <= $2")
                .bind(customer_id)
                .bind(*at)
                .execute(&mut **tx)
                .await?;
        }
        Self::write_profiles_and_orders(tx, state, effects).await?;
        Self::write_kept_events(tx, effects).await?;
        Ok(Ok(()))
    }

    /// Counter claims, totals per key in sorted order, each within its allocation or limit.
    async fn write_claims(
        tx: &mut sqlx::Transaction<'_, Db>,
        effects: &Effects,
    ) -> Result<Result<(), Retry>, StoreError> {
        for ((insert_id, slot), (quantity, allocation)) in &effects.stock {
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
        for ((rule_id, period, currency), (amount, limit)) in &effects.budget {
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
        Ok(Ok(()))
    }

    /// New coupons; a code already taken (a collision) makes the batch take it again.
    async fn write_coupons(
        tx: &mut sqlx::Transaction<'_, Db>,
        effects: &Effects,
    ) -> Result<Result<(), Retry>, StoreError> {
        for chunk in statement_chunks(&effects.coupons) {
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
            let rows = qb.build().fetch_all(&mut **tx).await?;
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
        Ok(Ok(()))
    }

    /// Coupons redeemed or voided and inserts voided or returned, each from the state the batch
    /// read; then the units returned to stock, per key in sorted order.
    async fn write_state_changes(
        tx: &mut sqlx::Transaction<'_, Db>,
        effects: &Effects,
    ) -> Result<Result<(), Retry>, StoreError> {
        for c in &effects.coupon_changes {
            let r = sqlx::query(
                "UPDATE coupons SET state = $1, version = $2, redeemed_order_id = COALESCE($3, redeemed_order_id) \
                 WHERE code = $4 AND state = $5",
            )
            .bind(c.to.as_str())
            .bind(c.version)
            .bind(c.redeemed_order_id.as_deref())
            .bind(&c.code)
            .bind(c.from.as_str())
            .execute(&mut **tx)
            .await?;
            if r.rows_affected() == 0 {
                return Ok(Err(Retry::Stale));
            }
        }
        for g in &effects.given_changes {
            let r = sqlx::query(
                "UPDATE given_inserts SET state = $1 WHERE order_id = $2 AND seq = $3 AND state = $4",
            )
            .bind(g.to.as_str())
            .bind(&g.order_id)
            .bind(g.seq)
            .bind(g.from.as_str())
            .execute(&mut **tx)
            .await?;
            if r.rows_affected() == 0 {
                return Ok(Err(Retry::Stale));
            }
        }
        let mut returned: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for (insert_id, slot) in &effects.stock_returns {
            *returned.entry((insert_id, slot)).or_default() += 1;
        }
        for ((insert_id, slot), n) in returned {
            sqlx::query(
                "UPDATE stock SET used = CASE WHEN used > $3 THEN used - $3 ELSE 0 END WHERE insert_id = $1 AND slot = $2",
            )
            .bind(insert_id)
            .bind(slot)
            .bind(n)
            .execute(&mut **tx)
            .await?;
        }
        Ok(Ok(()))
    }

    /// The batch's outbox messages, in event order.
    async fn write_outbox(
        tx: &mut sqlx::Transaction<'_, Db>,
        effects: &Effects,
        decisions: &HashMap<&str, String>,
        fence: &Fence,
    ) -> Result<(), StoreError> {
        let mut rows: Vec<OutboxRow> = Vec::with_capacity(effects.messages.len());
        for m in &effects.messages {
            // The packing instruction is its decision row's JSON, made once for both.
            let packing = match m {
                Message::Packing(d) => decisions.get(d.order_id.as_str()).map(|json| (d, json)),
                _ => None,
            };
            rows.push(match packing {
                Some((d, json)) => OutboxRow {
                    topic: TOPIC_PACKING,
                    key: Some(std::borrow::Cow::Borrowed(d.order_id.as_bytes())),
                    payload: json.as_bytes().to_vec(),
                    headers: None,
                },
                None => OutboxRow::from(m.to_outbox(fence.dlq_source()).map_err(corrupt)?),
            });
        }
        let now = now_secs();
        for chunk in statement_chunks(&rows) {
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
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// New e-mail jobs: pending, held out (`skipped`, `holdout`), or cancelled already by a
    /// later event of the batch (`skipped`, `cancelled`).
    async fn write_emails(
        tx: &mut sqlx::Transaction<'_, Db>,
        effects: &Effects,
    ) -> Result<(), StoreError> {
        let now = now_secs();
        for chunk in statement_chunks(&effects.emails) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO email_jobs (order_id, followup_id, customer_id, due_at, scheduled_for, first_due_at, state, reason, detail, finished_at, created_at, variant) ",
            );
            qb.push_values(chunk, |mut b, e| {
                let (state, reason, detail, finished) = match e.state {
                    EmailStart::Pending => ("pending", None, None, None),
                    EmailStart::HeldOut => ("skipped", Some("holdout"), None, None),
                    EmailStart::Cancelled => (
                        "skipped",
                        Some("cancelled"),
                        Some(CANCELLED_DETAIL),
                        Some(now),
                    ),
                };
                b.push_bind(&e.order_id)
                    .push_bind(&e.followup_id)
                    .push_bind(&e.customer_id)
                    .push_bind(e.due_at)
                    .push_bind(e.due_at)
                    .push_bind(e.due_at)
                    .push_bind(state)
                    .push_bind(reason)
                    .push_bind(detail)
                    .push_bind(finished)
                    .push_bind(now)
                    .push_bind(&e.variant);
            });
            qb.push(" ON CONFLICT (order_id, followup_id) DO NOTHING");
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Exposures, their costs, and customers' first exposures.
    async fn write_exposures(
        tx: &mut sqlx::Transaction<'_, Db>,
        effects: &Effects,
    ) -> Result<(), StoreError> {
        for chunk in statement_chunks(&effects.exposures) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO exposures (source_id, order_id, customer_id, arm, at) ",
            );
            qb.push_values(chunk, |mut b, e| {
                b.push_bind(&e.source_id)
                    .push_bind(&e.order_id)
                    .push_bind(&e.customer_id)
                    .push_bind(&e.arm)
                    .push_bind(e.at);
            });
            qb.build().execute(&mut **tx).await?;
        }
        let costs: Vec<(&str, &str, &str, i64)> = effects
            .exposures
            .iter()
            .flat_map(|e| {
                e.costs
                    .iter()
                    .map(move |(c, u)| (e.source_id.as_str(), e.order_id.as_str(), c.as_str(), *u))
            })
            .collect();
        for chunk in statement_chunks(&costs) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO exposure_costs (source_id, order_id, currency, units) ",
            );
            qb.push_values(chunk, |mut b, (source, order, currency, units)| {
                b.push_bind(*source)
                    .push_bind(*order)
                    .push_bind(*currency)
                    .push_bind(*units);
            });
            qb.build().execute(&mut **tx).await?;
        }
        let firsts: Vec<_> = effects.first_exposures.iter().collect();
        for chunk in statement_chunks(&firsts) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO first_exposures (kind, source_id, customer_id, shadow, at, arm, customer_since) ",
            );
            qb.push_values(chunk, |mut b, ((kind, source, customer, shadow), first)| {
                b.push_bind(*kind)
                    .push_bind(source)
                    .push_bind(customer)
                    .push_bind(*shadow)
                    .push_bind(first.at)
                    .push_bind(&first.arm)
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
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The e-mails of a cancelled or returned order that are still to be sent are cancelled:
    /// pending ones, and ones waiting to be tried again (whose coupons, issued at the first
    /// hand-over, were never delivered, so they are voided).
    async fn cancel_emails(
        tx: &mut sqlx::Transaction<'_, Db>,
        order_id: &str,
    ) -> Result<(), StoreError> {
        let cancelled = sqlx::query(
            "UPDATE email_jobs SET state = 'skipped', reason = 'cancelled', detail = $3, \
             claimed_until = NULL, finished_at = $2 WHERE order_id = $1 AND state IN ('pending', 'retry') RETURNING followup_id, tries, resends",
        )
        .bind(order_id)
        .bind(now_secs())
        .bind(CANCELLED_DETAIL)
        .fetch_all(&mut **tx)
        .await?;
        for r in cancelled {
            if r.try_get::<i64, _>(1)? > 0 && r.try_get::<i64, _>(2)? == 0 {
                Self::void_email_coupons(tx, order_id, &r.try_get::<String, _>(0)?).await?;
            }
        }
        Ok(())
    }

    /// The events the batch applied, kept (`store/events.rs`).
    async fn write_kept_events(
        tx: &mut sqlx::Transaction<'_, Db>,
        effects: &Effects,
    ) -> Result<(), StoreError> {
        let now = now_secs();
        for chunk in statement_chunks(&effects.events) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO events (event_id, customer_id, occurred_at, stored_at, body) ",
            );
            qb.push_values(chunk, |mut b, e| {
                b.push_bind(&e.event_id)
                    .push_bind(&e.customer_id)
                    .push_bind(e.occurred_at)
                    .push_bind(now)
                    .push_bind(e.body.as_slice());
            });
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Profiles and orders the batch changed, one multi-row upsert each, in id order.
    async fn write_profiles_and_orders(
        tx: &mut sqlx::Transaction<'_, Db>,
        state: &State,
        effects: &Effects,
    ) -> Result<(), StoreError> {
        let now = now_secs();
        let mut rows: Vec<(&str, String)> = Vec::with_capacity(effects.profiles.len());
        for id in &effects.profiles {
            if let Some(p) = state.profiles.get(id) {
                rows.push((id, serde_json::to_string(p).map_err(corrupt)?));
            }
        }
        for chunk in statement_chunks(&rows) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO profiles (customer_id, data, updated_at) ",
            );
            qb.push_values(chunk, |mut b, (id, data)| {
                b.push_bind(*id).push_bind(data.as_str()).push_bind(now);
            });
            qb.push(" ON CONFLICT (customer_id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at");
            qb.build().execute(&mut **tx).await?;
        }
        let mut rows = Vec::with_capacity(effects.orders.len());
        for id in &effects.orders {
            if let Some(o) = state.orders.get(id) {
                rows.push((id.as_str(), o, serde_json::to_string(o).map_err(corrupt)?));
            }
        }
        for chunk in statement_chunks(&rows) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO orders (order_id, customer_id, data, placed_at, currency, net_units, cancelled) ",
            );
            qb.push_values(chunk, |mut b, (id, o, data)| {
                let cancelled = o.status == crate::profile::OrderStatus::Cancelled;
                let net = if cancelled {
                    0
                } else {
                    o.net_value().map_or(i64::MAX, crate::money::to_units)
                };
                b.push_bind(*id)
                    .push_bind(o.customer_id.as_str())
                    .push_bind(data.as_str())
                    .push_bind(o.placed_at.timestamp())
                    .push_bind(o.currency.to_string())
                    .push_bind(net)
                    .push_bind(cancelled);
            });
            qb.push(
                " ON CONFLICT (order_id) DO UPDATE SET data = excluded.data, currency = excluded.currency, net_units = excluded.net_units, \
                 cancelled = excluded.cancelled WHERE orders.customer_id = excluded.customer_id",
            );
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }
}

/// Why an e-mail job of a cancelled or returned order was not sent.
const CANCELLED_DETAIL: &str = "the order was cancelled or returned";
