//! The two backends. The batch procedure and every query are written once, in the macro
//! below, and stamped out for SQLite and PostgreSQL: the SQL is the portable subset both speak
//! (`$n` parameters, `ON CONFLICT`, `RETURNING`, multi-row `VALUES`), so the two cannot drift
//! apart. What differs (opening, how a write transaction begins, locking profiles, claiming
//! e-mail jobs) is written per backend.
//!
//! A batch is applied in memory and written in a few multi-row statements (see `pending.rs`):
//! it reads the batch's profiles, orders and decisions in one statement each, decides, and
//! writes counters, coupons, decisions, outbox rows and e-mail jobs at its end. Counter claims
//! are totals per key, each a conditional upsert; when one fails (another instance took what
//! the batch's view still showed) the batch is rolled back and applied again *carefully*:
//! each decision written under a savepoint as soon as it is made, a failed claim re-deciding
//! just that order on a fresh view.

mod email;
mod erase;
mod events;

use super::Store;
use super::apply::{CounterView, dlq_message, from_units, to_units};
use super::attribution::{AttributionData, AttributionQuery};
use super::pending::*;
use super::types::*;
use crate::engine::{self, DecideInput, Decision, Outcome};
use crate::event::{Event, EventBody, RejectReason};
use crate::profile::{self, Folded, OrderSummary, Profile};
use crate::replay::Applied;
use crate::rules::{InsertBody, Trigger};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use serde_json::json;
use sqlx::{Connection, Row};
use std::collections::{HashMap, HashSet};

/// The `meta` key holding the newest `created_at` of DLQ rows that retention removed.
const META_DLQ_PURGED: &str = "dlq_purged_through";

/// How a batch writes its decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// All rows at the batch's end; a lost claim rolls the whole batch back.
    Batched,
    /// Each decision under a savepoint as it is made; a lost claim re-decides that order.
    Careful,
}

