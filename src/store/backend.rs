//! The two backends. The batch procedure and every query are written once, in the macro
//! below, and stamped out for SQLite and PostgreSQL: the SQL is the portable subset both speak
//! (`$n` parameters, `ON CONFLICT`, `RETURNING`), so the two cannot drift apart. What differs
//! (opening, how a write transaction begins, claiming e-mail jobs) is written per backend.

use super::Store;
use super::apply::{CounterView, dlq_message, from_units, to_units};
use super::types::*;
use crate::engine::{self, Claim, DecideInput, Decision, Outcome};
use crate::event::{Event, EventBody, RejectReason};
use crate::profile::{self, Folded, OrderSummary, Profile};
use crate::replay::Applied;
use crate::rules::{InsertBody, Trigger};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{Connection, Row};
use std::collections::{HashMap, HashSet};

/// Profiles and orders read in this batch, written back once at its end.
#[derive(Default)]
struct BatchCache {
    /// Stock and budget counters as this batch sees them (None: read them again).
    view: Option<CounterView>,
    profiles: HashMap<String, Profile>,
    orders: HashMap<String, OrderSummary>,
    dirty_profiles: HashSet<String>,
    dirty_orders: HashSet<String>,
}

/// Errors after which the same transaction may well succeed: PostgreSQL deadlock (40P01) and
/// serialization failure (40001), SQLite busy or locked.
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            matches!(
                db.code().as_deref(),
                Some("40P01") | Some("40001") | Some("5") | Some("6") | Some("517")
            ) || db.message().contains("database is locked")
        }
        _ => false,
    }
}

/// A little randomness for back-off, without a generator to seed.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Utc::now().timestamp_subsec_nanos() as u64);
    h.finish()
}