/// What this batch has read and will write.
#[derive(Default)]
struct BatchCache {
    /// Stock and budget counters as this batch sees them (None: read them again).
    view: Option<CounterView>,
    profiles: HashMap<String, Profile>,
    orders: HashMap<String, OrderSummary>,
    /// Orders that have a decision (stored before, or made in this batch).
    decided: HashSet<String>,
    /// Event ids of this batch not seen before (each is taken by its first occurrence).
    fresh: HashSet<String>,
    /// The digest each event id of the batch was first processed with (stored before, or its
    /// first occurrence here): another digest under the same id is a conflict.
    digests: HashMap<String, [u8; 32]>,
    dirty_profiles: HashSet<String>,
    dirty_orders: HashSet<String>,
    pending: Pending,
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

/// A confirmation from its stored columns.
fn packed_from_columns(
    station: String,
    body: &str,
    confirmed_at: i64,
) -> Result<PackedConfirmation, StoreError> {
    let inserts: Vec<PackedLine> = serde_json::from_str(body).map_err(corrupt)?;
    let at = DateTime::from_timestamp(confirmed_at, 0)
        .ok_or_else(|| corrupt(format!("confirmation time {confirmed_at}")))?;
    Ok(PackedConfirmation {
        station,
        confirmed_at: engine::format_time(at),
        inserts,
    })
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Why writing staged rows must be tried again on a fresh view.
enum Retry {
    /// A counter claim failed: another instance took what the view still showed.
    Claim,
    /// A coupon code collided with one already issued.
    Code(String),
}

/// The ids a batch reads in one statement each, in a fixed order (locks are taken in it).
fn sorted(ids: HashSet<&str>) -> Vec<&str> {
    let mut v: Vec<&str> = ids.into_iter().collect();
    v.sort_unstable();
    v
}

macro_rules! backend {
    ($store:ident, $db:ty) => {
        impl $store {
            async fn apply_batch_once(&self, batch: &Batch, env: &DecideEnv, mode: Mode) -> Result<BatchReport, StoreError> {
                let mut tx = self.begin_write().await?;
                Self::fence(&mut tx, &batch.fence).await?;
                let mut cache = BatchCache::default();
                Self::preload(&mut tx, &mut cache, batch).await?;
                let mut report = BatchReport::default();
                for item in &batch.items {
                    // A panic in the step is caught here so that it cannot take the consumer
                    // down: the transaction rolls back (dropped) and the caller tries the batch
                    // again, then sets the event aside (`store::apply_guarded`).
                    let step = Self::apply_item(&mut tx, &mut cache, &batch.fence, item, env, mode, &mut report);
                    match std::panic::AssertUnwindSafe(step).catch_unwind().await {
                        Ok(result) => result?,
                        Err(panic) => {
                            return Err(StoreError::Panicked { offset: item.offset, message: crate::panic_message(&*panic) });
                        }
                    }
                }
                for item in &batch.items {
                    if let Ok(e) = &item.event {
                        crate::fault::check(crate::fault::Point::Write, &e.event_id);
                    }
                }
                Self::flush_or_contended(&mut tx, &mut cache).await?;
                Self::write_profiles_and_orders(&mut tx, &cache).await?;
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

            /// Records the batch's event ids as processed and reads what its events refer to:
            /// profiles (locked on PostgreSQL), orders and existing decisions, one statement each.
            async fn preload(tx: &mut sqlx::Transaction<'_, $db>, cache: &mut BatchCache, batch: &Batch) -> Result<(), StoreError> {
                // Events that will be applied, as far as can be told before folding: parsed,
                // and keyed by their customer.
                let events: Vec<&Event> = batch
                    .items
                    .iter()
                    .filter_map(|i| match (&i.event, &i.key) {
                        (Ok(e), Some(k)) if k.as_slice() != e.customer_id().as_bytes() => None,
                        (Ok(e), _) => Some(e),
                        _ => None,
                    })
                    .collect();
                let now = now_secs();
                // The first occurrence of an id in the batch gives its digest.
                let mut firsts: HashMap<&str, &[u8; 32]> = HashMap::new();
                for e in &events {
                    firsts.entry(e.event_id.as_str()).or_insert(&e.digest);
                }
                let mut ids: Vec<(&str, &[u8; 32])> = firsts.into_iter().collect();
                ids.sort_unstable();
                for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("INSERT INTO processed_events (event_id, processed_at, digest) ");
                    qb.push_values(chunk, |mut b, (id, digest)| {
                        b.push_bind(*id).push_bind(now).push_bind(digest.as_slice());
                    });
                    qb.push(" ON CONFLICT (event_id) DO NOTHING RETURNING event_id");
                    for r in qb.build().persistent(false).fetch_all(&mut **tx).await? {
                        cache.fresh.insert(r.try_get(0)?);
                    }
                }
                let seen: Vec<&str> = ids.iter().map(|(id, _)| *id).filter(|id| !cache.fresh.contains(*id)).collect();
                for chunk in seen.chunks(ROWS_PER_STATEMENT) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT event_id, digest FROM processed_events WHERE digest IS NOT NULL AND event_id IN (");
                    let mut list = qb.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    qb.push(")");
                    for r in qb.build().persistent(false).fetch_all(&mut **tx).await? {
                        let stored: Vec<u8> = r.try_get(1)?;
                        if let Ok(digest) = <[u8; 32]>::try_from(stored.as_slice()) {
                            cache.digests.insert(r.try_get(0)?, digest);
                        }
                    }
                }
                for (id, digest) in &ids {
                    if cache.fresh.contains(*id) {
                        cache.digests.insert(id.to_string(), **digest);
                    }
                }
                let fresh: Vec<&Event> = events.into_iter().filter(|e| cache.fresh.contains(&e.event_id)).collect();
                let customers = sorted(fresh.iter().map(|e| e.customer_id()).collect());
                for chunk in customers.chunks(ROWS_PER_STATEMENT) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT customer_id, data FROM profiles WHERE customer_id IN (");
                    let mut list = qb.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    qb.push(") ORDER BY customer_id");
                    qb.push(Self::LOCK_PROFILES);
                    for r in qb.build().persistent(false).fetch_all(&mut **tx).await? {
                        let id: String = r.try_get(0)?;
                        let p: Profile = serde_json::from_str(&r.try_get::<String, _>(1)?).map_err(corrupt)?;
                        cache.profiles.insert(id, p);
                    }
                }
                for id in customers {
                    if !cache.profiles.contains_key(id) {
                        cache.profiles.insert(id.to_string(), Profile::new(id));
                    }
                }
                let order_ids = sorted(fresh.iter().filter_map(|e| e.order_id()).collect());
                for chunk in order_ids.chunks(ROWS_PER_STATEMENT) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT order_id, data FROM orders WHERE order_id IN (");
                    let mut list = qb.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    qb.push(")");
                    for r in qb.build().persistent(false).fetch_all(&mut **tx).await? {
                        let id: String = r.try_get(0)?;
                        let o: OrderSummary = serde_json::from_str(&r.try_get::<String, _>(1)?).map_err(corrupt)?;
                        cache.orders.insert(id, o);
                    }
                }
                let placed = sorted(
                    fresh
                        .iter()
                        .filter_map(|e| match &e.body {
                            EventBody::OrderPlaced(o) => Some(o.id.as_str()),
                            _ => None,
                        })
                        .collect(),
                );
                for chunk in placed.chunks(ROWS_PER_STATEMENT) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT order_id FROM decisions WHERE order_id IN (");
                    let mut list = qb.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    qb.push(")");
                    for r in qb.build().persistent(false).fetch_all(&mut **tx).await? {
                        cache.decided.insert(r.try_get(0)?);
                    }
                }
                Ok(())
            }

            /// One outbox row written at once, for writes outside a batch (packed confirmations).
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

            /// One try of [`Store::confirm_packed`], in one write transaction.
            async fn confirm_packed_once(&self, order_id: &str, station: &str, lines: &[PackedLine], rules: &crate::rules::RuleSet) -> Result<PackedOutcome, StoreError> {
                let body = serde_json::to_string(lines).map_err(corrupt)?;
                let now = Utc::now();
                let mut tx = self.begin_write().await?;
                // The decision row is the order's lock: a cancellation takes it too, so the two
                // never interleave (one sees the other's outcome).
                let decided = sqlx::query(&format!("SELECT warehouse FROM decisions WHERE order_id = $1{}", Self::LOCK_ROW))
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
                    return Ok(if same { PackedOutcome::Repeated(first) } else { PackedOutcome::Conflict(first) });
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
                    // Only from `given` (DESIGN's insert state machine).
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
                                    InsertBody::Item { stock: Some(stock), .. } => stock.slot(&warehouse),
                                    _ => None,
                                })
                                .filter(|(s, _)| s.as_str() == slot)
                                .map(|(_, n)| i64::from(n));
                            let Some(allocation) = allocation else {
                                tracing::warn!(order_id, insert_id, slot, "out of stock reported for an insert the rules no longer count in this slot; no counter changed");
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
                    confirmed_at: engine::format_time(DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now)),
                    inserts: lines.to_vec(),
                }))
            }

            /// Whether the order was cancelled (its summary says so).
            async fn order_cancelled(tx: &mut sqlx::Transaction<'_, $db>, order_id: &str) -> Result<bool, StoreError> {
                let row = sqlx::query("SELECT data FROM orders WHERE order_id = $1").bind(order_id).fetch_optional(&mut **tx).await?;
                let Some(row) = row else { return Ok(false) };
                let summary: OrderSummary = serde_json::from_str(&row.try_get::<String, _>(0)?).map_err(corrupt)?;
                Ok(summary.status == profile::OrderStatus::Cancelled)
            }

            /// Voids the coupon of an insert a station did not pack: nobody received its code.
            async fn void_unpacked_coupon(tx: &mut sqlx::Transaction<'_, $db>, order_id: &str, line: &PackedLine, now: &DateTime<Utc>) -> Result<(), StoreError> {
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
                    let msg = json!({"schema_version": 1, "type": "coupon.voided", "code": code, "version": version,
                        "order_id": order_id, "customer_id": customer, "reason": "not_packed",
                        "occurred_at": engine::format_time(*now)});
                    Self::outbox(tx, TOPIC_COUPONS, Some(code.as_bytes()), msg.to_string().as_bytes(), None).await?;
                }
                Ok(())
            }

            /// The recorded confirmation of an order, if any.
            async fn packed_row(tx: &mut sqlx::Transaction<'_, $db>, order_id: &str) -> Result<Option<PackedConfirmation>, StoreError> {
                let row = sqlx::query("SELECT station, body, confirmed_at FROM packed_confirmations WHERE order_id = $1")
                    .bind(order_id)
                    .fetch_optional(&mut **tx)
                    .await?;
                row.map(|r| packed_from_columns(r.try_get(0)?, &r.try_get::<String, _>(1)?, r.try_get(2)?)).transpose()
            }

            /// One row of the operator log, in the transaction of the change it records.
            async fn operator_row(
                tx: &mut sqlx::Transaction<'_, $db>,
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

            /// Sets one stock counter to `used`: compare-and-set against the value just read, so
            /// a unit another instance takes in between is not overwritten unseen (the read is
            /// done again). Returns `used` as it was.
            async fn set_stock_key(tx: &mut sqlx::Transaction<'_, $db>, s: &StockSetting, used: i64) -> Result<i64, StoreError> {
                for _ in 0..16 {
                    let before: i64 = sqlx::query("SELECT used FROM stock WHERE insert_id = $1 AND slot = $2")
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

            /// Sets an event aside: its DLQ row is staged and the report counts it by reason.
            fn dlq(cache: &mut BatchCache, report: &mut BatchReport, fence: &Fence, item: &BatchItem, reason: RejectReason, error: &str) {
                let (value, headers) = dlq_message(fence, item.offset, &item.value, reason, error);
                cache.pending.outbox.push(OutboxInsert { topic: TOPIC_DLQ, key: item.key.clone(), payload: value, headers: Some(headers) });
                report.rejected += 1;
                report.rejections.push(reason);
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

            /// Stages a decision's rows: its claims, coupons (and their `coupon.issued`
            /// messages), given inserts, the decision and its packing instruction, its e-mails.
            fn stage_decision(pending: &mut Pending, outcome: &Outcome, env: &DecideEnv, at: DateTime<Utc>, customer_since: Option<i64>) -> Result<(), StoreError> {
                let d = &outcome.decision;
                pending.claim(&outcome.claims);
                for (seq, g) in d.inserts.iter().enumerate() {
                    let stock_slot = env.rules.insert(&g.insert_id).and_then(|i| match &i.body {
                        InsertBody::Item { stock: Some(s), .. } => s.slot(&d.warehouse).map(|(slot, _)| slot.as_str().to_string()),
                        _ => None,
                    });
                    if let Some(c) = &g.coupon {
                        pending.coupons.push(CouponInsert {
                            code: c.code.clone(),
                            order_id: d.order_id.clone(),
                            source_id: g.rule_id.clone(),
                            insert_id: g.insert_id.clone(),
                            customer_id: d.customer_id.clone(),
                            amount: c.amount.to_string(),
                            currency: c.currency.to_string(),
                            expires_on: c.expires_on.to_string(),
                            issued_at: at.timestamp(),
                        });
                        let msg = json!({"schema_version": 1, "type": "coupon.issued", "code": c.code, "version": 1,
                            "order_id": d.order_id, "customer_id": d.customer_id, "rule_id": g.rule_id, "insert_id": g.insert_id,
                            "amount": c.amount, "currency": c.currency, "min_order": c.min_order, "expires_on": c.expires_on,
                            "occurred_at": d.decided_at});
                        pending.outbox.push(OutboxInsert {
                            topic: TOPIC_COUPONS,
                            key: Some(c.code.as_bytes().to_vec()),
                            payload: msg.to_string().into_bytes(),
                            headers: None,
                        });
                    }
                    pending.given.push(GivenInsert {
                        order_id: d.order_id.clone(),
                        seq: seq as i64,
                        insert_id: g.insert_id.clone(),
                        rule_id: g.rule_id.clone(),
                        kind: g.kind.to_string(),
                        stock_slot,
                    });
                }
                for e in &outcome.exposures {
                    let mut costs: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
                    for (currency, amount) in &e.costs {
                        *costs.entry(currency.to_string()).or_default() += to_units(*amount);
                    }
                    pending.expose(
                        ("rule", e.rule_id.clone(), d.customer_id.clone(), e.arm == engine::Arm::Shadow),
                        FirstExposure { at: at.timestamp(), arm: e.arm.as_str(), customer_since },
                    );
                    pending.exposures.push(ExposureInsert {
                        source_id: e.rule_id.clone(),
                        order_id: d.order_id.clone(),
                        customer_id: d.customer_id.clone(),
                        arm: e.arm.as_str(),
                        at: at.timestamp(),
                        costs: costs.into_iter().collect(),
                    });
                }
                let json = serde_json::to_string(d).map_err(corrupt)?;
                pending.outbox.push(OutboxInsert {
                    topic: TOPIC_PACKING,
                    key: Some(d.order_id.as_bytes().to_vec()),
                    payload: json.as_bytes().to_vec(),
                    headers: None,
                });
                pending.decisions.push(DecisionInsert {
                    order_id: d.order_id.clone(),
                    customer_id: d.customer_id.clone(),
                    warehouse: d.warehouse.clone(),
                    rules_version: d.rules_version.clone(),
                    decided_at: at.timestamp(),
                    json,
                });
                Self::stage_emails(pending, &d.order_id, &d.customer_id, customer_since, &d.followups, &outcome.followup_holdouts)
            }

            /// Stages an order's e-mail jobs: the scheduled ones pending, the held-out ones
            /// skipped with reason `holdout` (the control group is recorded, keyed alike).
            fn stage_emails(
                pending: &mut Pending,
                order_id: &str,
                customer_id: &str,
                customer_since: Option<i64>,
                followups: &[engine::ScheduledFollowup],
                held_out: &[engine::ScheduledFollowup],
            ) -> Result<(), StoreError> {
                let all = followups.iter().map(|f| (f, false)).chain(held_out.iter().map(|f| (f, true)));
                for (f, held_out) in all {
                    let due = DateTime::parse_from_rfc3339(&f.due_at).map(|t| t.timestamp()).map_err(corrupt)?;
                    pending.expose(
                        ("followup", f.followup_id.clone(), customer_id.to_string(), false),
                        FirstExposure { at: due, arm: if held_out { "held_out" } else { "treated" }, customer_since },
                    );
                    pending.emails.push(EmailInsert {
                        order_id: order_id.to_string(),
                        followup_id: f.followup_id.clone(),
                        customer_id: customer_id.to_string(),
                        due_at: due,
                        held_out,
                    });
                }
                Ok(())
            }

            /// Writes what is staged, in this order: counter claims (sorted keys), coupons,
            /// given inserts, decisions, outbox rows (in event order, so the relay
            /// sends them in it), e-mail jobs. `Err(Retry)` when a claim or a code was lost.
            async fn write_pending(tx: &mut sqlx::Transaction<'_, $db>, pending: Pending) -> Result<Result<(), Retry>, StoreError> {
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
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
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
                        let written: HashSet<String> = rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?;
                        let lost = chunk.iter().find(|c| !written.contains(&c.code)).map(|c| c.code.clone()).unwrap_or_default();
                        return Ok(Err(Retry::Code(lost)));
                    }
                }
                for chunk in pending.given.chunks(ROWS_PER_STATEMENT) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("INSERT INTO given_inserts (order_id, seq, insert_id, rule_id, kind, stock_slot, state) ");
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
                    let mut qb = sqlx::QueryBuilder::<$db>::new("INSERT INTO decisions (order_id, customer_id, warehouse, rules_version, decided_at, decision) ");
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
                    let mut qb = sqlx::QueryBuilder::<$db>::new("INSERT INTO outbox (topic, msg_key, payload, headers, sent, created_at) ");
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
                    let mut qb = sqlx::QueryBuilder::<$db>::new("INSERT INTO email_jobs (order_id, followup_id, customer_id, due_at, scheduled_for, first_due_at, state, reason, created_at) ");
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
                    let mut qb = sqlx::QueryBuilder::<$db>::new("INSERT INTO exposures (source_id, order_id, customer_id, arm, at) ");
                    qb.push_values(chunk, |mut b, e| {
                        b.push_bind(&e.source_id).push_bind(&e.order_id).push_bind(&e.customer_id).push_bind(e.arm).push_bind(e.at);
                    });
                    qb.build().persistent(false).execute(&mut **tx).await?;
                }
                let costs: Vec<(&ExposureInsert, &(String, i64))> =
                    pending.exposures.iter().flat_map(|e| e.costs.iter().map(move |c| (e, c))).collect();
                for chunk in costs.chunks(ROWS_PER_STATEMENT) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("INSERT INTO exposure_costs (source_id, order_id, currency, units) ");
                    qb.push_values(chunk, |mut b, (e, (currency, units))| {
                        b.push_bind(&e.source_id).push_bind(&e.order_id).push_bind(currency).push_bind(*units);
                    });
                    qb.build().persistent(false).execute(&mut **tx).await?;
                }
                let firsts: Vec<(&FirstExposureKey, &FirstExposure)> = pending.first_exposures.iter().collect();
                for chunk in firsts.chunks(ROWS_PER_STATEMENT) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("INSERT INTO first_exposures (kind, source_id, customer_id, shadow, at, arm, customer_since) ");
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
                    let mut qb = sqlx::QueryBuilder::<$db>::new("INSERT INTO feedback (customer_id, at, nps) ");
                    qb.push_values(chunk, |mut b, f| {
                        b.push_bind(&f.customer_id).push_bind(f.at).push_bind(f.nps);
                    });
                    qb.build().persistent(false).execute(&mut **tx).await?;
                }
                for chunk in pending.events.chunks(ROWS_PER_STATEMENT) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("INSERT INTO events (event_id, customer_id, occurred_at, stored_at, body) ");
                    qb.push_values(chunk, |mut b, e| {
                        b.push_bind(&e.event_id).push_bind(&e.customer_id).push_bind(e.occurred_at).push_bind(now).push_bind(e.body.as_slice());
                    });
                    qb.push(" ON CONFLICT (event_id) DO NOTHING");
                    qb.build().persistent(false).execute(&mut **tx).await?;
                }
                Ok(Ok(()))
            }

            /// Writes what is staged before a statement that reads or changes rows the batch
            /// may have staged; a lost claim here rolls the batch back ([`StoreError::Contended`]).
            async fn flush_or_contended(tx: &mut sqlx::Transaction<'_, $db>, cache: &mut BatchCache) -> Result<(), StoreError> {
                if cache.pending.is_empty() {
                    return Ok(());
                }
                match Self::write_pending(tx, std::mem::take(&mut cache.pending)).await? {
                    Ok(()) => Ok(()),
                    Err(_) => Err(StoreError::Contended),
                }
            }

            async fn decide_and_stage(
                tx: &mut sqlx::Transaction<'_, $db>,
                cache: &mut BatchCache,
                event: &Event,
                env: &DecideEnv,
                mode: Mode,
            ) -> Result<Applied, StoreError> {
                let EventBody::OrderPlaced(order) = &event.body else { return Ok(Applied::Unchanged) };
                if cache.decided.contains(&order.id) {
                    // Decided before (e.g. imported history replayed): the stored decision stands.
                    return Ok(Applied::Unchanged);
                }
                if mode == Mode::Careful {
                    // The savepoint below must hold this decision's rows only.
                    Self::flush_or_contended(tx, cache).await?;
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
                    let customer_since = profile.first_order_at;
                    Self::stage_decision(&mut cache.pending, &outcome, env, event.occurred_at, customer_since)?;
                    if mode == Mode::Careful {
                        let mut sp = (&mut **tx).begin().await?;
                        match Self::write_pending(&mut sp, std::mem::take(&mut cache.pending)).await? {
                            Ok(()) => sp.commit().await?,
                            Err(Retry::Code(code)) => {
                                sp.rollback().await?;
                                if let Some(view) = cache.view.as_mut() {
                                    view.taken_codes.insert(code);
                                }
                                continue;
                            }
                            Err(Retry::Claim) => {
                                sp.rollback().await?;
                                cache.view = None;
                                continue;
                            }
                        }
                    }
                    if let Some(view) = cache.view.as_mut() {
                        view.take(&outcome.claims);
                    }
                    if let Some(p) = cache.profiles.get_mut(&order.customer.id) {
                        for rule in &outcome.rules_given {
                            p.record_given(rule, event.occurred_at);
                        }
                        let coupons = outcome.decision.inserts.iter().filter(|i| i.coupon.is_some()).count();
                        p.coupons_received = p.coupons_received.saturating_add(u32::try_from(coupons).unwrap_or(u32::MAX));
                    }
                    cache.decided.insert(order.id.clone());
                    return Ok(Applied::Decided(Box::new(outcome)));
                }
                Err(StoreError::Other(format!("order {}: could not take counters after 16 tries", order.id)))
            }

            /// An order cancelled before packing: its coupons are voided (`coupon.voided`), its
            /// inserts go back to stock once, its e-mails are cancelled.
            async fn cancel(tx: &mut sqlx::Transaction<'_, $db>, cache: &mut BatchCache, order_id: &str, at: &str) -> Result<(), StoreError> {
                if cache.pending.touches_order(order_id) {
                    // Decided in this very batch: its rows must exist to be voided.
                    Self::flush_or_contended(tx, cache).await?;
                }
                // The order's lock, as a packing confirmation takes it: a confirmation either
                // committed before (then the parcel is on its way) or waits and sees the
                // cancellation.
                sqlx::query(&format!("SELECT order_id FROM decisions WHERE order_id = $1{}", Self::LOCK_ROW))
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
                        if let Some(used) = cache.view.as_mut().and_then(|v| v.stock.get_mut(&(insert, slot))) {
                            *used = used.saturating_sub(1);
                        }
                    }
                }
                Self::cancel_emails(tx, cache, order_id).await
            }

            async fn cancel_emails(tx: &mut sqlx::Transaction<'_, $db>, cache: &mut BatchCache, order_id: &str) -> Result<(), StoreError> {
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

            #[allow(clippy::too_many_arguments)]
            async fn apply_item(
                tx: &mut sqlx::Transaction<'_, $db>,
                cache: &mut BatchCache,
                fence: &Fence,
                item: &BatchItem,
                env: &DecideEnv,
                mode: Mode,
                report: &mut BatchReport,
            ) -> Result<(), StoreError> {
                let event = match &item.event {
                    Ok(e) => e,
                    Err(r) => {
                        Self::dlq(cache, report, fence, item, r.reason, &r.message);
                        report.applied.push(Applied::Unchanged);
                        return Ok(());
                    }
                };
                let customer = event.customer_id().to_string();
                if let Some(key) = &item.key
                    && key.as_slice() != customer.as_bytes()
                {
                    let msg = format!("key: the message key {:?} is not the event's customer id {customer:?}", String::from_utf8_lossy(key));
                    Self::dlq(cache, report, fence, item, RejectReason::KeyMismatch, &msg);
                    report.applied.push(Applied::Unchanged);
                    return Ok(());
                }
                // The first occurrence of an event id in the batch takes it; later ones (and
                // ids processed by an earlier batch) are seen before, unless they carry another
                // event under the same id.
                if !cache.fresh.remove(&event.event_id) {
                    if cache.digests.get(&event.event_id).is_some_and(|d| *d != event.digest) {
                        let msg = format!("event_id: {:?} was processed before with a different event", event.event_id);
                        Self::dlq(cache, report, fence, item, RejectReason::Conflict, &msg);
                        report.applied.push(Applied::Conflict);
                        return Ok(());
                    }
                    report.seen_before += 1;
                    report.applied.push(Applied::Unchanged);
                    return Ok(());
                }
                crate::fault::check(crate::fault::Point::Decide, &event.event_id);
                if let Some(oid) = event.order_id()
                    && let Some(o) = cache.orders.get(oid)
                    && o.customer_id != customer
                {
                    // An event about someone else's order must not touch it (nor schedule an
                    // e-mail about it to the wrong person).
                    let msg = format!("order_id: order {oid:?} belongs to another customer, not {customer:?}");
                    Self::dlq(cache, report, fence, item, RejectReason::Conflict, &msg);
                    report.applied.push(Applied::Conflict);
                    return Ok(());
                }
                let profile = cache.profiles.get_mut(&customer).ok_or_else(|| corrupt("profile not loaded"))?;
                let order = event.order_id().and_then(|id| cache.orders.get_mut(id));
                let (folded, new_order) = match profile::fold(profile, order, event) {
                    Ok(folded) => folded,
                    Err(rejected) => {
                        // Nothing was folded: the history stays as it was.
                        Self::dlq(cache, report, fence, item, rejected.reason, &rejected.message);
                        report.applied.push(Applied::Rejected(rejected));
                        return Ok(());
                    }
                };
                if !matches!(folded, Folded::Conflict | Folded::ChangedOrder) {
                    cache.pending.events.push(super::events::EventRow::of(event));
                }
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
                        Self::dlq(cache, report, fence, item, RejectReason::Conflict, &msg);
                        Applied::Conflict
                    }
                    (Folded::ChangedOrder, _) => {
                        let msg = format!(
                            "order.id: order {:?} is known with other content (items, amounts, warehouse or shipping differ)",
                            event.order_id().unwrap_or("")
                        );
                        Self::dlq(cache, report, fence, item, RejectReason::Conflict, &msg);
                        Applied::Conflict
                    }
                    (Folded::DuplicateOrder, _) => Applied::Unchanged,
                    (Folded::NewOrder, EventBody::OrderPlaced(order)) => {
                        if cache.pending.touches_coupons(&order.coupon_codes) {
                            // A code issued earlier in this batch must exist before it is redeemed.
                            Self::flush_or_contended(tx, cache).await?;
                        }
                        for code in &order.coupon_codes {
                            sqlx::query("UPDATE coupons SET state = 'redeemed', redeemed_order_id = $1 WHERE code = $2 AND state = 'issued'")
                                .bind(&order.id)
                                .bind(code)
                                .execute(&mut **tx)
                                .await?;
                        }
                        if item.decide {
                            Self::decide_and_stage(tx, cache, event, env, mode).await?
                        } else {
                            Applied::Folded { followups: Vec::new(), skipped: Vec::new() }
                        }
                    }
                    (Folded::Cancelled, EventBody::OrderCancelled { order_id, .. }) => {
                        Self::cancel(tx, cache, order_id, &engine::format_time(event.occurred_at)).await?;
                        Applied::Folded { followups: Vec::new(), skipped: Vec::new() }
                    }
                    (_, EventBody::Subscribed { customer_id }) => {
                        // Subscribed again through the shop: an earlier unsubscribe by link
                        // no longer holds (the profile's flag is folded above).
                        // Only an unsubscribe from before this event: a late, older event does
                        // not undo a newer click.
                        sqlx::query("DELETE FROM unsubscribes WHERE customer_id = $1 AND at <= $2")
                            .bind(customer_id)
                            .bind(event.occurred_at.timestamp())
                            .execute(&mut **tx)
                            .await?;
                        Applied::Folded { followups: Vec::new(), skipped: Vec::new() }
                    }
                    (_, EventBody::Feedback { customer_id, nps, .. }) => {
                        cache.pending.feedback.push(FeedbackInsert {
                            customer_id: customer_id.clone(),
                            at: event.occurred_at.timestamp(),
                            nps: i64::from(*nps),
                        });
                        Applied::Folded { followups: Vec::new(), skipped: Vec::new() }
                    }
                    (Folded::Returned, EventBody::OrderReturned { order_id, .. }) => {
                        Self::cancel_emails(tx, cache, order_id).await?;
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
                                    let held_out = engine::held_out_followups(&env.rules, &skipped, at);
                                    Self::stage_emails(&mut cache.pending, oid, &customer, p.first_order_at, &followups, &held_out)?;
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

            /// Profiles and orders changed by the batch, one multi-row upsert each.
            async fn write_profiles_and_orders(tx: &mut sqlx::Transaction<'_, $db>, cache: &BatchCache) -> Result<(), StoreError> {
                let now = now_secs();
                let ids = sorted(cache.dirty_profiles.iter().map(String::as_str).collect());
                let mut rows: Vec<(&str, String)> = Vec::with_capacity(ids.len());
                for id in ids {
                    if let Some(p) = cache.profiles.get(id) {
                        rows.push((id, serde_json::to_string(p).map_err(corrupt)?));
                    }
                }
                for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("INSERT INTO profiles (customer_id, data, updated_at) ");
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
                    let mut qb = sqlx::QueryBuilder::<$db>::new("INSERT INTO orders (order_id, customer_id, data, placed_at, currency, net_units, cancelled) ");
                    qb.push_values(chunk, |mut b, (id, o, data)| {
                        let cancelled = o.status == profile::OrderStatus::Cancelled;
                        b.push_bind(*id)
                            .push_bind(o.customer_id.as_str())
                            .push_bind(data.as_str())
                            .push_bind(o.placed_at.timestamp())
                            .push_bind(o.currency.to_string())
                            .push_bind(if cancelled { 0 } else { to_units(o.total - o.returned_value) })
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

        #[async_trait]
        impl Store for $store {
            async fn apply_batch(&self, batch: &Batch, env: &DecideEnv) -> Result<BatchReport, StoreError> {
                // A batch is all or nothing, so one that lost a deadlock or a serialization
                // check (two instances claiming the same counters in different orders) is
                // applied again, a bounded number of times, after a short random wait.
                // A batch whose totals lost a claim to another instance is applied again
                // carefully, order by order.
                let mut tries: u64 = 0;
                let mut mode = Mode::Batched;
                loop {
                    match self.apply_batch_once(batch, env, mode).await {
                        Err(StoreError::Db(e)) if is_transient(&e) && tries < 8 => {
                            tries += 1;
                            let wait = 5 + (rand_u64() % 20) * tries;
                            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                        }
                        Err(StoreError::Contended) if tries < 8 => {
                            tries += 1;
                            mode = Mode::Careful;
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
                let row = sqlx::query(
                    "SELECT d.decision, d.warehouse, p.station, p.body, p.confirmed_at FROM decisions d \
                     LEFT JOIN packed_confirmations p ON p.order_id = d.order_id WHERE d.order_id = $1",
                )
                .bind(order_id)
                .fetch_optional(&self.read)
                .await?;
                match row {
                    None => Ok(None),
                    Some(r) => {
                        let decision: Decision = serde_json::from_str(&r.try_get::<String, _>(0)?).map_err(corrupt)?;
                        let packed = match r.try_get::<Option<String>, _>(2)? {
                            None => None,
                            Some(station) => Some(packed_from_columns(station, &r.try_get::<String, _>(3)?, r.try_get(4)?)?),
                        };
                        Ok(Some(StoredDecision { decision, warehouse: r.try_get(1)?, packed }))
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
                for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("UPDATE outbox SET sent = TRUE WHERE id IN (");
                    let mut list = qb.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    qb.push(")");
                    qb.build().persistent(false).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn outbox_backlog(&self) -> Result<i64, StoreError> {
                Ok(sqlx::query("SELECT COUNT(*) FROM outbox WHERE NOT sent").fetch_one(&self.read).await?.try_get(0)?)
            }

            async fn try_relay_lock(&self) -> Result<bool, StoreError> {
                self.try_relay_lock_impl().await
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.read).await?;
                Ok(())
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

            async fn confirm_packed(&self, order_id: &str, station: &str, lines: &[PackedLine], rules: &crate::rules::RuleSet) -> Result<PackedOutcome, StoreError> {
                // Locks are taken in one order everywhere (the order's decision row first), so
                // a deadlock is rare; PostgreSQL ends one when it happens, and this tries again.
                let mut tries = 0;
                loop {
                    match self.confirm_packed_once(order_id, station, lines, rules).await {
                        Err(StoreError::Db(e)) if tries < 3 && is_transient(&e) => tries += 1,
                        other => return other,
                    }
                }
            }

            async fn forget_customer(&self, customer_id: &str) -> Result<ForgetReport, StoreError> {
                self.forget_customer_impl(customer_id).await
            }

            async fn purge_older_than(&self, cutoff: i64, limit: i64) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await?;
                let mut removed = 0;
                for sql in [
                    "DELETE FROM given_inserts WHERE order_id IN (SELECT order_id FROM decisions WHERE decided_at < $1 ORDER BY order_id LIMIT $2)",
                    "DELETE FROM packed_confirmations WHERE order_id IN (SELECT order_id FROM decisions WHERE decided_at < $1 ORDER BY order_id LIMIT $2)",
                    "DELETE FROM decisions WHERE order_id IN (SELECT order_id FROM decisions WHERE decided_at < $1 ORDER BY order_id LIMIT $2)",
                    "DELETE FROM processed_events WHERE event_id IN (SELECT event_id FROM processed_events WHERE processed_at < $1 LIMIT $2)",
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE stored_at < $1 ORDER BY seq LIMIT $2)",
                    "DELETE FROM email_jobs WHERE (order_id, followup_id) IN (SELECT order_id, followup_id FROM email_jobs WHERE state NOT IN ('pending', 'retry', 'sending') AND created_at < $1 LIMIT $2)",
                ] {
                    removed += sqlx::query(sql).bind(cutoff).bind(limit).execute(&mut *tx).await?.rows_affected();
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
                    if before.and_then(|b| b.parse::<i64>().ok()).is_none_or(|b| at > b) {
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

            async fn newest_decision_at(&self) -> Result<Option<i64>, StoreError> {
                let row = sqlx::query("SELECT MAX(decided_at) FROM decisions").fetch_one(&self.read).await?;
                Ok(row.try_get::<Option<i64>, _>(0)?)
            }

            async fn attribution(&self, q: &AttributionQuery) -> Result<AttributionData, StoreError> {
                use super::attribution::*;
                let since = q.since.unwrap_or(i64::MIN);
                // On the report's own readers: four statements side by side on PostgreSQL, two
                // one after the other on SQLite; then the redemptions over time.
                let statements = cohort_statements(Self::REPORT_SIDE_BY_SIDE);
                let run = |i: usize| sqlx::query(statements[i].as_str()).bind(since).bind(q.until).bind(q.window).fetch_all(&self.report);
                let cohorts = if statements.len() == 4 {
                    let (a, b, c, d) = tokio::try_join!(run(0), run(1), run(2), run(3))?;
                    vec![a, b, c, d]
                } else {
                    let mut rows = Vec::new();
                    for i in 0..statements.len() {
                        rows.push(run(i).await?);
                    }
                    rows
                };
                let redemptions = sqlx::query(REDEMPTIONS_SQL).bind(since).fetch_all(&self.report).await?;
                let mut data = AttributionData::default();
                for r in cohorts.iter().flatten() {
                    let part: String = r.try_get(0)?;
                    let figures = [r.try_get(6)?, r.try_get(7)?, r.try_get(8)?, r.try_get(9)?];
                    add_cohort_row(&mut data, &part, (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?), (r.try_get(4)?, r.try_get(5)?), figures);
                }
                for r in redemptions {
                    data.redemptions.push(RedemptionRow { source_id: r.try_get(0)?, day: r.try_get(1)?, count: r.try_get(2)? });
                }
                Ok(data)
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

            async fn set_stock(&self, settings: &[StockSetting], actor: &str) -> Result<Vec<StockChange>, StoreError> {
                let mut keyed: Vec<&StockSetting> = settings.iter().collect();
                // A fixed (sorted) order of keys, as batches take them: no waiting in a cycle.
                keyed.sort_by(|a, b| (&a.insert_id, &a.slot).cmp(&(&b.insert_id, &b.slot)));
                for pair in keyed.windows(2) {
                    if (&pair[0].insert_id, &pair[0].slot) == (&pair[1].insert_id, &pair[1].slot) {
                        return Err(StoreError::Other(format!("the stock of {} ({}) is set twice", pair[0].insert_id, pair[0].slot)));
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
                    Self::operator_row(&mut tx, actor, "stock.set", &format!("{}/{}", s.insert_id, s.slot), &detail).await?;
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

            async fn void_coupon(&self, code: &str, actor: &str) -> Result<VoidOutcome, StoreError> {
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
                        Some(f) => VoidOutcome::Final { state: f.try_get(0)?, redeemed_order_id: f.try_get(1)? },
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
                let msg = json!({"schema_version": 1, "type": "coupon.voided", "code": code, "version": version,
                    "order_id": order_id, "customer_id": customer_id, "reason": "operator",
                    "occurred_at": engine::format_time(Utc::now())});
                Self::outbox(&mut tx, TOPIC_COUPONS, Some(code.as_bytes()), msg.to_string().as_bytes(), None).await?;
                let detail = json!({"order_id": order_id, "customer_id": customer_id, "insert_id": insert_id,
                    "source_id": source_id, "state_before": "issued", "version": version});
                Self::operator_row(&mut tx, actor, "coupon.void", code, &detail).await?;
                tx.commit().await?;
                Ok(VoidOutcome::Voided { version, order_id, customer_id })
            }

            async fn dlq_rows(&self, since: i64, after_id: i64, limit: i64) -> Result<Vec<DlqRow>, StoreError> {
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

            async fn dlq_purged_through(&self) -> Result<Option<i64>, StoreError> {
                let row = sqlx::query("SELECT value FROM meta WHERE key = $1").bind(META_DLQ_PURGED).fetch_optional(&self.read).await?;
                row.map(|r| r.try_get::<String, _>(0)?.parse::<i64>().map_err(corrupt)).transpose()
            }

            async fn log_operator(&self, actor: &str, action: &str, subject: &str, detail: &serde_json::Value) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                Self::operator_row(&mut tx, actor, action, subject, detail).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn operator_log(&self, limit: i64) -> Result<Vec<OperatorLogRow>, StoreError> {
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
                    ("operator_log", "actor, action, subject, detail"),
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
    /// The effect report's own readers: its seconds-long scans never hold up the station
    /// API's readers, nor the writer (WAL readers do not block it).
    report: sqlx::SqlitePool,
}

impl SqliteStore {
    /// The writer's transaction is `BEGIN IMMEDIATE`: rows need no lock of their own.
    const LOCK_PROFILES: &'static str = "";
    /// SQLite's write transactions are serial already (`BEGIN IMMEDIATE`).
    const LOCK_ROW: &'static str = "";
    /// The report's statements one after the other (see [`REPORT_CONNECTIONS`]).
    const REPORT_SIDE_BY_SIDE: bool = false;
    const CLAIM_EMAILS_SQL: &'static str = "UPDATE email_jobs SET claimed_until = $3, attempts = attempts + 1 \
        WHERE (order_id, followup_id) IN (SELECT order_id, followup_id FROM email_jobs \
        WHERE state IN ('pending', 'retry', 'sending') AND due_at <= $1 AND (claimed_until IS NULL OR claimed_until < $1) ORDER BY due_at LIMIT $2) \
        RETURNING order_id, followup_id, customer_id, state, due_at, COALESCE(scheduled_for, due_at), claimed_until, attempts, tries, resends, message";
    /// SQLite's write transactions are serial: the frequency cap needs no lock of its own.
    const LOCK_CUSTOMER_SQL: Option<&'static str> = None;

    /// Opens (creating) the database at `path` (a file path, `sqlite:` URL, or `:memory:`).
    pub async fn open(path: &str) -> Result<Self, StoreError> {
        use sqlx::sqlite::{
            SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
        };
        use std::str::FromStr;
        let memory = path == ":memory:" || path == "sqlite::memory:";
        let mut fresh = memory;
        let opts = if memory {
            // A shared in-memory database, for scratch stores (backtest).
            let name = format!(
                "file:packwell-scratch-{}?mode=memory&cache=shared",
                uuid_like()
            );
            SqliteConnectOptions::from_str(&format!("sqlite:{name}"))?
        } else {
            let file = super::sqlite_file(path).unwrap_or(path);
            // The folder 0700 and the file 0600 before SQLite opens it: its -wal and -shm
            // then get the file's mode (see `files.rs`).
            let (new, narrowed) = super::files::prepare_sqlite_file(std::path::Path::new(file))
                .map_err(|e| StoreError::Other(format!("cannot create {file}: {e}")))?;
            for n in narrowed {
                tracing::warn!("{n}");
            }
            fresh = new;
            SqliteConnectOptions::new()
                .filename(file)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
        }
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(std::time::Duration::from_secs(10))
        // 64 MiB of page cache per connection (the default is 2 MiB): a batch reads hundreds of
        // profiles and orders, and pages read from the OS cache cost a system call each.
        .pragma("cache_size", "-65536")
        // What is deleted or overwritten is overwritten with zeros in the file, on every
        // connection, so that erased data does not linger in free space (`forget`).
        .pragma("secure_delete", "ON")
        .foreign_keys(false);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        migrate(&write, &sqlx::migrate!("migrations/sqlite")).await?;
        let read_opts = opts.read_only(!memory);
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(read_opts.clone())
            .await?;
        let report = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .connect_lazy_with(read_opts);
        let store = SqliteStore {
            write,
            read,
            report,
        };
        store.vacuum_once(fresh).await?;
        Ok(store)
    }

    /// One instance per SQLite file (the data folder's lock file): its relay is the only one.
    async fn try_relay_lock_impl(&self) -> Result<bool, StoreError> {
        Ok(true)
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
    /// The effect report's own connections, so that its scans never take the ones the
    /// consumer and the station API need.
    report: sqlx::PgPool,
    /// The connection holding the relay's advisory lock, once taken: one relay per database.
    relay_lock: tokio::sync::Mutex<Option<sqlx::pool::PoolConnection<sqlx::Postgres>>>,
}

/// Connections of PostgreSQL's report pool: its four long statements run side by side (the
/// operating system shares them among the cores). SQLite's pool has one: two statements in one
/// process contend on SQLite's global memory mutex and take longer side by side than one after
/// the other (measured: 19 s against 11 s).
const REPORT_CONNECTIONS: u32 = 4;

/// A small pool beside `pool`, on the same database with the same settings, opened on first use.
/// Without JIT compilation: the report's statements are many short index probes, for which
/// compiling costs more than it saves (half a second per statement, measured). With room to
/// sort and hash a million cohort rows in memory rather than on disk, and hash joins rather
/// than a million index probes where the planner misjudges a cohort's size (a fifth faster,
/// measured on 1M customers).
fn report_pool(pool: &sqlx::PgPool) -> sqlx::PgPool {
    let options = (*pool.connect_options()).clone().options([
        ("jit", "off"),
        ("work_mem", "64MB"),
        ("enable_nestloop", "off"),
    ]);
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(REPORT_CONNECTIONS)
        .min_connections(0)
        .connect_lazy_with(options)
}

/// The advisory lock key of the relay ("packwell relay" in ASCII, cut to 63 bits).
const RELAY_LOCK_KEY: i64 = 0x7061_636b_7765_6c6c;

impl PgStore {
    /// Locked until the batch commits, so a concurrent `forget` (or another batch) is not
    /// overwritten by this batch's copy of the profile.
    const LOCK_PROFILES: &'static str = " FOR UPDATE";
    /// A row read to take an order's lock.
    const LOCK_ROW: &'static str = " FOR UPDATE";
    /// The report's statements side by side, each on a connection of its own.
    const REPORT_SIDE_BY_SIDE: bool = true;
    const CLAIM_EMAILS_SQL: &'static str = "UPDATE email_jobs SET claimed_until = $3, attempts = attempts + 1 \
        WHERE (order_id, followup_id) IN (SELECT order_id, followup_id FROM email_jobs \
        WHERE state IN ('pending', 'retry', 'sending') AND due_at <= $1 AND (claimed_until IS NULL OR claimed_until < $1) ORDER BY due_at LIMIT $2 \
        FOR UPDATE SKIP LOCKED) RETURNING order_id, followup_id, customer_id, state, due_at, COALESCE(scheduled_for, due_at), claimed_until, attempts, tries, resends, message";
    /// The frequency cap's per-customer lock: held until the transaction ends, so two
    /// instances handing over e-mails of one customer take turns.
    const LOCK_CUSTOMER_SQL: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))");

    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect(url)
            .await?;
        migrate(&pool, &sqlx::migrate!("migrations/postgres")).await?;
        Ok(PgStore {
            read: pool.clone(),
            report: report_pool(&pool),
            write: pool,
            relay_lock: tokio::sync::Mutex::new(None),
        })
    }

    /// Connects with an explicit pool (tests use a schema of their own through `search_path`).
    pub async fn with_pool(pool: sqlx::PgPool) -> Result<Self, StoreError> {
        migrate(&pool, &sqlx::migrate!("migrations/postgres")).await?;
        Ok(PgStore {
            read: pool.clone(),
            report: report_pool(&pool),
            write: pool,
            relay_lock: tokio::sync::Mutex::new(None),
        })
    }

    /// Takes the relay's session-level advisory lock on a connection kept for it; true while
    /// this instance holds it. Several instances share one database: one relays, the others
    /// wait, and take over when its connection (so its lock) goes.
    async fn try_relay_lock_impl(&self) -> Result<bool, StoreError> {
        let mut held = self.relay_lock.lock().await;
        if let Some(conn) = held.as_mut() {
            if sqlx::query("SELECT 1").execute(&mut **conn).await.is_ok() {
                return Ok(true);
            }
            // The connection broke, and the lock went with it.
            *held = None;
        }
        let mut conn = self.write.acquire().await?;
        let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1)")
            .bind(RELAY_LOCK_KEY)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        if got {
            *held = Some(conn);
        }
        Ok(got)
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