fn now_secs() -> i64 {
    Utc::now().timestamp()
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Why writing a decision must be tried again on a fresh view.
enum Retry {
    /// A counter claim failed: another instance took what the view still showed.
    Claim,
    /// A coupon code collided with one already issued.
    Code(String),
}

macro_rules! backend {
    ($store:ident, $db:ty) => {
        impl $store {
            async fn apply_batch_once(&self, batch: &Batch, env: &DecideEnv) -> Result<BatchReport, StoreError> {
                let mut tx = self.begin_write().await?;
                Self::fence(&mut tx, &batch.fence).await?;
                let mut cache = BatchCache::default();
                let mut report = BatchReport::default();
                for item in &batch.items {
                    Self::apply_item(&mut tx, &mut cache, &batch.fence, item, env, &mut report).await?;
                }
                Self::flush(&mut tx, &cache).await?;
                tx.commit().await?;
                Ok(report)
            }

            async fn fence(tx: &mut sqlx::Transaction<'_, $db>, fence: &Fence) -> Result<(), StoreError> {
                match fence {
                    Fence::None => Ok(()),
                    Fence::Partition { topic, partition, epoch, start, end } => {
                        let r = sqlx::query(
                            "UPDATE partitions SET next_offset = $1 WHERE topic = $2 AND partition = $3 AND epoch = $4 AND next_offset = $5",
                        )
                        .bind(*end)
                        .bind(topic)
                        .bind(i64::from(*partition))
                        .bind(*epoch)
                        .bind(*start)
                        .execute(&mut **tx)
                        .await?;
                        if r.rows_affected() == 1 {
                            Ok(())
                        } else {
                            Err(StoreError::Fenced { topic: topic.clone(), partition: *partition })
                        }
                    }
                    Fence::Import { source, start, end } => {
                        sqlx::query("INSERT INTO imports (source, next_line) VALUES ($1, 0) ON CONFLICT (source) DO NOTHING")
                            .bind(source)
                            .execute(&mut **tx)
                            .await?;
                        let r = sqlx::query("UPDATE imports SET next_line = $1 WHERE source = $2 AND next_line = $3")
                            .bind(*end)
                            .bind(source)
                            .bind(*start)
                            .execute(&mut **tx)
                            .await?;
                        if r.rows_affected() == 1 {
                            Ok(())
                        } else {
                            Err(StoreError::Other(format!("the import of {source} moved on elsewhere (another import running?)")))
                        }
                    }
                }
            }

            async fn load_profile(tx: &mut sqlx::Transaction<'_, $db>, cache: &mut BatchCache, id: &str) -> Result<(), StoreError> {
                if cache.profiles.contains_key(id) {
                    return Ok(());
                }
                let row = sqlx::query(Self::LOAD_PROFILE_SQL).bind(id).fetch_optional(&mut **tx).await?;
                let profile = match row {
                    Some(r) => serde_json::from_str(&r.try_get::<String, _>(0)?).map_err(corrupt)?,
                    None => Profile::new(id),
                };
                cache.profiles.insert(id.to_string(), profile);
                Ok(())
            }

            async fn load_order(tx: &mut sqlx::Transaction<'_, $db>, cache: &mut BatchCache, id: &str) -> Result<(), StoreError> {
                if cache.orders.contains_key(id) {
                    return Ok(());
                }
                let row = sqlx::query("SELECT data FROM orders WHERE order_id = $1").bind(id).fetch_optional(&mut **tx).await?;
                if let Some(r) = row {
                    let order: OrderSummary = serde_json::from_str(&r.try_get::<String, _>(0)?).map_err(corrupt)?;
                    cache.orders.insert(id.to_string(), order);
                }
                Ok(())
            }

            async fn outbox(
                tx: &mut sqlx::Transaction<'_, $db>,
                topic: &str,
                key: Option<&[u8]>,
                payload: &[u8],
                headers: Option<&str>,
            ) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO outbox (topic, msg_key, payload, headers, sent, created_at) VALUES ($1, $2, $3, $4, FALSE, $5)")
                    .bind(topic)
                    .bind(key)
                    .bind(payload)
                    .bind(headers)
                    .bind(now_secs())
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            async fn dlq(
                tx: &mut sqlx::Transaction<'_, $db>,
                fence: &Fence,
                item: &BatchItem,
                reason: RejectReason,
                error: &str,
            ) -> Result<(), StoreError> {
                let (value, headers) = dlq_message(fence, item.offset, &item.value, reason, error);
                Self::outbox(tx, TOPIC_DLQ, item.key.as_deref(), &value, Some(&headers)).await
            }

            async fn counter_view(tx: &mut sqlx::Transaction<'_, $db>) -> Result<CounterView, StoreError> {
                let mut view = CounterView::default();
                for r in sqlx::query("SELECT insert_id, slot, used FROM stock").fetch_all(&mut **tx).await? {
                    let used: i64 = r.try_get(2)?;
                    view.stock.insert((r.try_get(0)?, r.try_get(1)?), u32::try_from(used.max(0)).unwrap_or(u32::MAX));
                }
                for r in sqlx::query("SELECT rule_id, period, currency, spent_units FROM budgets").fetch_all(&mut **tx).await? {
                    view.budget.insert((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?), from_units(r.try_get(3)?));
                }
                Ok(view)
            }

            /// Takes the decision's counters and writes its rows; `Err(Retry)` rolls the
            /// savepoint back and the order is decided again on a fresh view.
            async fn write_decision(
                tx: &mut sqlx::Transaction<'_, $db>,
                outcome: &Outcome,
                env: &DecideEnv,
                at: DateTime<Utc>,
            ) -> Result<Result<(), Retry>, StoreError> {
                let d = &outcome.decision;
                // Claims in a fixed (sorted) order, so two instances never wait on each other in a cycle.
                let mut claims = outcome.claims.clone();
                claims.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
                let mut stock_slots: Vec<(String, String)> = Vec::new();
                for claim in &claims {
                    match claim {
                        Claim::Stock { insert_id, slot, allocation, quantity } => {
                            sqlx::query("INSERT INTO stock (insert_id, slot, used) VALUES ($1, $2, 0) ON CONFLICT (insert_id, slot) DO NOTHING")
                                .bind(insert_id)
                                .bind(slot.as_str())
                                .execute(&mut **tx)
                                .await?;
                            let r = sqlx::query(
                                "UPDATE stock SET used = used + $1 WHERE insert_id = $2 AND slot = $3 AND used + $1 <= $4",
                            )
                            .bind(i64::from(*quantity))
                            .bind(insert_id)
                            .bind(slot.as_str())
                            .bind(i64::from(*allocation))
                            .execute(&mut **tx)
                            .await?;
                            if r.rows_affected() == 0 {
                                return Ok(Err(Retry::Claim));
                            }
                            stock_slots.push((insert_id.clone(), slot.as_str().to_string()));
                        }
                        Claim::Budget { rule_id, period, currency, limit, amount } => {
                            sqlx::query(
                                "INSERT INTO budgets (rule_id, period, currency, spent_units) VALUES ($1, $2, $3, 0) ON CONFLICT (rule_id, period, currency) DO NOTHING",
                            )
                            .bind(rule_id)
                            .bind(period)
                            .bind(currency.as_str())
                            .execute(&mut **tx)
                            .await?;
                            let r = sqlx::query(
                                "UPDATE budgets SET spent_units = spent_units + $1 WHERE rule_id = $2 AND period = $3 AND currency = $4 AND spent_units + $1 <= $5",
                            )
                            .bind(to_units(*amount))
                            .bind(rule_id)
                            .bind(period)
                            .bind(currency.as_str())
                            .bind(to_units(*limit))
                            .execute(&mut **tx)
                            .await?;
                            if r.rows_affected() == 0 {
                                return Ok(Err(Retry::Claim));
                            }
                        }
                    }
                }
                for (seq, g) in d.inserts.iter().enumerate() {
                    let stock_slot = env.rules.insert(&g.insert_id).and_then(|i| match &i.body {
                        InsertBody::Item { stock: Some(s), .. } => s.slot(&d.warehouse).map(|(slot, _)| slot.as_str().to_string()),
                        _ => None,
                    });
                    if let Some(c) = &g.coupon {
                        let r = sqlx::query(
                            "INSERT INTO coupons (code, order_id, source_id, insert_id, customer_id, amount, currency, expires_on, state, version, issued_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'issued', 1, $9) ON CONFLICT (code) DO NOTHING",
                        )
                        .bind(&c.code)
                        .bind(&d.order_id)
                        .bind(&g.rule_id)
                        .bind(&g.insert_id)
                        .bind(&d.customer_id)
                        .bind(&c.amount)
                        .bind(&c.currency)
                        .bind(&c.expires_on)
                        .bind(at.timestamp())
                        .execute(&mut **tx)
                        .await?;
                        if r.rows_affected() == 0 {
                            return Ok(Err(Retry::Code(c.code.clone())));
                        }
                        let msg = json!({"schema_version": 1, "type": "coupon.issued", "code": c.code, "version": 1,
                            "order_id": d.order_id, "customer_id": d.customer_id, "rule_id": g.rule_id, "insert_id": g.insert_id,
                            "amount": c.amount, "currency": c.currency, "min_order": c.min_order, "expires_on": c.expires_on,
                            "occurred_at": d.decided_at});
                        Self::outbox(tx, TOPIC_COUPONS, Some(c.code.as_bytes()), msg.to_string().as_bytes(), None).await?;
                    }
                    sqlx::query(
                        "INSERT INTO given_inserts (order_id, seq, insert_id, rule_id, kind, stock_slot, state) VALUES ($1, $2, $3, $4, $5, $6, 'given')",
                    )
                    .bind(&d.order_id)
                    .bind(seq as i64)
                    .bind(&g.insert_id)
                    .bind(&g.rule_id)
                    .bind(&g.kind)
                    .bind(stock_slot)
                    .execute(&mut **tx)
                    .await?;
                }
                let json = serde_json::to_string(d).map_err(corrupt)?;
                sqlx::query(
                    "INSERT INTO decisions (order_id, customer_id, warehouse, rules_version, decided_at, decision) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&d.order_id)
                .bind(&d.customer_id)
                .bind(&d.warehouse)
                .bind(&d.rules_version)
                .bind(at.timestamp())
                .bind(&json)
                .execute(&mut **tx)
                .await?;
                Self::outbox(tx, TOPIC_PACKING, Some(d.order_id.as_bytes()), json.as_bytes(), None).await?;
                Self::schedule(tx, &d.order_id, &d.customer_id, &d.followups).await?;
                Ok(Ok(()))
            }

            async fn schedule(
                tx: &mut sqlx::Transaction<'_, $db>,
                order_id: &str,
                customer_id: &str,
                followups: &[engine::ScheduledFollowup],
            ) -> Result<(), StoreError> {
                for f in followups {
                    let due = DateTime::parse_from_rfc3339(&f.due_at).map(|t| t.timestamp()).map_err(corrupt)?;
                    sqlx::query(
                        "INSERT INTO email_jobs (order_id, followup_id, customer_id, due_at, state, created_at) VALUES ($1, $2, $3, $4, 'pending', $5) \
                         ON CONFLICT (order_id, followup_id) DO NOTHING",
                    )
                    .bind(order_id)
                    .bind(&f.followup_id)
                    .bind(customer_id)
                    .bind(due)
                    .bind(now_secs())
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(())
            }

            async fn decide_and_write(
                tx: &mut sqlx::Transaction<'_, $db>,
                cache: &mut BatchCache,
                event: &Event,
                env: &DecideEnv,
            ) -> Result<Applied, StoreError> {
                let EventBody::OrderPlaced(order) = &event.body else { return Ok(Applied::Unchanged) };
                let existing = sqlx::query("SELECT decision FROM decisions WHERE order_id = $1").bind(&order.id).fetch_optional(&mut **tx).await?;
                if existing.is_some() {
                    // Decided before (e.g. imported history replayed): the stored decision stands.
                    return Ok(Applied::Unchanged);
                }
                // Bounded: each retry follows a claim that another instance won or a code collision.
                for _ in 0..16 {
                    // The counters are read once per batch and kept up to date here; a failed
                    // claim means another instance moved them, and they are read again.
                    if cache.view.is_none() {
                        cache.view = Some(Self::counter_view(tx).await?);
                    }
                    let (Some(view), Some(profile)) = (cache.view.as_ref(), cache.profiles.get(&order.customer.id)) else {
                        return Err(corrupt("profile not loaded"));
                    };
                    let outcome = engine::decide(&DecideInput {
                        rules: &env.rules,
                        profile,
                        order,
                        at: event.occurred_at,
                        counters: view,
                        issued: view,
                        key: &env.key,
                        shop: &env.shop,
                        explain: false,
                    });
                    let mut sp = (&mut **tx).begin().await?;
                    match Self::write_decision(&mut sp, &outcome, env, event.occurred_at).await? {
                        Ok(()) => {
                            sp.commit().await?;
                            if let Some(view) = cache.view.as_mut() {
                                view.take(&outcome.claims);
                            }
                            if let Some(p) = cache.profiles.get_mut(&order.customer.id) {
                                for rule in &outcome.rules_given {
                                    p.record_given(rule, event.occurred_at);
                                }
                                p.coupons_received += outcome.decision.inserts.iter().filter(|i| i.coupon.is_some()).count() as u32;
                            }
                            return Ok(Applied::Decided(Box::new(outcome)));
                        }
                        Err(Retry::Code(code)) => {
                            sp.rollback().await?;
                            if let Some(view) = cache.view.as_mut() {
                                view.taken_codes.insert(code);
                            }
                        }
                        Err(Retry::Claim) => {
                            sp.rollback().await?;
                            cache.view = None;
                        }
                    }
                }
                Err(StoreError::Other(format!("order {}: could not take counters after 16 tries", order.id)))
            }

            async fn cancel(tx: &mut sqlx::Transaction<'_, $db>, order_id: &str, at: &str) -> Result<(), StoreError> {
                let packed = sqlx::query("SELECT COUNT(*) FROM given_inserts WHERE order_id = $1 AND state = 'packed'")
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
                        Self::outbox(tx, TOPIC_COUPONS, Some(code.as_bytes()), msg.to_string().as_bytes(), None).await?;
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
                            .bind(insert)
                            .bind(slot)
                            .execute(&mut **tx)
                            .await?;
                    }
                }
                Self::cancel_emails(tx, order_id).await
            }

            async fn cancel_emails(tx: &mut sqlx::Transaction<'_, $db>, order_id: &str) -> Result<(), StoreError> {
                sqlx::query("UPDATE email_jobs SET state = 'skipped', reason = 'cancelled' WHERE order_id = $1 AND state = 'pending'")
                    .bind(order_id)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            async fn apply_item(
                tx: &mut sqlx::Transaction<'_, $db>,
                cache: &mut BatchCache,
                fence: &Fence,
                item: &BatchItem,
                env: &DecideEnv,
                report: &mut BatchReport,
            ) -> Result<(), StoreError> {
                let event = match &item.event {
                    Ok(e) => e,
                    Err(r) => {
                        Self::dlq(tx, fence, item, r.reason, &r.message).await?;
                        report.rejected += 1;
                        report.applied.push(Applied::Unchanged);
                        return Ok(());
                    }
                };
                let customer = event.customer_id().to_string();
                if let Some(key) = &item.key
                    && key.as_slice() != customer.as_bytes()
                {
                    let msg = format!("key: the message key {:?} is not the event's customer id {customer:?}", String::from_utf8_lossy(key));
                    Self::dlq(tx, fence, item, RejectReason::KeyMismatch, &msg).await?;
                    report.rejected += 1;
                    report.applied.push(Applied::Unchanged);
                    return Ok(());
                }
                let fresh = sqlx::query("INSERT INTO processed_events (event_id, processed_at) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING")
                    .bind(&event.event_id)
                    .bind(now_secs())
                    .execute(&mut **tx)
                    .await?;
                if fresh.rows_affected() == 0 {
                    report.seen_before += 1;
                    report.applied.push(Applied::Unchanged);
                    return Ok(());
                }
                Self::load_profile(tx, cache, &customer).await?;
                if let Some(oid) = event.order_id() {
                    Self::load_order(tx, cache, oid).await?;
                    // An event about someone else's order must not touch it (nor schedule an
                    // e-mail about it to the wrong person).
                    if let Some(o) = cache.orders.get(oid)
                        && o.customer_id != customer
                    {
                        let msg = format!("order_id: order {oid:?} belongs to another customer, not {customer:?}");
                        Self::dlq(tx, fence, item, RejectReason::Conflict, &msg).await?;
                        report.rejected += 1;
                        report.applied.push(Applied::Conflict);
                        return Ok(());
                    }
                }
                let profile = cache.profiles.get_mut(&customer).ok_or_else(|| corrupt("profile not loaded"))?;
                let order = event.order_id().and_then(|id| cache.orders.get_mut(id));
                let (folded, new_order) = profile::fold(profile, order, event);
                cache.dirty_profiles.insert(customer.clone());
                if let Some(o) = new_order {
                    cache.dirty_orders.insert(o.id.clone());
                    cache.orders.insert(o.id.clone(), o);
                } else if let Some(id) = event.order_id() {
                    cache.dirty_orders.insert(id.to_string());
                }
                let applied = match (folded, &event.body) {
                    (Folded::Conflict, _) => {
                        let msg = format!("order.id: order {:?} is known under another customer", event.order_id().unwrap_or(""));
                        Self::dlq(tx, fence, item, RejectReason::Conflict, &msg).await?;
                        report.rejected += 1;
                        Applied::Conflict
                    }
                    (Folded::DuplicateOrder, _) => Applied::Unchanged,
                    (Folded::NewOrder, EventBody::OrderPlaced(order)) => {
                        for code in &order.coupon_codes {
                            sqlx::query("UPDATE coupons SET state = 'redeemed', redeemed_order_id = $1 WHERE code = $2 AND state = 'issued'")
                                .bind(&order.id)
                                .bind(code)
                                .execute(&mut **tx)
                                .await?;
                        }
                        if item.decide {
                            Self::decide_and_write(tx, cache, event, env).await?
                        } else {
                            Applied::Folded { followups: Vec::new(), skipped: Vec::new() }
                        }
                    }
                    (Folded::Cancelled, EventBody::OrderCancelled { order_id, .. }) => {
                        Self::cancel(tx, order_id, &engine::format_time(event.occurred_at)).await?;
                        // Stock may have come back.
                        cache.view = None;
                        Applied::Folded { followups: Vec::new(), skipped: Vec::new() }
                    }
                    (Folded::Returned, EventBody::OrderReturned { order_id, .. }) => {
                        Self::cancel_emails(tx, order_id).await?;
                        Applied::Folded { followups: Vec::new(), skipped: Vec::new() }
                    }
                    (folded, body) => {
                        let trigger = match body {
                            EventBody::OrderDelivered { .. } => Some(Trigger::OrderDelivered),
                            EventBody::OrderShipped { .. } => Some(Trigger::OrderShipped),
                            _ => None,
                        };
                        let late = if let Folded::Delivered { late_days } = folded { Some(late_days) } else { None };
                        match (trigger, event.order_id()) {
                            (Some(trigger), Some(oid)) if item.decide => {
                                let (Some(p), Some(o)) = (cache.profiles.get(&customer), cache.orders.get(oid)) else {
                                    report.applied.push(Applied::Folded { followups: Vec::new(), skipped: Vec::new() });
                                    return Ok(());
                                };
                                if o.status == profile::OrderStatus::Cancelled {
                                    Applied::Folded { followups: Vec::new(), skipped: Vec::new() }
                                } else {
                                    let at = match body {
                                        EventBody::OrderDelivered { delivered_at, .. } => *delivered_at,
                                        _ => event.occurred_at,
                                    };
                                    let order = o.to_order(p);
                                    let (followups, skipped) = engine::followups_for_event(&env.rules, p, &order, trigger, at, late);
                                    Self::schedule(tx, oid, &customer, &followups).await?;
                                    Applied::Folded { followups, skipped }
                                }
                            }
                            _ => Applied::Folded { followups: Vec::new(), skipped: Vec::new() },
                        }
                    }
                };
                report.applied.push(applied);
                Ok(())
            }

            async fn flush(tx: &mut sqlx::Transaction<'_, $db>, cache: &BatchCache) -> Result<(), StoreError> {
                let now = now_secs();
                let mut ids: Vec<&String> = cache.dirty_profiles.iter().collect();
                ids.sort();
                for id in ids {
                    let Some(p) = cache.profiles.get(id) else { continue };
                    sqlx::query(
                        "INSERT INTO profiles (customer_id, data, updated_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (customer_id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
                    )
                    .bind(id)
                    .bind(serde_json::to_string(p).map_err(corrupt)?)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                }
                let mut ids: Vec<&String> = cache.dirty_orders.iter().collect();
                ids.sort();
                for id in ids {
                    let Some(o) = cache.orders.get(id) else { continue };
                    sqlx::query(
                        "INSERT INTO orders (order_id, customer_id, data, placed_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (order_id) DO UPDATE SET data = excluded.data WHERE orders.customer_id = excluded.customer_id",
                    )
                    .bind(id)
                    .bind(&o.customer_id)
                    .bind(serde_json::to_string(o).map_err(corrupt)?)
                    .bind(o.placed_at.timestamp())
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(())
            }
        }

        #[async_trait]
        impl Store for $store {
            async fn apply_batch(&self, batch: Batch, env: &DecideEnv) -> Result<BatchReport, StoreError> {
                // A batch is all or nothing, so one that lost a deadlock or a serialization
                // check (two instances claiming the same counters in different orders) is
                // applied again, a bounded number of times, after a short random wait.
                let mut tries: u64 = 0;
                loop {
                    match self.apply_batch_once(&batch, env).await {
                        Err(StoreError::Db(e)) if is_transient(&e) && tries < 8 => {
                            tries += 1;
                            let wait = 5 + (rand_u64() % 20) * tries;
                            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                        }
                        other => return other,
                    }
                }
            }

            async fn claim_partition(&self, topic: &str, partition: i32) -> Result<(i64, i64), StoreError> {
                let mut tx = self.begin_write().await?;
                sqlx::query("INSERT INTO partitions (topic, partition, next_offset, epoch) VALUES ($1, $2, 0, 0) ON CONFLICT (topic, partition) DO NOTHING")
                    .bind(topic)
                    .bind(i64::from(partition))
                    .execute(&mut *tx)
                    .await?;
                let row = sqlx::query("UPDATE partitions SET epoch = epoch + 1 WHERE topic = $1 AND partition = $2 RETURNING epoch, next_offset")
                    .bind(topic)
                    .bind(i64::from(partition))
                    .fetch_one(&mut *tx)
                    .await?;
                let out = (row.try_get(0)?, row.try_get(1)?);
                tx.commit().await?;
                Ok(out)
            }

            async fn partition_offsets(&self, topic: &str) -> Result<Vec<PartitionState>, StoreError> {
                let rows = sqlx::query("SELECT partition, next_offset, epoch FROM partitions WHERE topic = $1 ORDER BY partition")
                    .bind(topic)
                    .fetch_all(&self.read)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(PartitionState {
                            partition: i32::try_from(r.try_get::<i64, _>(0)?).unwrap_or(i32::MAX),
                            next_offset: r.try_get(1)?,
                            epoch: r.try_get(2)?,
                        })
                    })
                    .collect()
            }

            async fn decision(&self, order_id: &str) -> Result<Option<StoredDecision>, StoreError> {
                let row = sqlx::query("SELECT decision, warehouse FROM decisions WHERE order_id = $1")
                    .bind(order_id)
                    .fetch_optional(&self.read)
                    .await?;
                match row {
                    None => Ok(None),
                    Some(r) => {
                        let decision: Decision = serde_json::from_str(&r.try_get::<String, _>(0)?).map_err(corrupt)?;
                        Ok(Some(StoredDecision { decision, warehouse: r.try_get(1)? }))
                    }
                }
            }

            async fn profile(&self, customer_id: &str) -> Result<Option<Profile>, StoreError> {
                let row = sqlx::query("SELECT data FROM profiles WHERE customer_id = $1").bind(customer_id).fetch_optional(&self.read).await?;
                row.map(|r| serde_json::from_str(&r.try_get::<String, _>(0)?).map_err(corrupt)).transpose()
            }

            async fn unsent_outbox(&self, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
                // By id, not "after the last id sent": ids may commit out of order.
                let rows = sqlx::query("SELECT id, topic, msg_key, payload, headers FROM outbox WHERE NOT sent ORDER BY id LIMIT $1")
                    .bind(limit)
                    .fetch_all(&self.read)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(OutboxRow {
                            id: r.try_get(0)?,
                            topic: r.try_get(1)?,
                            key: r.try_get(2)?,
                            payload: r.try_get(3)?,
                            headers: r.try_get(4)?,
                        })
                    })
                    .collect()
            }

            async fn mark_sent(&self, ids: &[i64]) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                for id in ids {
                    sqlx::query("UPDATE outbox SET sent = TRUE WHERE id = $1").bind(*id).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn claim_due_emails(&self, now: i64, lease_until: i64, limit: i64) -> Result<Vec<EmailJob>, StoreError> {
                let mut tx = self.begin_write().await?;
                let rows = sqlx::query(Self::CLAIM_EMAILS_SQL)
                    .bind(now)
                    .bind(limit)
                    .bind(lease_until)
                    .fetch_all(&mut *tx)
                    .await?;
                let jobs = rows
                    .iter()
                    .map(|r| {
                        Ok(EmailJob {
                            order_id: r.try_get(0)?,
                            followup_id: r.try_get(1)?,
                            customer_id: r.try_get(2)?,
                            due_at: r.try_get(3)?,
                            attempts: r.try_get(4)?,
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                tx.commit().await?;
                Ok(jobs)
            }

            async fn coupons_of_order(&self, order_id: &str) -> Result<Vec<CouponRow>, StoreError> {
                let rows = sqlx::query("SELECT code, insert_id, state, version, redeemed_order_id FROM coupons WHERE order_id = $1 ORDER BY code")
                    .bind(order_id)
                    .fetch_all(&self.read)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(CouponRow {
                            code: r.try_get(0)?,
                            insert_id: r.try_get(1)?,
                            state: r.try_get(2)?,
                            version: r.try_get(3)?,
                            redeemed_order_id: r.try_get(4)?,
                        })
                    })
                    .collect()
            }

            async fn stock_used(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
                let rows = sqlx::query("SELECT insert_id, slot, used FROM stock ORDER BY insert_id, slot").fetch_all(&self.read).await?;
                rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).collect()
            }

            async fn record_packed(&self, order_id: &str, packed: &[(String, bool, Option<String>)]) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                for (insert_id, ok, reason) in packed {
                    let state = if *ok { "packed" } else { "not_packed" };
                    let rows = sqlx::query(
                        "UPDATE given_inserts SET state = $1, reason = $2 WHERE order_id = $3 AND insert_id = $4 AND state = 'given' RETURNING kind, stock_slot",
                    )
                    .bind(state)
                    .bind(reason.as_deref())
                    .bind(order_id)
                    .bind(insert_id)
                    .fetch_all(&mut *tx)
                    .await?;
                    for r in rows {
                        let kind: String = r.try_get(0)?;
                        let slot: Option<String> = r.try_get(1)?;
                        if *ok {
                            continue;
                        }
                        if kind == "coupon" {
                            let voided = sqlx::query(
                                "UPDATE coupons SET state = 'voided', version = version + 1 WHERE order_id = $1 AND insert_id = $2 AND state = 'issued' RETURNING code, version, customer_id",
                            )
                            .bind(order_id)
                            .bind(insert_id)
                            .fetch_all(&mut *tx)
                            .await?;
                            for v in voided {
                                let code: String = v.try_get(0)?;
                                let version: i64 = v.try_get(1)?;
                                let customer: String = v.try_get(2)?;
                                let msg = json!({"schema_version": 1, "type": "coupon.voided", "code": code, "version": version,
                                    "order_id": order_id, "customer_id": customer, "reason": "not_packed",
                                    "occurred_at": engine::format_time(Utc::now())});
                                Self::outbox(&mut tx, TOPIC_COUPONS, Some(code.as_bytes()), msg.to_string().as_bytes(), None).await?;
                            }
                        }
                        // Not packed for a reason other than damage or lack of stock: back on the shelf.
                        if let (Some(slot), Some("other")) = (slot, reason.as_deref()) {
                            sqlx::query("UPDATE stock SET used = used - 1 WHERE insert_id = $1 AND slot = $2 AND used > 0")
                                .bind(insert_id)
                                .bind(slot)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn forget_customer(&self, customer_id: &str) -> Result<ForgetReport, StoreError> {
                let mut tx = self.begin_write().await?;
                let mut report = ForgetReport::default();
                if let Some(r) = sqlx::query("SELECT data FROM profiles WHERE customer_id = $1").bind(customer_id).fetch_optional(&mut *tx).await? {
                    let mut p: Profile = serde_json::from_str(&r.try_get::<String, _>(0)?).map_err(corrupt)?;
                    p.first_name = None;
                    p.last_name = None;
                    p.email = None;
                    p.locale = None;
                    p.birthday_month = None;
                    sqlx::query("UPDATE profiles SET data = $1 WHERE customer_id = $2")
                        .bind(serde_json::to_string(&p).map_err(corrupt)?)
                        .bind(customer_id)
                        .execute(&mut *tx)
                        .await?;
                    report.profiles = 1;
                }
                // Notes print the customer's name: their text goes, the decision's shape stays.
                let rows = sqlx::query("SELECT order_id, decision FROM decisions WHERE customer_id = $1").bind(customer_id).fetch_all(&mut *tx).await?;
                let mut order_ids = Vec::new();
                for r in rows {
                    let order_id: String = r.try_get(0)?;
                    let mut d: Decision = serde_json::from_str(&r.try_get::<String, _>(1)?).map_err(corrupt)?;
                    for i in &mut d.inserts {
                        if let Some(n) = &mut i.note {
                            n.text = "[erased]".into();
                        }
                    }
                    sqlx::query("UPDATE decisions SET decision = $1 WHERE order_id = $2")
                        .bind(serde_json::to_string(&d).map_err(corrupt)?)
                        .bind(&order_id)
                        .execute(&mut *tx)
                        .await?;
                    report.decisions += 1;
                    order_ids.push(order_id);
                }
                // Outbox rows about the customer: sent ones are dropped; unsent decisions are
                // re-written without names; unsent DLQ copies of their events are dropped.
                for oid in &order_ids {
                    let r = sqlx::query("DELETE FROM outbox WHERE topic = $1 AND msg_key = $2 AND sent")
                        .bind(TOPIC_PACKING)
                        .bind(oid.as_bytes())
                        .execute(&mut *tx)
                        .await?;
                    report.outbox_rows += r.rows_affected();
                    if let Some(d) = sqlx::query("SELECT decision FROM decisions WHERE order_id = $1").bind(oid).fetch_optional(&mut *tx).await? {
                        let text: String = d.try_get(0)?;
                        let r = sqlx::query("UPDATE outbox SET payload = $1 WHERE topic = $2 AND msg_key = $3 AND NOT sent")
                            .bind(text.as_bytes())
                            .bind(TOPIC_PACKING)
                            .bind(oid.as_bytes())
                            .execute(&mut *tx)
                            .await?;
                        report.outbox_rows += r.rows_affected();
                    }
                }
                let r = sqlx::query("DELETE FROM outbox WHERE topic = $1 AND msg_key = $2").bind(TOPIC_DLQ).bind(customer_id.as_bytes()).execute(&mut *tx).await?;
                report.outbox_rows += r.rows_affected();
                tx.commit().await?;
                Ok(report)
            }

            async fn purge_older_than(&self, cutoff: i64, limit: i64) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await?;
                let mut removed = 0;
                for sql in [
                    "DELETE FROM given_inserts WHERE order_id IN (SELECT order_id FROM decisions WHERE decided_at < $1 ORDER BY order_id LIMIT $2)",
                    "DELETE FROM decisions WHERE order_id IN (SELECT order_id FROM decisions WHERE decided_at < $1 ORDER BY order_id LIMIT $2)",
                    "DELETE FROM processed_events WHERE event_id IN (SELECT event_id FROM processed_events WHERE processed_at < $1 LIMIT $2)",
                    "DELETE FROM email_jobs WHERE (order_id, followup_id) IN (SELECT order_id, followup_id FROM email_jobs WHERE state NOT IN ('pending', 'sending') AND created_at < $1 LIMIT $2)",
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE sent AND created_at < $1 LIMIT $2)",
                ] {
                    removed += sqlx::query(sql).bind(cutoff).bind(limit).execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
                Ok(removed)
            }

            async fn key_fingerprint(&self) -> Result<Option<String>, StoreError> {
                let row = sqlx::query("SELECT value FROM meta WHERE key = 'coupon_key_fingerprint'").fetch_optional(&self.read).await?;
                Ok(row.map(|r| r.try_get(0)).transpose()?)
            }

            async fn check_key_fingerprint(&self, fingerprint: &str) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                sqlx::query("INSERT INTO meta (key, value) VALUES ('coupon_key_fingerprint', $1) ON CONFLICT (key) DO NOTHING")
                    .bind(fingerprint)
                    .execute(&mut *tx)
                    .await?;
                let stored: String = sqlx::query("SELECT value FROM meta WHERE key = 'coupon_key_fingerprint'").fetch_one(&mut *tx).await?.try_get(0)?;
                tx.commit().await?;
                if stored != fingerprint {
                    return Err(StoreError::KeyMismatch { stored, found: fingerprint.to_string() });
                }
                Ok(())
            }

            async fn import_position(&self, source: &str) -> Result<i64, StoreError> {
                let row = sqlx::query("SELECT next_line FROM imports WHERE source = $1").bind(source).fetch_optional(&self.read).await?;
                Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(0))
            }

            async fn dump_text(&self) -> Result<String, StoreError> {
                let mut out = String::new();
                for (table, cols) in [
                    ("meta", "key, value"),
                    ("processed_events", "event_id"),
                    ("profiles", "customer_id, data"),
                    ("orders", "order_id, customer_id, data"),
                    ("decisions", "order_id, customer_id, warehouse, rules_version, decision"),
                    ("given_inserts", "order_id, insert_id, rule_id, kind, state"),
                    ("coupons", "code, order_id, source_id, insert_id, customer_id, state"),
                    ("email_jobs", "order_id, followup_id, customer_id, state"),
                    ("imports", "source"),
                ] {
                    for r in sqlx::query(&format!("SELECT {cols} FROM {table}")).fetch_all(&self.read).await? {
                        for i in 0..cols.split(',').count() {
                            out.push_str(&r.try_get::<String, _>(i)?);
                            out.push('\n');
                        }
                    }
                }
                for r in sqlx::query("SELECT payload, headers FROM outbox").fetch_all(&self.read).await? {
                    out.push_str(&String::from_utf8_lossy(&r.try_get::<Vec<u8>, _>(0)?));
                    out.push_str(&r.try_get::<Option<String>, _>(1)?.unwrap_or_default());
                    out.push('\n');
                }
                Ok(out)
            }
        }
    };
}

/// SQLite: a file in WAL mode; one writer connection (every write transaction is
/// `BEGIN IMMEDIATE`, so a reader never upgrades into a busy-snapshot failure), and a pool of
/// readers for the HTTP API.
pub struct SqliteStore {
    write: sqlx::SqlitePool,
    read: sqlx::SqlitePool,
}

impl SqliteStore {
    /// The writer's transaction is `BEGIN IMMEDIATE`: rows need no lock of their own.
    const LOAD_PROFILE_SQL: &'static str = "SELECT data FROM profiles WHERE customer_id = $1";
    const CLAIM_EMAILS_SQL: &'static str = "UPDATE email_jobs SET claimed_until = $3, attempts = attempts + 1 \
        WHERE (order_id, followup_id) IN (SELECT order_id, followup_id FROM email_jobs \
        WHERE state = 'pending' AND due_at <= $1 AND (claimed_until IS NULL OR claimed_until < $1) ORDER BY due_at LIMIT $2) \
        RETURNING order_id, followup_id, customer_id, due_at, attempts";

    /// Opens (creating) the database at `path` (a file path, `sqlite:` URL, or `:memory:`).
    pub async fn open(path: &str) -> Result<Self, StoreError> {
        use sqlx::sqlite::{
            SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
        };
        use std::str::FromStr;
        let memory = path == ":memory:" || path == "sqlite::memory:";
        let opts = if memory {
            // A shared in-memory database, for scratch stores (backtest).
            let name = format!(
                "file:packwell-scratch-{}?mode=memory&cache=shared",
                uuid_like()
            );
            SqliteConnectOptions::from_str(&format!("sqlite:{name}"))?
        } else {
            let file = path
                .strip_prefix("sqlite://")
                .or_else(|| path.strip_prefix("sqlite:"))
                .unwrap_or(path);
            if let Some(dir) = std::path::Path::new(file)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Other(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            SqliteConnectOptions::new()
                .filename(file)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
        }
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(std::time::Duration::from_secs(10))
        .foreign_keys(false);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        migrate(&write, &sqlx::migrate!("migrations/sqlite")).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(!memory))
            .await?;
        Ok(SqliteStore { write, read })
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.write.begin_with("BEGIN IMMEDIATE").await?)
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// PostgreSQL: a pool shared by every task; several Packwell instances may share the database
/// (counters are claimed with conditional updates, e-mail jobs with `FOR UPDATE SKIP LOCKED`).
pub struct PgStore {
    write: sqlx::PgPool,
    read: sqlx::PgPool,
}

impl PgStore {
    /// Locked until the batch commits, so a concurrent `forget` (or another batch) is not
    /// overwritten by this batch's copy of the profile.
    const LOAD_PROFILE_SQL: &'static str =
        "SELECT data FROM profiles WHERE customer_id = $1 FOR UPDATE";
    const CLAIM_EMAILS_SQL: &'static str = "UPDATE email_jobs SET claimed_until = $3, attempts = attempts + 1 \
        WHERE (order_id, followup_id) IN (SELECT order_id, followup_id FROM email_jobs \
        WHERE state = 'pending' AND due_at <= $1 AND (claimed_until IS NULL OR claimed_until < $1) ORDER BY due_at LIMIT $2 \
        FOR UPDATE SKIP LOCKED) RETURNING order_id, followup_id, customer_id, due_at, attempts";

    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect(url)
            .await?;
        migrate(&pool, &sqlx::migrate!("migrations/postgres")).await?;
        Ok(PgStore {
            read: pool.clone(),
            write: pool,
        })
    }

    /// Connects with an explicit pool (tests use a schema of their own through `search_path`).
    pub async fn with_pool(pool: sqlx::PgPool) -> Result<Self, StoreError> {
        migrate(&pool, &sqlx::migrate!("migrations/postgres")).await?;
        Ok(PgStore {
            read: pool.clone(),
            write: pool,
        })
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        Ok(self.write.begin().await?)
    }
}

/// Applies the migrations this binary knows; a database that has applied one it does not know
/// was written by a newer Packwell and stops start-up.
async fn migrate<DB>(
    pool: &sqlx::Pool<DB>,
    migrator: &sqlx::migrate::Migrator,
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    <DB as sqlx::Database>::Connection: sqlx::migrate::Migrate,
{
    match migrator.run(pool).await {
        Ok(()) => Ok(()),
        Err(sqlx::migrate::MigrateError::VersionMissing(v)) => Err(StoreError::SchemaTooNew(v)),
        Err(e) => Err(e.into()),
    }
}

backend!(SqliteStore, sqlx::Sqlite);
backend!(PgStore, sqlx::Postgres);
